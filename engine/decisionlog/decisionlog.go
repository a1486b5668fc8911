// Package decisionlog writes every decision of a run — each step's
// verdict and the run's final promote, hold, block or abort — as one JSON
// line (chaosgate.decision-log/v1, docs/decision-log-v1.md) pushed to a log
// server over Loki's push API, labelled {app="chaosgate", run_id, verdict},
// so that an on-call engineer finds a block in Grafana Explore (Loki) or
// VictoriaLogs' UI by its decision_id.
//
// Pushing never changes a verdict: a failed push is returned for the
// caller to report.
package decisionlog

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine/probe/logs"
)

// Schema is the contract version written in every line.
const Schema = "chaosgate.decision-log/v1"

// App is the app label of every decision line.
const App = "chaosgate"

// Dimension is one dimension's raw values in a decision line.
type Dimension struct {
	Outcome string  `json:"outcome"`
	Canary  float64 `json:"canary"`
	Control float64 `json:"control"`
	Unit    string  `json:"unit,omitempty"`
	Z       float64 `json:"z"`
	K       float64 `json:"k"`
	// Query is the resolved query the values came from.
	Query string `json:"query,omitempty"`
}

// Line is one decision.
type Line struct {
	Schema string `json:"schema"`
	// DecisionID is unique per decision: RUN/step-N (N counts the judged
	// windows from 1) or RUN/final.
	DecisionID string `json:"decision_id"`
	RunID      string `json:"run_id"`
	// Kind is "step" (one judged window) or "final" (the run's outcome).
	Kind string `json:"kind"`
	// Verdict is promote, hold, block or abort.
	Verdict string `json:"verdict"`
	// Weight is the canary's traffic share of the step, in percent.
	Weight int `json:"weight"`
	// AffectedWorkload is the evidence subject: the canary's revision
	// (e.g. Deployment/ns/name@rev or local:good).
	AffectedWorkload string `json:"affected_workload"`
	// ChaosScenarioHash is sha256:… of the scenario the run played.
	ChaosScenarioHash string `json:"chaos_scenario_hash"`
	// Dimensions are the raw values, by dimension name.
	Dimensions map[string]Dimension `json:"dimensions,omitempty"`
	// Weights is the weight vector of the decision matrix that judged.
	Weights map[string]float64 `json:"weights,omitempty"`
	// ConfidenceScore is the verdict's score in [0, 1]: the weighted share
	// of passing dimensions, each weighted by its confidence.
	ConfidenceScore float64   `json:"confidence_score"`
	Coverage        float64   `json:"coverage"`
	Failing         []string  `json:"failing_dimensions"`
	Reason          string    `json:"reason"`
	ConfigHash      string    `json:"config_hash,omitempty"`
	Time            time.Time `json:"time"`
}

// Run is what every line of one run shares.
type Run struct {
	RunID        string
	Workload     string
	ScenarioHash string
}

// Step is the line of one judged window (n counts from 1).
func (r Run) Step(n, weight int, v decision.Verdict, cfg *decision.Config) Line {
	l := r.line(fmt.Sprintf("%s/step-%d", r.RunID, n), "step", v.Decision.String(), weight, v, cfg)
	return l
}

// Final is the line of the run's outcome; verdict is promote, hold, block
// or abort, and last is the deciding step's verdict (zero when no step was
// judged).
func (r Run) Final(verdict, reason string, weight int, last decision.Verdict, cfg *decision.Config) Line {
	l := r.line(r.RunID+"/final", "final", verdict, weight, last, cfg)
	if reason != "" {
		l.Reason = reason
	}
	return l
}

func (r Run) line(id, kind, verdict string, weight int, v decision.Verdict, cfg *decision.Config) Line {
	l := Line{Schema: Schema, DecisionID: id, RunID: r.RunID, Kind: kind, Verdict: verdict, Weight: weight,
		AffectedWorkload: r.Workload, ChaosScenarioHash: r.ScenarioHash, ConfidenceScore: v.Score, Coverage: v.Coverage,
		Failing: []string{}, Reason: v.Reason, ConfigHash: v.ConfigHash, Time: v.At.UTC()}
	if l.Time.IsZero() {
		l.Time = time.Now().UTC()
	}
	if len(v.Dimensions) > 0 {
		l.Dimensions = map[string]Dimension{}
	}
	for _, d := range v.Dimensions {
		l.Dimensions[string(d.Name)] = Dimension{Outcome: d.Outcome.String(), Canary: finite(d.Canary), Control: finite(d.Control),
			Unit: d.Unit, Z: finite(d.Z), K: finite(d.K), Query: d.Query}
		if d.Outcome == decision.Fail {
			l.Failing = append(l.Failing, string(d.Name))
		}
	}
	sort.Strings(l.Failing)
	if cfg != nil {
		l.Weights = map[string]float64{}
		for _, d := range cfg.Dimensions {
			if d.Enabled {
				l.Weights[string(d.Kind)] = d.Weight
			}
		}
	}
	return l
}

// finite keeps JSON encodable: NaN and ±Inf (missing data) become 0 with
// the outcome saying why.
func finite(f float64) float64 {
	if f != f || f > 1e308 || f < -1e308 {
		return 0
	}
	return f
}

// Labels are the stream labels of l.
func (l Line) Labels() map[string]string {
	return map[string]string{"app": App, "run_id": l.RunID, "verdict": l.Verdict}
}

// Pusher pushes decision lines to a log server.
type Pusher struct {
	Server *logs.Server
}

// Push sends the lines (one stream per verdict).
func (p *Pusher) Push(ctx context.Context, lines ...Line) error {
	if p == nil || p.Server == nil || len(lines) == 0 {
		return nil
	}
	byVerdict := map[string]*logs.Stream{}
	var order []string
	for _, l := range lines {
		b, err := json.Marshal(l)
		if err != nil {
			return fmt.Errorf("decision line %s: %w", l.DecisionID, err)
		}
		st := byVerdict[l.Verdict]
		if st == nil {
			st = &logs.Stream{Labels: l.Labels()}
			byVerdict[l.Verdict] = st
			order = append(order, l.Verdict)
		}
		st.Entries = append(st.Entries, logs.Entry{Time: l.Time, Line: string(b)})
	}
	streams := make([]logs.Stream, 0, len(order))
	for _, v := range order {
		streams = append(streams, *byVerdict[v])
	}
	if err := p.Server.Push(ctx, streams); err != nil {
		return fmt.Errorf("decision lines: %w", err)
	}
	return nil
}
