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
	return func(ctx context.Context, req RunRequest, live *Live) (*RunResult, error) {
		cfg := gameday.Config{Doc: req.Doc, DataDir: dataDir, Binary: binary, Revision: req.Revision, Decision: dcfg,
			Log: log, RunID: req.ID, Versions: versions,
			OnEvent: func(ev gameday.Event) { live.Emit(GameDayEvent(ev)) }}
		run, err := gameday.New(cfg)
		if err != nil {
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

func eventKind(k gameday.EventKind) string {
	switch k {
	case gameday.EventPhase:
		return "phase"
	case gameday.EventFault:
		return "fault"
	case gameday.EventVerdict:
		return "verdict"
	}
	return "info"
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

// EngineEvent converts an engine progress event (the runner's live view)
// into a web event, for RunFuncs built on engine.Runner directly.
func EngineEvent(ev engine.Event) Event {
	return Event{T: ev.T, Kind: "phase", Phase: ev.Phase.String(), Weight: ev.Weight, Experiment: ev.Experiment, Fault: ev.Fault, Msg: ev.Msg}
}
