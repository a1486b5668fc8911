// Package windows decodes the judge input contract windows/v1
// (docs/windows-v1.md) strictly: unknown fields and wrong types are errors
// naming the JSON path, and a field that is absent is missing data, never
// zero.
//
// Additive extensions of windows/v1, all optional: per arm
// "memory_growth_mb_per_min" (number), "collected_at" (RFC 3339; data older
// than the configured freshness is stale) and "query_errors" (an object
// mapping a field name to the error the source returned for it) and
// "no_data" (the same shape: fields the source queried and got no data for,
// with the reason — missing data, never "not collected"); per
// window (the judged one and each history window) "context": the faults
// active in it and how hard they hit, {"faults": ["networkDelay"],
// "intensity": 0.5} ({"faults": []} is the steady state). A number may be
// given as the string "NaN", "+Inf" or "-Inf", as Prometheus encodes them;
// such a value is NaN data, never a pass. The contract is docs/windows-v1.md
// and its JSON Schema windows.schema.json.
package windows

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/chaosgate/chaosgate/decision"
)

// Schema is the contract name this package decodes.
const Schema = "windows/v1"

// JSONSchema is the JSON Schema (draft 2020-12) of windows/v1, for editors
// and the linters of the pipelines that write it. Decode is the strict
// check; the schema and Decode accept the same documents.
//
//go:embed windows.schema.json
var JSONSchema []byte

// Error is a decoding error at a JSON path (or a line:col for syntax errors).
type Error struct {
	Path string // JSON path such as $.canary.latency_ms[3]
	Msg  string
	Hint string
}

func (e *Error) Error() string {
	s := e.Path + ": " + e.Msg
	if e.Hint != "" {
		s += " (hint: " + e.Hint + ")"
	}
	return s
}

// Decode parses a windows/v1 document into a judge input.
func Decode(data []byte) (decision.Input, error) {
	var in decision.Input
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return in, syntaxError(data, err)
	}
	if _, err := dec.Token(); err == nil {
		line, col := lineCol(data, int(dec.InputOffset()))
		return in, &Error{Path: fmt.Sprintf("%d:%d", line, col), Msg: "unexpected data after the top-level object", Hint: "one JSON object per file"}
	}
	obj, err := asObject("$", root)
	if err != nil {
		return in, err
	}
	if err := onlyKeys("$", obj, "schema", "at", "context", "canary", "control", "history"); err != nil {
		return in, err
	}
	if s, ok := obj["schema"]; ok {
		str, err := asString("$.schema", s)
		if err != nil {
			return in, err
		}
		if str != Schema {
			return in, &Error{Path: "$.schema", Msg: fmt.Sprintf("unsupported schema %q", str), Hint: "this version reads " + Schema}
		}
	}
	at, ok := obj["at"]
	if !ok {
		return in, &Error{Path: "$.at", Msg: "required field is missing", Hint: `the judgement time, e.g. "2026-11-22T10:00:00Z"`}
	}
	if in.At, err = asTime("$.at", at); err != nil {
		return in, err
	}
	if c, ok := obj["context"]; ok {
		if in.Context, err = decodeContext("$.context", c); err != nil {
			return in, err
		}
	}
	for _, side := range []struct {
		name string
		dst  *decision.ArmInput
	}{{"canary", &in.Canary}, {"control", &in.Control}} {
		v, ok := obj[side.name]
		if !ok {
			return in, &Error{Path: "$." + side.name, Msg: "required field is missing", Hint: "an object with the arm's counts; absent fields inside it are missing data"}
		}
		if *side.dst, err = decodeArm("$."+side.name, v); err != nil {
			return in, err
		}
	}
	if h, ok := obj["history"]; ok {
		arr, err := asArray("$.history", h)
		if err != nil {
			return in, err
		}
		for i, e := range arr {
			p := fmt.Sprintf("$.history[%d]", i)
			ho, err := asObject(p, e)
			if err != nil {
				return in, err
			}
			if err := onlyKeys(p, ho, "at", "context", "canary", "control"); err != nil {
				return in, err
			}
			var w decision.HistoryWindow
			a, ok := ho["at"]
			if !ok {
				return in, &Error{Path: p + ".at", Msg: "required field is missing", Hint: "every history window needs its time"}
			}
			if w.At, err = asTime(p+".at", a); err != nil {
				return in, err
			}
			if c, ok := ho["context"]; ok {
				if w.Context, err = decodeContext(p+".context", c); err != nil {
					return in, err
				}
			}
			for _, side := range []struct {
				name string
				dst  *decision.ArmInput
			}{{"canary", &w.Canary}, {"control", &w.Control}} {
				v, ok := ho[side.name]
				if !ok {
					return in, &Error{Path: p + "." + side.name, Msg: "required field is missing"}
				}
				if *side.dst, err = decodeArm(p+"."+side.name, v); err != nil {
					return in, err
				}
			}
			in.History = append(in.History, w)
		}
	}
	return in, nil
}

var armKeys = []string{"requests", "errors", "latency_ms", "latency_quantiles", "latency_samples", "gc_pauses_ms", "window_s", "sessions",
	"session_interruptions", "dependency_calls", "dependency_failures", "consistency_violations",
	"log_guard_matches", "memory_growth_mb_per_min", "collected_at", "query_errors", "no_data"}

func decodeArm(path string, v any) (decision.ArmInput, error) {
	var a decision.ArmInput
	obj, err := asObject(path, v)
	if err != nil {
		return a, err
	}
	if err := onlyKeys(path, obj, armKeys...); err != nil {
		return a, err
	}
	scalars := []struct {
		key string
		dst *decision.Value
		cnt bool
	}{
		{"requests", &a.Requests, true}, {"errors", &a.Errors, true}, {"window_s", &a.WindowS, false},
		{"sessions", &a.Sessions, true}, {"session_interruptions", &a.SessionInterruptions, true},
		{"dependency_calls", &a.DependencyCalls, true}, {"dependency_failures", &a.DependencyFailures, true},
		{"consistency_violations", &a.ConsistencyViolations, true}, {"memory_growth_mb_per_min", &a.MemoryGrowthMBPerMin, false},
		{"latency_samples", &a.LatencySamples, true}, {"log_guard_matches", &a.LogGuardMatches, true},
	}
	for _, s := range scalars {
		x, ok := obj[s.key]
		if !ok {
			continue
		}
		p := path + "." + s.key
		val, err := asNumber(p, x)
		if err != nil {
			return a, err
		}
		if s.cnt && val.OK() && (val.V < 0 || val.V != math.Trunc(val.V)) {
			return a, &Error{Path: p, Msg: fmt.Sprintf("want a non-negative whole count, got %v", val.V)}
		}
		*s.dst = val
	}
	for _, s := range []struct {
		key string
		dst *decision.Samples
	}{{"latency_ms", &a.LatencyMS}, {"gc_pauses_ms", &a.GCPausesMS}} {
		x, ok := obj[s.key]
		if !ok {
			continue
		}
		p := path + "." + s.key
		arr, err := asArray(p, x)
		if err != nil {
			return a, err
		}
		vals := make([]float64, 0, len(arr))
		nan := false
		for i, e := range arr {
			ep := fmt.Sprintf("%s[%d]", p, i)
			val, err := asNumber(ep, e)
			if err != nil {
				return a, err
			}
			if !val.OK() {
				nan = true
				continue
			}
			if val.V < 0 {
				return a, &Error{Path: ep, Msg: fmt.Sprintf("want a non-negative duration in ms, got %v", val.V)}
			}
			vals = append(vals, val.V)
		}
		if nan {
			*s.dst = decision.Samples{State: decision.NaN}
		} else {
			*s.dst = decision.Samples{V: vals, State: decision.Present}
		}
	}
	if x, ok := obj["latency_quantiles"]; ok {
		p := path + ".latency_quantiles"
		q, err := asObject(p, x)
		if err != nil {
			return a, err
		}
		if err := onlyKeys(p, q, "p50", "p99"); err != nil {
			return a, err
		}
		for _, s := range []struct {
			key string
			dst *decision.Value
		}{{"p50", &a.LatencyP50}, {"p99", &a.LatencyP99}} {
			if y, ok := q[s.key]; ok {
				if *s.dst, err = asNumber(p+"."+s.key, y); err != nil {
					return a, err
				}
			}
		}
	}
	if x, ok := obj["collected_at"]; ok {
		if a.CollectedAt, err = asTime(path+".collected_at", x); err != nil {
			return a, err
		}
	}
	if x, ok := obj["no_data"]; ok {
		if err := decodeNoData(path+".no_data", x, &a, scalars); err != nil {
			return a, err
		}
	}
	if x, ok := obj["query_errors"]; ok {
		p := path + ".query_errors"
		q, err := asObject(p, x)
		if err != nil {
			return a, err
		}
		for _, k := range sortedKeys(q) {
			msg, err := asString(p+"."+k, q[k])
			if err != nil {
				return a, err
			}
			qe := decision.Value{State: decision.QueryError, Err: msg}
			switch k {
			case "latency_ms":
				a.LatencyMS = decision.Samples{State: decision.QueryError, Err: msg}
			case "gc_pauses_ms":
				a.GCPausesMS = decision.Samples{State: decision.QueryError, Err: msg}
			case "latency_quantiles":
				a.LatencyP50, a.LatencyP99 = qe, qe
			default:
				found := false
				for _, s := range scalars {
					if s.key == k {
						*s.dst = qe
						found = true
					}
				}
				if !found {
					return a, &Error{Path: p + "." + k, Msg: "unknown field in query_errors", Hint: "name one of the arm's data fields"}
				}
			}
		}
	}
	return a, nil
}

// decodeNoData reads an arm's no_data: fields a source queried and got
// no data for, with the reason. Such a field is missing data — never
// "not collected" — so its dimension holds.
func decodeNoData(p string, x any, a *decision.ArmInput, scalars []struct {
	key string
	dst *decision.Value
	cnt bool
}) error {
	q, err := asObject(p, x)
	if err != nil {
		return err
	}
	for _, k := range sortedKeys(q) {
		msg, err := asString(p+"."+k, q[k])
		if err != nil {
			return err
		}
		if msg == "" {
			return &Error{Path: p + "." + k, Msg: "empty reason", Hint: "say what was asked, e.g. the resolved query"}
		}
		given := &Error{Path: p + "." + k, Msg: "the field also has a value", Hint: "no_data names fields the source got nothing for"}
		switch k {
		case "latency_ms", "gc_pauses_ms":
			dst := &a.LatencyMS
			if k == "gc_pauses_ms" {
				dst = &a.GCPausesMS
			}
			if dst.State != decision.Missing {
				return given
			}
			dst.Err = msg
		case "latency_quantiles":
			if a.LatencyP50.State != decision.Missing || a.LatencyP99.State != decision.Missing {
				return given
			}
			a.LatencyP50.Err, a.LatencyP99.Err = msg, msg
		default:
			found := false
			for _, s := range scalars {
				if s.key == k {
					if s.dst.State != decision.Missing {
						return given
					}
					s.dst.Err = msg
					found = true
				}
			}
			if !found {
				return &Error{Path: p + "." + k, Msg: "unknown field in no_data", Hint: "name one of the arm's data fields"}
			}
		}
	}
	return nil
}

// faultName is what a fault kind in a context looks like: chaosgate's own
// (podKill, networkDelay, ...) or a source's (redisSlow, kafka-backlog).
var faultName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,63}$`)

// decodeContext reads a window's context: the faults active in it and
// their intensity.
func decodeContext(path string, v any) (*decision.Context, error) {
	obj, err := asObject(path, v)
	if err != nil {
		return nil, err
	}
	if err := onlyKeys(path, obj, "faults", "intensity"); err != nil {
		return nil, err
	}
	fv, ok := obj["faults"]
	if !ok {
		return nil, &Error{Path: path + ".faults", Msg: "required field is missing", Hint: `the fault kinds active in the window, [] for the steady state, e.g. ["networkDelay","partition"]`}
	}
	arr, err := asArray(path+".faults", fv)
	if err != nil {
		return nil, err
	}
	var faults []string
	for i, f := range arr {
		fp := fmt.Sprintf("%s.faults[%d]", path, i)
		name, err := asString(fp, f)
		if err != nil {
			return nil, err
		}
		if !faultName.MatchString(name) {
			return nil, &Error{Path: fp, Msg: fmt.Sprintf("bad fault kind %q", name), Hint: "a name such as podKill, networkDelay, partition or splitBrain (letters, digits, _ . -)"}
		}
		faults = append(faults, name)
	}
	intensity := 0.0
	if x, ok := obj["intensity"]; ok {
		val, err := asNumber(path+".intensity", x)
		if err != nil {
			return nil, err
		}
		if !val.OK() || val.V < 0 || val.V > 1 {
			return nil, &Error{Path: path + ".intensity", Msg: fmt.Sprintf("want a number from 0 to 1, got %s", fmtNumber(val)), Hint: "how hard the faults hit: the share of replicas or edges impaired, or the source's own 0..1 scale"}
		}
		intensity = val.V
	}
	return decision.NewContext(intensity, faults...), nil
}

func fmtNumber(v decision.Value) string {
	if v.OK() {
		return strconv.FormatFloat(v.V, 'g', -1, 64)
	}
	return v.State.String()
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func want(path, w string, v any) error {
	return &Error{Path: path, Msg: fmt.Sprintf("want %s, got %s", w, kindOf(v))}
}

func asObject(path string, v any) (map[string]any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, want(path, "object", v)
	}
	return m, nil
}

func asArray(path string, v any) ([]any, error) {
	a, ok := v.([]any)
	if !ok {
		return nil, want(path, "array", v)
	}
	return a, nil
}

func asString(path string, v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", want(path, "string", v)
	}
	return s, nil
}

func asTime(path string, v any) (time.Time, error) {
	s, err := asString(path, v)
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, &Error{Path: path, Msg: fmt.Sprintf("bad time %q", s), Hint: `RFC 3339, e.g. "2026-11-22T10:00:00Z"`}
	}
	return t, nil
}

// asNumber accepts a JSON number, or "NaN"/"+Inf"/"-Inf" as NaN data.
func asNumber(path string, v any) (decision.Value, error) {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return decision.Value{}, &Error{Path: path, Msg: fmt.Sprintf("number %s out of range", x)}
		}
		return decision.Num(f), nil
	case string:
		switch x {
		case "NaN", "+Inf", "-Inf", "Inf":
			return decision.Value{State: decision.NaN}, nil
		}
	}
	return decision.Value{}, &Error{Path: path, Msg: fmt.Sprintf("want number, got %s", kindOf(v)), Hint: `a JSON number; "NaN" marks a NaN from the source; omit the field when there is no data`}
}

func onlyKeys(path string, obj map[string]any, allowed ...string) error {
	for _, k := range sortedKeys(obj) {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
				break
			}
		}
		if !ok {
			hint := "allowed: " + strings.Join(allowed, ", ")
			if s := decision.Suggest(k, allowed); s != "" {
				hint = "did you mean " + strconv.Quote(s) + "?"
			}
			return &Error{Path: path + "." + k, Msg: "unknown field", Hint: hint}
		}
	}
	return nil
}

// closest returns the allowed name within edit distance 2 of s, if any.

func syntaxError(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		// Offset counts the offending byte itself.
		line, col := lineCol(data, max(int(se.Offset)-1, 0))
		return &Error{Path: fmt.Sprintf("%d:%d", line, col), Msg: "malformed JSON: " + se.Error()}
	}
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		line, col := lineCol(data, int(ute.Offset))
		return &Error{Path: fmt.Sprintf("%d:%d", line, col), Msg: "malformed JSON: " + ute.Error()}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "EOF") {
		return &Error{Path: "$", Msg: "empty or truncated JSON document", Hint: "a windows/v1 object: {\"at\":...,\"canary\":{...},\"control\":{...}}"}
	}
	return &Error{Path: "$", Msg: "malformed JSON: " + err.Error()}
}

func lineCol(data []byte, off int) (int, int) {
	if off > len(data) {
		off = len(data)
	}
	line, col := 1, 1
	for _, b := range data[:off] {
		if b == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}
