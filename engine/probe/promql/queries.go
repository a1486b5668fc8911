package promql

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/decision/config"
)

// Schema is the name of the queries file contract this package reads.
const Schema = "queries/v1"

// DefaultTimeout bounds each query when the file sets no timeout.
const DefaultTimeout = 10 * time.Second

// Field names: the keys of a queries file's "queries" map. Each names the
// windows/v1 arm field its query fills.
const (
	Requests              = "requests"
	Errors                = "errors"
	LatencyP50            = "latency_p50_ms"
	LatencyP99            = "latency_p99_ms"
	LatencySamples        = "latency_samples"
	GCPauses              = "gc_pauses"
	GCPauseCount          = "gc_pause_count"
	GCPauseSecondsSum     = "gc_pause_seconds_sum"
	GCPauseSecondsMax     = "gc_pause_seconds_max"
	Sessions              = "sessions"
	SessionInterruptions  = "session_interruptions"
	DependencyCalls       = "dependency_calls"
	DependencyFailures    = "dependency_failures"
	ConsistencyViolations = "consistency_violations"
	MemoryGrowth          = "memory_growth_mb_per_min"
	CollectedAt           = "collected_at"
)

// Fields lists every field a queries file may set, in the order they are
// queried.
var Fields = []string{Requests, Errors, LatencyP50, LatencyP99, LatencySamples, GCPauses, GCPauseCount, GCPauseSecondsSum,
	GCPauseSecondsMax, Sessions, SessionInterruptions, DependencyCalls, DependencyFailures, ConsistencyViolations, MemoryGrowth, CollectedAt}

// counts are the fields whose values are whole counts (rounded: increase()
// extrapolates to the window's edges and returns fractions).
var counts = []string{Requests, Errors, LatencySamples, GCPauseCount, Sessions, SessionInterruptions, DependencyCalls, DependencyFailures, ConsistencyViolations}

// JSONSchema is the JSON Schema (draft 2020-12) of a queries file, for
// editors and pipeline linters; Parse is the strict check.
//
//go:embed queries.schema.json
var JSONSchema []byte

// AggregatorYAML is the queries file for chaosgate's reference aggregator
// (the defaults): its HTTP, forwarding, Go runtime and process metrics.
//
//go:embed aggregator.yaml
var AggregatorYAML []byte

// Queries is a parsed queries file: one PromQL template per field.
type Queries struct {
	// Timeout bounds each query (client side, and sent to Prometheus as
	// its evaluation timeout).
	Timeout time.Duration
	text    map[string]string
	tmpl    map[string]*template.Template
}

// Error is one problem of a queries file at file:line:col, with the key
// and a hint: the same error type as decision.yaml's (decision/config).
type Error = config.Error

// Default returns the queries for chaosgate's reference aggregator.
func Default() *Queries {
	q, err := Parse("aggregator.yaml", AggregatorYAML)
	if err != nil {
		panic("promql: the shipped aggregator queries do not parse: " + err.Error())
	}
	return q
}

// LoadFile reads and parses a queries file.
func LoadFile(path string) (*Queries, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Template returns the template text of field ("" when the file sets none).
func (q *Queries) Template(field string) string { return q.text[field] }

// Render resolves field's template for one arm and window; ok is false
// when the file sets no query for field.
func (q *Queries) Render(field, arm, selector string, window time.Duration) (query string, ok bool, err error) {
	t := q.tmpl[field]
	if t == nil {
		return "", false, nil
	}
	var b bytes.Buffer
	if err := t.Execute(&b, templateData(arm, selector, window)); err != nil {
		return "", true, fmt.Errorf("%s: template: %w", field, err)
	}
	return strings.TrimSpace(b.String()), true, nil
}

// templateData is what a template sees: .Selector, .Window,
// .WindowSeconds (the same window in seconds, for arithmetic with time()),
// .Arm. A map, so that missingkey=error rejects any other name.
func templateData(arm, selector string, window time.Duration) map[string]string {
	return map[string]string{"Selector": selector, "Window": Duration(window), "WindowSeconds": strconv.FormatFloat(window.Truncate(time.Millisecond).Seconds(), 'f', -1, 64), "Arm": arm}
}

// Duration formats d as a PromQL duration: 5m, 90s, 1h30m, 250ms.
func Duration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		name string
		d    time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if n := d / u.d; n > 0 {
			// Whole minutes read better as 90s than 1m30s when under 2m.
			if u.name == "m" && n == 1 && d%time.Minute != 0 {
				continue
			}
			b.WriteString(strconv.FormatInt(int64(n), 10) + u.name)
			d -= n * u.d
		}
	}
	return b.String()
}

var topKeys = []string{"schema", "timeout", "queries"}

// Parse reads a queries file strictly: unknown keys, repeated keys, empty
// queries, templates that do not parse or name anything but .Selector,
// .Window and .Arm are errors at file:line:col with a hint.
func Parse(file string, data []byte) (*Queries, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(file, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, &Error{File: file, Msg: "empty file", Hint: "a mapping with a queries: map, e.g. queries: {requests: 'sum(increase(http_requests_total{ {{.Selector}} }[{{.Window}}]))'}"}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, at(file, root, "", "want a mapping with schema, timeout and queries", "")
	}
	q := &Queries{Timeout: DefaultTimeout, text: map[string]string{}, tmpl: map[string]*template.Template{}}
	var queries *yaml.Node
	if err := eachKey(file, root, "", topKeys, func(k, v *yaml.Node) error {
		switch k.Value {
		case "schema":
			if v.Kind != yaml.ScalarNode || v.Value != Schema {
				return at(file, v, "schema", fmt.Sprintf("unsupported schema %q", v.Value), "this version reads "+Schema)
			}
		case "timeout":
			d, err := time.ParseDuration(v.Value)
			if v.Kind != yaml.ScalarNode || err != nil || d <= 0 || d > 10*time.Minute {
				return at(file, v, "timeout", fmt.Sprintf("bad timeout %q", v.Value), "a Go duration from 1ms to 10m, e.g. 10s")
			}
			q.Timeout = d
		case "queries":
			queries = v
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if queries == nil {
		return nil, &Error{File: file, Line: root.Line, Col: root.Column, Path: "queries", Msg: "required field is missing", Hint: "a map from field name (" + strings.Join(Fields, ", ") + ") to a PromQL template"}
	}
	if queries.Kind != yaml.MappingNode {
		return nil, at(file, queries, "queries", "want a map from field name to PromQL template", "")
	}
	if err := eachKey(file, queries, "queries", Fields, func(k, v *yaml.Node) error {
		path := "queries." + k.Value
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			return at(file, v, path, "want a PromQL template string", "quote it: '...'")
		}
		text := strings.TrimSpace(v.Value)
		if text == "" {
			return at(file, v, path, "empty query", "omit the field when the service does not export it: absent is 'not collected', never zero")
		}
		t, err := ParseTemplate(k.Value, text)
		if err != nil {
			return at(file, v, path, err.Error(), "a template may use {{.Selector}}, {{.Window}}, {{.WindowSeconds}} and {{.Arm}} only")
		}
		q.text[k.Value], q.tmpl[k.Value] = text, t
		return nil
	}); err != nil {
		return nil, err
	}
	if q.tmpl[GCPauses] != nil && (q.tmpl[GCPauseCount] != nil || q.tmpl[GCPauseSecondsSum] != nil || q.tmpl[GCPauseSecondsMax] != nil) {
		return nil, &Error{File: file, Line: queries.Line, Col: queries.Column, Path: "queries", Msg: "gc_pauses and gc_pause_count/_seconds_sum/_seconds_max both set",
			Hint: "use gc_pauses for a pause histogram, or the three summary queries when only go_gc_duration_seconds exists"}
	}
	if q.tmpl[GCPauseCount] != nil && q.tmpl[GCPauseSecondsSum] == nil {
		return nil, &Error{File: file, Line: queries.Line, Col: queries.Column, Path: "queries.gc_pause_seconds_sum", Msg: "required with gc_pause_count",
			Hint: "the pauses' total, e.g. sum(increase(go_gc_duration_seconds_sum{ {{.Selector}} }[{{.Window}}]))"}
	}
	if (q.tmpl[GCPauseSecondsSum] != nil || q.tmpl[GCPauseSecondsMax] != nil) && q.tmpl[GCPauseCount] == nil {
		return nil, &Error{File: file, Line: queries.Line, Col: queries.Column, Path: "queries.gc_pause_count", Msg: "required with gc_pause_seconds_sum/_max",
			Hint: "the number of pauses, e.g. sum(increase(go_gc_duration_seconds_count{ {{.Selector}} }[{{.Window}}]))"}
	}
	return q, nil
}

// ParseTemplate parses one field's PromQL template and checks it by
// resolving it once with sample data, so that a name other than
// .Selector, .Window, .WindowSeconds and .Arm fails here rather than at query time.
func ParseTemplate(field, text string) (*template.Template, error) {
	t, err := template.New(field).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("template: %s", strings.TrimPrefix(err.Error(), "template: "))
	}
	for _, n := range t.Tree.Root.Nodes {
		if err := plain(n); err != nil {
			return nil, err
		}
	}
	var b bytes.Buffer
	if err := t.Execute(&b, templateData("canary", `arm="canary"`, 5*time.Minute)); err != nil {
		return nil, fmt.Errorf("template: %s", strings.TrimPrefix(err.Error(), "template: "))
	}
	if strings.TrimSpace(b.String()) == "" {
		return nil, errors.New("the template resolves to an empty query")
	}
	return t, nil
}

// plain accepts text and the actions {{.Selector}}, {{.Window}},
// {{.WindowSeconds}}, {{.Arm}}:
// no control flow, functions or pipelines, so a template that resolves
// for one arm resolves for every arm.
func plain(n parse.Node) error {
	switch n := n.(type) {
	case *parse.TextNode, *parse.CommentNode:
		return nil
	case *parse.ActionNode:
		if len(n.Pipe.Decl) == 0 && len(n.Pipe.Cmds) == 1 && len(n.Pipe.Cmds[0].Args) == 1 {
			if f, ok := n.Pipe.Cmds[0].Args[0].(*parse.FieldNode); ok && len(f.Ident) == 1 && slices.Contains([]string{"Selector", "Window", "WindowSeconds", "Arm"}, f.Ident[0]) {
				return nil
			}
		}
		return fmt.Errorf("template: %s: only {{.Selector}}, {{.Window}}, {{.WindowSeconds}} and {{.Arm}} may be used", n)
	}
	return fmt.Errorf("template: %s: only {{.Selector}}, {{.Window}}, {{.WindowSeconds}} and {{.Arm}} may be used, no control flow", n)
}

// eachKey walks a mapping, rejecting unknown and repeated keys.
func eachKey(file string, m *yaml.Node, path string, allowed []string, f func(k, v *yaml.Node) error) error {
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		p := k.Value
		if path != "" {
			p = path + "." + k.Value
		}
		if !slices.Contains(allowed, k.Value) {
			hint := "allowed: " + strings.Join(allowed, ", ")
			if s := decision.Suggest(k.Value, allowed); s != "" {
				hint = "did you mean " + strconv.Quote(s) + "?"
			}
			return at(file, k, p, "unknown field", hint)
		}
		if seen[k.Value] {
			return at(file, k, p, "repeated key", "each key once")
		}
		seen[k.Value] = true
		if err := f(k, v); err != nil {
			return err
		}
	}
	return nil
}

func at(file string, n *yaml.Node, path, msg, hint string) *Error {
	return &Error{File: file, Line: n.Line, Col: n.Column, Path: path, Msg: msg, Hint: hint}
}

var yamlLine = regexp.MustCompile(`line (\d+):?\s*(.*)`)

// yamlError turns a YAML syntax error into file:line.
func yamlError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: line, Col: 1, Msg: "malformed YAML: " + m[2]}
	}
	return &Error{File: file, Msg: "malformed YAML: " + msg}
}
