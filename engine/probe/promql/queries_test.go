package promql

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

func TestDefaultQueriesParseAndResolve(t *testing.T) {
	q := Default()
	got, ok, err := q.Render(Requests, "canary", `arm="canary"`, 5*time.Minute)
	if err != nil || !ok || got != `sum(increase(chaosgate_aggregator_http_requests_total{ arm="canary" }[5m]))` {
		t.Fatalf("requests resolves to %q, %v, %v", got, ok, err)
	}
	if _, ok, _ := q.Render(LatencyP99, "canary", `arm="canary"`, time.Minute); ok {
		t.Fatal("the aggregator exports no request-duration histogram: latency must not be queried")
	}
	if q.Timeout != 10*time.Second {
		t.Fatalf("timeout %v", q.Timeout)
	}
}

func TestDurationIsPromQL(t *testing.T) {
	for d, want := range map[time.Duration]string{5 * time.Minute: "5m", 90 * time.Second: "90s", 150 * time.Second: "2m30s",
		time.Hour + 30*time.Minute: "1h30m", 250 * time.Millisecond: "250ms", 48 * time.Hour: "2d", 0: "0s"} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestBadQueriesFiles: each bad file fails at its line:col with a hint.
func TestBadQueriesFiles(t *testing.T) {
	for name, c := range map[string]struct{ doc, want string }{
		"unknown top-level field": {"queries:\n  requests: 'x'\ntimeuot: 5s\n", `f.yaml:3:1: timeuot: unknown field (hint: did you mean "timeout"?)`},
		"unknown query field":     {"queries:\n  requests: 'x'\n  erors: 'y'\n", `f.yaml:3:3: queries.erors: unknown field (hint: did you mean "errors"?)`},
		"repeated key":            {"queries:\n  requests: 'x'\n  requests: 'y'\n", `f.yaml:3:3: queries.requests: repeated key`},
		"template names another key": {"queries:\n  requests: 'sum(x{ {{.Selectr}} })'\n",
			`f.yaml:2:13: queries.requests: template: {{.Selectr}}: only {{.Selector}}, {{.Window}}, {{.WindowSeconds}} and {{.Arm}} may be used`},
		"control flow":            {"queries:\n  requests: '{{if .Arm}}x{{end}}'\n", `queries.requests: template: {{if .Arm}}x{{end}}: only {{.Selector}}, {{.Window}}, {{.WindowSeconds}} and {{.Arm}} may be used, no control flow`},
		"template does not parse": {"queries:\n  errors: 'sum(x{ {{.Selector }[5m])'\n", `f.yaml:2:11: queries.errors: template: errors:1: unexpected "}" in operand`},
		"empty query":             {"queries:\n  errors: ''\n", "f.yaml:2:11: queries.errors: empty query"},
		"not a string":            {"queries:\n  errors: [1]\n", "f.yaml:2:11: queries.errors: want a PromQL template string"},
		"bad timeout":             {"timeout: soon\nqueries:\n  errors: 'x'\n", `f.yaml:1:10: timeout: bad timeout "soon"`},
		"other schema":            {"schema: queries/v2\nqueries:\n  errors: 'x'\n", `f.yaml:1:9: schema: unsupported schema "queries/v2"`},
		"no queries":              {"timeout: 5s\n", "f.yaml:1:1: queries: required field is missing"},
		"histogram and summary":   {"queries:\n  gc_pauses: 'x'\n  gc_pause_count: 'y'\n  gc_pause_seconds_sum: 'z'\n", "gc_pauses and gc_pause_count/_seconds_sum/_seconds_max both set"},
		"summary without total":   {"queries:\n  gc_pause_count: 'y'\n", "queries.gc_pause_seconds_sum: required with gc_pause_count"},
		"malformed YAML":          {"queries:\n  errors: 'x\n", "f.yaml:2:1: malformed YAML"},
		"empty":                   {"", "f.yaml: empty file"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

// TestSchemaAgreesWithParse: the JSON Schema accepts the shipped files and
// rejects what Parse rejects for its shape.
func TestSchemaAgreesWithParse(t *testing.T) {
	c := jsonschema.NewCompiler()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(JSONSchema))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("queries.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("queries.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	check := func(yml string) error {
		var v any
		if err := yaml.Unmarshal([]byte(yml), &v); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(v)
		inst, _ := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		return sch.Validate(inst)
	}
	if err := check(string(AggregatorYAML)); err != nil {
		t.Errorf("schema rejects aggregator.yaml: %v", err)
	}
	if err := check("queries:\n  requests: 'x'\n  erors: 'y'\n"); err == nil {
		t.Error("schema accepts an unknown query field")
	}
	if err := check("queries:\n  gc_pauses: 'x'\n  gc_pause_count: 'y'\n  gc_pause_seconds_sum: 'z'\n"); err == nil {
		t.Error("schema accepts gc_pauses with the summary queries")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(string(AggregatorYAML))
	f.Add("queries:\n  requests: 'sum(x{ {{.Selector}} }[{{.Window}}])'\n")
	f.Add("timeout: 1s\nqueries: {errors: '{{.Arm}}'}\n")
	f.Add("queries:\n  gc_pause_count: 'a'\n  gc_pause_seconds_sum: 'b'\n")
	f.Fuzz(func(t *testing.T, doc string) {
		q, err := Parse("fuzz.yaml", []byte(doc))
		if err != nil {
			var e *Error
			if !errorsAs(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			return
		}
		// A parsed file resolves every query for any arm.
		for _, f := range Fields {
			if _, _, err := q.Render(f, "canary", `arm="canary"`, time.Minute); err != nil {
				t.Fatalf("parsed, but %s does not resolve: %v", f, err)
			}
		}
	})
}

func FuzzParseTemplate(f *testing.F) {
	f.Add("sum(increase(x{ {{.Selector}} }[{{.Window}}]))")
	f.Add("{{.Arm}}{{.Nope}}")
	f.Add("{{range .}}{{end}}")
	f.Add("{{")
	f.Fuzz(func(t *testing.T, text string) {
		tm, err := ParseTemplate("f", text)
		if err != nil {
			return
		}
		var b strings.Builder
		if err := tm.Execute(&b, templateData("control", `arm="control"`, 90*time.Second)); err != nil {
			t.Fatalf("accepted %q, but it fails on other data: %v", text, err)
		}
	})
}

func errorsAs(err error, e **Error) bool {
	x, ok := err.(*Error)
	if ok {
		*e = x
	}
	return ok
}

// TestGCPausesFromSummary: four pauses totalling 10 ms, the largest 4 ms:
// one at 4 ms, the others sharing the 6 ms left; a failed summary query
// fails the pauses.
func TestGCPausesFromSummary(t *testing.T) {
	r := ArmWindow{gc: map[string]decision.Value{GCPauseCount: decision.Num(4), GCPauseSecondsSum: decision.Num(0.010), GCPauseSecondsMax: decision.Num(0.004)}}
	gcFromSummary(&r)
	want := []float64{2, 2, 2, 4}
	if !r.Arm.GCPausesMS.OK() || len(r.Arm.GCPausesMS.V) != 4 {
		t.Fatalf("pauses %+v, want %v", r.Arm.GCPausesMS, want)
	}
	for i, v := range r.Arm.GCPausesMS.V {
		if math.Abs(v-want[i]) > 1e-9 {
			t.Fatalf("pauses %v, want %v", r.Arm.GCPausesMS.V, want)
		}
	}
	r = ArmWindow{gc: map[string]decision.Value{GCPauseCount: decision.Num(4), GCPauseSecondsSum: {State: decision.Missing, Err: "gc_pause_seconds_sum: no series"}}}
	gcFromSummary(&r)
	if r.Arm.GCPausesMS.State != decision.Missing || r.Arm.GCPausesMS.Err != "gc_pause_seconds_sum: no series" {
		t.Fatalf("pauses %+v, want missing with the reason", r.Arm.GCPausesMS)
	}
}
