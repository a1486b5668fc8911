// Package config loads, validates and hot-reloads the judge's decision
// matrix (decision.yaml). Loading is strict: unknown fields, bad units and
// bad enums are errors with file:line:col and a hint; the document is
// checked against an embedded JSON Schema, then semantically. Sources (a
// file watched with fsnotify, a Consul KV key watched with blocking queries)
// feed a Store that swaps a fully validated config atomically and keeps the
// last good one when a new one is bad.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"go.yaml.in/yaml/v3"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// SchemaJSON is the JSON Schema of decision.yaml.
//
//go:embed decision.schema.json
var SchemaJSON []byte

// ErrorKind classifies a configuration error.
type ErrorKind int

// Error kinds.
const (
	KindSyntax   ErrorKind = 1 + iota // not YAML
	KindSchema                        // unknown field, wrong type, bad enum or unit
	KindSemantic                      // well-formed but inconsistent
	KindSource                        // the source could not be read
)

// String names the kind.
func (k ErrorKind) String() string {
	switch k {
	case KindSyntax:
		return "syntax"
	case KindSchema:
		return "schema"
	case KindSemantic:
		return "semantic"
	case KindSource:
		return "source"
	}
	return "invalid"
}

// Error is one configuration problem at file:line:col.
type Error struct {
	Kind      ErrorKind
	File      string
	Line, Col int
	Path      string // the field, e.g. dimensions.error_rate.hard_limit
	Msg       string
	Hint      string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (hint: " + e.Hint + ")")
	}
	return b.String()
}

// Errors is every problem found in one document, in file order.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

var compiled *jsonschema.Schema

func init() {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(SchemaJSON)))
	if err != nil {
		panic("decision/config: embedded schema: " + err.Error())
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("decision.schema.json", doc); err != nil {
		panic("decision/config: embedded schema: " + err.Error())
	}
	compiled, err = c.Compile("decision.schema.json")
	if err != nil {
		panic("decision/config: embedded schema: " + err.Error())
	}
}

type fileDimension struct {
	Enabled          *bool    `yaml:"enabled"`
	Direction        *string  `yaml:"direction"`
	Weight           *float64 `yaml:"weight"`
	Critical         *bool    `yaml:"critical"`
	K                *float64 `yaml:"k"`
	MinEffect        any      `yaml:"min_effect"`
	HardLimit        *string  `yaml:"hard_limit"`
	MinSuccess       *string  `yaml:"min_success"`
	MaxPause         *string  `yaml:"max_pause"`
	LongPause        *string  `yaml:"long_pause"`
	MaxLongPerMinute *float64 `yaml:"max_long_per_minute"`
	CycleRatio       *float64 `yaml:"cycle_ratio"`
	SigmaPrior       *float64 `yaml:"sigma_prior"`
	SigmaFloor       *float64 `yaml:"sigma_floor"`
	SigmaPriorShare  *string  `yaml:"sigma_prior_share"`
	DriftPrior       *string  `yaml:"drift_prior"`
	MinSamples       *float64 `yaml:"min_samples"`
	Exposure         *string  `yaml:"exposure"`
	Required         *bool    `yaml:"required"`
}

type fileCondition struct {
	Dimension string   `yaml:"dimension"`
	Outcome   string   `yaml:"outcome"`
	Trend     string   `yaml:"trend"`
	Signal    string   `yaml:"signal"`
	Below     *float64 `yaml:"below"`
}

type fileRule struct {
	Name      string          `yaml:"name"`
	When      []fileCondition `yaml:"when"`
	Action    string          `yaml:"action"`
	Diagnosis string          `yaml:"diagnosis"`
}

type file struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Alpha      *float64 `yaml:"alpha"`
	Freshness  *string  `yaml:"freshness"`
	Score      *struct {
		Promote               *float64 `yaml:"promote"`
		Block                 *float64 `yaml:"block"`
		MinCoverage           *float64 `yaml:"min_coverage"`
		CriticalMinConfidence *float64 `yaml:"critical_min_confidence"`
	} `yaml:"score"`
	Baseline *struct {
		Window             *string  `yaml:"window"`
		Bucket             *string  `yaml:"bucket"`
		Shrink             *float64 `yaml:"shrink"`
		MinWindows         *int     `yaml:"min_windows"`
		IntensityTolerance *float64 `yaml:"intensity_tolerance"`
		SigmaUncertainty   *string  `yaml:"sigma_uncertainty"`
	} `yaml:"baseline"`
	Dimensions map[string]fileDimension `yaml:"dimensions"`
	Rules      *[]fileRule              `yaml:"rules"`
	Hold       *struct {
		MaxExtensions    *int    `yaml:"max_extensions"`
		EscalateTo       *string `yaml:"escalate_to"`
		EscalateRepeated *bool   `yaml:"escalate_repeated"`
	} `yaml:"hold"`
}

// loader carries the document being loaded, for positions.
type loader struct {
	name string
	doc  *yaml.Node
	errs Errors
}

// Load parses and validates a decision.yaml document. name is used in error
// positions (usually the file path or the Consul key). The returned config
// has its Hash set.
func Load(data []byte, name string) (*decision.Config, error) {
	l := &loader{name: name}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, l.syntax(err)
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, Errors{{Kind: KindSchema, File: name, Line: 1, Col: 1, Msg: "empty document", Hint: "start with apiVersion: chaosgate.io/v1 and kind: DecisionConfig"}}
	}
	l.doc = root.Content[0]
	var inst any
	if err := l.doc.Decode(&inst); err != nil {
		return nil, l.syntax(err)
	}
	inst = normalise(inst)
	if err := compiled.Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			l.schemaErrors(ve)
		} else {
			l.add(KindSchema, nil, "", err.Error(), "")
		}
		return nil, l.sorted()
	}
	var f file
	if err := l.doc.Decode(&f); err != nil {
		return nil, l.syntax(err)
	}
	cfg := l.build(&f)
	if len(l.errs) > 0 {
		return nil, l.sorted()
	}
	cfg.Hash = cfg.ComputeHash()
	return cfg, nil
}

func (l *loader) sorted() Errors {
	sort.SliceStable(l.errs, func(i, j int) bool {
		if l.errs[i].Line != l.errs[j].Line {
			return l.errs[i].Line < l.errs[j].Line
		}
		return l.errs[i].Col < l.errs[j].Col
	})
	return l.errs
}

var yamlLine = regexp.MustCompile(`line (\d+)(?::(\d+))?`)

func (l *loader) syntax(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line, col := 1, 1
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		if m[2] != "" {
			col, _ = strconv.Atoi(m[2])
		}
		msg = strings.TrimPrefix(strings.Replace(msg, m[0]+": ", "", 1), "unmarshal errors:\n  ")
	}
	return Errors{{Kind: KindSyntax, File: l.name, Line: line, Col: col, Msg: msg, Hint: "check indentation and quoting; percentages and durations are plain scalars like 0.15% and 120ms"}}
}

// normalise turns YAML's map[string]any tree into plain JSON values.
func normalise(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalise(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = normalise(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = normalise(e)
		}
		return x
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	case time.Time:
		return x.Format(time.RFC3339Nano)
	}
	return v
}

// node finds the YAML node at a path of keys and indexes; key selects the
// key node of the last element instead of its value.
func (l *loader) node(path []string, key bool) *yaml.Node {
	n := l.doc
	for i, p := range path {
		last := i == len(path)-1
		switch n.Kind {
		case yaml.MappingNode:
			found := false
			for j := 0; j+1 < len(n.Content); j += 2 {
				if n.Content[j].Value == p {
					if last && key {
						return n.Content[j]
					}
					n = n.Content[j+1]
					found = true
					break
				}
			}
			if !found {
				return n
			}
		case yaml.SequenceNode:
			idx, err := strconv.Atoi(p)
			if err != nil || idx < 0 || idx >= len(n.Content) {
				return n
			}
			n = n.Content[idx]
		default:
			return n
		}
	}
	return n
}

func (l *loader) add(k ErrorKind, path []string, field, msg, hint string) {
	e := &Error{Kind: k, File: l.name, Path: field, Msg: msg, Hint: hint}
	if n := l.node(path, false); n != nil {
		e.Line, e.Col = n.Line, n.Column
	}
	l.errs = append(l.errs, e)
}

var printer = message.NewPrinter(language.English)

func (l *loader) schemaErrors(ve *jsonschema.ValidationError) {
	if len(ve.Causes) > 0 {
		for _, c := range ve.Causes {
			l.schemaErrors(c)
		}
		return
	}
	path := ve.InstanceLocation
	field := strings.Join(path, ".")
	switch k := ve.ErrorKind.(type) {
	case *kind.AdditionalProperties:
		for _, p := range k.Properties {
			full := append(append([]string(nil), path...), p)
			e := &Error{Kind: KindSchema, File: l.name, Path: strings.Join(full, "."), Msg: "unknown field"}
			if n := l.node(full, true); n != nil {
				e.Line, e.Col = n.Line, n.Column
			}
			if s := decision.Suggest(p, allowedKeys(path)); s != "" {
				e.Hint = fmt.Sprintf("did you mean %q?", s)
			} else if ks := allowedKeys(path); len(ks) > 0 {
				e.Hint = "allowed: " + strings.Join(ks, ", ")
			}
			l.errs = append(l.errs, e)
		}
		return
	case *kind.Enum:
		l.add(KindSchema, path, field, ve.ErrorKind.LocalizedString(printer), "one of "+enumList(k.Want))
		return
	case *kind.Const:
		l.add(KindSchema, path, field, ve.ErrorKind.LocalizedString(printer), fmt.Sprintf("use %v", k.Want))
		return
	case *kind.Pattern:
		hint := "see the schema for the format"
		switch {
		case strings.Contains(k.Want, "%"):
			hint = `a percentage with a % sign, e.g. "0.15%"`
		case strings.Contains(k.Want, "ms|s|m|h"):
			hint = `a duration with a unit (ms, s, m, h), e.g. "120ms" or "2m"`
		}
		l.add(KindSchema, path, field, fmt.Sprintf("bad value %q", k.Got), hint)
		return
	case *kind.Required:
		l.add(KindSchema, path, field, ve.ErrorKind.LocalizedString(printer), "add "+strings.Join(k.Missing, ", "))
		return
	}
	l.add(KindSchema, path, field, ve.ErrorKind.LocalizedString(printer), hintFor(path))
}

func enumList(v []any) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

func hintFor(path []string) string {
	if len(path) == 0 {
		return ""
	}
	switch path[len(path)-1] {
	case "min_effect":
		return `a percentage like "0.05%" for rates and latency, or a number in the dimension's unit`
	case "weight", "k", "sigma_prior", "sigma_floor", "min_samples", "max_long_per_minute", "shrink":
		return "a non-negative number"
	case "cycle_ratio":
		return "a factor of at least 1 (0 turns the comparison off)"
	case "promote", "block", "min_coverage", "critical_min_confidence", "intensity_tolerance":
		return "a number between 0 and 1"
	case "hard_limit", "min_success":
		return `a percentage with a % sign, e.g. "0.15%"`
	case "sigma_uncertainty":
		return "off, contexts or full"
	case "max_pause", "long_pause", "freshness", "window", "bucket":
		return `a duration with a unit (ms, s, m, h), e.g. "120ms" or "2m"`
	}
	return ""
}

// allowedKeys returns the property names the schema allows at path.
func allowedKeys(path []string) []string {
	top := []string{"apiVersion", "kind", "alpha", "freshness", "score", "baseline", "dimensions", "rules", "hold"}
	dim := []string{"enabled", "direction", "weight", "critical", "k", "min_effect", "hard_limit", "min_success", "max_pause", "long_pause", "max_long_per_minute", "cycle_ratio", "sigma_prior", "sigma_floor", "sigma_prior_share", "drift_prior", "min_samples", "exposure", "required"}
	switch {
	case len(path) == 0:
		return top
	case len(path) == 1 && path[0] == "score":
		return []string{"promote", "block", "min_coverage", "critical_min_confidence"}
	case len(path) == 1 && path[0] == "baseline":
		return []string{"window", "bucket", "shrink", "min_windows", "intensity_tolerance", "sigma_uncertainty"}
	case len(path) == 1 && path[0] == "hold":
		return []string{"max_extensions", "escalate_to", "escalate_repeated"}
	case len(path) == 1 && path[0] == "dimensions":
		s := make([]string, len(decision.Kinds))
		for i, k := range decision.Kinds {
			s[i] = string(k)
		}
		return s
	case len(path) == 2 && path[0] == "dimensions":
		return dim
	case len(path) == 2 && path[0] == "rules":
		return []string{"name", "when", "action", "diagnosis"}
	case len(path) == 4 && path[0] == "rules":
		return []string{"dimension", "outcome", "trend", "signal", "below"}
	}
	return nil
}

func parsePercent(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || !strings.HasSuffix(s, "%") {
		return 0, fmt.Errorf("bad percentage %q", s)
	}
	return math.Round(v*1e10) / 1e12, nil
}

func (l *loader) duration(path []string, s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		l.add(KindSchema, path, strings.Join(path, "."), fmt.Sprintf("bad duration %q", s), `a duration with a unit, e.g. "120ms", "2m", "168h"`)
	}
	return d
}

func (l *loader) percent(path []string, s string) float64 {
	v, err := parsePercent(s)
	if err != nil {
		l.add(KindSchema, path, strings.Join(path, "."), err.Error(), `a percentage with a % sign, e.g. "0.15%"`)
	}
	return v
}

// build applies the file over the defaults and checks it semantically.
func (l *loader) build(f *file) *decision.Config {
	cfg := decision.Default()
	if f.Alpha != nil {
		cfg.Alpha = *f.Alpha
	}
	if f.Freshness != nil {
		cfg.Freshness = l.duration([]string{"freshness"}, *f.Freshness)
	}
	if s := f.Score; s != nil {
		set(&cfg.Score.Promote, s.Promote)
		set(&cfg.Score.Block, s.Block)
		set(&cfg.Score.MinCoverage, s.MinCoverage)
		set(&cfg.Score.CriticalMinConfidence, s.CriticalMinConfidence)
	}
	if cfg.Score.Block > cfg.Score.Promote {
		l.add(KindSemantic, []string{"score", "block"}, "score.block", fmt.Sprintf("block line %g is above the promote line %g", cfg.Score.Block, cfg.Score.Promote), "block must be ≤ promote")
	}
	if b := f.Baseline; b != nil {
		if b.Window != nil {
			cfg.Baseline.Window = l.duration([]string{"baseline", "window"}, *b.Window)
		}
		if b.Bucket != nil {
			cfg.Baseline.Bucket = l.duration([]string{"baseline", "bucket"}, *b.Bucket)
			if cfg.Baseline.Bucket > 24*time.Hour {
				l.add(KindSemantic, []string{"baseline", "bucket"}, "baseline.bucket", "a time-of-day bucket cannot be wider than a day", "use e.g. 1h or 2h")
			}
		}
		set(&cfg.Baseline.Shrink, b.Shrink)
		if b.MinWindows != nil {
			cfg.Baseline.MinWindows = *b.MinWindows
		}
		set(&cfg.Baseline.IntensityTolerance, b.IntensityTolerance)
		if b.SigmaUncertainty != nil {
			// The schema admits only off, contexts and full.
			if v := *b.SigmaUncertainty; v != "off" {
				cfg.Baseline.SigmaUncertainty = v
			}
		}
	}
	names := make([]string, 0, len(f.Dimensions))
	for n := range f.Dimensions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fd := f.Dimensions[n]
		i := indexOf(cfg, decision.Kind(n))
		if i < 0 {
			continue // the schema already rejected unknown names
		}
		d := &cfg.Dimensions[i]
		p := []string{"dimensions", n}
		if fd.Enabled != nil {
			d.Enabled = *fd.Enabled
		}
		if fd.Direction != nil {
			if *fd.Direction == "lower_is_worse" {
				d.Direction = decision.LowerIsWorse
			} else {
				d.Direction = decision.HigherIsWorse
			}
		}
		set(&d.Weight, fd.Weight)
		if fd.Critical != nil {
			d.Critical = *fd.Critical
		}
		if fd.Required != nil {
			d.Required = *fd.Required
		}
		set(&d.K, fd.K)
		switch me := fd.MinEffect.(type) {
		case nil:
		case string:
			d.MinEffect = l.percent(append(p, "min_effect"), me)
		case float64:
			d.MinEffect = me
		case int:
			d.MinEffect = float64(me)
		}
		if fd.HardLimit != nil {
			if !isRate(d.Kind) {
				l.add(KindSemantic, append(p, "hard_limit"), "dimensions."+n+".hard_limit", "hard_limit applies to rate dimensions only", "rate dimensions: error_rate, session_interruption, dependency_sla")
			}
			d.HardLimit = l.percent(append(p, "hard_limit"), *fd.HardLimit)
		}
		if fd.MinSuccess != nil {
			if d.Kind != decision.DependencySLA {
				l.add(KindSemantic, append(p, "min_success"), "dimensions."+n+".min_success", "min_success applies to dependency_sla only", "use hard_limit for other rates")
			}
			d.HardLimit = math.Round((1-l.percent(append(p, "min_success"), *fd.MinSuccess))*1e12) / 1e12
		}
		if fd.MaxPause != nil || fd.LongPause != nil || fd.MaxLongPerMinute != nil || fd.CycleRatio != nil {
			if d.Kind != decision.GCPause {
				l.add(KindSemantic, p, "dimensions."+n, "max_pause, long_pause, max_long_per_minute and cycle_ratio apply to gc_pause only", "move them under dimensions.gc_pause")
			}
		}
		if fd.CycleRatio != nil && *fd.CycleRatio != 0 && *fd.CycleRatio < 1 {
			l.add(KindSemantic, append(p, "cycle_ratio"), "dimensions."+n+".cycle_ratio", fmt.Sprintf("cycle_ratio %g is below 1: a healthy canary would fail", *fd.CycleRatio), "a factor of at least 1, e.g. 2; 0 turns the comparison off")
		}
		if fd.MaxPause != nil {
			d.MaxPauseMS = float64(l.duration(append(p, "max_pause"), *fd.MaxPause)) / float64(time.Millisecond)
		}
		if fd.LongPause != nil {
			d.LongPauseMS = float64(l.duration(append(p, "long_pause"), *fd.LongPause)) / float64(time.Millisecond)
		}
		if fd.Exposure != nil {
			ep := append(p, "exposure")
			switch x := decision.Kind(*fd.Exposure); {
			case d.Kind != decision.ErrorRate && d.Kind != decision.SessionInterruption:
				l.add(KindSemantic, ep, "dimensions."+n+".exposure", "exposure applies to error_rate and session_interruption only", "remove it here; dependency_sla is the usual exposure of error_rate")
			case x == "none":
				d.Exposure = ""
			case !isRate(x) || x == d.Kind:
				l.add(KindSemantic, ep, "dimensions."+n+".exposure", fmt.Sprintf("exposure %q is not another rate dimension", *fd.Exposure), "one of error_rate, session_interruption, dependency_sla (not the dimension itself), or none")
			default:
				d.Exposure = x
			}
		}
		set(&d.MaxLongPerMinute, fd.MaxLongPerMinute)
		set(&d.CycleRatio, fd.CycleRatio)
		set(&d.SigmaPrior, fd.SigmaPrior)
		set(&d.SigmaFloor, fd.SigmaFloor)
		if fd.DriftPrior != nil {
			if !isRate(d.Kind) {
				l.add(KindSemantic, append(p, "drift_prior"), "dimensions."+n+".drift_prior", "drift_prior applies to rate dimensions only", "rate dimensions: error_rate, session_interruption, dependency_sla")
			}
			d.DriftPrior = l.percent(append(p, "drift_prior"), *fd.DriftPrior)
		}
		if fd.SigmaPriorShare != nil {
			if d.Kind != decision.MemoryGrowth {
				l.add(KindSemantic, append(p, "sigma_prior_share"), "dimensions."+n+".sigma_prior_share", "sigma_prior_share applies to memory_growth only", "latency is judged on a log scale, where sigma_prior is already a share")
			}
			d.SigmaPriorShare = l.percent(append(p, "sigma_prior_share"), *fd.SigmaPriorShare)
		}
		set(&d.MinSamples, fd.MinSamples)
		if d.Kind == decision.Consistency && !d.Critical && d.Enabled {
			l.add(KindSemantic, append(p, "critical"), "dimensions."+n+".critical", "consistency must stay critical: any violation blocks", "remove critical: false, or disable the dimension explicitly")
		}
	}
	total := 0.0
	for _, d := range cfg.Dimensions {
		if d.Enabled {
			total += d.Weight
		}
	}
	if total <= 0 || math.IsNaN(total) {
		l.add(KindSemantic, []string{"dimensions"}, "dimensions", "no enabled dimension has a positive weight", "give at least one dimension a weight above 0")
	}
	if f.Rules != nil {
		cfg.Rules = nil
		for i, fr := range *f.Rules {
			p := []string{"rules", strconv.Itoa(i)}
			r := decision.Rule{Name: fr.Name, Diagnosis: fr.Diagnosis}
			switch fr.Action {
			case "annotate":
				r.Action = decision.Annotate
			case "hold":
				r.Action = decision.ForceHold
			case "block":
				r.Action = decision.ForceBlock
			}
			for j, fc := range fr.When {
				cp := append(append([]string(nil), p...), "when", strconv.Itoa(j))
				c := decision.Condition{Dimension: decision.Kind(fc.Dimension), Signal: decision.Signal(fc.Signal)}
				switch fc.Outcome {
				case "pass":
					c.Outcome = decision.Pass
				case "inconclusive":
					c.Outcome = decision.Inconclusive
				case "fail":
					c.Outcome = decision.Fail
				}
				switch fc.Trend {
				case "worse":
					c.Trend = decision.Worse
				case "better":
					c.Trend = decision.Better
				}
				switch {
				case fc.Dimension != "" && fc.Signal != "":
					l.add(KindSemantic, cp, strings.Join(cp, "."), "a condition tests either a dimension or a signal, not both", "split it into two conditions")
				case fc.Dimension != "" && fc.Outcome == "" && fc.Trend == "":
					l.add(KindSemantic, cp, strings.Join(cp, "."), "a dimension condition needs an outcome or a trend", "add outcome: fail or trend: better")
				case fc.Signal != "" && fc.Below == nil:
					l.add(KindSemantic, cp, strings.Join(cp, "."), "a signal condition needs below", "e.g. below: 0.5")
				case fc.Dimension == "" && fc.Signal == "":
					l.add(KindSemantic, cp, strings.Join(cp, "."), "a condition needs a dimension or a signal", "e.g. dimension: latency_p99 with outcome: fail")
				}
				if fc.Below != nil {
					c.Below = *fc.Below
				}
				r.When = append(r.When, c)
			}
			cfg.Rules = append(cfg.Rules, r)
		}
	}
	if h := f.Hold; h != nil {
		if h.MaxExtensions != nil {
			cfg.Hold.MaxExtensions = *h.MaxExtensions
		}
		if h.EscalateTo != nil {
			cfg.Hold.EscalateTo, _ = decision.ParseDecision(*h.EscalateTo)
		}
		if h.EscalateRepeated != nil {
			cfg.Hold.EscalateRepeated = *h.EscalateRepeated
		}
	}
	return cfg
}

func isRate(k decision.Kind) bool {
	return k == decision.ErrorRate || k == decision.SessionInterruption || k == decision.DependencySLA
}

func indexOf(c *decision.Config, k decision.Kind) int {
	for i, d := range c.Dimensions {
		if d.Kind == k {
			return i
		}
	}
	return -1
}

func set(dst *float64, v *float64) {
	if v != nil {
		*dst = *v
	}
}
