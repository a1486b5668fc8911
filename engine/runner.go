package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Topology tells the runner the replicas of each arm and who leads.
type Topology interface {
	// Nodes lists the replicas of an arm (e.g. n1..n5).
	Nodes(arm Arm) []string
	// Leader returns the node that leads the given aggregator partition
	// (nil: the node that leads the most partitions).
	Leader(ctx context.Context, arm Arm, partition *int) (string, error)
}

// ZoneTopology is a Topology whose replicas carry zones (the local
// target's zones, the pods' topology.kubernetes.io/zone label); a zone
// outage needs one.
type ZoneTopology interface {
	// ZoneNodes lists the replicas of an arm in a zone.
	ZoneNodes(ctx context.Context, arm Arm, zone string) ([]string, error)
}

// EventKind says what a progress event reports.
type EventKind int

// Event kinds.
const (
	// EventInfo is a remark: setup, warnings, measurements.
	EventInfo EventKind = 1 + iota
	// EventPhase is the start of a phase.
	EventPhase
	// EventFault is a fault that took effect.
	EventFault
	// EventVerdict is a step's verdict.
	EventVerdict
)

var eventKindNames = map[EventKind]string{EventInfo: "info", EventPhase: "phase", EventFault: "fault", EventVerdict: "verdict"}

// String is the kind's name (info, phase, fault, verdict).
func (k EventKind) String() string { return enumString(eventKindNames, k) }

// MarshalText writes the kind's name.
func (k EventKind) MarshalText() ([]byte, error) { return enumMarshal(eventKindNames, k) }

// Event is one progress event of a run, for live views (the terminal, the
// dashboard's server-sent events). A Runner emits its phases (Phase is a
// Phase's name); the game day emits those of its fault runs and its own
// (setup, settle, steady, drain, judge).
type Event struct {
	T          time.Time `json:"t"`
	Kind       EventKind `json:"kind"`
	Phase      string    `json:"phase"`
	Weight     int       `json:"weight"`
	Experiment string    `json:"experiment,omitempty"`
	Fault      string    `json:"fault,omitempty"`
	Msg        string    `json:"msg"`
}

// ProbeError records a probe that could not run.
type ProbeError struct {
	Probe  string `json:"probe"`
	Window Window `json:"window"`
	Error  string `json:"error"`
}

// FaultRecord is one fault application as reported (report/v1 "faults").
type FaultRecord struct {
	ID           string        `json:"id"`
	Name         string        `json:"name,omitempty"`
	Experiment   string        `json:"experiment,omitempty"`
	Weight       int           `json:"weight"`
	Kind         FaultKind     `json:"kind"`
	Arm          Arm           `json:"arm"`
	Target       string        `json:"target"`
	AppliedAt    time.Time     `json:"applied_at,omitzero"`
	RecoveredAt  time.Time     `json:"recovered_at,omitzero"`
	Confirmed    Confirmation  `json:"confirmed,omitempty"`
	Measurement  string        `json:"measurement,omitempty"`
	Detail       string        `json:"detail,omitempty"`
	Effective    time.Duration `json:"effective_ns,omitempty"`
	Skipped      string        `json:"skipped,omitempty"`
	Error        string        `json:"error,omitempty"`
	RecoverError string        `json:"recover_error,omitempty"`
}

// PhaseSpan is one phase of the run as it happened.
type PhaseSpan struct {
	Phase      Phase     `json:"phase"`
	Weight     int       `json:"weight,omitempty"`
	Experiment string    `json:"experiment,omitempty"`
	Fault      string    `json:"fault,omitempty"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
}

// RunnerResult is what one step's fault suite did: the faults, the phases
// as they happened and the probes' observations. The caller (engine/gameday)
// builds the report and the evidence from it and its own windows.
type RunnerResult struct {
	RunID   string    `json:"run_id"`
	Name    string    `json:"name"`
	Weight  int       `json:"weight"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	// Observations are the probes' observations at steady state before
	// and after each fault and during its observe phase.
	Observations []Observation `json:"observations"`
	ProbeErrors  []ProbeError  `json:"probe_errors,omitempty"`
	Faults       []FaultRecord `json:"faults"`
	Phases       []PhaseSpan   `json:"phases"`
	Interrupted  bool          `json:"interrupted,omitempty"`
	Aborted      string        `json:"aborted,omitempty"`
	Error        string        `json:"error,omitempty"`
	// Journal is the path of the run's journal.
	Journal string `json:"journal"`
}

// Options configure a Runner. Injectors and Topology are required.
type Options struct {
	// DataDir holds the journal and control files (DATA/journal).
	DataDir   string
	Injectors map[FaultKind]Injector
	Topology  Topology
	// Probes are observed at steady state before and after each fault,
	// and during observe for the abort conditions naming them.
	Probes  []Probe
	OnEvent func(Event)
	Clock   Clock
	Log     *slog.Logger
	// RunID is the run's id (default: random).
	RunID string
	// Tick is how often abort conditions are evaluated (default 500ms).
	Tick time.Duration
	// RecoverTimeout bounds the recovery of the faults after each fault's
	// observe phase (default 10s); ShutdownRecoverTimeout bounds it when the
	// run is interrupted (default 2s).
	RecoverTimeout         time.Duration
	ShutdownRecoverTimeout time.Duration
}

// Runner applies one canary step's fault suite: every fault of the plan's
// experiments that run at the step's weight, to every arm of the plan, one
// after the other — each journaled, confirmed, observed and recovered.
// Stepping through the weights, routing traffic, judging and recording
// evidence are the caller's: engine/gameday drives the steps with
// engine/canary's Controller on any target. Abort, Pause and Resume may be
// called from other goroutines while Run runs.
type Runner struct {
	opt Options

	mu     sync.Mutex
	abort  string
	paused bool

	active []*activeFault
	since  map[abortKey]time.Time
	seq    int
	j      *Journal
	res    *RunnerResult
}

type activeFault struct {
	applied Applied
	rec     int // index in Result.Faults
}

// Errors returned (wrapped, kind KindCanceled) when a run stops early.
var (
	ErrInterrupted = errors.New("run interrupted")
	ErrAborted     = errors.New("run aborted")
	// ErrNotRecovered (kind KindUnavailable) means a fault's Recover
	// failed: the run stops rather than observe and judge a system that
	// still carries the fault.
	ErrNotRecovered = errors.New("faults could not be recovered")
)

// NewRunner checks the options and returns a runner.
func NewRunner(opt Options) (*Runner, error) {
	if opt.DataDir == "" {
		return nil, E(KindInvalid, "new runner", errors.New("no data dir"))
	}
	if opt.Topology == nil || len(opt.Injectors) == 0 {
		return nil, E(KindInvalid, "new runner", errors.New("a topology and at least one injector are required"))
	}
	if opt.Clock == nil {
		opt.Clock = SystemClock{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Tick <= 0 {
		opt.Tick = 500 * time.Millisecond
	}
	if opt.RecoverTimeout <= 0 {
		opt.RecoverTimeout = 10 * time.Second
	}
	if opt.ShutdownRecoverTimeout <= 0 {
		opt.ShutdownRecoverTimeout = 2 * time.Second
	}
	if opt.RunID == "" {
		var b [6]byte
		rand.Read(b[:])
		opt.RunID = opt.Clock.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
	}
	return &Runner{opt: opt, since: map[abortKey]time.Time{}}, nil
}

// RunID is the id of the run.
func (r *Runner) RunID() string { return r.opt.RunID }

// Abort stops the run: every applied fault is recovered and the run ends
// with an aborted result. It is what the dashboard kill switch calls.
func (r *Runner) Abort(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.abort == "" {
		if reason == "" {
			reason = "aborted"
		}
		r.abort = reason
	}
}

// Pause stops the fault-duration clock (faults stay applied).
func (r *Runner) Pause() { r.mu.Lock(); r.paused = true; r.mu.Unlock() }

// Resume restarts the fault-duration clock.
func (r *Runner) Resume() { r.mu.Lock(); r.paused = false; r.mu.Unlock() }

func (r *Runner) isPaused() bool {
	r.mu.Lock()
	p := r.paused
	r.mu.Unlock()
	if _, err := os.Stat(pauseFile(r.opt.DataDir, r.opt.RunID)); err == nil {
		return true
	}
	return p
}

// stop returns a kinded error when the run must stop: context canceled
// (SIGINT/SIGTERM) or abort requested (method or control file).
func (r *Runner) stop(ctx context.Context) error {
	if ctx.Err() != nil {
		return E(KindCanceled, "run", fmt.Errorf("%w: %v", ErrInterrupted, context.Cause(ctx)))
	}
	if b, err := os.ReadFile(abortFile(r.opt.DataDir, r.opt.RunID)); err == nil {
		reason := string(trimNL(b))
		if reason == "" {
			reason = "chaosgate abort"
		}
		r.Abort(reason)
	}
	r.mu.Lock()
	reason := r.abort
	r.mu.Unlock()
	if reason != "" {
		return E(KindCanceled, "run", fmt.Errorf("%w: %s", ErrAborted, reason))
	}
	return nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func (r *Runner) event(p Phase, w int, exp, fault, msg string) {
	r.emit(EventPhase, p, w, exp, fault, msg)
}

func (r *Runner) emit(kind EventKind, p Phase, w int, exp, fault, msg string) {
	r.opt.Log.Info(msg, "phase", p, "weight", w, "experiment", exp, "fault", fault)
	if r.opt.OnEvent != nil {
		r.opt.OnEvent(Event{T: r.opt.Clock.Now(), Kind: kind, Phase: p.String(), Weight: w, Experiment: exp, Fault: fault, Msg: msg})
	}
}

func (r *Runner) phase(p Phase, w int, exp, fault string, start time.Time) {
	r.res.Phases = append(r.res.Phases, PhaseSpan{Phase: p, Weight: w, Experiment: exp, Fault: fault, Start: start, End: r.opt.Clock.Now()})
}

// Run applies the fault suite of the canary step at weight. Whatever
// happens — an error, an abort, the context canceled by SIGINT/SIGTERM, a
// panic in a probe or an injector — every fault it applied is recovered
// before Run returns (a panic is re-raised after recovery). The result is
// returned even with an error; an interrupted or aborted run returns an
// error of kind KindCanceled wrapping ErrInterrupted or ErrAborted, with
// Interrupted or Aborted set; a fault that could not be recovered, one
// wrapping ErrNotRecovered, and the journal stays open for the reaper.
func (r *Runner) Run(ctx context.Context, plan Plan, weight int) (res *RunnerResult, err error) {
	if len(plan.Arms) == 0 {
		return nil, E(KindInvalid, "run", errors.New("the plan has no arms"))
	}
	for _, e := range plan.Experiments {
		for _, f := range e.Faults {
			if r.opt.Injectors[f.Kind] == nil {
				return nil, E(KindInvalid, "run", fmt.Errorf("no injector for %s (experiment %s)", f.Kind, e.Name))
			}
		}
	}
	planStart := r.opt.Clock.Now()
	j, err := OpenJournal(r.opt.DataDir, r.opt.RunID, plan.Name, r.opt.Clock)
	if err != nil {
		return nil, err
	}
	r.j = j
	r.res = &RunnerResult{RunID: r.opt.RunID, Name: plan.Name, Weight: weight, Started: planStart, Journal: j.Path()}
	res = r.res
	r.phase(PhasePlan, 0, "", "", planStart)
	defer func() {
		if p := recover(); p != nil {
			r.opt.Log.Error("panic during the run; recovering every fault", "panic", p)
			r.recoverAll(ctx)
			r.finish(fmt.Errorf("panic: %v", p))
			panic(p)
		}
	}()
	runErr := r.suite(ctx, plan, weight)
	if err := r.recoverAll(ctx); err != nil && !errors.Is(runErr, ErrNotRecovered) {
		runErr = errors.Join(runErr, err)
	}
	if runErr != nil && errors.Is(runErr, ErrInterrupted) {
		res.Interrupted = true
	}
	if runErr != nil && errors.Is(runErr, ErrAborted) {
		r.mu.Lock()
		res.Aborted = r.abort
		r.mu.Unlock()
	}
	r.finish(runErr)
	return res, runErr
}

func (r *Runner) finish(runErr error) {
	r.res.Ended = r.opt.Clock.Now()
	if runErr != nil {
		r.res.Error = runErr.Error()
	}
	// The journal is closed (and archived) only when nothing is left
	// applied; otherwise the next run's reaper retries the recovery.
	r.j.Close(len(r.active) == 0)
	os.Remove(abortFile(r.opt.DataDir, r.opt.RunID))
	os.Remove(pauseFile(r.opt.DataDir, r.opt.RunID))
}

// suite runs every fault of the experiments that run at weight w, one
// after the other, then recovers whatever is still applied.
func (r *Runner) suite(ctx context.Context, plan Plan, w int) error {
	if err := r.stop(ctx); err != nil {
		return err
	}
	r.event(PhasePlan, w, "", "", fmt.Sprintf("canary step %d%%", w))
	for _, e := range plan.Experiments {
		if !e.RunsAt(w) {
			continue
		}
		for _, f := range e.Faults {
			if err := r.runFault(ctx, plan, e, f, w); err != nil {
				return err
			}
		}
	}
	return r.recoverAll(ctx)
}

// observe runs the probes (those in only, when only is non-nil) over w;
// with keep, it files the observations and errors in the result.
func (r *Runner) observe(ctx context.Context, w Window, keep bool, only map[string]bool) []Observation {
	var out []Observation
	for _, p := range r.opt.Probes {
		if only != nil && !only[p.Name()] {
			continue
		}
		o, err := p.Observe(ctx, w)
		if err != nil {
			if keep {
				r.res.ProbeErrors = append(r.res.ProbeErrors, ProbeError{Probe: p.Name(), Window: w, Error: err.Error()})
			}
			r.opt.Log.Warn("probe could not run", "probe", p.Name(), "phase", w.Phase, "err", err)
			continue
		}
		if o.Probe == "" {
			o.Probe = p.Name()
		}
		o.Window = w
		out = append(out, o)
		if keep {
			r.res.Observations = append(r.res.Observations, o)
		}
	}
	return out
}

// wait sleeps d (abort-aware). With pausable, paused time does not count.
func (r *Runner) wait(ctx context.Context, d time.Duration, pausable bool, each func(now time.Time) error) error {
	var elapsed time.Duration
	last := r.opt.Clock.Now()
	nextEach := last.Add(r.opt.Tick)
	for elapsed < d {
		if err := r.stop(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return r.stop(ctx)
		case <-r.opt.Clock.After(AbortPoll):
		}
		now := r.opt.Clock.Now()
		if !pausable || !r.isPaused() {
			elapsed += now.Sub(last)
		}
		last = now
		if each != nil && !now.Before(nextEach) {
			nextEach = now.Add(r.opt.Tick)
			if err := each(now); err != nil {
				return err
			}
		}
	}
	return r.stop(ctx)
}

func (r *Runner) runFault(ctx context.Context, plan Plan, e Experiment, f Fault, w int) error {
	name := f.Name
	if name == "" {
		name = f.Kind.String()
	}
	// steady state before
	start := r.opt.Clock.Now()
	r.event(PhaseSteadyBefore, w, e.Name, name, "steady state before")
	if err := r.wait(ctx, e.SteadyState, false, nil); err != nil {
		return err
	}
	r.observe(ctx, Window{Phase: PhaseSteadyBefore, Weight: w, Experiment: e.Name, Fault: name, Start: start, End: r.opt.Clock.Now()}, true, nil)
	r.phase(PhaseSteadyBefore, w, e.Name, name, start)
	if err := r.stop(ctx); err != nil {
		return err
	}

	// inject on every arm
	start = r.opt.Clock.Now()
	r.event(PhaseInject, w, e.Name, name, "injecting "+f.Kind.String())
	var effect time.Time
	var firstErr error
	var applied []appliedFault
	f.Seed = fmt.Sprintf("%s/%s/%s/%d", r.opt.RunID, e.Name, name, w)
	for _, arm := range plan.Arms {
		targets, err := r.targets(ctx, arm, f)
		if err != nil {
			firstErr = E(KindOf(err), "select targets", err)
			break
		}
		for _, t := range targets {
			af, err := r.inject(ctx, plan, e, f, t, w)
			if err != nil {
				firstErr = err
				break
			}
			if af.act == nil {
				continue // skipped by the blast-radius budget
			}
			applied = append(applied, af)
			if af.act.applied.At.After(effect) {
				effect = af.act.applied.At
			}
		}
		if firstErr != nil {
			break
		}
	}
	// Every arm has the fault before any confirmation runs, and the
	// confirmations run side by side: a confirmation that measures for
	// seconds (a throughput, a burst, round trips) must not start one
	// arm's fault later than another's, or the arms are judged under
	// faults of different lengths and strengths.
	if firstErr == nil {
		r.confirmAll(ctx, applied, w, e.Name)
	} else {
		for _, af := range applied {
			r.res.Faults[af.act.rec].Measurement = "not confirmed: the run stopped at an injection error on another target"
		}
	}
	r.phase(PhaseInject, w, e.Name, name, start)
	if firstErr != nil {
		return firstErr
	}
	if err := r.stop(ctx); err != nil {
		return err
	}

	// observe: the duration counts from when the fault took effect.
	start = r.opt.Clock.Now()
	if effect.IsZero() {
		effect = start
	}
	r.event(PhaseObserve, w, e.Name, name, fmt.Sprintf("observing for %s", f.Duration))
	remaining := f.Duration - r.opt.Clock.Now().Sub(effect)
	if remaining < 0 {
		remaining = 0
	}
	obsErr := r.wait(ctx, remaining, true, func(now time.Time) error {
		return r.checkAbort(ctx, e, Window{Phase: PhaseObserve, Weight: w, Experiment: e.Name, Fault: name, Start: effect, End: r.opt.Clock.Now()})
	})
	r.phase(PhaseObserve, w, e.Name, name, start)
	if obsErr == nil {
		r.observe(ctx, Window{Phase: PhaseObserve, Weight: w, Experiment: e.Name, Fault: name, Start: effect, End: r.opt.Clock.Now()}, true, nil)
	}

	// recover
	start = r.opt.Clock.Now()
	r.event(PhaseRecover, w, e.Name, name, "recovering")
	recErr := r.recoverAll(ctx)
	r.phase(PhaseRecover, w, e.Name, name, start)
	if obsErr != nil {
		return obsErr
	}
	// A fault that is still applied would be observed as the steady state
	// after it and judged as the canary's behaviour: the run stops here.
	if recErr != nil {
		return recErr
	}

	// steady state after
	start = r.opt.Clock.Now()
	r.event(PhaseSteadyAfter, w, e.Name, name, "steady state after")
	if err := r.wait(ctx, e.SteadyState, false, nil); err != nil {
		return err
	}
	r.observe(ctx, Window{Phase: PhaseSteadyAfter, Weight: w, Experiment: e.Name, Fault: name, Start: start, End: r.opt.Clock.Now()}, true, nil)
	r.phase(PhaseSteadyAfter, w, e.Name, name, start)
	return nil
}

// abortKey names one abort rule of one experiment.
type abortKey struct {
	exp  string
	rule int
}

func (r *Runner) checkAbort(ctx context.Context, e Experiment, w Window) error {
	if len(e.Abort) == 0 {
		return nil
	}
	only := map[string]bool{}
	for _, rule := range e.Abort {
		only[rule.Probe] = true
	}
	obs := r.observe(ctx, w, false, only)
	now := r.opt.Clock.Now()
	for i, rule := range e.Abort {
		key := abortKey{e.Name, i}
		hit, val, arm := ruleHolds(rule, obs)
		if !hit {
			delete(r.since, key)
			continue
		}
		since, ok := r.since[key]
		if !ok {
			since = now
			r.since[key] = now
		}
		if now.Sub(since) >= rule.For {
			reason := fmt.Sprintf("abort condition %s: %s was %g", rule, arm, val)
			r.Abort(reason)
			delete(r.since, key)
			return r.stop(ctx)
		}
	}
	return nil
}

func ruleHolds(rule AbortRule, obs []Observation) (bool, float64, Arm) {
	for _, o := range obs {
		if o.Probe != rule.Probe {
			continue
		}
		for arm, m := range o.Arms {
			if rule.Arm != 0 && arm != rule.Arm {
				continue
			}
			v, ok := m[rule.Metric]
			if !ok {
				continue
			}
			if rule.Below != nil && v < *rule.Below {
				return true, v, arm
			}
			if rule.Above != nil && v > *rule.Above {
				return true, v, arm
			}
		}
	}
	return false, 0, 0
}

// targets resolves a fault's node selection on one arm.
func (r *Runner) targets(ctx context.Context, arm Arm, f Fault) ([]Target, error) {
	nodes := r.opt.Topology.Nodes(arm)
	if len(nodes) == 0 {
		return nil, E(KindUnavailable, "targets", fmt.Errorf("arm %s has no replicas", arm))
	}
	base := Target{Arm: arm, Nodes: nodes}
	switch f.Kind {
	case ZoneOutage:
		zt, ok := r.opt.Topology.(ZoneTopology)
		if !ok {
			return nil, E(KindInvalid, "targets", errors.New("this target has no zones"))
		}
		group, err := zt.ZoneNodes(ctx, arm, f.Zone)
		if err != nil {
			return nil, E(KindUnavailable, "zone "+f.Zone, err)
		}
		if len(group) == 0 {
			return nil, E(KindUnavailable, "zone "+f.Zone, fmt.Errorf("arm %s has no replica in zone %q", arm, f.Zone))
		}
		base.Group = group
		return []Target{base}, nil
	case PodKill, PodPause, CPUStress, MemoryStress:
		switch f.Mode {
		case "fixed":
			var out []Target
			for _, n := range f.Nodes {
				t := base
				t.Node = n
				out = append(out, t)
			}
			return out, nil
		case "leader":
			l, err := r.opt.Topology.Leader(ctx, arm, nil)
			if err != nil {
				return nil, E(KindUnavailable, "find leader", err)
			}
			base.Node = l
			return []Target{base}, nil
		default:
			h := fnv.New32a()
			h.Write([]byte(f.Seed))
			base.Node = nodes[int(h.Sum32()%uint32(len(nodes)))]
			return []Target{base}, nil
		}
	}
	return []Target{base}, nil
}

// inject applies one fault to one target: budget check, intent journaled
// before acting, applied journaled after, then confirmation.
// appliedFault is a fault applied to one target, waiting for its
// confirmation.
type appliedFault struct {
	act *activeFault
	inj Injector
	t   Target
}

// inject applies f to t, journaled; it returns the applied fault (act nil
// when the blast-radius budget skipped it).
func (r *Runner) inject(ctx context.Context, plan Plan, e Experiment, f Fault, t Target, w int) (appliedFault, error) {
	r.seq++
	f.ID = fmt.Sprintf("%s-%03d-%s", shortID(r.opt.RunID), r.seq, t.Arm)
	if t.Node != "" {
		f.ID += "-" + t.Node
	}
	rec := FaultRecord{ID: f.ID, Name: f.Name, Experiment: e.Name, Weight: w, Kind: f.Kind, Arm: t.Arm, Target: targetLabel(t)}
	// Blast radius: what is already impaired on this arm plus this fault.
	impaired := Impact(f, t)
	for _, a := range r.active {
		if a.applied.Target.Arm == t.Arm {
			impaired += Impact(a.applied.Fault, a.applied.Target)
		}
	}
	if ok, why := plan.Budget.Allows(impaired, len(t.Nodes)); !ok {
		rec.Skipped = "blast radius: " + why
		r.res.Faults = append(r.res.Faults, rec)
		r.opt.Log.Warn("fault skipped by the blast-radius budget", "fault", f.ID, "why", why)
		return appliedFault{}, nil
	}
	inj := r.opt.Injectors[f.Kind]
	intent := Applied{ID: f.ID, Kind: f.Kind, Target: t, Fault: f}
	if p, ok := inj.(Preparer); ok {
		a, err := p.Prepare(ctx, t, f)
		if err != nil {
			rec.Error = err.Error()
			r.res.Faults = append(r.res.Faults, rec)
			return appliedFault{}, E(KindOf(err), "prepare "+f.ID, err)
		}
		intent = a
	}
	if err := r.j.Append(Record{Type: RecIntent, ID: f.ID, Applied: &intent}); err != nil {
		rec.Error = err.Error()
		r.res.Faults = append(r.res.Faults, rec)
		return appliedFault{}, err
	}
	// From here the fault may be (partly) applied: it is tracked as active
	// so every exit path recovers it.
	act := &activeFault{applied: intent, rec: len(r.res.Faults)}
	r.res.Faults = append(r.res.Faults, rec)
	r.active = append(r.active, act)
	a, err := inj.Inject(ctx, t, f)
	if err != nil {
		r.res.Faults[act.rec].Error = err.Error()
		return appliedFault{}, E(KindOf(err), "inject "+f.ID, err)
	}
	if a.ID == "" {
		a.ID = f.ID
	}
	if a.At.IsZero() {
		a.At = r.opt.Clock.Now()
	}
	act.applied = a
	if err := r.j.Append(Record{Type: RecApplied, ID: f.ID, Applied: &a}); err != nil {
		return appliedFault{}, err
	}
	fr := &r.res.Faults[act.rec]
	fr.AppliedAt, fr.Detail = a.At, a.Detail
	if len(a.Affected) > 0 {
		fr.Target = strings.Join(a.Affected, ",")
	}
	fr.Confirmed = Inconclusive
	fr.Measurement = "the backend cannot confirm this fault"
	return appliedFault{act: act, inj: inj, t: t}, nil
}

// confirmAll confirms the applied faults side by side, then reports each
// in the order they were applied.
func (r *Runner) confirmAll(ctx context.Context, applied []appliedFault, w int, experiment string) {
	results := make([]*ConfirmResult, len(applied))
	var wg sync.WaitGroup
	for i, af := range applied {
		c, ok := af.inj.(Confirmer)
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cr := c.Confirm(ctx, af.act.applied)
			results[i] = &cr
		}()
	}
	wg.Wait()
	for i, af := range applied {
		fr := &r.res.Faults[af.act.rec]
		if cr := results[i]; cr != nil {
			fr.Confirmed, fr.Measurement = cr.Outcome, cr.Measurement
		}
		a := af.act.applied
		r.emit(EventFault, PhaseInject, w, experiment, a.ID, fmt.Sprintf("%s on %s applied (%s): %s", a.Kind, targetLabel(af.t), fr.Confirmed, fr.Measurement))
	}
}

func targetLabel(t Target) string {
	if t.Node != "" {
		return t.Node
	}
	if len(t.Group) > 0 {
		return strings.Join(t.Group, ",")
	}
	return t.Arm.String()
}

func shortID(run string) string {
	h := fnv.New32a()
	h.Write([]byte(run))
	return fmt.Sprintf("%08x", h.Sum32())
}

// recoverAll undoes every active fault, newest first, with a context that
// survives the run's cancellation (bounded by RecoverTimeout). The faults
// it could not undo stay active, in the order they were applied, so the
// next attempt (and the reaper) again goes newest first; the error names
// them.
func (r *Runner) recoverAll(ctx context.Context) error {
	if len(r.active) == 0 {
		return nil
	}
	timeout := r.opt.RecoverTimeout
	if ctx.Err() != nil && r.opt.ShutdownRecoverTimeout < timeout {
		timeout = r.opt.ShutdownRecoverTimeout
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	var failed []*activeFault
	for i := len(r.active) - 1; i >= 0; i-- {
		a := r.active[i]
		err := r.opt.Injectors[a.applied.Kind].Recover(rctx, a.applied)
		fr := &r.res.Faults[a.rec]
		if err != nil {
			fr.RecoverError = err.Error()
			r.j.Append(Record{Type: RecRecoverFailed, ID: a.applied.ID, Applied: &a.applied, Error: err.Error()})
			r.opt.Log.Error("recover failed; the next run's reaper retries", "fault", a.applied.ID, "err", err)
			failed = append(failed, a)
			continue
		}
		fr.RecoveredAt = r.opt.Clock.Now()
		if !fr.AppliedAt.IsZero() {
			fr.Effective = fr.RecoveredAt.Sub(fr.AppliedAt)
		}
		r.j.Append(Record{Type: RecRecovered, ID: a.applied.ID})
	}
	slices.Reverse(failed)
	r.active = failed
	if len(failed) == 0 {
		return nil
	}
	ids := make([]string, len(failed))
	for i, a := range failed {
		ids[i] = a.applied.ID
	}
	return E(KindUnavailable, "recover", fmt.Errorf("%w: %s; the run stops, and what is still applied when it ends is reaped from its journal by the next start of chaosgate", ErrNotRecovered, strings.Join(ids, ", ")))
}
