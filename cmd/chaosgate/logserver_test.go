package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/engine/decisionlog"
	"github.com/chaosgate/chaosgate/engine/gameday"
	"github.com/chaosgate/chaosgate/engine/probe/logs"
	"github.com/chaosgate/chaosgate/internal/freeport"
	"github.com/chaosgate/chaosgate/internal/logstest"
)

// TestGateWithLogServerCatchesSilentDrops: a canary that acknowledges
// messages it drops, saying so only in its log, gated with a real log
// server (VictoriaLogs over Loki's push API). The consistency checker sees
// few of these drops — the aggregator declares a dropped seq a gap once a
// later seq of the same source reaches the partition, which I1 accepts; only
// a drop at the end of a source's stream stays uncovered, and then
// consistency blocks too — so the log guards are what catches them: the
// nodes' logs reach the server, the guards asked of the server find the
// drops on the canary alone, the log_guards dimension fails, and the block
// is found on the server by its decision_id. The game day has steady
// windows long enough (4 s around each fault, about 30 s in all) for a 2 %
// drop rate to be decided in the first window; with the quick game day's
// shorter ones the first window often only leans worse and holds.
func TestGateWithLogServerCatchesSilentDrops(t *testing.T) {
	skipShort(t)
	bin := chaosgateBinary(t)
	vl := logstest.Start(t)
	dir := t.TempDir()
	jsonFile := filepath.Join(t.TempDir(), "report.json")
	gameDay := filepath.Join(t.TempDir(), "one-step.yaml")
	if err := os.WriteFile(gameDay, []byte(oneStepGameDay), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runBinary(t, bin, "gate", "-f", gameDay, "--revision", "local:silent-drop",
		"--json", jsonFile, "--data-dir", dir, "--canary-defect", "silent-drop", "--log-server", "victorialogs="+vl.URL)
	raw, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatalf("gate wrote no JSON report (exit %d): %v\n%s", code, err, tail(stderr, 4000))
	}
	r := decodeReport(t, string(raw), stderr)
	if code != 1 || r.Verdict != "block" || !contains(r.Failing, "log_guards") {
		t.Fatalf("silent-drop canary: exit %d, verdict %q, failing %v (want a block on log_guards)\n%s", code, r.Verdict, r.Failing, tail(stderr, 4000))
	}
	if strings.Contains(stderr, "log server:") {
		t.Errorf("a push to the log server failed:\n%s", tail(stderr, 3000))
	}
	m := r.Probes.Metrics
	if m == nil || m.Canary["log_guard_matches"] < 1 || m.Control["log_guard_matches"] != 0 {
		t.Fatalf("log guards from the server: %+v, want drops on the canary only", m)
	}
	t.Logf("log guard matches from VictoriaLogs: canary %v, control %v", m.Canary["log_guard_matches"], m.Control["log_guard_matches"])

	srv := &logs.Server{Kind: logs.VictoriaLogs, URL: vl.URL}
	ctx := context.Background()
	// The nodes' own lines are on the server, labelled by run, arm and node.
	rows, err := srv.Query(ctx, fmt.Sprintf(`{app=%q,run_id=%q,arm="canary"} "dropped message" | stats count() n`, gameday.NodeLogApp, r.RunID), 10)
	if err != nil || len(rows) != 1 || rows[0]["n"] == "0" {
		t.Fatalf("canary drop lines on the server: %v, %v", rows, err)
	}
	// Every decision is on the server; the block is found by its id.
	deadline := time.Now().Add(20 * time.Second)
	q := fmt.Sprintf(`{app=%q,run_id=%q} decision_id:=%q`, decisionlog.App, r.RunID, r.RunID+"/final")
	for {
		if rows, err = srv.Query(ctx, q, 10); err != nil {
			t.Fatal(err)
		}
		if len(rows) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(rows) != 1 {
		t.Fatalf("%s: %d rows, want the final decision", q, len(rows))
	}
	final := rows[0] // VictoriaLogs keeps a JSON line as fields
	if final["verdict"] != "block" || final["affected_workload"] != "local:silent-drop" || !strings.HasPrefix(final["chaos_scenario_hash"], "sha256:") ||
		!strings.Contains(final["failing_dimensions"], "log_guards") || final["weights.log_guards"] != "2" || final["dimensions.log_guards.outcome"] != "fail" {
		t.Fatalf("final decision line %v", final)
	}
	steps, err := srv.Query(ctx, fmt.Sprintf(`{app=%q,run_id=%q} kind:=step`, decisionlog.App, r.RunID), 100)
	if err != nil || len(steps) == 0 || len(steps) < len(r.Steps) {
		t.Fatalf("step decision lines: %d (%v), want one per judged window (%d steps)", len(steps), err, len(r.Steps))
	}
	for _, st := range steps {
		if !strings.HasPrefix(st["decision_id"], r.RunID+"/step-") {
			t.Errorf("step line %v", st)
		}
	}
}

// oneStepGameDay is one 50 % canary step with a pod kill and a network
// delay and 4 s steady windows around each: a game day whose verdict rests
// on one judged step, for tests of what happens around a verdict.
const oneStepGameDay = `apiVersion: chaosgate.io/v1
kind: GameDay
metadata:
  name: one-step
spec:
  target:
    local: {nodes: 3, partitions: 4}
  steadyState: 4s
  canary:
    steps: [50]
  decision: {policy: default}
  probes:
    availability: {sources: 4, rate: 150}
    consistency: {}
    metrics: {interval: 1s}
  experiments:
    - {ref: pod-kill, duration: 2s, steps: [50]}
    - {ref: network-delay, duration: 2s, steps: [50]}
`

// TestGateWithUnreachableLogServerHolds: a log server nobody answers on is
// missing data for log_guards — the gate holds (exit 3) with the dimension
// inconclusive as query_error and the server named, never a promote.
func TestGateWithUnreachableLogServerHolds(t *testing.T) {
	skipShort(t)
	bin := chaosgateBinary(t)
	dir := t.TempDir()
	jsonFile := filepath.Join(t.TempDir(), "report.json")
	addrs, err := freeport.Addrs(1) // free: nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + addrs[0]
	_, stderr, code := runBinary(t, bin, "gate", "-f", "default-gameday-quick", "--revision", "local:log-server-down",
		"--json", jsonFile, "--data-dir", dir, "--log-server", "victorialogs="+down)
	raw, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatalf("gate wrote no JSON report (exit %d): %v\n%s", code, err, tail(stderr, 4000))
	}
	var r struct {
		Verdict string `json:"verdict"`
		Steps   []struct {
			Verdict    string `json:"verdict"`
			Dimensions []struct {
				Name   string `json:"name"`
				Data   string `json:"data"`
				Reason string `json:"reason"`
			} `json:"dimensions"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	if code != 3 || r.Verdict != "hold" || len(r.Steps) == 0 {
		t.Fatalf("unreachable log server: exit %d, verdict %q (want a hold, exit 3)\n%s", code, r.Verdict, tail(stderr, 4000))
	}
	for _, st := range r.Steps {
		if st.Verdict == "promote" {
			t.Fatalf("a step promoted without its log guards: %+v", st)
		}
		found := false
		for _, d := range st.Dimensions {
			if d.Name == "log_guards" {
				found = true
				if d.Data != "query_error" || !strings.Contains(d.Reason, down) {
					t.Fatalf("log_guards: data %q, reason %q (want query_error naming %s)", d.Data, d.Reason, down)
				}
			}
		}
		if !found {
			t.Fatalf("step without a log_guards dimension: %+v", st)
		}
	}
}
