package local

import (
	"context"
	"fmt"
	"reflect"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/internal/leakcheck"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/proxy"
)

const syscallSIGCONT = syscall.SIGCONT

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leakcheck.StuckToxiproxyLink()) }

var nodes3 = []string{"n1", "n2", "n3"}

func target(node string) engine.Target {
	return engine.Target{Arm: engine.ArmCanary, Nodes: nodes3, Node: node}
}

func TestPodKillRestartsAndConfirms(t *testing.T) {
	p := newProcs(t, nodes3...)
	in := New(Config{Nodes: p})
	ctx := context.Background()
	old, _ := p.Pid(engine.ArmCanary, "n2")
	f := engine.Fault{ID: "k1", Kind: engine.PodKill}
	a, err := in.Inject(ctx, target("n2"), f)
	if err != nil {
		t.Fatal(err)
	}
	if (engine.Proc{Pid: old}).Alive() {
		t.Fatalf("pid %d survived SIGKILL", old)
	}
	if c := in.Confirm(ctx, a); c.Outcome != engine.Confirmed {
		t.Fatalf("confirm = %+v", c)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
	now, _ := p.Pid(engine.ArmCanary, "n2")
	if now == old || !(engine.Proc{Pid: now}).Alive() {
		t.Fatalf("node not restarted: old %d now %d", old, now)
	}
	// Recover again (idempotent); and a recover from the serialised record.
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
}

func TestPodPauseStopsAndRecoverContinues(t *testing.T) {
	p := newProcs(t, nodes3...)
	in := New(Config{Nodes: p})
	ctx := context.Background()
	a, err := in.Inject(ctx, target("n1"), engine.Fault{ID: "p1", Kind: engine.PodPause})
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := p.Pid(engine.ArmCanary, "n1")
	if s, _, _ := engine.ProcStat(pid); s != 'T' {
		t.Fatalf("state after pause = %c", s)
	}
	if c := in.Confirm(ctx, a); c.Outcome != engine.Confirmed {
		t.Fatalf("confirm = %+v", c)
	}
	// Recover works from a fresh injector with no supervisor: the journal case.
	if err := New(Config{}).Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
	if s, _, _ := engine.ProcStat(pid); s == 'T' {
		t.Fatalf("still stopped after recover")
	}
	if c := in.Confirm(ctx, a); c.Outcome != engine.Mismatch {
		t.Fatalf("confirm after recover = %+v", c)
	}
	// A recorded process that was replaced (pid reuse guard) is left alone.
	ghost := engine.Proc{Pid: pid, StartTime: 1}
	if err := ghost.Signal(syscall.SIGSTOP); engine.KindOf(err) != engine.KindNotFound {
		t.Fatalf("signal to a replaced process: %v", err)
	}
}

func TestNetworkDelayConfirmedByRTT(t *testing.T) {
	set := httpNodes(t, "canary", nodes3...)
	in := New(Config{Proxies: set})
	ctx := context.Background()
	f := engine.Fault{ID: "d1", Kind: engine.NetworkDelay, Latency: 80 * time.Millisecond, Jitter: 5 * time.Millisecond, Correlation: 0.25, Edges: engine.Edges{Into: "n2", Clients: true}}
	a, err := in.Inject(ctx, target(""), f)
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Toxics(); len(got) != 3 || got[0].Type != "chaosgate_latency" { // n1->n2, n3->n2, client->n2
		t.Fatalf("toxics = %+v, want 3 correlated latency toxics", got)
	}
	c := in.Confirm(ctx, a)
	if c.Outcome != engine.Confirmed {
		t.Fatalf("confirm = %+v", c)
	}
	t.Log(c.Measurement)
	if _, err := in.Inject(ctx, target(""), f); err != nil {
		t.Fatalf("inject twice: %v", err)
	}
	if got := len(set.Toxics()); got != 3 {
		t.Fatalf("inject twice made %d toxics", got)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
	if len(set.Toxics()) != 0 {
		t.Fatalf("toxics left: %+v", set.Toxics())
	}
}

func TestPartitionShapes(t *testing.T) {
	n5 := []string{"n1", "n2", "n3", "n4", "n5"}
	cases := []struct {
		shape string
		nodes []string
		edges int
		min   []string
	}{
		{"isolate-one", nodes3, 4, []string{"n1"}},
		{"halves", n5, 12, []string{"n1", "n2"}},
		{"bridge", n5, 8, []string{"n1", "n2"}},
		{"majorities-ring", n5, 10, nil},
	}
	for _, c := range cases {
		s, err := Cut(c.shape, c.nodes, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Edges) != c.edges || !reflect.DeepEqual(s.Minority, c.min) {
			t.Errorf("%s: %d edges, minority %v; want %d, %v (%s)", c.shape, len(s.Edges), s.Minority, c.edges, c.min, s.Describe)
		}
		// Every node still reaches a majority (itself included) for ring
		// and bridge's bridge; the cut is symmetric.
		cut := map[[2]string]bool{}
		for _, e := range s.Edges {
			cut[[2]string{e.From, e.To}] = true
		}
		for e := range cut {
			if !cut[[2]string{e[1], e[0]}] {
				t.Errorf("%s: edge %v cut one way only", c.shape, e)
			}
		}
		if c.shape == "majorities-ring" {
			for _, x := range c.nodes {
				seen := 1
				for _, y := range c.nodes {
					if x != y && !cut[[2]string{x, y}] {
						seen++
					}
				}
				if seen != 3 {
					t.Errorf("ring: %s sees %d nodes, want a bare majority 3", x, seen)
				}
			}
		}
	}
	if _, err := Cut("majorities-ring", nodes3, 0); engine.KindOf(err) != engine.KindInvalid {
		t.Fatalf("ring on 3 nodes: %v", err)
	}
}

func TestPartitionBlackHolesCrossingEdges(t *testing.T) {
	set := httpNodes(t, "control", nodes3...)
	in := New(Config{Proxies: set, Cluster: func(engine.Arm) string { return "control" },
		RoundTripFor: func(string) proxy.RoundTrip { return proxy.HTTPRoundTrip("/livez") }})
	ctx := context.Background()
	tg := engine.Target{Arm: engine.ArmControl, Nodes: nodes3}
	a, err := in.Inject(ctx, tg, engine.Fault{ID: "cut1", Kind: engine.Partition, Shape: "isolate-one"})
	if err != nil {
		t.Fatal(err)
	}
	c := in.Confirm(ctx, a)
	if c.Outcome != engine.Confirmed {
		t.Fatalf("confirm = %+v", c)
	}
	var u Undo
	if err := jsonUnmarshal(a.Undo, &u); err != nil {
		t.Fatal(err)
	}
	iso := u.Isolated[0]
	// An edge across the cut fails; an edge inside the majority works.
	var inside string
	for _, x := range nodes3 {
		for _, y := range nodes3 {
			if x != y && x != iso && y != iso {
				inside = proxy.EdgeName("control", x, y)
			}
		}
	}
	across := proxy.EdgeName("control", iso, inside[len(inside)-2:])
	rt := proxy.HTTPRoundTrip("/livez")
	addr := func(n string) string { a, _ := set.Addr(n); return a }
	if s := proxy.Measure(ctx, rt, addr(across), 1, 300*time.Millisecond); s.Failed != 1 {
		t.Fatalf("edge %s across the cut still works", across)
	}
	if s := proxy.Measure(ctx, rt, addr(inside), 1, time.Second); s.Failed != 0 {
		t.Fatalf("edge %s inside the majority fails: %s", inside, s.LastErr)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
	if s := proxy.Measure(ctx, rt, addr(across), 1, time.Second); s.Failed != 0 {
		t.Fatalf("edge %s fails after heal: %s", across, s.LastErr)
	}
}

func TestSplitBrainIsolatesLeaderKeepsClients(t *testing.T) {
	set := httpNodes(t, "canary", nodes3...)
	leaders := func(ctx context.Context, arm engine.Arm) (map[int]string, error) {
		return map[int]string{0: "n3", 1: "n3", 2: "n1", 3: "n3"}, nil
	}
	in := New(Config{Proxies: set, Leaders: leaders})
	ctx := context.Background()
	a, err := in.Inject(ctx, target(""), engine.Fault{ID: "sb1", Kind: engine.SplitBrain})
	if err != nil {
		t.Fatal(err)
	}
	if a.Detail == "" || len(set.Toxics()) != 8 { // 4 edges × 2 directions' toxics
		t.Fatalf("detail %q, toxics %d", a.Detail, len(set.Toxics()))
	}
	c := in.Confirm(ctx, a)
	if c.Outcome != engine.Confirmed {
		t.Fatalf("confirm = %+v", c)
	}
	t.Log(c.Measurement)
	p := 2
	node, led, _ := ChooseSplitBrain(map[int]string{0: "n3", 1: "n3", 2: "n1"}, &p)
	if node != "n1" || fmt.Sprint(led) != "[2]" {
		t.Fatalf("ChooseSplitBrain(partition 2) = %s %v", node, led)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
	if len(set.Toxics()) != 0 {
		t.Fatal("toxics left after recover")
	}
}

// A fault aimed by leadership waits out an election: the leaders are asked
// again while no node reports one, and a cancelled context ends the wait
// with the last answer's error.
func TestSettledLeadersWaitsForAnElection(t *testing.T) {
	calls := 0
	in := New(Config{Leaders: func(ctx context.Context, arm engine.Arm) (map[int]string, error) {
		calls++
		if calls < 3 {
			return nil, fmt.Errorf("no node reported a leader (call %d)", calls)
		}
		return map[int]string{0: "n2"}, nil
	}})
	got, err := in.settledLeaders(context.Background(), engine.ArmCanary)
	if err != nil || got[0] != "n2" || calls != 3 {
		t.Fatalf("settledLeaders: %v, %v after %d calls; want n2 leading partition 0 on the third call", got, err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in = New(Config{Leaders: func(context.Context, engine.Arm) (map[int]string, error) {
		cancel()
		return nil, fmt.Errorf("no node reported a leader")
	}})
	if _, err := in.settledLeaders(ctx, engine.ArmCanary); err == nil || err.Error() != "no node reported a leader" {
		t.Fatalf("settledLeaders with its context cancelled: %v, want the last answer's error", err)
	}
}
