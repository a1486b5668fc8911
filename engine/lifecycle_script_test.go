package engine_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/canary"
)

// updateGolden rewrites engine/testdata/lifecycle/*.golden from the
// transcripts of this run: go test ./engine -run TestScriptedLifecycle -update.
var updateGolden = flag.Bool("update", false, "rewrite the golden lifecycle transcripts")

// simClock is simulated time: After advances the clock by d at once, then
// runs every scripted action that has come due, so a run of minutes
// replays in milliseconds and in the same order every time.
type simClock struct {
	mu    sync.Mutex
	start time.Time
	now   time.Time
	due   []scripted
}

type scripted struct {
	at   time.Duration // since the clock's start
	what string
	do   func()
}

func newSimClock() *simClock {
	t := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	return &simClock{start: t, now: t}
}

func (c *simClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *simClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	var run []scripted
	for len(c.due) > 0 && !c.start.Add(c.due[0].at).After(now) {
		run = append(run, c.due[0])
		c.due = c.due[1:]
	}
	c.mu.Unlock()
	for _, s := range run {
		s.do()
	}
	ch := make(chan time.Time, 1)
	ch <- now
	return ch
}

// advance moves the clock without waiting (an injector that takes time).
func (c *simClock) advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// at schedules an action at offset from the start.
func (c *simClock) at(offset time.Duration, what string, do func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.due = append(c.due, scripted{at: offset, what: what, do: do})
	sort.SliceStable(c.due, func(i, j int) bool { return c.due[i].at < c.due[j].at })
}

func (c *simClock) offset(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("+%.1fs", t.Sub(c.start).Seconds())
}

// transcript is the golden output: one line per thing the engine did.
type transcript struct {
	mu    sync.Mutex
	clock *simClock
	lines []string
}

func (tr *transcript) add(format string, args ...any) {
	line := fmt.Sprintf("%-7s ", tr.clock.offset(tr.clock.Now())) + fmt.Sprintf(format, args...)
	tr.mu.Lock()
	tr.lines = append(tr.lines, line)
	tr.mu.Unlock()
}

func (tr *transcript) raw(format string, args ...any) {
	tr.mu.Lock()
	tr.lines = append(tr.lines, fmt.Sprintf(format, args...))
	tr.mu.Unlock()
}

// scriptInjector applies nothing: it writes what it is asked into the
// transcript. The script makes it slow, fail or refuse to recover.
type scriptInjector struct {
	tr    *transcript
	clock *simClock
	// takes is how long an Inject takes before the fault is in effect.
	takes time.Duration
	// failOn fails Inject on every target of this arm.
	failOn engine.Arm
	// recoverFails makes every Recover fail (the cluster is unreachable).
	recoverFails bool
}

func label(t engine.Target) string {
	if t.Node != "" {
		return t.Arm.String() + "/" + t.Node
	}
	return t.Arm.String()
}

func (s *scriptInjector) Prepare(_ context.Context, t engine.Target, f engine.Fault) (engine.Applied, error) {
	return engine.Applied{ID: f.ID, Kind: f.Kind, Target: t, Fault: f, Backend: "script", Undo: []byte(`{"undo":"` + label(t) + `"}`)}, nil
}

func (s *scriptInjector) Inject(_ context.Context, t engine.Target, f engine.Fault) (engine.Applied, error) {
	s.tr.add("inject  %s %s on %s", f.ID, f.Kind, label(t))
	if t.Arm == s.failOn {
		return engine.Applied{}, errors.New("scripted: the target refused the fault")
	}
	s.clock.advance(s.takes)
	return engine.Applied{ID: f.ID, Kind: f.Kind, Target: t, Fault: f, Backend: "script", At: s.clock.Now(),
		Undo: []byte(`{"undo":"` + label(t) + `"}`), Affected: []string{label(t)}}, nil
}

func (s *scriptInjector) Recover(_ context.Context, a engine.Applied) error {
	if s.recoverFails {
		s.tr.add("recover %s %s on %s: fails", a.ID, a.Kind, label(a.Target))
		return errors.New("scripted: the target is unreachable")
	}
	s.tr.add("recover %s %s on %s", a.ID, a.Kind, label(a.Target))
	return nil
}

func (s *scriptInjector) Confirm(_ context.Context, a engine.Applied) engine.ConfirmResult {
	return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: "scripted effect seen on " + label(a.Target)}
}

type scriptTopology struct{}

func (scriptTopology) Nodes(engine.Arm) []string { return []string{"n1", "n2", "n3"} }
func (scriptTopology) Leader(context.Context, engine.Arm, *int) (string, error) {
	return "n2", nil
}

// scriptProbe reports the canary's error rate: errorRate from the script,
// by the window's end time. It panics when told to.
type scriptProbe struct {
	tr        *transcript
	clock     *simClock
	errorRate func(end time.Duration) float64
	// panicInObserve makes the probe crash in the observe phase.
	panicInObserve bool
}

func (p *scriptProbe) Name() string { return "availability" }

func (p *scriptProbe) Observe(_ context.Context, w engine.Window) (engine.Observation, error) {
	if p.panicInObserve && w.Phase == engine.PhaseObserve {
		panic("scripted: the probe crashed")
	}
	rate := 0.0
	if p.errorRate != nil {
		rate = p.errorRate(w.End.Sub(p.clock.start))
	}
	if w.Phase != engine.PhaseObserve || rate > 0 {
		p.tr.add("probe   %s %s..%s canary error_rate %g", w.Phase, p.clock.offset(w.Start), p.clock.offset(w.End), rate)
	}
	return engine.Observation{Arms: map[engine.Arm]engine.Metrics{
		engine.ArmCanary: {"error_rate": rate}, engine.ArmControl: {"error_rate": 0},
	}}, nil
}

// lifecycleScript is one scripted run: its plan (whose Weights are the
// canary steps), its judge's verdicts in order and what happens around it.
type lifecycleScript struct {
	name     string
	plan     engine.Plan
	verdicts []decision.Decision
	injector func(*scriptInjector)
	probe    func(*scriptProbe)
	// during schedules actions (abort, pause, cancel) on the clock.
	during func(s *scriptRun)
	// reapAfter runs the reaper with a working injector once the run ended.
	reapAfter bool
}

type scriptRun struct {
	clock   *simClock
	tr      *transcript
	dataDir string
	runner  *engine.Runner
	cancel  context.CancelFunc
}

func podPause(steady, d time.Duration) engine.Experiment {
	return engine.Experiment{Name: "pause-one", SteadyState: steady,
		Faults: []engine.Fault{{Name: "pause", Kind: engine.PodPause, Duration: d, Mode: "one"}}}
}

var lifecycleScripts = []lifecycleScript{
	{
		// Two steps promote, the third blocks and rolls back to weight 0;
		// a fault whose second node would take a quorum is skipped.
		name: "promote-promote-block",
		plan: engine.Plan{Name: "steps", Weights: []int{10, 50, 100}, Arms: []engine.Arm{engine.ArmCanary, engine.ArmControl},
			Experiments: []engine.Experiment{
				podPause(5*time.Second, 20*time.Second),
				{Name: "kill-two", SteadyState: 2 * time.Second, RunAt: []int{50},
					Faults: []engine.Fault{{Name: "kill", Kind: engine.PodKill, Duration: 5 * time.Second, Mode: "fixed", Nodes: []string{"n1", "n3"}}}},
			}},
		verdicts: []decision.Decision{decision.Promote, decision.Promote, decision.Block},
		injector: func(i *scriptInjector) { i.takes = 2 * time.Second },
	},
	{
		// The kill switch during the observe phase: everything is recovered,
		// the run is recorded as aborted, no step is judged.
		name:     "abort-file-during-observe",
		plan:     engine.Plan{Name: "abort", Weights: []int{25, 100}, Arms: []engine.Arm{engine.ArmCanary, engine.ArmControl}, Experiments: []engine.Experiment{podPause(5*time.Second, 30*time.Second)}},
		verdicts: []decision.Decision{decision.Promote, decision.Promote},
		during: func(s *scriptRun) {
			s.clock.at(20*time.Second, "chaosgate abort", func() {
				if _, err := engine.RequestAbort(s.dataDir, "", "operator pressed the kill switch"); err != nil {
					s.tr.add("abort   failed: %v", err)
					return
				}
				s.tr.add("abort   requested: operator pressed the kill switch")
			})
		},
	},
	{
		// An abort rule: the canary's error rate above 5 % for 3 s stops
		// the run; the first step's verdict (promote) becomes a hold.
		name: "abort-condition",
		plan: engine.Plan{Name: "abort-rule", Weights: []int{25, 100}, Arms: []engine.Arm{engine.ArmCanary, engine.ArmControl},
			Experiments: []engine.Experiment{func() engine.Experiment {
				e := podPause(5*time.Second, 30*time.Second)
				above := 0.05
				e.Abort = []engine.AbortRule{{Probe: "availability", Metric: "error_rate", Arm: engine.ArmCanary, Above: &above, For: 3 * time.Second}}
				return e
			}()}},
		verdicts: []decision.Decision{decision.Promote, decision.Promote},
		probe: func(p *scriptProbe) {
			p.errorRate = func(end time.Duration) float64 {
				if end >= 50*time.Second {
					return 0.2
				}
				return 0
			}
		},
	},
	{
		// Pausing stops only the fault clock: observe lasts the fault's
		// 30 s plus the 15 s paused.
		name:     "pause-extends-the-fault-clock",
		plan:     engine.Plan{Name: "pause", Weights: []int{100}, Arms: []engine.Arm{engine.ArmCanary, engine.ArmControl}, Experiments: []engine.Experiment{podPause(5*time.Second, 30*time.Second)}},
		verdicts: []decision.Decision{decision.Promote},
		during: func(s *scriptRun) {
			s.clock.at(15*time.Second, "pause", func() {
				if err := engine.RequestPause(s.dataDir, s.runner.RunID(), true); err != nil {
					s.tr.add("pause   failed: %v", err)
					return
				}
				s.tr.add("pause   requested")
			})
			s.clock.at(30*time.Second, "resume", func() {
				if err := engine.RequestPause(s.dataDir, s.runner.RunID(), false); err != nil {
					s.tr.add("resume  failed: %v", err)
					return
				}
				s.tr.add("resume  requested")
			})
		},
	},
	{
		// The control's inject fails: the canary's fault, already applied,
		// is recovered and the run ends with the error, unjudged.
		name:     "inject-error-recovers-what-was-applied",
		plan:     engine.Plan{Name: "inject-error", Weights: []int{50}, Arms: []engine.Arm{engine.ArmCanary, engine.ArmControl}, Experiments: []engine.Experiment{podPause(5*time.Second, 30*time.Second)}},
		verdicts: []decision.Decision{decision.Promote},
		injector: func(i *scriptInjector) { i.failOn = engine.ArmControl },
	},
	{
		// A probe panics in the observe phase: the fault is recovered before
		// the panic goes on.
		name:     "probe-panic-recovers-then-repanics",
		plan:     engine.Plan{Name: "panic", Weights: []int{50}, Arms: []engine.Arm{engine.ArmCanary, engine.ArmControl}, Experiments: []engine.Experiment{podPause(5*time.Second, 30*time.Second)}},
		verdicts: []decision.Decision{decision.Promote},
		probe:    func(p *scriptProbe) { p.panicInObserve = true },
	},
	{
		// SIGINT during the observe phase (the context is cancelled):
		// recovered within the shutdown timeout, not recorded.
		name:     "interrupted-during-observe",
		plan:     engine.Plan{Name: "interrupt", Weights: []int{50}, Arms: []engine.Arm{engine.ArmCanary, engine.ArmControl}, Experiments: []engine.Experiment{podPause(5*time.Second, 30*time.Second)}},
		verdicts: []decision.Decision{decision.Promote},
		during: func(s *scriptRun) {
			s.clock.at(12*time.Second, "SIGINT", func() { s.tr.add("signal  SIGINT: the run's context is cancelled"); s.cancel() })
		},
	},
	{
		// Recovery fails (the target is unreachable): the journal stays open
		// with the faults outstanding, and the next start's reaper undoes them
		// from the journal alone, newest first, and archives it.
		name:      "recover-fails-then-the-reaper-recovers",
		plan:      engine.Plan{Name: "reap", Weights: []int{50}, Arms: []engine.Arm{engine.ArmCanary, engine.ArmControl}, Experiments: []engine.Experiment{podPause(5*time.Second, 30*time.Second)}},
		verdicts:  []decision.Decision{decision.Promote},
		injector:  func(i *scriptInjector) { i.recoverFails = true },
		reapAfter: true,
	},
}

// TestScriptedLifecycle replays scripted runs through a Runner on a
// simulated clock and compares what the engine did — events, injections,
// recoveries, probes, verdicts, weights, journal records and the result —
// with a golden transcript per script (engine/testdata/lifecycle). It
// covers the lifecycle in engine/README.md: steps and rollback (L5), the
// fault clock counting from the effect (L3) and pausing (A2), the blast
// radius (L4), abort by file and by rule (A1–A3), an inject error (F2), a
// panic and an interrupt (L1), evidence only when due (L6), and a failed
// recovery left to the reaper (J5, R3, R4).
func TestScriptedLifecycle(t *testing.T) {
	for _, sc := range lifecycleScripts {
		t.Run(sc.name, func(t *testing.T) {
			got := runScript(t, sc)
			path := filepath.Join("testdata", "lifecycle", sc.name+".golden")
			if *updateGolden {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (hint: go test ./engine -run TestScriptedLifecycle -update writes it; read it before committing)", err)
			}
			if got != string(want) {
				t.Errorf("transcript of %s differs from %s (go test ./engine -run TestScriptedLifecycle -update rewrites it)\n%s", sc.name, path, lineDiff(string(want), got))
			}
		})
	}
}

func runScript(t *testing.T, sc lifecycleScript) string {
	clock := newSimClock()
	tr := &transcript{clock: clock}
	inj := &scriptInjector{tr: tr, clock: clock}
	if sc.injector != nil {
		sc.injector(inj)
	}
	probe := &scriptProbe{tr: tr, clock: clock}
	if sc.probe != nil {
		sc.probe(probe)
	}
	dataDir := t.TempDir()
	injectors := map[engine.FaultKind]engine.Injector{engine.PodPause: inj, engine.PodKill: inj}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &scriptRun{clock: clock, tr: tr, dataDir: dataDir, cancel: cancel}
	// The runner applies each step's fault suite; engine/canary's
	// Controller steps through the weights, judges and rolls back, as the
	// game day wires them.
	var results []*engine.RunnerResult
	var runErr error
	newRunner := func(weight int) *engine.Runner {
		runner, err := engine.NewRunner(engine.Options{DataDir: dataDir, Injectors: injectors, Topology: scriptTopology{},
			Probes: []engine.Probe{probe}, Clock: clock, RunID: fmt.Sprintf("R-%s-w%d", sc.name, weight), Tick: time.Second,
			OnEvent: func(e engine.Event) {
				where := e.Phase
				if e.Weight != 0 {
					where += fmt.Sprintf(" %d%%", e.Weight)
				}
				tr.add("event   %-7s [%s] %s", e.Kind, where, e.Msg)
			}})
		if err != nil {
			t.Fatal(err)
		}
		return runner
	}
	// The first step's runner exists before the clock starts, for the
	// scripted actions that name its run.
	s.runner = newRunner(sc.plan.Weights[0])
	if sc.during != nil {
		sc.during(s)
	}
	verdicts := sc.verdicts
	ctrl := &canary.Controller{
		Steps: sc.plan.Weights,
		Observe: func(ctx context.Context, w canary.Window) (decision.Input, error) {
			start := clock.Now()
			if w.Step > 0 {
				s.runner = newRunner(w.Weight)
			}
			res, err := s.runner.Run(ctx, sc.plan, w.Weight)
			if res != nil {
				results = append(results, res)
				tr.add("step    %d%% fault suite over %s..%s: %d observations, %d faults", w.Weight, clock.offset(start), clock.offset(clock.Now()), len(res.Observations), len(res.Faults))
			}
			runErr = err
			return decision.Input{}, err
		},
		Judge: judgeFunc(func(*decision.Config, decision.Input) decision.Verdict {
			d := decision.Hold
			if len(verdicts) > 0 {
				d, verdicts = verdicts[0], verdicts[1:]
			}
			tr.add("judge   → %s", d)
			return decision.Verdict{Decision: d, Reason: "scripted " + d.String()}
		}),
		SetWeight: func(_ context.Context, w int) error { tr.add("weight  canary %d%%", w); return nil },
		Rollback:  func(context.Context) error { tr.add("weight  canary 0%% (rollback)"); return nil },
	}
	var rollout canary.RolloutResult
	var err error
	panicked := false
	func() {
		defer func() {
			if p := recover(); p != nil {
				panicked = true
				tr.add("panic   %v (re-raised by Run after recovery)", p)
			}
		}()
		rollout, err = ctrl.Run(ctx)
	}()
	tr.raw("")
	switch {
	case panicked:
		tr.raw("rollout      none (panicked)")
	case err != nil:
		tr.raw("rollout      error: %v", err)
	default:
		tr.raw("rollout      %s rolled back %v (%s)", rollout.Decision, rollout.RolledBack, rollout.Reason)
	}
	for _, res := range results {
		writeResult(tr, clock, res, nil)
	}
	if runErr != nil {
		tr.raw("runner error %v (kind %s)", runErr, engine.KindOf(runErr))
	}
	writeJournals(t, tr, dataDir)
	if sc.reapAfter {
		inj.recoverFails = false
		tr.raw("")
		tr.add("reap    the next start's reaper, with a working injector")
		reaped, err := engine.Reap(context.Background(), dataDir, injectors, nil)
		for _, r := range reaped {
			tr.raw("reaped  %s %s %s on %s: %s", r.What, r.ID, r.Kind, r.Target, r.Result)
		}
		if err != nil {
			tr.raw("reap error: %v", err)
		}
		writeJournals(t, tr, dataDir)
	}
	return strings.Join(tr.lines, "\n") + "\n"
}

func writeResult(tr *transcript, clock *simClock, res *engine.RunnerResult, err error) {
	if err != nil {
		tr.raw("error        %v (kind %s)", err, engine.KindOf(err))
	}
	if res == nil {
		tr.raw("result       none")
		return
	}
	tr.raw("step         %d%%: %d observations, %d probe errors", res.Weight, len(res.Observations), len(res.ProbeErrors))
	tr.raw("interrupted  %v", res.Interrupted)
	tr.raw("aborted      %q", res.Aborted)
	tr.raw("ran          %s..%s", clock.offset(res.Started), clock.offset(res.Ended))
	for _, f := range res.Faults {
		confirmed := "none"
		if f.Confirmed != 0 {
			confirmed = f.Confirmed.String()
		}
		state := fmt.Sprintf("applied %s recovered %s effective %s confirmed %s", clock.offset(f.AppliedAt), clock.offset(f.RecoveredAt), f.Effective, confirmed)
		switch {
		case f.Skipped != "":
			state = "skipped: " + f.Skipped
		case f.Error != "":
			state += " error: " + f.Error
		}
		if f.RecoverError != "" {
			state += " recover error: " + f.RecoverError
		}
		tr.raw("fault        %s %s %d%% %s on %s: %s", f.ID, f.Kind, f.Weight, f.Arm, f.Target, state)
	}
	for _, p := range res.Phases {
		tr.raw("phase        %-14s %3d%% %s..%s %s", p.Phase, p.Weight, clock.offset(p.Start), clock.offset(p.End), p.Fault)
	}
}

// writeJournals lists every journal of the data directory — still open
// (left for the reaper) or archived — with its records' types and ids.
func writeJournals(t *testing.T, tr *transcript, dataDir string) {
	for _, dir := range []string{"journal", filepath.Join("journal", "done")} {
		files, _ := filepath.Glob(filepath.Join(dataDir, dir, "*.journal"))
		for _, f := range files {
			recs, err := engine.ReadJournal(f)
			if err != nil {
				t.Fatalf("journal %s: %v", f, err)
			}
			var kinds []string
			for _, r := range recs {
				k := r.Type
				if r.ID != "" {
					k += " " + r.ID
				}
				kinds = append(kinds, k)
			}
			tr.raw("journal      %s/%s: %s", filepath.ToSlash(dir), filepath.Base(f), strings.Join(kinds, ", "))
		}
	}
}

// judgeFunc adapts a function to canary.Judge.
type judgeFunc func(*decision.Config, decision.Input) decision.Verdict

func (f judgeFunc) Judge(cfg *decision.Config, in decision.Input) decision.Verdict { return f(cfg, in) }

// lineDiff shows the first lines where want and got part.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 12; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d\n  want: %s\n  got:  %s\n", i+1, wl, gl)
			shown++
		}
	}
	return b.String()
}
