package windows

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const good = `{"at":"2026-11-22T10:00:00Z",
 "canary":{"requests":3000,"errors":3,"latency_ms":[1,2,3.5],"gc_pauses_ms":[],"window_s":60,
           "consistency_violations":0,"collected_at":"2026-11-22T09:59:30Z","query_errors":{"sessions":"timeout"}},
 "control":{"requests":57000,"latency_quantiles":{"p50":3,"p99":"NaN"}},
 "history":[{"at":"2026-11-21T10:00:00Z","canary":{"requests":10},"control":{"requests":100}}]}`

func TestDecode(t *testing.T) {
	in, err := Decode([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	c, k := in.Canary, in.Control
	switch {
	case !c.Requests.OK() || c.Requests.V != 3000 || c.Errors.V != 3:
		t.Fatalf("counts: %+v", c)
	case len(c.LatencyMS.V) != 3 || c.GCPausesMS.State != decision.Present || len(c.GCPausesMS.V) != 0:
		t.Fatalf("series: %+v %+v", c.LatencyMS, c.GCPausesMS)
	case c.Sessions.State != decision.QueryError || c.Sessions.Err != "timeout":
		t.Fatalf("query error: %+v", c.Sessions)
	case c.SessionInterruptions.State != decision.Missing:
		t.Fatal("an absent field must be missing, not zero")
	case k.Errors.State != decision.Missing || k.LatencyP99.State != decision.NaN || k.LatencyP50.V != 3:
		t.Fatalf("control: %+v", k)
	case c.CollectedAt.IsZero() || len(in.History) != 1 || in.History[0].Control.Requests.V != 100:
		t.Fatalf("times/history: %+v", in)
	}
}

func TestDecodeErrors(t *testing.T) {
	cases := map[string]string{
		`{"at":"2026-11-22T10:00:00Z","canary":{"latency_ms":[1,2,3,"x"]},"control":{}}`:      `$.canary.latency_ms[3]: want number, got string`,
		`{"at":"2026-11-22T10:00:00Z","canary":{"requets":1},"control":{}}`:                   `$.canary.requets: unknown field (hint: did you mean "requests"?)`,
		`{"at":"2026-11-22T10:00:00Z","canary":{"errors":-1},"control":{}}`:                   `$.canary.errors: want a non-negative whole count, got -1`,
		`{"at":"2026-11-22T10:00:00Z","canary":{"errors":1.5},"control":{}}`:                  `$.canary.errors: want a non-negative whole count, got 1.5`,
		`{"at":"yesterday","canary":{},"control":{}}`:                                         `$.at: bad time "yesterday"`,
		`{"canary":{},"control":{}}`:                                                          `$.at: required field is missing`,
		`{"at":"2026-11-22T10:00:00Z","canary":{}}`:                                           `$.control: required field is missing`,
		`{"at":"2026-11-22T10:00:00Z","canary":[],"control":{}}`:                              `$.canary: want object, got array`,
		`{"at":"2026-11-22T10:00:00Z","canary":{},"control":{},"history":[{"canary":{}}]}`:    `$.history[0].at: required field is missing`,
		`{"at":"2026-11-22T10:00:00Z","canary":{"latency_quantiles":{"p95":1}},"control":{}}`: `$.canary.latency_quantiles.p95: unknown field`,
		`{"at":"2026-11-22T10:00:00Z",` + "\n" + `"canary":{,"control":{}}`:                   `2:11: malformed JSON`,
		``:     `$: empty or truncated JSON document`,
		`{}{}`: `unexpected data after the top-level object`,
		`{"schema":"windows/v2","at":"2026-11-22T10:00:00Z","canary":{},"control":{}}`:                                                                               `$.schema: unsupported schema "windows/v2"`,
		`{"at":"2026-11-22T10:00:00Z","context":{"intensity":0.5},"canary":{},"control":{}}`:                                                                         `$.context.faults: required field is missing`,
		`{"at":"2026-11-22T10:00:00Z","context":{"faults":["partition"],"intensity":1.5},"canary":{},"control":{}}`:                                                  `$.context.intensity: want a number from 0 to 1, got 1.5`,
		`{"at":"2026-11-22T10:00:00Z","context":{"faults":["part ition"]},"canary":{},"control":{}}`:                                                                 `$.context.faults[0]: bad fault kind "part ition"`,
		`{"at":"2026-11-22T10:00:00Z","context":{"faults":[],"intensty":1},"canary":{},"control":{}}`:                                                                `$.context.intensty: unknown field (hint: did you mean "intensity"?)`,
		`{"at":"2026-11-22T10:00:00Z","canary":{},"control":{},"history":[{"at":"2026-11-21T10:00:00Z","context":{"faults":"partition"},"canary":{},"control":{}}]}`: `$.history[0].context.faults: want array, got string`,
	}
	for in, want := range cases {
		_, err := Decode([]byte(in))
		var e *Error
		if err == nil || !errors.As(err, &e) || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%q) = %v, want %q", in, err, want)
		}
	}
}

// A window's context is read at the top level and in every history window:
// the faults sorted without repeats, the intensity kept.
func TestDecodeContext(t *testing.T) {
	in, err := Decode([]byte(`{"at":"2026-11-22T10:00:00Z","context":{"faults":["partition","networkDelay","partition"],"intensity":0.5},
	 "canary":{},"control":{},
	 "history":[{"at":"2026-11-21T10:00:00Z","context":{"faults":[]},"canary":{},"control":{}},
	            {"at":"2026-11-21T11:00:00Z","canary":{},"control":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if in.Context.String() != "networkDelay+partition@0.5" {
		t.Fatalf("context %q", in.Context)
	}
	if !in.History[0].Context.Steady() || in.History[1].Context != nil {
		t.Fatalf("history contexts %v %v", in.History[0].Context, in.History[1].Context)
	}
	if !in.Context.Matches(decision.NewContext(0.7, "networkDelay", "partition"), 0.25) || in.Context.Matches(decision.NewContext(0.9, "networkDelay", "partition"), 0.25) || in.Context.Matches(in.History[0].Context, 1) {
		t.Fatal("context matching")
	}
}

// The JSON Schema accepts every judge fixture and rejects what Decode
// rejects for its shape: unknown fields, wrong types, bad contexts.
func TestSchemaAgreesWithDecoder(t *testing.T) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(JSONSchema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("windows.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("windows.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	valid := func(data []byte) error {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return err
		}
		return sch.Validate(inst)
	}
	files, _ := filepath.Glob("../testdata/judge/*.json")
	files = append(files, "") // the good document above
	for _, p := range files {
		data := []byte(good)
		if p != "" {
			if data, err = os.ReadFile(p); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := Decode(data); err != nil {
			t.Errorf("%s: decode: %v", p, err)
		}
		if err := valid(data); err != nil {
			t.Errorf("%s: schema: %v", p, err)
		}
	}
	for _, bad := range []string{
		`{"at":"2026-11-22T10:00:00Z","canary":{"requets":1},"control":{}}`,
		`{"at":"2026-11-22T10:00:00Z","canary":{"errors":-1},"control":{}}`,
		`{"at":"2026-11-22T10:00:00Z","canary":{"errors":1.5},"control":{}}`,
		`{"at":"2026-11-22T10:00:00Z","canary":{}}`,
		`{"at":"2026-11-22T10:00:00Z","context":{"intensity":0.5},"canary":{},"control":{}}`,
		`{"at":"2026-11-22T10:00:00Z","context":{"faults":["partition"],"intensity":1.5},"canary":{},"control":{}}`,
		`{"at":"2026-11-22T10:00:00Z","context":{"faults":["part ition"]},"canary":{},"control":{}}`,
		`{"at":"2026-11-22T10:00:00Z","canary":{"query_errors":{"nope":"x"}},"control":{}}`,
	} {
		if _, err := Decode([]byte(bad)); err == nil {
			t.Errorf("decoder accepted %s", bad)
		}
		if err := valid([]byte(bad)); err == nil {
			t.Errorf("schema accepted %s", bad)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(good))
	files, _ := filepath.Glob("../testdata/judge/*.json")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"at":"2026-11-22T10:00:00Z","canary":{"latency_ms":[1e400]},"control":{}}`))
	f.Add([]byte(`[1,2]`))
	f.Add([]byte(`{"at":"2026-11-22T10:00:00Z","context":{"faults":["partition","podKill"],"intensity":0.5},"canary":{"requests":10},"control":{"requests":10},"history":[{"at":"2026-11-22T09:00:00Z","context":{"faults":[]},"canary":{"requests":10},"control":{"requests":10}}]}`))
	// Counts far beyond any real window must still be judged at once.
	f.Add([]byte(`{"at":"2026-11-22T10:00:00Z","canary":{"requests":1e12,"errors":1e9,"sessions":1e300,"session_interruptions":1e290},"control":{"requests":1e12,"errors":1e9}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := Decode(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Path == "" || e.Msg == "" {
				t.Fatalf("error without a path: %T %v", err, err)
			}
			return
		}
		// Every decoded input must be judged without panicking, to a verdict.
		v := decision.Evaluate(nil, in)
		if v.Decision < decision.Promote || v.Decision > decision.Block {
			t.Fatalf("no verdict: %+v", v)
		}
	})
}
