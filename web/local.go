package web

import (
	"context"
	"log/slog"
	"math"
	"sort"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/gameday"
)

// LocalRunner returns the RunFunc of the local target: the game-day
// orchestration of engine/gameday (control and canary clusters of the
// reference aggregator, faults at every canary step, judge, evidence).
// binary is the chaosgate executable the nodes run (empty: this one);
// dcfg returns the decision config in force at each judgement.
func LocalRunner(dataDir, binary string, dcfg func() *decision.Config, versions map[string]string, log *slog.Logger) RunFunc {
	return GameDayRunner(GameDayRunnerOptions{DataDir: dataDir, Binary: binary, Decision: dcfg, Versions: versions, Log: log})
}

// RunTarget is where a run of serve's API runs when it is not the local
// target: the target, the evidence subject and the keys the gate answers
// for, and what a crashed run left on it and was recovered.
type RunTarget struct {
	Target   gameday.Target
	Revision string
	GateKeys []string
	Versions map[string]string
	Reaped   []string
}

// GameDayRunnerOptions configure GameDayRunner.
type GameDayRunnerOptions struct {
	DataDir, Binary string
	Decision        func() *decision.Config
	Versions        map[string]string
	Log             *slog.Logger
	// Target, when set, finds the run's target (e.g. the Kubernetes
	// workloads of the request's document); nil runs the local target.
	Target func(ctx context.Context, req RunRequest, log *slog.Logger) (RunTarget, error)
}

// GameDayRunner returns the RunFunc that runs every request as a game day
// (engine/gameday: load, probes, faults at every canary step, judge,
// evidence) on the local target or on the one o.Target finds.
func GameDayRunner(o GameDayRunnerOptions) RunFunc {
	return func(ctx context.Context, req RunRequest, live *Live) (*RunResult, error) {
		versions := map[string]string{}
		for k, v := range o.Versions {
			versions[k] = v
		}
		cfg := gameday.Config{Doc: req.Doc, DataDir: o.DataDir, Binary: o.Binary, Revision: req.Revision, Decision: o.Decision,
			Log: o.Log, RunID: req.ID, Versions: versions,
			OnEvent: func(ev engine.Event) { live.Emit(LiveEventOf(ev)) }}
		if o.Target != nil {
			log := o.Log
			if log == nil {
				log = slog.New(slog.DiscardHandler)
			}
			t, err := o.Target(ctx, req, log)
			for _, r := range t.Reaped {
				live.Emit(LiveEvent{Kind: "info", Phase: "setup", Msg: "recovered what a crashed run left: " + r})
			}
			if err != nil {
				return nil, err
			}
			cfg.Target = t.Target
			cfg.Revision, cfg.GateKeys = subjectOf(req, t)
			for k, v := range t.Versions {
				versions[k] = v
			}
		}
		run, err := gameday.New(cfg)
		if err != nil {
			if cfg.Target != nil {
				cfg.Target.Close()
			}
			return nil, err
		}
		live.SetState(func() LiveState { return stateOf(run.Snapshot()) })
		out, err := run.Execute(ctx)
		if out == nil {
			return nil, err
		}
		return &RunResult{Report: out.Report, Reason: out.Reason, Error: out.Error, Aborted: out.Aborted,
			Interrupted: out.Interrupted, Failing: out.Failing}, err
	}
}

// subjectOf returns the evidence subject and the further gate keys of a
// run on target t: the target's workload revision and keys, except for an
// uploaded document, which keeps its upload:<run id> subject and answers
// no gate key — the workload's revision is answered only by runs of files
// the operator put in the experiments directory or the built-in library.
func subjectOf(req RunRequest, t RunTarget) (string, []string) {
	if req.Upload || t.Revision == "" {
		return req.Revision, nil
	}
	return t.Revision, t.GateKeys
}

func stateOf(s gameday.Snapshot) LiveState {
	st := LiveState{Phase: s.Phase, Weight: s.Weight, ActiveFaults: append([]string{}, s.ActiveFaults...),
		Steps: append([]string(nil), s.Steps...), ElapsedS: s.Elapsed.Seconds(), Arms: map[string]ArmLive{}}
	sort.Strings(st.ActiveFaults)
	for arm, a := range s.Arms {
		st.Arms[arm.String()] = ArmLive{SuccessRatio: finite(a.SuccessRatio), P99MS: finite(a.P99MS), Requests: a.Requests}
	}
	return st
}

// finite maps NaN and ±Inf (no samples yet) to 0 so the state encodes as
// JSON.
func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}
