package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/proxy"
	supervisor "github.com/chaosgate/chaosgate/engine/target/local"
	"github.com/chaosgate/chaosgate/scenarios"
)

// aggregatorBinary is the chaosgate binary the cluster nodes run:
// $CHAOSGATE_BIN (exported by make test) or a fresh build.
func aggregatorBinary(t *testing.T) string {
	t.Helper()
	bin, err := supervisor.BinaryForTests(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// realCluster is a 3-node reference-aggregator cluster under the local
// supervisor with every edge behind a fault proxy.
type realCluster struct {
	sup   *supervisor.Supervisor
	set   *proxy.Set
	mesh  proxy.Mesh
	specs map[string]supervisor.NodeSpec
	ids   []string
}

func startRealCluster(t *testing.T) *realCluster {
	return startNamedCluster(t, "canary", proxy.NewSet())
}

func startNamedCluster(t *testing.T, name string, set *proxy.Set) *realCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a 3-node aggregator cluster")
	}
	bin := aggregatorBinary(t)
	specs, err := supervisor.Plan(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	var mn []proxy.MeshNode
	for _, s := range specs {
		mn = append(mn, proxy.MeshNode{ID: s.ID, HTTP: s.HTTP, Raft: s.Raft})
	}
	mesh, err := set.Mesh(name, mn)
	if err != nil {
		t.Fatal(err)
	}
	c := &realCluster{set: set, mesh: mesh, specs: map[string]supervisor.NodeSpec{}}
	for i := range specs {
		specs[i].Peers = mesh.Raft[specs[i].ID]
		specs[i].PeerHTTP = mesh.HTTP[specs[i].ID]
		c.specs[specs[i].ID] = specs[i]
		c.ids = append(c.ids, specs[i].ID)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sup, err := supervisor.Start(ctx, supervisor.Config{Binary: bin, Dir: clusterDir(t), Nodes: specs, Partitions: 4, ReadyTimeout: 60 * time.Second})
	if err != nil {
		cancel()
		set.Close()
		t.Fatal(err)
	}
	c.sup = sup
	t.Cleanup(func() {
		for id := range c.specs {
			sup.Signal(id, 18) // SIGCONT, in case a test failed while paused
		}
		cancel()
		sup.Wait()
		set.Close()
	})
	return c
}

func (c *realCluster) clusters() Clusters {
	return Clusters{Arms: map[engine.Arm]*supervisor.Supervisor{engine.ArmCanary: c.sup}}
}

// leadersSeenBy asks one node (directly, not through a proxy) who leads
// each partition.
func (c *realCluster) leadersSeenBy(ctx context.Context, node string) (map[int]string, error) {
	return c.clusters().leadersFrom(ctx, c.specs[node].HTTP)
}

func (c *realCluster) write(t *testing.T, node string, seq int) int {
	msg := fmt.Sprintf(`{"source_id":"t","seq":%d,"msg_id":"%d","group_key":"k%d","fingerprint":"f%d","event_time":"2026-11-22T10:00:00Z","payload":"x"}`, seq, 1000+seq, seq, seq)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.mesh.Client[node]+"/v1/messages", bytes.NewBufferString(msg))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestRealClusterSplitBrainPartitionDelayKill(t *testing.T) {
	c := startRealCluster(t)
	ctx := context.Background()
	cl := c.clusters()
	in := New(Config{Nodes: cl, Proxies: c.set, Leaders: cl.Leaders})
	tg := engine.Target{Arm: engine.ArmCanary, Nodes: cl.Nodes(engine.ArmCanary)}
	if l, err := cl.Leader(ctx, engine.ArmCanary, nil); err != nil || l == "" {
		t.Fatalf("Leader = %q, %v", l, err)
	}

	// Split brain: the busiest leader is cut from its peers (raft and
	// forwarding) while clients still reach it; the majority elects new
	// leaders for its partitions.
	a, err := in.Inject(ctx, tg, engine.Fault{ID: "sb", Kind: engine.SplitBrain})
	if err != nil {
		t.Fatal(err)
	}
	var u Undo
	json.Unmarshal(a.Undo, &u)
	iso := u.Isolated[0]
	conf := in.Confirm(ctx, a)
	t.Logf("split brain on %s: %s; %s", iso, a.Detail, conf.Measurement)
	if conf.Outcome != engine.Confirmed {
		t.Fatalf("split brain not confirmed: %+v", conf)
	}
	var other string
	for _, id := range c.ids {
		if id != iso {
			other = id
			break
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		l, err := c.leadersSeenBy(ctx, other)
		settled := err == nil && len(l) > 0
		for _, x := range l {
			if x == iso || x == "" {
				settled = false
			}
		}
		if settled {
			t.Logf("majority side leaders after the cut: %v", l)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the majority still sees %s as a leader after the cut: %v %v", iso, l, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, id := range c.ids {
		if err := cl.WaitReady(rctx, engine.ArmCanary, id); err != nil {
			t.Fatalf("after heal: %v", err)
		}
	}
	// Ready is not yet leading: the healed node may still be handing a
	// partition's leadership back (503 "no leader right now", which every
	// client retries), so a write has a few seconds to land.
	code := c.write(t, iso, 1)
	for deadline := time.Now().Add(10 * time.Second); code == 503 && time.Now().Before(deadline); code = c.write(t, iso, 1) {
		time.Sleep(200 * time.Millisecond)
	}
	if code != 200 {
		t.Fatalf("write through %s after heal: HTTP %d", iso, code)
	}

	// Partition halves (3 nodes: one alone): confirmed by a failed edge probe.
	a, err = in.Inject(ctx, tg, engine.Fault{ID: "cut", Kind: engine.Partition, Shape: "halves"})
	if err != nil {
		t.Fatal(err)
	}
	if conf := in.Confirm(ctx, a); conf.Outcome != engine.Confirmed || !strings.Contains(conf.Measurement, "failed") {
		t.Fatalf("partition not confirmed: %+v", conf)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
	if n := len(c.set.Toxics()); n != 0 {
		t.Fatalf("%d toxics left after heal", n)
	}

	// Network delay into n2, measured through its forwarding edge.
	a, err = in.Inject(ctx, tg, engine.Fault{ID: "slow", Kind: engine.NetworkDelay, Latency: 100 * time.Millisecond, Edges: engine.Edges{Into: "n2", Clients: true}})
	if err != nil {
		t.Fatal(err)
	}
	conf = in.Confirm(ctx, a)
	t.Logf("delay: %s", conf.Measurement)
	if conf.Outcome != engine.Confirmed {
		t.Fatalf("delay not confirmed: %+v", conf)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}

	// Pod kill: the supervisor restarts the node; Recover waits until it
	// serves again.
	old, _ := cl.Pid(engine.ArmCanary, "n3")
	a, err = in.Inject(ctx, engine.Target{Arm: engine.ArmCanary, Nodes: c.ids, Node: "n3"}, engine.Fault{ID: "kill", Kind: engine.PodKill})
	if err != nil {
		t.Fatal(err)
	}
	if conf := in.Confirm(ctx, a); conf.Outcome != engine.Confirmed {
		t.Fatalf("kill not confirmed: %+v", conf)
	}
	kctx, kcancel := context.WithTimeout(ctx, 30*time.Second)
	defer kcancel()
	if err := in.Recover(kctx, a); err != nil {
		t.Fatal(err)
	}
	if now, _ := cl.Pid(engine.ArmCanary, "n3"); now == old {
		t.Fatalf("n3 still has pid %d after a kill and restart", old)
	}
}

func clusterDir(t *testing.T) string {
	if d := os.Getenv("CHAOSGATE_TEST_CLUSTER_DIR"); d != "" {
		return d
	}
	return t.TempDir()
}

// runEveryStep runs the fault suite of every canary step of the plan, one
// runner per step as the game day does, and gathers their faults; the
// first error ends it.
func runEveryStep(ctx context.Context, opt engine.Options, plan engine.Plan) (*engine.RunnerResult, error) {
	all := &engine.RunnerResult{Name: plan.Name}
	for _, w := range plan.Weights {
		o := opt
		o.RunID = fmt.Sprintf("%s-w%d", plan.Name, w)
		run, err := engine.NewRunner(o)
		if err != nil {
			return all, err
		}
		res, err := run.Run(ctx, plan, w)
		if res != nil {
			all.Faults = append(all.Faults, res.Faults...)
			all.Phases = append(all.Phases, res.Phases...)
			all.Interrupted = all.Interrupted || res.Interrupted
		}
		if err != nil {
			return all, err
		}
	}
	return all, nil
}

// TestRealClustersRunQuickGameDay runs the quick game day of the library
// with the engine's runner on two real 3-node clusters (canary and control)
// behind one proxy set: every fault of the four kinds is applied to both
// arms, confirmed and recovered, and nothing is left behind.
func TestRealClustersRunQuickGameDay(t *testing.T) {
	set := proxy.NewSet()
	canary := startNamedCluster(t, "canary", set)
	control := startNamedCluster(t, "control", set)
	cl := Clusters{Arms: map[engine.Arm]*supervisor.Supervisor{engine.ArmCanary: canary.sup, engine.ArmControl: control.sup}}
	in := New(Config{Nodes: cl, Proxies: set, Leaders: cl.Leaders})
	doc, err := scenarios.Library("default-gameday-quick")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := engine.PlanFromDocument(doc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range plan.Experiments {
		plan.Experiments[i].Abort = nil // no availability probe in this test
	}
	injectors := map[engine.FaultKind]engine.Injector{engine.PodKill: in, engine.PodPause: in, engine.NetworkDelay: in, engine.Partition: in, engine.SplitBrain: in}
	// Clock skew needs the nodes' admin API and overload the game day's
	// load generator, neither of which this bare rig has: stress_test.go
	// runs them on real clusters.
	var kept []engine.Experiment
	for _, e := range plan.Experiments {
		ok := true
		for _, f := range e.Faults {
			if injectors[f.Kind] == nil {
				ok = false
			}
		}
		if ok {
			kept = append(kept, e)
		}
	}
	plan.Experiments = kept
	dir := t.TempDir()
	start := time.Now()
	res, err := runEveryStep(context.Background(), engine.Options{DataDir: dir, Injectors: injectors, Topology: cl, RecoverTimeout: 30 * time.Second}, plan)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("quick game day: %s, %d faults", time.Since(start).Round(time.Millisecond), len(res.Faults))
	kinds := map[engine.FaultKind]int{}
	for _, f := range res.Faults {
		t.Logf("%-12s %-7s %-4s %-12s %s", f.Kind, f.Arm, f.Target, f.Confirmed, f.Measurement)
		if f.RecoveredAt.IsZero() || f.Error != "" || f.Skipped != "" {
			t.Errorf("fault %s: recovered %v, error %q, skipped %q", f.ID, f.RecoveredAt, f.Error, f.Skipped)
		}
		if f.Confirmed != engine.Confirmed {
			t.Errorf("fault %s (%s on %s/%s) not confirmed: %s %s", f.ID, f.Kind, f.Arm, f.Target, f.Confirmed, f.Measurement)
		}
		kinds[f.Kind]++
	}
	for _, k := range []engine.FaultKind{engine.PodKill, engine.NetworkDelay, engine.Partition, engine.SplitBrain} {
		if kinds[k] != 2 {
			t.Errorf("%s applied %d times, want once per arm", k, kinds[k])
		}
	}
	if n := len(set.Toxics()); n != 0 {
		t.Fatalf("%d toxics left", n)
	}
	for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		for _, n := range cl.Nodes(arm) {
			pid, err := cl.Pid(arm, n)
			if err != nil {
				t.Fatal(err)
			}
			if s, _, _ := engine.ProcStat(pid); s == 'T' {
				t.Fatalf("%s/%s left paused", arm, n)
			}
		}
	}
}

// TestRealClusterInterruptDuringKillRecoversWithinTwoSeconds cancels the
// run (as SIGINT does) right after a leader was SIGKILLed and a partition
// applied: the run returns interrupted within 2 s with everything
// recovered.
func TestRealClusterInterruptDuringKillRecoversWithinTwoSeconds(t *testing.T) {
	c := startRealCluster(t)
	cl := c.clusters()
	in := New(Config{Nodes: cl, Proxies: c.set, Leaders: cl.Leaders})
	injectors := map[engine.FaultKind]engine.Injector{engine.PodKill: in, engine.Partition: in}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled time.Time
	injected := 0
	run, err := engine.NewRunner(engine.Options{DataDir: t.TempDir(), Injectors: injectors, Topology: cl,
		OnEvent: func(e engine.Event) {
			if e.Phase == engine.PhaseInject.String() && strings.Contains(e.Msg, "applied") {
				injected++
				if injected == 1 {
					cancelled = time.Now()
					cancel()
				}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	plan := engine.Plan{Name: "interrupt", Arms: []engine.Arm{engine.ArmCanary},
		Experiments: []engine.Experiment{{Name: "kill", Faults: []engine.Fault{{Name: "kill-leader", Kind: engine.PodKill, Mode: "leader", Duration: time.Minute}}}}}
	res, err := run.Run(ctx, plan, 100)
	took := time.Since(cancelled)
	if !errors.Is(err, engine.ErrInterrupted) || !res.Interrupted {
		t.Fatalf("err %v, interrupted %v", err, res.Interrupted)
	}
	t.Logf("interrupted after the kill; run returned %s later", took.Round(time.Millisecond))
	if took > 2500*time.Millisecond {
		t.Fatalf("recovery took %s", took)
	}
	for _, f := range res.Faults {
		if f.RecoveredAt.IsZero() || f.RecoverError != "" {
			t.Fatalf("fault %+v not recovered", f)
		}
	}
	if _, err := cl.Pid(engine.ArmCanary, res.Faults[0].Target); err != nil {
		t.Fatalf("killed node not restarted: %v", err)
	}
}
