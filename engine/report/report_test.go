package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"strings"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func sample() Report {
	r := New("run-1", "git:abc123", decision.Block)
	r.Steps = []Step{{Weight: 5, Verdict: "block", Score: 0.5, Coverage: 0.9, ConfigHash: "sha256:x", Dimensions: []decision.DimensionResult{
		{Name: decision.ErrorRate, Outcome: decision.Fail, Rule: "hard-limit", Reason: "canary 1% clearly above the SLO 0.15% <&>"},
		{Name: decision.LatencyP99, Outcome: decision.Pass, Rule: "within-sigma", Reason: "ok"},
		{Name: decision.MemoryGrowth, Outcome: decision.Inconclusive, Rule: "no-data", Reason: "canary.memory missing"},
	}}}
	rec := time.Date(2026, 11, 22, 10, 1, 0, 0, time.UTC)
	r.Faults = []Fault{{Kind: "podKill", Arm: "canary", Target: "n2", AppliedAt: rec.Add(-time.Minute), RecoveredAt: &rec, Confirmed: "confirmed"}}
	r.Probes.Availability = &Arms[Availability]{Canary: Availability{Requests: 100, SuccessRatio: 0.99, P99MS: 12}}
	r.Probes.Consistency = &Arms[json.RawMessage]{Canary: json.RawMessage(`{"ok":true}`), Control: json.RawMessage(`{"ok":true}`)}
	r.Evidence = &Evidence{LedgerIndex: 3, TreeSize: 4, EnvelopeSHA256: "ab"}
	r.DurationS = 12.5
	return r
}

func TestExitCodes(t *testing.T) {
	for d, want := range map[decision.Decision]int{decision.Promote: 0, decision.Block: 1, decision.Hold: 3, 0: 2} {
		if got := New("r", "v", d).ExitCode; got != want {
			t.Errorf("report of %s: exit code %d, want %d", d, got, want)
		}
	}
}

func TestJSONShape(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, sample()); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema", "run_id", "revision", "verdict", "exit_code", "steps", "faults", "probes", "evidence", "duration_s"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	if m["schema"] != "report/v1" || m["verdict"] != "block" || m["exit_code"].(float64) != 1 {
		t.Fatalf("header: %v", m)
	}
	step := m["steps"].([]any)[0].(map[string]any)
	dim := step["dimensions"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "outcome", "z", "k", "sigma", "effect", "confidence", "weight", "contribution", "rule", "reason"} {
		if _, ok := dim[k]; !ok {
			t.Errorf("dimension lacks %q", k)
		}
	}
	f := m["faults"].([]any)[0].(map[string]any)
	if f["kind"] != "podKill" || f["confirmed"] != "confirmed" || f["recovered_at"] == nil {
		t.Fatalf("fault: %v", f)
	}
	p := m["probes"].(map[string]any)
	if p["consistency"].(map[string]any)["canary"].(map[string]any)["ok"] != true {
		t.Fatalf("probes: %v", p)
	}
}

func TestJUnit(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJUnit(&b, sample()); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Type    string `xml:"type,attr"`
				} `xml:"failure"`
				Skipped *struct{} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if doc.Tests != 3 || doc.Failures != 1 || doc.Skipped != 1 || len(doc.Suites) != 1 || doc.Suites[0].Name != "canary step 5%" {
		t.Fatalf("counts: %+v", doc)
	}
	c := doc.Suites[0].Cases[0]
	if c.Name != "error_rate" || c.Failure == nil || c.Failure.Type != "hard-limit" || !strings.Contains(c.Failure.Message, "<&>") {
		t.Fatalf("failure case: %+v", c)
	}
	if doc.Suites[0].Cases[1].Failure != nil || doc.Suites[0].Cases[2].Skipped == nil {
		t.Fatal("pass/skip cases wrong")
	}
}

// Resilience sums faults per kind and arm; an unrecovered fault counts
// apart and stays out of the mean; the JUnit report carries the figures
// as properties of a resilience suite.
func TestResilienceAndJUnitProperties(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	faults := []Fault{
		{Kind: "podKill", Arm: "canary", Availability: &FaultAvailability{Requests: 100, Failed: 3, Retries: 10, RecoveryS: f(2)}},
		{Kind: "podKill", Arm: "canary", Availability: &FaultAvailability{Requests: 100, Failed: 1, Retries: 4, RecoveryS: f(4)}},
		{Kind: "podKill", Arm: "canary", Availability: &FaultAvailability{Requests: 100, Failed: 9}},
		{Kind: "podKill", Arm: "control", Availability: &FaultAvailability{Requests: 100, RecoveryS: f(0)}},
		{Kind: "partition", Arm: "calibration"}, // no measured load: left out
	}
	got := ResilienceOf(faults)
	want := []KindResilience{
		{Kind: "podKill", Arm: "canary", Faults: 3, MeanRecoveryS: 3, MaxRecoveryS: 4, Unrecovered: 1, RequestsFailed: 13, Retries: 14},
		{Kind: "podKill", Arm: "control", Faults: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("%+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%d: %+v, want %+v", i, got[i], want[i])
		}
	}
	r := New("run-1", "rev", decision.Promote)
	r.Faults, r.Resilience = faults, got
	var b strings.Builder
	if err := WriteJUnit(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`<testsuite name="resilience"`, `name="podKill.canary.mttr_s" value="3.0"`, `name="podKill.canary.unrecovered" value="1"`, `name="podKill.control.max_recovery_s" value="0.0"`} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("JUnit lacks %s:\n%s", s, b.String())
		}
	}
	data, _ := json.Marshal(r)
	if !strings.Contains(string(data), `"recovery_s":null`) || !strings.Contains(string(data), `"mean_recovery_s":3`) {
		t.Fatalf("JSON: %s", data)
	}
}
