package gameday

// The judge's input: each arm's window, its A/A history and the step's context.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/probe/availability"
	"github.com/chaosgate/chaosgate/engine/probe/metrics"
)

// armInput builds one arm's judge input for the step.
func (r *Run) armInput(weight int, arm engine.Arm, steady []availability.Span, step availability.Span) (decision.ArmInput, availability.Stats, error) {
	// Only chunks that finished before the fault that followed their
	// steady span: one that started just before a fault and was still
	// retrying when it struck measures the fault.
	st := r.avail.SummarizeSettled(arm, steady...)
	a := decision.ArmInput{CollectedAt: time.Now()}
	if st.Chunks == 0 {
		return a, st, engine.E(engine.KindUnavailable, "availability", fmt.Errorf("no load chunk of %s in the steady windows", arm))
	}
	if st.Hist != nil {
		a.LatencyP50, a.LatencyP99 = decision.Num(st.P50), decision.Num(st.P99)
	}
	// A session is one send attempt; it is interrupted when the attempt ends
	// without an answer. Attempts, not messages: under faults one message
	// may time out on several retries.
	a.Sessions, a.SessionInterruptions = decision.Num(float64(st.Attempts)), decision.Num(float64(st.Timeouts))
	// Error rate is the servers' own: HTTP 5xx other than 503 over HTTP
	// requests, as a Prometheus query would give it (the load generator
	// retries errors, so its final outcomes hide them). A 503 is the
	// explicit "no leader right now" of an election, which every client
	// retries; it counts as a session interruption only when a client's
	// attempt ends without an answer.
	mw, err := r.mets.Window(arm, spansM(steady)...)
	if err != nil {
		qe := decision.Value{State: decision.QueryError, Err: err.Error()}
		a.DependencyCalls, a.DependencyFailures, a.Requests, a.Errors = qe, qe, qe, qe
	} else {
		a.DependencyCalls, a.DependencyFailures = decision.Num(mw.DependencyCalls), decision.Num(mw.DependencyFailures)
		a.Requests, a.Errors = decision.Num(mw.HTTPRequests), decision.Num(mw.HTTP5xx-mw.HTTP503)
	}
	// GC pauses in the steady windows only, as for errors and latency. Over
	// the whole step they measure the faults (a SIGSTOPped or restarted
	// node, a raft log replayed) and the traffic shift: right after the
	// gate moves traffic to the canary its heap grows to the new load while
	// the control's shrinks, so a good canary paused long three times as
	// often as its control at the 50% step of make demo and in CI.
	if err != nil {
		a.GCPausesMS = decision.Samples{State: decision.QueryError, Err: err.Error()}
		a.WindowS = decision.Value{State: decision.QueryError, Err: err.Error()}
		a.MemoryGrowthMBPerMin = decision.Value{State: decision.QueryError, Err: err.Error()}
	} else {
		a.GCPausesMS = decision.Series(append([]float64{}, mw.GCPausesMS...))
		a.WindowS = decision.Num(mw.WindowS)
	}
	// Memory growth needs a long baseline: the slope over the whole run
	// (growthSpan).
	if run, err := r.mets.Window(arm, r.growthSpan(step.End)); err == nil && run.HasMemoryGrowth {
		a.MemoryGrowthMBPerMin = decision.Num(run.MemoryGrowthMBPerMin)
	} else if err != nil {
		a.MemoryGrowthMBPerMin = decision.Value{State: decision.QueryError, Err: err.Error()}
	}
	if r.prom != nil {
		r.promArm(context.Background(), weight, arm, steady, step, &a)
	}
	if rep, ok := r.consistency[arm]; ok {
		a.ConsistencyViolations = decision.Num(Violations(rep))
	}
	a.LogGuardMatches = r.logGuardMatches(arm, steady)
	return a, st, nil
}

// logGuardMatches counts arm's guarded log lines in the steady spans, the
// spans its requests were counted in.
func (r *Run) logGuardMatches(arm engine.Arm, steady []availability.Span) decision.Value {
	if r.logsp == nil {
		return decision.Value{}
	}
	if err := r.logsp.Scan(); err != nil {
		return decision.Value{State: decision.QueryError, Err: err.Error()}
	}
	n := 0
	for _, s := range steady {
		c := r.logsp.MatchCount(arm, s.Start, s.End)
		if c < 0 {
			err := "log guard query failed"
			if e, ok := r.logsp.(interface{ Err() error }); ok && e.Err() != nil {
				err = e.Err().Error()
			}
			return decision.Value{State: decision.QueryError, Err: err}
		}
		n += c
	}
	return decision.Num(float64(n))
}

func spansM(s []availability.Span) []metrics.Span {
	out := make([]metrics.Span, len(s))
	for i, x := range s {
		out[i] = metrics.Span{Start: x.Start, End: x.End}
	}
	return out
}

// recordSameBuild adds the window just judged to the baseline history when
// the canary runs exactly the control's build (no defect): two separate
// clusters of one build under the same faults are the A/A windows that show
// how far two healthy clusters drift apart, which the control alone cannot.
// It is recorded after the judgement, so a window never judges itself.
func (r *Run) recordSameBuild(weight int) {
	// Only the local target knows the canary runs the control's build.
	if r.arms == nil || len(r.cfg.CanaryDefects) > 0 || r.lastInput.At.IsZero() {
		return
	}
	in := r.lastInput
	if err := r.base.Record(r.service(weight), decision.HistoryWindow{At: in.At.Add(time.Millisecond), Canary: in.Canary, Control: in.Control, Context: in.Context}); err != nil {
		r.cfg.Log.Warn("baseline record", "err", err)
	}
}

func (r *Run) service(weight int) string {
	return fmt.Sprintf("%s/w%d", r.target.Service(), weight)
}

func (r *Run) buildInput(weight int) (decision.Input, error) {
	now := time.Now()
	step := availability.Span{Start: r.stepStart, End: now}
	steady := r.stepSpans
	if len(steady) == 0 {
		steady = []availability.Span{step}
	}
	in := decision.Input{At: now}
	var err error
	if in.Canary, _, err = r.armInput(weight, engine.ArmCanary, steady, step); err != nil {
		return in, err
	}
	if in.Control, _, err = r.armInput(weight, engine.ArmControl, steady, step); err != nil {
		return in, err
	}
	for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		if mw, err := r.mets.Window(arm, spansM(steady)...); err == nil {
			var parts []string
			for route, n := range mw.RouteRequests {
				parts = append(parts, fmt.Sprintf("%s %.0f/%.0f", route, mw.Route5xx[route], n))
			}
			sort.Strings(parts)
			parts = append(parts, fmt.Sprintf("of which 503 %.0f", mw.HTTP503))
			r.cfg.Log.Info("judge window", "arm", arm.String(), "http_5xx_by_route", strings.Join(parts, ", "), "forward_failures", mw.DependencyFailures, "forwards", mw.DependencyCalls)
		}
	}
	in.Context = r.stepContext(weight)
	// The A/A window of this very period: the calibration arm (the
	// control's build, the canary's share and faults) against the control,
	// recorded before the canary is judged.
	if !hasArm(r.target, engine.ArmCalibration) {
		// No calibration arm: the history holds what earlier runs recorded.
	} else if calib, _, err := r.armInput(weight, engine.ArmCalibration, steady, step); err != nil {
		r.cfg.Log.Warn("calibration window", "err", err)
	} else if err := r.base.Record(r.service(weight), decision.HistoryWindow{At: now, Canary: calib, Control: in.Control, Context: in.Context}); err != nil {
		r.cfg.Log.Warn("baseline record", "err", err)
	}
	hist, err := r.base.History(r.service(weight), now.Add(time.Second), r.cfg.Decision().Baseline.Window)
	if err != nil {
		return in, engine.E(engine.KindUnavailable, "baseline history", err)
	}
	in.History = hist
	return in, nil
}

// stepContext is the context of the windows judged at weight: the kinds of
// fault the step runs. Its steady windows lie around those faults, and
// what they measure — a cluster catching up after a partition, memory
// growth over the run — carries them; the A/A windows of the step carry
// the same context, so σ̂ comes from windows of the same schedule.
func (r *Run) stepContext(weight int) *decision.Context {
	var kinds []string
	for _, e := range r.plan.Experiments {
		if !e.RunsAt(weight) {
			continue
		}
		for _, f := range e.Faults {
			kinds = append(kinds, f.Kind.String())
		}
	}
	return decision.NewContext(0, kinds...)
}
