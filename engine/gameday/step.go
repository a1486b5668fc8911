package gameday

// One canary step: settle the arms, run the step's faults, observe a fault-free steady window, drain and check consistency.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/canary"
	"github.com/chaosgate/chaosgate/engine/history"
	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/engine/probe/availability"
	"github.com/chaosgate/chaosgate/engine/probe/consistency"
)

// observe runs one canary window: the first window of a step runs the
// step's fault suite under load; an extension (after a HOLD) observes more
// steady load. Then the load stops, both output streams are drained and
// checked, and the judge's input is built.
func (r *Run) observe(ctx context.Context, w canary.Window) (decision.Input, error) {
	if w.Extension == 0 {
		r.stepStart = time.Now()
		r.stepSpans = nil
	}
	r.avail.Start(context.WithoutCancel(ctx))
	r.upLoad.start(context.WithoutCancel(ctx))
	if w.Extension == 0 {
		if err := r.runFaults(ctx, w.Weight); err != nil {
			r.avail.Stop()
			return decision.Input{}, err
		}
	}
	// The judge's steady window: once both arms are healthy again, a
	// stretch of fault-free load long enough for the canary's samples.
	if err := r.settle(ctx, w.Weight); err != nil {
		r.avail.Stop()
		return decision.Input{}, err
	}
	v := r.verifyLen(w.Weight)
	what := "steady window"
	if w.Extension > 0 {
		what = fmt.Sprintf("hold: extension %d", w.Extension)
	}
	r.emit(engine.EventPhase, "steady", w.Weight, fmt.Sprintf("%s: observing %s of fault-free load at %d%%", what, v, w.Weight))
	s := time.Now()
	// One chunk more, so the window holds v of whole chunks.
	if err := sleep(ctx, v+r.avail.Chunk()); err != nil {
		r.avail.Stop()
		return decision.Input{}, engine.E(engine.KindCanceled, "observe", fmt.Errorf("%w: %v", engine.ErrInterrupted, err))
	}
	r.stepSpans = append(r.stepSpans, availability.Span{Start: s, End: time.Now()})
	r.emit(engine.EventPhase, "verify", w.Weight, "stopping load, draining both output streams and checking consistency")
	r.avail.Stop()
	if err := r.checkConsistency(ctx); err != nil {
		return decision.Input{}, err
	}
	if ctx.Err() != nil {
		return decision.Input{}, engine.E(engine.KindCanceled, "observe", fmt.Errorf("%w: %v", engine.ErrInterrupted, context.Cause(ctx)))
	}
	in, err := r.buildInput(w.Weight)
	r.lastInput = in
	if err != nil {
		return decision.Input{}, err
	}
	r.emit(engine.EventPhase, "judge", w.Weight, fmt.Sprintf("judging the %d%% step", w.Weight))
	return in, nil
}

// settle waits (at most DefaultSettleTimeout, or the target's
// SettleTimeout) until every node of both arms is ready,
// every node agrees on who leads each partition, and no message offered
// before the settling began is still being retried (its retries would
// land in the steady window).
func (r *Run) settle(ctx context.Context, weight int) error {
	began := time.Now()
	limit := DefaultSettleTimeout
	if st, ok := r.target.(SettleTimeout); ok && st.SettleTimeout() > 0 {
		limit = st.SettleTimeout()
	}
	deadline := began.Add(limit)
	var healthySince time.Time
	for {
		err := r.target.Healthy(ctx)
		if err == nil && !r.avail.Settled(began) {
			err = engine.E(engine.KindUnavailable, "settle", errors.New("messages offered during the faults are still being retried"))
		}
		if err != nil {
			healthySince = time.Time{}
		} else if healthySince.IsZero() {
			healthySince = time.Now()
		}
		// Healthy is not yet serving: a cluster answers its health checks
		// while it may still be catching up after a partition, and time
		// out requests for a moment. Wait for a chunk of load that each
		// arm served cleanly (at most a few chunks).
		if err == nil && !r.avail.Recovered(healthySince) {
			err = engine.E(engine.KindUnavailable, "settle", errors.New("an arm has not yet served a chunk of load without timeouts since it became healthy"))
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return engine.E(engine.KindCanceled, "settle", fmt.Errorf("%w: %v", engine.ErrInterrupted, context.Cause(ctx)))
		}
		if time.Now().After(deadline) {
			r.emit(engine.EventInfo, "steady", weight, fmt.Sprintf("the arms are not all healthy after %v; judging anyway: %v", limit, err))
			return nil
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return engine.E(engine.KindCanceled, "settle", fmt.Errorf("%w: %v", engine.ErrInterrupted, err))
		}
	}
}

// verifyLen is the length of the judge's steady window at weight: three
// steady states, at least 4s, and long enough for about 300 canary
// messages, at most 15s.
func (r *Run) verifyLen(weight int) time.Duration {
	d := max(3*r.steady(), 4*time.Second)
	if rate := r.rate * r.avail.Share(weight); rate > 0 {
		need := time.Duration(300 / rate * float64(time.Second))
		d = max(d, min(need, 15*time.Second))
	}
	return d.Round(100 * time.Millisecond)
}

func (r *Run) steady() time.Duration {
	d := r.cfg.Doc.Spec.SteadyState.Duration
	if d <= 0 {
		d = 2 * time.Second
	}
	return d
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// runFaults runs the experiments of one weight with the engine runner.
func (r *Run) runFaults(ctx context.Context, weight int) error {
	plan := r.plan
	// The calibration arm takes the canary's faults: the same fault on the
	// same node, journaled, confirmed and recovered like the others.
	if hasArm(r.target, engine.ArmCalibration) {
		plan.Arms = append(append([]engine.Arm(nil), plan.Arms...), engine.ArmCalibration)
	}
	n := 0
	for _, e := range plan.Experiments {
		if e.RunsAt(weight) {
			n += len(e.Faults)
		}
	}
	if n == 0 {
		r.emit(engine.EventPhase, "steady", weight, fmt.Sprintf("no fault at %d%%", weight))
		return nil
	}
	runner, err := engine.NewRunner(engine.Options{DataDir: r.cfg.DataDir, Injectors: r.injectors(), Topology: r.target,
		Probes: r.probes(), Log: r.cfg.Log,
		RunID: fmt.Sprintf("%s-w%d", r.runID, weight), RecoverTimeout: r.recoverTimeout(),
		OnEvent: r.onRunnerEvent})
	if err != nil {
		return err
	}
	res, err := runner.Run(ctx, plan, weight)
	if res != nil {
		r.mu.Lock()
		r.faults = append(r.faults, res.Faults...)
		r.phases = append(r.phases, res.Phases...)
		r.active = map[string]string{}
		r.mu.Unlock()
		// The steady state before the step's first fault is fault-free;
		// later ones follow a recovery and are not.
		for _, ph := range res.Phases {
			if ph.Phase == engine.PhaseSteadyBefore {
				// Its load must have settled before the fault that
				// followed it.
				r.stepSpans = append(r.stepSpans, availability.Span{Start: ph.Start, End: ph.End, SettleBy: ph.End})
				break
			}
		}
		if res.Aborted != "" {
			r.mu.Lock()
			if r.aborted == "" {
				r.aborted = res.Aborted
			}
			r.mu.Unlock()
			return engine.E(engine.KindCanceled, "game day", fmt.Errorf("%w: %s", engine.ErrAborted, res.Aborted))
		}
	}
	if err != nil {
		return err
	}
	return nil
}

// recoverTimeout bounds the recovery of a step's faults: the target's
// RecoverTimeout, else DefaultRecoverTimeout.
func (r *Run) recoverTimeout() time.Duration {
	if rt, ok := r.target.(RecoverTimeout); ok && rt.RecoverTimeout() > 0 {
		return rt.RecoverTimeout()
	}
	return DefaultRecoverTimeout
}

// probes are the probes the fault runner observes: availability, metrics
// and, when the run has a log source, the log guards.
func (r *Run) probes() []engine.Probe {
	ps := []engine.Probe{r.avail, r.mets}
	if r.logsp != nil {
		ps = append(ps, r.logsp)
	}
	return ps
}

// onRunnerEvent relays the fault runner's events and tracks the faults
// in place for the live snapshot.
func (r *Run) onRunnerEvent(ev engine.Event) {
	r.mu.Lock()
	switch {
	case ev.Kind == engine.EventFault:
		r.active[ev.Fault] = strings.SplitN(ev.Msg, " applied", 2)[0]
	case ev.Phase == engine.PhaseRecover.String() || ev.Phase == engine.PhaseSteadyAfter.String():
		r.active = map[string]string{}
	}
	r.mu.Unlock()
	msg := ev.Msg
	if ev.Experiment != "" && ev.Kind == engine.EventPhase {
		msg = ev.Experiment + ": " + msg
	}
	r.emit(ev.Kind, ev.Phase, ev.Weight, msg)
}

// checkConsistency drains both arms' output streams (the load is stopped)
// and checks everything each arm acknowledged so far.
func (r *Run) checkConsistency(ctx context.Context) error {
	r.upLoad.stop()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dctx, cancel := context.WithTimeout(ctx, 75*time.Second)
			defer cancel()
			r.upLoad.settle(dctx, r.arms, arm, 30*time.Second)
			// Longer than the nodes' reorder timeout (2s) plus one reorder
			// tick (0.5s): a message acknowledged while an earlier seq of
			// its source was missing waits that long for its hole to be
			// declared a gap before it reaches the stream.
			quiet := 3 * time.Second
			if r.upLoad != nil {
				// a node restarted after a kill takes its broker session's
				// queued messages (MQTT measures no lag) a few seconds later
				quiet = 6 * time.Second
			}
			if _, err := r.gens[arm].Drain(dctx, load.DrainOptions{Quiet: quiet, Max: 40 * time.Second}); err != nil && ctx.Err() == nil {
				errs[i] = engine.E(engine.KindUnavailable, "drain "+arm.String(), err)
				return
			}
			if err := r.upLoad.record(dctx, arm); err != nil && ctx.Err() == nil {
				errs[i] = engine.E(engine.KindUnavailable, "upstreams of "+arm.String(), err)
				return
			}
			if err := r.hists[arm].Flush(); err != nil {
				errs[i] = engine.E(engine.KindUnavailable, "history "+arm.String(), err)
				return
			}
			evs, err := history.ReadFile(r.hpaths[arm])
			if err != nil {
				errs[i] = engine.E(engine.KindInternal, "history "+arm.String(), err)
				return
			}
			rep := consistency.Check(evs, consistency.Config{LinearizabilityTimeout: 5 * time.Second})
			r.mu.Lock()
			r.consistency[arm] = rep
			r.mu.Unlock()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		rep := r.consistency[arm]
		msg := fmt.Sprintf("consistency %s: %d acknowledged, %d received, ", arm, rep.Counts.SentOK, rep.Counts.Received)
		if rep.OK {
			msg += "every invariant holds"
		} else {
			var inv []string
			for _, v := range rep.Violations {
				inv = append(inv, v.Invariant)
			}
			msg += "VIOLATED: " + strings.Join(inv, ", ")
		}
		r.emit(engine.EventInfo, "verify", 0, msg)
	}
	return nil
}

// Violations counts a checker report's violations.
func Violations(rep consistency.Report) float64 {
	c := rep.Counts
	n := c.Lost + c.Duplicated + c.Unexpected + c.OrderViolations + c.HLCViolations + c.SplitBrain
	if c.Linearizability == consistency.LinIllegal {
		n++
	}
	if n == 0 && !rep.OK {
		n = len(rep.Violations)
	}
	return float64(n)
}
