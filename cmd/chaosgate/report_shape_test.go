package main

import (
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/chaosgate/chaosgate/decision"
)

// reportShape lists the keys of a report document (chaosgate's -o json
// output: report/v1 and the gate's summary) as paths, arrays written [],
// down to depth levels: the report's own keys, each step's, fault's and
// dimension's, and the probe summaries' names and arms. Deeper keys (a
// route's counters, a dimension's diagnosis) depend on what the run saw.
func reportShape(t *testing.T, raw []byte, depth int) []string {
	t.Helper()
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("report: %v", err)
	}
	seen := map[string]bool{}
	var walk func(x any, path string, level int)
	walk = func(x any, path string, level int) {
		switch v := x.(type) {
		case map[string]any:
			if level > depth {
				return
			}
			for k, c := range v {
				p := k
				if path != "" {
					p = path + "." + k
				}
				seen[p] = true
				walk(c, p, level+1)
			}
		case []any:
			for _, c := range v {
				walk(c, path+"[]", level)
			}
		}
	}
	walk(doc, "", 1)
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// completedRunShape is what every completed run's report carries, on any
// target: the keys a local game day writes that do not depend on what the
// run saw (failing_dimensions, a dimension's hard limit or diagnosis, a
// fault's recovery time do). Both the local quick demo's blocked run and
// the Kubernetes run driven by a scripted judge are checked against it.
var completedRunShape = []string{
	"duration_s", "evidence", "evidence.envelope_sha256", "evidence.ledger_index", "evidence.tree_size", "exit_code",
	"faults", "faults[].applied_at", "faults[].arm", "faults[].availability", "faults[].confirmed", "faults[].kind", "faults[].target",
	"probes", "probes.availability", "probes.availability.canary", "probes.availability.control",
	"probes.consistency", "probes.consistency.canary", "probes.consistency.control",
	"probes.metrics", "probes.metrics.canary", "probes.metrics.control",
	"reason", "resilience", "resilience[].arm", "resilience[].faults", "resilience[].kind", "resilience[].max_recovery_s",
	"resilience[].mean_recovery_s", "resilience[].requests_failed", "resilience[].retries", "resilience[].unrecovered",
	"revision", "run_id", "schema",
	"steps", "steps[].config_hash", "steps[].coverage", "steps[].dimensions", "steps[].reason", "steps[].score", "steps[].verdict",
	"steps[].weight", "steps[].windows",
	"steps[].dimensions[].canary", "steps[].dimensions[].confidence", "steps[].dimensions[].confidence_parts",
	"steps[].dimensions[].contribution", "steps[].dimensions[].control", "steps[].dimensions[].critical",
	"steps[].dimensions[].data", "steps[].dimensions[].effect", "steps[].dimensions[].k", "steps[].dimensions[].min_effect",
	"steps[].dimensions[].name", "steps[].dimensions[].outcome", "steps[].dimensions[].p_value", "steps[].dimensions[].query",
	"steps[].dimensions[].reason", "steps[].dimensions[].rule", "steps[].dimensions[].samples_canary",
	"steps[].dimensions[].samples_control", "steps[].dimensions[].score", "steps[].dimensions[].sigma",
	"steps[].dimensions[].sigma_source", "steps[].dimensions[].test", "steps[].dimensions[].unit",
	"steps[].dimensions[].weight", "steps[].dimensions[].z",
	"verdict",
}

// checkReportShape fails when the report lacks a key of completedRunShape,
// naming each; keys beyond it are logged.
func checkReportShape(t *testing.T, what string, raw []byte) {
	t.Helper()
	got := reportShape(t, raw, 3)
	var missing, extra []string
	for _, k := range completedRunShape {
		if !slices.Contains(got, k) {
			missing = append(missing, k)
		}
	}
	for _, k := range got {
		if !slices.Contains(completedRunShape, k) && strings.Count(k, ".") < 2 {
			extra = append(extra, k)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s: the report lacks %d keys a completed run has: %s", what, len(missing), strings.Join(missing, ", "))
	}
	if len(extra) > 0 {
		t.Logf("%s: report keys beyond the common shape: %s", what, strings.Join(extra, ", "))
	}
}

// scriptedJudge answers each judged window with the next decision of its
// script on chaosgate's own verdict (dimensions, score, config hash kept),
// to drive a target's pipeline through a chosen sequence.
type scriptedJudge struct {
	mu      sync.Mutex
	answers []decision.Decision
	calls   int
}

// Judge implements canary.Judge.
func (s *scriptedJudge) Judge(cfg *decision.Config, in decision.Input) decision.Verdict {
	v := decision.Judge{}.Judge(cfg, in)
	s.mu.Lock()
	defer s.mu.Unlock()
	d := decision.Hold
	if s.calls < len(s.answers) {
		d = s.answers[s.calls]
	}
	s.calls++
	v.Reason = "scripted " + d.String() + " (the judge said " + v.Decision.String() + ": " + v.Reason + ")"
	v.Decision, v.Decisive, v.HoldCause = d, false, 0
	return v
}

// Calls is how many windows the judge was asked about.
func (s *scriptedJudge) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}
