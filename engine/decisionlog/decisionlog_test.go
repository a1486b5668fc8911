package decisionlog

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine/probe/logs"
	"github.com/chaosgate/chaosgate/internal/logstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func blockVerdict(at time.Time) decision.Verdict {
	return decision.Verdict{Decision: decision.Block, Score: 0.42, Coverage: 1, ConfigHash: "sha256:cfg", At: at,
		Reason: "error_rate failed",
		Dimensions: []decision.DimensionResult{
			{Name: decision.ErrorRate, Outcome: decision.Fail, Canary: 0.031, Control: 0.001, Z: 9.5, K: 3, Query: `sum(rate(errors{arm="canary"}[30s]))`},
			{Name: decision.LatencyP99, Outcome: decision.Pass, Canary: 41, Control: 40, Unit: "ms", Z: 0.3, K: 3},
			{Name: decision.GCPause, Outcome: decision.Inconclusive, Canary: math.NaN(), Control: 3},
		}}
}

func TestDecisionLinesCarryTheSeedsFields(t *testing.T) {
	at := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	run := Run{RunID: "r1", Workload: "Deployment/shop/agg@7", ScenarioHash: "sha256:abc"}
	cfg := decision.Default()
	l := run.Step(2, 25, blockVerdict(at), cfg)
	if l.DecisionID != "r1/step-2" || l.Verdict != "block" || l.Weight != 25 || l.AffectedWorkload != "Deployment/shop/agg@7" ||
		l.ChaosScenarioHash != "sha256:abc" || l.ConfidenceScore != 0.42 || len(l.Failing) != 1 || l.Failing[0] != "error_rate" {
		t.Fatalf("step line %+v", l)
	}
	if l.Weights["error_rate"] != 3 || l.Weights["consistency"] != 5 {
		t.Fatalf("weights %v: want the matrix's weight vector", l.Weights)
	}
	if d := l.Dimensions["error_rate"]; d.Canary != 0.031 || d.Control != 0.001 || d.Outcome != "fail" || d.Query == "" {
		t.Fatalf("error_rate raw values %+v", d)
	}
	b, err := json.Marshal(l) // NaN (missing data) must not break the line
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"decision_id"`, `"affected_workload"`, `"chaos_scenario_hash"`, `"confidence_score"`, `"weights"`, `"dimensions"`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("line lacks %s: %s", k, b)
		}
	}
	f := run.Final("abort", "aborted: kill switch", 25, decision.Verdict{}, nil)
	if f.DecisionID != "r1/final" || f.Verdict != "abort" || f.Reason != "aborted: kill switch" || f.Time.IsZero() || f.Failing == nil {
		t.Fatalf("final line %+v", f)
	}
	if lb := f.Labels(); lb["app"] != "chaosgate" || lb["run_id"] != "r1" || lb["verdict"] != "abort" {
		t.Fatalf("labels %v", lb)
	}
}

func TestABlockIsFoundByItsDecisionIDOnARealLogServer(t *testing.T) {
	vl := logstest.Start(t)
	srv := &logs.Server{Kind: logs.VictoriaLogs, URL: vl.URL}
	now := time.Now().UTC()
	run := Run{RunID: fmt.Sprintf("run-%d", now.UnixNano()), Workload: "local:error-rate", ScenarioHash: "sha256:abc"}
	cfg := decision.Default()
	hold := blockVerdict(now.Add(-2 * time.Second))
	hold.Decision = decision.Hold
	p := &Pusher{Server: srv}
	if err := p.Push(context.Background(), run.Step(1, 5, hold, cfg), run.Step(2, 5, blockVerdict(now.Add(-time.Second)), cfg),
		run.Final("block", "", 5, blockVerdict(now.Add(-time.Second)), cfg)); err != nil {
		t.Fatal(err)
	}
	// VictoriaLogs parses a JSON line into fields: the decision's fields
	// are searchable as they are.
	q := fmt.Sprintf(`{app="chaosgate",run_id=%q} decision_id:=%q`, run.RunID, run.RunID+"/final")
	var rows []map[string]string
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		if rows, err = srv.Query(context.Background(), q, 10); err != nil {
			t.Fatal(err)
		}
		if len(rows) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(rows) != 1 {
		t.Fatalf("%s: %d rows, want the one final line", q, len(rows))
	}
	t.Logf("the final line as VictoriaLogs keeps it: %v", rows[0])
	got := rows[0]
	if got["verdict"] != "block" || got["kind"] != "final" || got["affected_workload"] != "local:error-rate" ||
		got["dimensions.error_rate.canary"] != "0.031" || got["weights.consistency"] != "5" || got["confidence_score"] != "0.42" ||
		!strings.Contains(got["failing_dimensions"], "error_rate") {
		t.Fatalf("final line read back: %v", got)
	}
	// The block is also found by its label, as an on-call engineer would.
	rows, err := srv.Query(context.Background(), fmt.Sprintf(`{app="chaosgate",run_id=%q,verdict="block"}`, run.RunID), 10)
	if err != nil || len(rows) != 2 {
		t.Fatalf("verdict=block lines: %d (%v), want the step and the final line", len(rows), err)
	}
}
