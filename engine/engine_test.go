package engine_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/internal/leakcheck"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/inject/local"
	"github.com/chaosgate/chaosgate/engine/proxy"
	"github.com/chaosgate/chaosgate/scenarios"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv("CHAOSGATE_ENGINE_CHILD"); mode != "" {
		os.Exit(childRun(mode))
	}
	goleak.VerifyTestMain(m, leakcheck.StuckToxiproxyLink())
}

var nodes = []string{"n1", "n2", "n3"}

// rig is a real local system: per arm, one `sleep` process per node (the
// process faults act on) and one HTTP server per node behind a proxy for
// every client→node and node→node edge.
type rig struct {
	mu    sync.Mutex
	pids  map[string]*exec.Cmd // "arm/node"
	set   *proxy.Set
	close []func()
}

func newRig(t testing.TB) *rig {
	r := &rig{pids: map[string]*exec.Cmd{}, set: proxy.NewSet()}
	for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		for _, n := range nodes {
			c := exec.Command("sleep", "300")
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			r.pids[arm.String()+"/"+n] = c
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })}
			go srv.Serve(ln)
			r.close = append(r.close, func() { srv.Close() })
			r.set.Add(proxy.EdgeName(arm.String(), "client", n), ln.Addr().String())
			for _, from := range nodes {
				if from != n {
					r.set.Add(proxy.EdgeName(arm.String(), from, n), ln.Addr().String())
				}
			}
		}
	}
	t.Cleanup(func() {
		r.set.Close()
		for _, f := range r.close {
			f()
		}
		for _, c := range r.pids {
			c.Process.Signal(syscall.SIGCONT)
			c.Process.Kill()
			c.Wait()
		}
	})
	return r
}

func (r *rig) Nodes(engine.Arm) []string { return nodes }
func (r *rig) Leader(context.Context, engine.Arm, *int) (string, error) {
	return "n3", nil
}
func (r *rig) Pid(arm engine.Arm, node string) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.pids[arm.String()+"/"+node]
	if !ok {
		return 0, fmt.Errorf("no node %s", node)
	}
	return c.Process.Pid, nil
}
func (r *rig) WaitReady(context.Context, engine.Arm, string) error { return nil }

func (r *rig) injectors() map[engine.FaultKind]engine.Injector {
	in := local.New(local.Config{Nodes: r, Proxies: r.set, Leaders: func(context.Context, engine.Arm) (map[int]string, error) {
		return map[int]string{0: "n3", 1: "n3"}, nil
	}})
	return map[engine.FaultKind]engine.Injector{engine.PodPause: in, engine.PodKill: in, engine.NetworkDelay: in, engine.Partition: in, engine.SplitBrain: in}
}

func (r *rig) state(t testing.TB, arm engine.Arm, node string) byte {
	pid, _ := r.Pid(arm, node)
	s, _, err := engine.ProcStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// assertClean checks that nothing is left applied: no toxic, no paused node.
func (r *rig) assertClean(t testing.TB) {
	t.Helper()
	if tx := r.set.Toxics(); len(tx) != 0 {
		t.Errorf("toxics left: %+v", tx)
	}
	for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		for _, n := range nodes {
			if s := r.state(t, arm, n); s == 'T' {
				t.Errorf("%s/%s left paused", arm, n)
			}
		}
	}
}

// httpProbe measures availability through the client proxies.
type httpProbe struct {
	r     *rig
	panic bool
	fixed *float64
}

func (p *httpProbe) Name() string { return "availability" }
func (p *httpProbe) Observe(ctx context.Context, w engine.Window) (engine.Observation, error) {
	if p.panic && w.Phase == engine.PhaseObserve {
		panic("probe exploded")
	}
	o := engine.Observation{Arms: map[engine.Arm]engine.Metrics{}}
	for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		ok := 0
		for _, n := range nodes {
			addr, _ := p.r.set.Addr(proxy.EdgeName(arm.String(), "client", n))
			if s := proxy.Measure(ctx, proxy.HTTPRoundTrip("/"), addr, 1, 300*time.Millisecond); s.Failed == 0 {
				ok++
			}
		}
		v := float64(ok) / float64(len(nodes))
		if p.fixed != nil {
			v = *p.fixed
		}
		o.Arms[arm] = engine.Metrics{"success_ratio": v}
	}
	return o, nil
}

func plan(faults ...engine.Fault) engine.Plan {
	return engine.Plan{Name: "test", Weights: []int{50, 100}, Arms: []engine.Arm{engine.ArmCanary, engine.ArmControl},
		Experiments: []engine.Experiment{{Name: "exp", SteadyState: 100 * time.Millisecond, Faults: faults}}}
}

func TestRunLifecycleAppliesConfirmsAndRecovers(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	run, err := engine.NewRunner(engine.Options{DataDir: dir, Injectors: r.injectors(), Topology: r,
		Probes: []engine.Probe{&httpProbe{r: r}}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := run.Run(context.Background(), plan(
		engine.Fault{Name: "pause", Kind: engine.PodPause, Mode: "fixed", Nodes: []string{"n1"}, Duration: 300 * time.Millisecond},
		engine.Fault{Name: "cut", Kind: engine.Partition, Shape: "isolate-one", Duration: 300 * time.Millisecond},
	), 50)
	if err != nil {
		t.Fatal(err)
	}
	r.assertClean(t)
	if b, err := json.Marshal(res); err != nil || !strings.Contains(string(b), `"confirmed":"confirmed"`) || !strings.Contains(string(b), `"canary":{"success_ratio":1}`) {
		t.Fatalf("result JSON: %v\n%.600s", err, b)
	}
	// Steady state before and after each fault and its observe phase.
	if res.Weight != 50 || len(res.Observations) != 6 || len(res.ProbeErrors) != 0 {
		t.Fatalf("weight %d, %d observations, probe errors %v", res.Weight, len(res.Observations), res.ProbeErrors)
	}
	if len(res.Faults) != 4 { // 2 faults × 2 arms
		t.Fatalf("%d fault records, want 4", len(res.Faults))
	}
	for _, f := range res.Faults {
		if f.AppliedAt.IsZero() || f.RecoveredAt.IsZero() || f.Confirmed == 0 || f.Error != "" {
			t.Errorf("fault %+v not applied, recovered and confirmed", f)
		}
		if f.Kind == engine.PodPause && f.Confirmed != engine.Confirmed {
			t.Errorf("pause not confirmed: %+v", f)
		}
		if f.Effective < 300*time.Millisecond {
			t.Errorf("fault %s was in effect %s, less than its duration", f.ID, f.Effective)
		}
	}
	// Both arms receive the same fault: the same node is isolated on each.
	cuts := map[int]map[string]bool{}
	for _, f := range res.Faults {
		if f.Kind == engine.Partition {
			if cuts[f.Weight] == nil {
				cuts[f.Weight] = map[string]bool{}
			}
			cuts[f.Weight][f.Detail] = true
		}
	}
	for w, d := range cuts {
		if len(d) != 1 {
			t.Errorf("step %d: the arms were cut differently: %v", w, d)
		}
	}
	var phases []string
	for _, p := range res.Phases[:7] {
		phases = append(phases, p.Phase.String())
	}
	if got := strings.Join(phases, ","); got != "plan,steady-before,inject,observe,recover,steady-after,steady-before" {
		t.Fatalf("phases = %s", got)
	}
	// The journal is closed and archived; nothing to reap.
	if _, err := os.Stat(filepath.Join(dir, "journal", "done", res.RunID+".journal")); err != nil {
		t.Fatalf("journal not archived: %v", err)
	}
	reaped, err := engine.Reap(context.Background(), dir, r.injectors(), nil)
	if err != nil || len(reaped) != 0 {
		t.Fatalf("reap after a clean run: %v %v", reaped, err)
	}
	recs, err := engine.ReadJournal(filepath.Join(dir, "journal", "done", res.RunID+".journal"))
	if err != nil {
		t.Fatal(err)
	}
	// Every intent comes before its applied record, every fault recovered.
	seen := map[string]string{}
	for _, rec := range recs {
		switch rec.Type {
		case engine.RecIntent:
			seen[rec.ID] = "intent"
		case engine.RecApplied:
			if seen[rec.ID] != "intent" {
				t.Fatalf("applied record for %s without a prior intent", rec.ID)
			}
			seen[rec.ID] = "applied"
		case engine.RecRecovered:
			seen[rec.ID] = "recovered"
		}
	}
	for id, s := range seen {
		if s != "recovered" {
			t.Errorf("fault %s ended as %s", id, s)
		}
	}
}

func TestInterruptDuringInjectRecoversEverything(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	var cancelledAt time.Time
	run, _ := engine.NewRunner(engine.Options{DataDir: t.TempDir(), Injectors: r.injectors(), Topology: r,
		OnEvent: func(e engine.Event) {
			if e.Phase == engine.PhaseObserve.String() {
				once.Do(func() {
					go func() {
						// As SIGINT does through signal.NotifyContext in cmd.
						time.Sleep(150 * time.Millisecond)
						cancelledAt = time.Now()
						cancel()
					}()
				})
			}
		}})
	res, err := run.Run(ctx, plan(
		engine.Fault{Name: "pause", Kind: engine.PodPause, Mode: "fixed", Nodes: []string{"n2"}, Duration: time.Minute},
		engine.Fault{Name: "delay", Kind: engine.NetworkDelay, Latency: 50 * time.Millisecond, Edges: engine.Edges{Into: "n1"}, Duration: time.Minute},
	), 50)
	took := time.Since(cancelledAt)
	if !errors.Is(err, engine.ErrInterrupted) || engine.KindOf(err) != engine.KindCanceled {
		t.Fatalf("err = %v (kind %v), want interrupted", err, engine.KindOf(err))
	}
	if !res.Interrupted {
		t.Fatal("result does not say interrupted")
	}
	if took > 2*time.Second {
		t.Fatalf("recovery took %s after the interrupt", took)
	}
	r.assertClean(t)
	for _, f := range res.Faults {
		if f.RecoveredAt.IsZero() {
			t.Errorf("fault %s not recovered", f.ID)
		}
	}
}

func TestPanicDuringObserveRecoversThenRepanics(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	run, _ := engine.NewRunner(engine.Options{DataDir: dir, Injectors: r.injectors(), Topology: r, Tick: 100 * time.Millisecond,
		Probes: []engine.Probe{&httpProbe{r: r, panic: true}}})
	p := plan(engine.Fault{Name: "pause", Kind: engine.PodPause, Mode: "fixed", Nodes: []string{"n3"}, Duration: time.Minute})
	p.Experiments[0].Abort = []engine.AbortRule{{Probe: "availability", Metric: "success_ratio", Below: ptr(0.5)}}
	func() {
		defer func() {
			if v := recover(); v != "probe exploded" {
				t.Fatalf("recovered %v, want the probe's panic re-raised", v)
			}
		}()
		run.Run(context.Background(), p, 50)
	}()
	r.assertClean(t)
	// The journal shows every fault recovered: nothing for a reaper.
	reaped, err := engine.Reap(context.Background(), dir, r.injectors(), nil)
	if err != nil || len(reaped) != 0 {
		t.Fatalf("reaped %v %v after a recovered panic", reaped, err)
	}
}

func ptr(v float64) *float64 { return &v }

func TestAbortFileStopsTheRun(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	run, _ := engine.NewRunner(engine.Options{DataDir: dir, Injectors: r.injectors(), Topology: r,
		OnEvent: func(e engine.Event) {
			if e.Phase == engine.PhaseObserve.String() {
				go func() {
					runs, err := engine.RequestAbort(dir, "", "operator pressed the kill switch")
					if err != nil || len(runs) != 1 {
						t.Errorf("RequestAbort = %v, %v", runs, err)
					}
				}()
			}
		}})
	res, err := run.Run(context.Background(), plan(engine.Fault{Name: "cut", Kind: engine.Partition, Shape: "halves", Duration: time.Minute}), 50)
	if !errors.Is(err, engine.ErrAborted) || engine.KindOf(err) != engine.KindCanceled {
		t.Fatalf("err = %v (kind %v), want aborted", err, engine.KindOf(err))
	}
	if res.Aborted != "operator pressed the kill switch" {
		t.Fatalf("aborted %q", res.Aborted)
	}
	r.assertClean(t)
	if runs, _ := engine.ActiveRuns(dir); len(runs) != 0 {
		t.Fatalf("active runs after the end: %v", runs)
	}
}

func TestAbortConditionStopsTheRun(t *testing.T) {
	r := newRig(t)
	low := 0.2
	run, _ := engine.NewRunner(engine.Options{DataDir: t.TempDir(), Injectors: r.injectors(), Topology: r, Tick: 100 * time.Millisecond,
		Probes: []engine.Probe{&httpProbe{r: r, fixed: &low}}})
	p := plan(engine.Fault{Name: "delay", Kind: engine.NetworkDelay, Latency: 20 * time.Millisecond, Edges: engine.Edges{Between: []string{"n1", "n2"}}, Duration: time.Minute})
	p.Experiments[0].Abort = []engine.AbortRule{{Probe: "availability", Metric: "success_ratio", Arm: engine.ArmControl, Below: ptr(0.5), For: 200 * time.Millisecond}}
	start := time.Now()
	res, err := run.Run(context.Background(), p, 50)
	if !errors.Is(err, engine.ErrAborted) {
		t.Fatalf("err = %v, want aborted", err)
	}
	if !strings.Contains(res.Aborted, "success_ratio below 0.5") || time.Since(start) > 10*time.Second {
		t.Fatalf("aborted = %q after %s", res.Aborted, time.Since(start))
	}
	r.assertClean(t)
}

func TestBlastRadiusSkipsAQuorum(t *testing.T) {
	r := newRig(t)
	run, _ := engine.NewRunner(engine.Options{DataDir: t.TempDir(), Injectors: r.injectors(), Topology: r})
	p := plan(engine.Fault{Name: "pause-two", Kind: engine.PodPause, Mode: "fixed", Nodes: []string{"n1", "n2"}, Duration: 200 * time.Millisecond})
	res, err := run.Run(context.Background(), p, 100)
	if err != nil {
		t.Fatal(err)
	}
	skipped := 0
	for _, f := range res.Faults {
		if f.Skipped != "" {
			skipped++
		}
	}
	if skipped != 2 { // the second node of each arm would make a quorum
		t.Fatalf("%d faults skipped, want 2: %+v", skipped, res.Faults)
	}
	p.Budget = scenarios.BlastRadius{AllowQuorum: true}
	run2, _ := engine.NewRunner(engine.Options{DataDir: t.TempDir(), Injectors: r.injectors(), Topology: r})
	res, _ = run2.Run(context.Background(), p, 100)
	for _, f := range res.Faults {
		if f.Skipped != "" {
			t.Fatalf("allowQuorum still skipped %+v", f)
		}
	}
	r.assertClean(t)
}

// libraryPlan is the plan of a library scenario.
func libraryPlan(t *testing.T, name string) engine.Plan {
	t.Helper()
	doc, err := scenarios.Library(name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := engine.PlanFromDocument(doc)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlanFromLibrary(t *testing.T) {
	p := libraryPlan(t, "default-gameday")
	if len(p.Experiments) != 10 || len(p.Weights) != 5 || len(p.Arms) != 2 || len(p.Experiments[0].Abort) != 1 {
		t.Fatalf("plan: %d experiments, weights %v, arms %v, abort %v", len(p.Experiments), p.Weights, p.Arms, p.Experiments[0].Abort)
	}
	if f := p.Experiments[1].Faults[0]; f.Kind != engine.NetworkDelay || f.Latency != 80*time.Millisecond || f.Duration != 2*time.Second {
		t.Fatalf("network-delay fault = %+v", f)
	}
	// The full game day skews a clock 4 s behind on nodes that tolerate
	// 5 s and bursts at 1000 msg/s; the quick one skews 400 ms and bursts
	// at 2000 msg/s.
	if f := p.Experiments[8].Faults[0]; f.Kind != engine.ClockSkew || f.Offset != -4*time.Second || !f.Handover || !slices.Equal(p.Experiments[8].RunAt, []int{50}) {
		t.Fatalf("default game day's clock skew: %+v at %v", f, p.Experiments[8].RunAt)
	}
	if f := p.Experiments[9].Faults[0]; f.Kind != engine.Overload || f.Rate != 1000 || !slices.Equal(p.Experiments[9].RunAt, []int{50}) {
		t.Fatalf("default game day's overload burst: %+v at %v", f, p.Experiments[9].RunAt)
	}
	q, op := libraryPlan(t, "default-gameday-quick"), libraryPlan(t, "overload")
	skew, burst := q.Experiments[4].Faults[0], op.Experiments[0].Faults[0]
	if len(q.Experiments) != 6 || q.Experiments[5].Faults[0].Kind != engine.Overload || !slices.Equal(q.Experiments[5].RunAt, []int{50}) {
		t.Fatalf("quick game day: %d experiments, the last %+v", len(q.Experiments), q.Experiments[len(q.Experiments)-1])
	}
	if skew.Kind != engine.ClockSkew || skew.Offset != -400*time.Millisecond || !skew.Handover || skew.Mode != "one" || engine.Impact(skew, engine.Target{Nodes: []string{"n1", "n2", "n3"}}) != 1 {
		t.Fatalf("clock-skew fault = %+v", skew)
	}
	if burst.Kind != engine.Overload || burst.Rate != 2000 || burst.Batch != 2 || burst.Payload != 512 || engine.Impact(burst, engine.Target{Nodes: []string{"n1", "n2", "n3"}}) != 0 {
		t.Fatalf("overload fault = %+v", burst)
	}
}

// childRun is the child process of the crash and signal tests: it pauses a
// process the parent started (pid in CHAOSGATE_PAUSE_PID) and black-holes
// the edges of a partition, says READY, and then either waits to be
// SIGKILLed (mode "crash") or runs under signal.NotifyContext like the CLI
// and reports how the run ended when SIGINT/SIGTERM arrives (mode "signal").
func childRun(mode string) int {
	var pids []int
	for _, f := range strings.Split(os.Getenv("CHAOSGATE_PAUSE_PIDS"), ",") {
		p, _ := strconv.Atoi(f)
		pids = append(pids, p)
	}
	dir := os.Getenv("CHAOSGATE_DATA")
	set := proxy.NewSet()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	for _, n := range nodes {
		for _, from := range nodes {
			if from != n {
				set.Add(proxy.EdgeName("canary", from, n), ln.Addr().String())
			}
		}
	}
	top := childTopology{pids: map[engine.Arm]int{engine.ArmCanary: pids[0], engine.ArmControl: pids[len(pids)-1]}}
	in := local.New(local.Config{Nodes: top, Proxies: set})
	run, err := engine.NewRunner(engine.Options{DataDir: dir, Topology: top, Injectors: map[engine.FaultKind]engine.Injector{engine.PodPause: in, engine.Partition: in},
		OnEvent: func(e engine.Event) {
			if e.Phase == engine.PhaseObserve.String() {
				fmt.Println("READY") // both arms' faults are applied
			}
		}})
	if err != nil {
		fmt.Println("ERR", err)
		return 2
	}
	p := engine.Plan{Name: mode, Arms: []engine.Arm{engine.ArmCanary, engine.ArmControl},
		Experiments: []engine.Experiment{{Name: mode, Faults: []engine.Fault{
			{Name: "pause", Kind: engine.PodPause, Mode: "fixed", Nodes: []string{"n1"}, Duration: time.Hour}}}}}
	ctx := context.Background()
	if mode == "signal" {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	res, err := run.Run(ctx, p, 100)
	if res != nil {
		recovered := 0
		for _, f := range res.Faults {
			if !f.RecoveredAt.IsZero() {
				recovered++
			}
		}
		fmt.Printf("DONE interrupted=%v recovered=%d/%d toxics=%d\n", res.Interrupted, recovered, len(res.Faults), len(set.Toxics()))
	}
	if engine.KindOf(err) == engine.KindCanceled {
		return 2
	}
	return 0
}

type childTopology struct{ pids map[engine.Arm]int }

func (h childTopology) Nodes(engine.Arm) []string                                { return nodes }
func (h childTopology) Leader(context.Context, engine.Arm, *int) (string, error) { return "n1", nil }
func (h childTopology) Pid(arm engine.Arm, _ string) (int, error)                { return h.pids[arm], nil }
func (h childTopology) WaitReady(context.Context, engine.Arm, string) error      { return nil }

// startChild starts the test binary as a child in the given mode, pausing
// victim, and waits until its fault is applied. done receives the child's
// final DONE line (or "" when it printed none).
func startChild(t *testing.T, mode, dir string, victims ...*exec.Cmd) (child *exec.Cmd, done chan string) {
	t.Helper()
	child = exec.Command(os.Args[0], "-test.run=^$")
	var pids []string
	for _, v := range victims {
		pids = append(pids, strconv.Itoa(v.Process.Pid))
	}
	child.Env = append(os.Environ(), "CHAOSGATE_ENGINE_CHILD="+mode, "CHAOSGATE_DATA="+dir, "CHAOSGATE_PAUSE_PIDS="+strings.Join(pids, ","))
	out, _ := child.StdoutPipe()
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	ready := make(chan string, 1)
	done = make(chan string, 1)
	go func() {
		for lines.Scan() {
			if lines.Text() == "READY" || strings.HasPrefix(lines.Text(), "ERR") {
				ready <- lines.Text()
				break
			}
		}
		last := ""
		for lines.Scan() {
			if strings.HasPrefix(lines.Text(), "DONE") {
				last = lines.Text()
			}
		}
		done <- last
	}()
	select {
	case l := <-ready:
		if l != "READY" {
			t.Fatal(l)
		}
	case <-time.After(20 * time.Second):
		child.Process.Kill()
		child.Wait()
		t.Fatal("child never applied its fault")
	}
	return child, done
}

func startVictim(t *testing.T) *exec.Cmd {
	victim := exec.Command("sleep", "300")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { victim.Process.Signal(syscall.SIGCONT); victim.Process.Kill(); victim.Wait() })
	return victim
}

func TestSignalDuringInjectRecoversAndReportsInterrupted(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			victim, other := startVictim(t), startVictim(t)
			dir := t.TempDir()
			child, done := startChild(t, "signal", dir, victim, other)
			if s, _, _ := engine.ProcStat(victim.Process.Pid); s != 'T' {
				t.Fatalf("victim state %c, want T while the fault is applied", s)
			}
			sent := time.Now()
			child.Process.Signal(sig)
			err := child.Wait()
			took := time.Since(sent)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("child exit: %v, want code 2", err)
			}
			if took > 2*time.Second {
				t.Fatalf("recovery and exit took %s after %s", took, sig)
			}
			if line := <-done; line != "DONE interrupted=true recovered=2/2 toxics=0" {
				t.Fatalf("child reported %q", line)
			}
			if s, _, _ := engine.ProcStat(victim.Process.Pid); s == 'T' {
				t.Fatal("victim left paused")
			}
			// The run closed its journal: nothing for a reaper.
			if r, err := engine.Reap(context.Background(), dir, nil, nil); err != nil || len(r) != 0 {
				t.Fatalf("reaped %v %v", r, err)
			}
		})
	}
}

func TestCrashedRunIsReaped(t *testing.T) {
	v1, v2 := startVictim(t), startVictim(t)
	dir := t.TempDir()
	child, done := startChild(t, "crash", dir, v1, v2)
	// While the child lives, its run is active and the reaper leaves it alone.
	if runs, _ := engine.ActiveRuns(dir); len(runs) != 1 || runs[0].Owner.Pid != child.Process.Pid {
		t.Fatalf("active runs = %+v", runs)
	}
	if r, _ := engine.Reap(context.Background(), dir, nil, nil); len(r) != 0 {
		t.Fatalf("reaped a live run: %v", r)
	}
	child.Process.Kill() // SIGKILL: no deferred recovery runs
	child.Wait()
	if line := <-done; line != "" {
		t.Fatalf("a SIGKILLed child reported %q", line)
	}
	for _, v := range []*exec.Cmd{v1, v2} {
		if s, _, _ := engine.ProcStat(v.Process.Pid); s != 'T' {
			t.Fatalf("victim %d state %c after the crash, want T (left paused)", v.Process.Pid, s)
		}
	}
	in := local.New(local.Config{})
	reaped, err := engine.Reap(context.Background(), dir, map[engine.FaultKind]engine.Injector{engine.PodPause: in, engine.Partition: in}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(reaped) != 2 {
		t.Fatalf("reaped = %v", reaped)
	}
	for _, r := range reaped {
		if r.Result != "recovered" || r.Kind != "podPause" {
			t.Fatalf("reaped = %v", reaped)
		}
		t.Log(r)
	}
	for _, v := range []*exec.Cmd{v1, v2} {
		if s, _, _ := engine.ProcStat(v.Process.Pid); s == 'T' {
			t.Fatalf("the reaper did not resume the paused process %d", v.Process.Pid)
		}
	}
	// Reaping is done once: the journal is archived.
	if again, _ := engine.Reap(context.Background(), dir, nil, nil); len(again) != 0 {
		t.Fatalf("reaped twice: %v", again)
	}
}

func TestReaperKillsOrphanedProcesses(t *testing.T) {
	dir := t.TempDir()
	orphan := exec.Command("sleep", "300")
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { orphan.Wait(); close(done) }()
	j, err := engine.OpenJournal(dir, "crashed", "orphans", nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := engine.ProcOf(orphan.Process.Pid)
	j.Spawned(p, "canary/n1")
	exited, _ := engine.ProcOf(os.Getpid())
	j.Spawned(exited, "an exited child")
	j.Exited(exited)
	j.Close(false) // the lock goes as it would with the process
	reaped, err := engine.Reap(context.Background(), dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(reaped) != 1 || reaped[0].Result != "killed" {
		t.Fatalf("reaped = %v", reaped)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("orphan still running")
	}
}

func TestJournalTornLastLineIsIgnored(t *testing.T) {
	dir := t.TempDir()
	j, err := engine.OpenJournal(dir, "torn", "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := engine.Applied{ID: "f1", Kind: engine.PodPause, Target: engine.Target{Arm: engine.ArmCanary}, Fault: engine.Fault{ID: "f1", Kind: engine.PodPause}}
	j.Append(engine.Record{Type: engine.RecIntent, ID: "f1", Applied: &a})
	j.Close(false)
	f, _ := os.OpenFile(j.Path(), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"v":1,"type":"appl`)
	f.Close()
	recs, err := engine.ReadJournal(j.Path())
	if err != nil || len(recs) != 2 {
		t.Fatalf("records %d, err %v", len(recs), err)
	}
	if o := engine.Summarize(recs); len(o.Faults) != 1 || o.Faults[0].ID != "f1" {
		t.Fatalf("outstanding = %+v", o)
	}
	// A malformed line in the middle is an error with its line number.
	os.WriteFile(j.Path(), []byte("{\"v\":1,\"type\":\"open\"}\nnot json\n{\"v\":1,\"type\":\"close\"}\n"), 0o644)
	if _, err := engine.ReadJournal(j.Path()); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Fatalf("malformed journal: %v", err)
	}
}

func FuzzReadJournal(f *testing.F) {
	f.Add([]byte("{\"v\":1,\"type\":\"open\",\"run\":\"r\",\"owner\":{\"pid\":1,\"start_time\":2}}\n{\"v\":1,\"type\":\"intent\",\"id\":\"a\",\"applied\":{\"id\":\"a\",\"kind\":\"podPause\",\"target\":{\"arm\":\"canary\",\"nodes\":[\"n1\"]},\"fault\":{\"id\":\"a\",\"kind\":\"podPause\",\"duration\":1},\"backend\":\"local\",\"undo\":{\"proc\":{\"pid\":5}}}}\n"))
	f.Add([]byte("{\"v\":1,\"type\":\"recovered\",\"id\":\"a\"}\n{\"v\":1,\"ty"))
	f.Add([]byte("\n\n{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "j.journal")
		os.WriteFile(p, data, 0o644)
		recs, err := engine.ReadJournal(p)
		if err != nil && engine.KindOf(err) != engine.KindInvalid {
			t.Fatalf("error of kind %v: %v", engine.KindOf(err), err)
		}
		o := engine.Summarize(recs)
		for _, a := range o.Faults {
			if a.ID == "" && len(recs) == 0 {
				t.Fatal("fault from no records")
			}
		}
	})
}

func TestPauseStopsTheFaultClock(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	var run *engine.Runner
	const pause = 800 * time.Millisecond
	run, _ = engine.NewRunner(engine.Options{DataDir: dir, Injectors: r.injectors(), Topology: r,
		OnEvent: func(e engine.Event) {
			if e.Phase == engine.PhaseObserve.String() {
				go func() {
					if err := engine.RequestPause(dir, run.RunID(), true); err != nil {
						t.Error(err)
					}
					time.Sleep(pause)
					if err := engine.RequestPause(dir, run.RunID(), false); err != nil {
						t.Error(err)
					}
				}()
			}
		}})
	p := plan(engine.Fault{Name: "pause", Kind: engine.PodPause, Mode: "fixed", Nodes: []string{"n2"}, Duration: 400 * time.Millisecond})
	res, err := run.Run(context.Background(), p, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Faults {
		if f.Effective < 400*time.Millisecond+pause-200*time.Millisecond {
			t.Errorf("fault %s was in effect %s: the pause did not stop the clock", f.ID, f.Effective)
		}
	}
	r.assertClean(t)
}

// brokenTopology gives the control arm a node that has no proxies, so the
// partition's injection fails on the control after it succeeded on the
// canary: the error path must recover the canary's cut.
type brokenTopology struct{ *rig }

func (b brokenTopology) Nodes(arm engine.Arm) []string {
	if arm == engine.ArmControl {
		return []string{"n1", "n2", "x9"}
	}
	return nodes
}

func TestInjectErrorRecoversWhatWasApplied(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	run, _ := engine.NewRunner(engine.Options{DataDir: dir, Injectors: r.injectors(), Topology: brokenTopology{r}})
	res, err := run.Run(context.Background(), plan(engine.Fault{Name: "cut", Kind: engine.Partition, Shape: "halves", Duration: time.Minute}), 50)
	if err == nil || engine.KindOf(err) != engine.KindNotFound {
		t.Fatalf("err = %v (kind %v), want the control's missing proxy", err, engine.KindOf(err))
	}
	if len(res.Faults) != 2 || res.Faults[0].AppliedAt.IsZero() || res.Faults[0].RecoveredAt.IsZero() || res.Faults[1].Error == "" {
		t.Fatalf("faults = %+v", res.Faults)
	}
	r.assertClean(t)
	if reaped, err := engine.Reap(context.Background(), dir, r.injectors(), nil); err != nil || len(reaped) != 0 {
		t.Fatalf("reaped %v %v", reaped, err)
	}
}
