package local

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/history"
	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/engine/probe/consistency"
	"github.com/chaosgate/chaosgate/engine/proxy"
	supervisor "github.com/chaosgate/chaosgate/engine/target/local"
	"github.com/chaosgate/chaosgate/internal/brokers/brokertest"
	"github.com/chaosgate/chaosgate/scenarios"
)

// kafkaBroker is the in-process Kafka-protocol cluster (kfake) as a Broker:
// it has no process of its own, so only a partition outage applies to it.
type kafkaBroker struct{ c *kfake.Cluster }

func (k kafkaBroker) Kind() string    { return "kafka" }
func (k kafkaBroker) Address() string { return k.c.ListenAddrs()[0] }
func (k kafkaBroker) Pid() int        { return 0 }
func (k kafkaBroker) Kill() error     { return fmt.Errorf("kfake runs in the test process") }
func (k kafkaBroker) Start() error    { return nil }

// upstreamRig is a 3-node aggregator cluster (real processes under the
// supervisor) consuming from real brokers through fault proxies on every
// node→broker edge, with a load generator publishing to each broker and
// one history for all of them.
type upstreamRig struct {
	*realCluster
	brokers map[string]Broker
	gens    map[string]*load.Generator
	hist    *history.Writer
	path    string
	in      *Injector
	target  engine.Target
}

type rigUpstream struct {
	name   string
	broker Broker
	url    func(addr string) string // the node's --upstream, given its proxy to the broker
	pub    func(ctx context.Context) (load.Publisher, error)
}

func startUpstreamRig(t *testing.T, ups []rigUpstream, defects ...string) *upstreamRig {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a 3-node aggregator cluster and brokers")
	}
	bin := aggregatorBinary(t)
	specs, err := supervisor.Plan(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	set := proxy.NewSet()
	var mn []proxy.MeshNode
	for _, s := range specs {
		mn = append(mn, proxy.MeshNode{ID: s.ID, HTTP: s.HTTP, Raft: s.Raft})
	}
	mesh, err := set.Mesh("canary", mn)
	if err != nil {
		t.Fatal(err)
	}
	rc := &realCluster{set: set, mesh: mesh, specs: map[string]supervisor.NodeSpec{}}
	r := &upstreamRig{realCluster: rc, brokers: map[string]Broker{}, gens: map[string]*load.Generator{}}
	for i := range specs {
		specs[i].Peers = mesh.Raft[specs[i].ID]
		specs[i].PeerHTTP = mesh.HTTP[specs[i].ID]
		specs[i].Defects = defects
		// a message redelivered after its consumer died must still find
		// its hole in the reorder buffer open
		specs[i].Args = []string{"--reorder-timeout", "15s", "--log-level", "warn"}
		for _, u := range ups {
			addr, err := set.Add(BrokerEdgeName("canary", specs[i].ID, u.name), u.broker.Address())
			if err != nil {
				t.Fatal(err)
			}
			specs[i].Args = append(specs[i].Args, "--upstream", u.url(addr))
		}
		rc.specs[specs[i].ID] = specs[i]
		rc.ids = append(rc.ids, specs[i].ID)
	}
	for _, u := range ups {
		r.brokers[u.name] = u.broker
	}
	ctx, cancel := context.WithCancel(context.Background())
	sup, err := supervisor.Start(ctx, supervisor.Config{Binary: bin, Dir: clusterDir(t), Nodes: specs, Partitions: 4, ReadyTimeout: 90 * time.Second})
	if err != nil {
		cancel()
		set.Close()
		t.Fatal(err)
	}
	rc.sup = sup
	t.Cleanup(func() {
		for _, g := range r.gens {
			g.Close()
		}
		cancel()
		sup.Wait()
		set.Close()
	})
	cl := rc.clusters()
	r.in = New(Config{Nodes: cl, Proxies: set, Leaders: cl.Leaders, NodeHTTP: cl.NodeHTTP,
		Brokers: func(_ engine.Arm, name string) (Broker, error) {
			b, ok := r.brokers[name]
			if !ok {
				return nil, fmt.Errorf("no broker %q", name)
			}
			return b, nil
		}})
	r.target = engine.Target{Arm: engine.ArmCanary, Nodes: cl.Nodes(engine.ArmCanary)}
	r.path = filepath.Join(t.TempDir(), "history.jsonl")
	if r.hist, err = history.Create(r.path); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, id := range rc.ids {
		addrs = append(addrs, rc.specs[id].HTTP)
	}
	for i, u := range ups {
		pctx, pcancel := context.WithTimeout(context.Background(), 60*time.Second)
		pub, err := u.pub(pctx)
		pcancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pub.Close)
		g, err := load.New(context.Background(), load.Config{Targets: load.StaticTargets(addrs...), Partitions: 4, Sources: 6, Keys: 24,
			Batch: 4, History: r.hist, Publisher: pub, Name: "up-" + u.name, IDNode: int64(100 + i), MaxRetries: 100, RetryGrace: 60 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		r.gens[u.name] = g
	}
	// every consumer attached before the load starts
	for _, u := range ups {
		for _, id := range rc.ids {
			deadline := time.Now().Add(90 * time.Second)
			for {
				st, err := r.gens[u.name].Upstreams(context.Background(), rc.specs[id].HTTP)
				if err == nil && len(st) > 0 && upstreamAttached(st, u.name) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s's %s consumer not attached: %v %+v", id, u.name, err, st)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	}
	return r
}

func upstreamAttached(st []load.UpstreamOffsets, name string) bool {
	for _, s := range st {
		if s.Name == name {
			return s.Attached
		}
	}
	return false
}

// runLoad publishes to every upstream at rate messages/s each for d.
func (r *upstreamRig) runLoad(t *testing.T, d time.Duration, rate float64) *sync.WaitGroup {
	var wg sync.WaitGroup
	for name, g := range r.gens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := g.Run(context.Background(), load.Phase{Name: "chaos", Arm: "canary", Duration: d, Rate: rate})
			t.Logf("load %s: %d published and acknowledged by the broker, %d failed, %d unknown outcome, %d retries (%v)", name, s.OK, s.Failed, s.Timeouts, s.Retries, err)
		}()
	}
	return &wg
}

// fault applies f, confirms it, holds it for hold and recovers it.
func (r *upstreamRig) fault(t *testing.T, f engine.Fault, hold time.Duration) engine.ConfirmResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f.Seed = f.ID
	tg := r.target
	if f.Kind == engine.PodKill {
		tg.Node = f.Nodes[0]
	}
	a, err := r.in.Inject(ctx, tg, f)
	if err != nil {
		t.Fatalf("inject %s: %v", f.Kind, err)
	}
	if f.Kind == engine.PodKill {
		var u Undo
		json.Unmarshal(a.Undo, &u)
		r.record(history.Line{Op: history.OpNode, T: time.Now(), Node: u.Node, NodeEvent: history.NodeKill, Detail: "SIGKILL"})
	}
	c := r.in.Confirm(ctx, a)
	t.Logf("%s: %s — %s: %s", f.Kind, a.Detail, c.Outcome, c.Measurement)
	time.Sleep(hold)
	if err := r.in.Recover(ctx, a); err != nil {
		t.Fatalf("recover %s: %v", f.Kind, err)
	}
	return c
}

func (r *upstreamRig) record(ev history.Line) {
	if err := r.hist.Write(ev); err != nil {
		panic(err)
	}
}

// check drains the output, records the dead letters and committed
// offsets, and runs the consistency checker over the whole history.
func (r *upstreamRig) check(t *testing.T) consistency.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var first *load.Generator
	for _, g := range r.gens {
		first = g
		break
	}
	// everything published must be consumed: wait for every group's lag
	// to reach 0 (MQTT has no lag: the drain's quiet period covers it)
	for name, g := range r.gens {
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			st, err := g.Upstreams(ctx, r.specs[r.ids[0]].HTTP)
			lag := int64(0)
			for _, s := range st {
				if s.Name == name {
					for _, o := range s.Offsets {
						lag += o.Lag
					}
				}
			}
			if err == nil && lag == 0 {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	ds, err := first.Drain(ctx, load.DrainOptions{Quiet: 8 * time.Second, Max: 2 * time.Minute})
	t.Logf("drain: %d records, %d gaps, complete %v (%v)", ds.Records, ds.Gaps, ds.Complete, err)
	reasons := map[string]int{}
	for _, id := range r.ids {
		ls, _ := first.DeadLetters(ctx, r.specs[id].HTTP)
		for _, l := range ls {
			k := l.Upstream + ": " + l.Reason
			if i := strings.Index(k, " (hint"); i > 0 {
				k = k[:i]
			}
			if len(k) > 160 {
				k = k[:160]
			}
			reasons[k]++
		}
	}
	for k, n := range reasons {
		t.Logf("dead letters: %d × %s", n, k)
	}
	for name, g := range r.gens {
		n, err := g.RecordUpstream(ctx, name)
		if err != nil {
			t.Fatalf("record %s upstream: %v", name, err)
		}
		t.Logf("upstream %s: %d dead letters recorded", name, n)
	}
	if err := r.hist.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := consistency.CheckFile(r.path, consistency.Config{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rep.Counts)
	t.Logf("check: ok=%v %s", rep.OK, b)
	for _, v := range rep.Violations {
		t.Logf("  %s %s: %s", v.Invariant, v.Detail, strings.Join(v.Examples, " | "))
	}
	return rep
}

func kafkaUpstream(kc *kfake.Cluster) rigUpstream {
	return rigUpstream{name: "kafka", broker: kafkaBroker{kc},
		url: func(addr string) string { return "kafka://" + addr + "/in?name=kafka&session_timeout=6s&batch=64" },
		pub: func(context.Context) (load.Publisher, error) { return load.NewKafkaPublisher(kc.ListenAddrs(), "in") }}
}

func startKafka(t *testing.T) *kfake.Cluster {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, "in"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	return kc
}

// TestUpstreamsKeepEveryMessageThroughRebalanceRestartAndKill: a 3-node
// cluster consumes from Kafka (kfake), NATS JetStream (nats-server) and
// MQTT (Mosquitto) under load while a Kafka consumer leaves and rejoins
// its group, the NATS server is killed and restarted, and a node is
// killed with SIGKILL (and restarted by the supervisor). Every message the
// brokers acknowledged is in the output once, in order: the checker finds
// nothing lost, duplicated or out of order.
func TestUpstreamsKeepEveryMessageThroughRebalanceRestartAndKill(t *testing.T) {
	kc := startKafka(t)
	ns := brokertest.NATS(t)
	mq := brokertest.Mosquitto(t)
	r := startUpstreamRig(t, []rigUpstream{
		kafkaUpstream(kc),
		{name: "nats", broker: ns, url: func(addr string) string { return "nats://" + addr + "/IN?name=nats&ack_wait=3s&batch=64" },
			pub: func(ctx context.Context) (load.Publisher, error) {
				return load.NewJetStreamPublisher(ctx, "nats://"+ns.Addr, "IN", "in", 1)
			}},
		{name: "mqtt", broker: mq, url: func(addr string) string { return "mqtt://" + addr + "/chaosgate/in?name=mqtt&shards=6" },
			pub: func(context.Context) (load.Publisher, error) {
				return load.NewMQTTPublisher(mq.Addr, "chaosgate/in", 6, "test-producer")
			}},
	})
	wg := r.runLoad(t, 45*time.Second, 60)
	time.Sleep(5 * time.Second)
	confs := []engine.ConfirmResult{
		r.fault(t, engine.Fault{ID: "rebalance", Kind: engine.ConsumerRebalance, Upstream: "kafka", Mode: "fixed", Nodes: []string{"n2"}}, 6*time.Second),
		r.fault(t, engine.Fault{ID: "nats-restart", Kind: engine.BrokerOutage, Upstream: "nats", Outage: "kill"}, 4*time.Second),
		r.fault(t, engine.Fault{ID: "kill-n3", Kind: engine.PodKill, Nodes: []string{"n3"}}, 0),
	}
	wg.Wait()
	rep := r.check(t)
	for _, c := range confs {
		if c.Outcome != engine.Confirmed {
			t.Errorf("fault not confirmed: %+v", c)
		}
	}
	c := rep.Counts
	if c.Lost != 0 || c.Duplicated != 0 || c.OrderViolations != 0 || c.Unexpected != 0 || c.SentOK == 0 {
		t.Fatalf("check: sent_ok %d received %d lost %d duplicated %d order_violations %d unexpected %d: want 0 lost, 0 duplicated, 0 order violations",
			c.SentOK, c.Received, c.Lost, c.Duplicated, c.OrderViolations, c.Unexpected)
	}
}

// TestCommitBeforeStoreDefectIsCaught: with the commit-before-store defect
// the consumers commit Kafka offsets as they fetch and abandon what is in
// flight when a rebalance revokes a partition or a node dies. A game day
// of a backlog (consumption paused, then released at once: the consumers
// fetch far ahead), a SIGKILL while they work through it and members
// leaving and joining: the checker reports lost messages and names the
// cause — offsets committed past them before the aggregator stored them.
func TestCommitBeforeStoreDefectIsCaught(t *testing.T) {
	kc := startKafka(t)
	r := startUpstreamRig(t, []rigUpstream{kafkaUpstream(kc)}, "commit-before-store")
	wg := r.runLoad(t, 30*time.Second, 300)
	time.Sleep(3 * time.Second)
	r.fault(t, engine.Fault{ID: "backlog", Kind: engine.Backlog, Upstream: "kafka"}, 5*time.Second)
	r.fault(t, engine.Fault{ID: "kill", Kind: engine.PodKill, Nodes: []string{"n2"}}, 0)
	for _, n := range []string{"n1", "n3"} {
		r.fault(t, engine.Fault{ID: "rebalance-" + n, Kind: engine.ConsumerRebalance, Upstream: "kafka", Mode: "fixed", Nodes: []string{n}}, 2*time.Second)
	}
	wg.Wait()
	rep := r.check(t)
	if rep.Counts.Lost == 0 {
		t.Fatalf("the commit-before-store defect went unnoticed: %+v", rep.Counts)
	}
	named := false
	for _, v := range rep.Violations {
		if v.Invariant == "I1" && strings.Contains(v.Detail, "committed its offset past the message before the aggregator stored it") {
			named = true
		}
	}
	if !named {
		t.Errorf("no I1 violation names the early commit: %+v", rep.Violations)
	}
}

// TestUpstreamFaultsPartitionSlowDependencyBacklog: the other upstream
// faults on a healthy build, each confirmed by a measurement — the broker
// cut off from every node (a client through a cut edge gets no answer), a
// consuming node's downstream edges slowed (round trip shift) or failing
// (a share of its connections reset: round trips on fresh connections
// fail), a backlog
// (every node paused, lag grown) — and nothing is lost, duplicated or
// reordered.
func TestUpstreamFaultsPartitionSlowDependencyBacklog(t *testing.T) {
	ns := brokertest.NATS(t)
	r := startUpstreamRig(t, []rigUpstream{
		{name: "nats", broker: ns, url: func(addr string) string { return "nats://" + addr + "/IN?name=nats&ack_wait=3s&batch=64" },
			pub: func(ctx context.Context) (load.Publisher, error) {
				return load.NewJetStreamPublisher(ctx, "nats://"+ns.Addr, "IN", "in", 1)
			}},
	})
	wg := r.runLoad(t, 40*time.Second, 100)
	time.Sleep(3 * time.Second)
	confs := []engine.ConfirmResult{
		r.fault(t, engine.Fault{ID: "outage", Kind: engine.BrokerOutage, Upstream: "nats", Outage: "partition"}, 4*time.Second),
		r.fault(t, engine.Fault{ID: "slow", Kind: engine.SlowDependency, Latency: 150 * time.Millisecond, Jitter: 20 * time.Millisecond, Mode: "fixed", Nodes: []string{"n1"}}, 4*time.Second),
		// A failing dependency: 30 % of n2's downstream connections reset.
		r.fault(t, engine.Fault{ID: "failing", Kind: engine.SlowDependency, ResetRatio: 0.3, Mode: "fixed", Nodes: []string{"n2"}}, 4*time.Second),
		r.fault(t, engine.Fault{ID: "backlog", Kind: engine.Backlog, Upstream: "nats"}, 4*time.Second),
	}
	wg.Wait()
	rep := r.check(t)
	for _, c := range confs {
		if c.Outcome != engine.Confirmed {
			t.Errorf("fault not confirmed: %+v", c)
		}
	}
	if c := rep.Counts; c.Lost != 0 || c.Duplicated != 0 || c.OrderViolations != 0 || c.Unexpected != 0 || c.SentOK == 0 {
		t.Fatalf("check: %+v", c)
	}
}

// TestLibraryUpstreamsGameDay runs the built-in game day "upstreams" with
// the engine's runner (journal, confirmation, recovery) on a real cluster
// consuming the brokers its target declares (nats-server, Mosquitto) under
// load: every fault is applied, confirmed and recovered, and the checker
// finds nothing lost, duplicated or out of order.
func TestLibraryUpstreamsGameDay(t *testing.T) {
	doc, err := scenarios.Library("upstreams")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := engine.PlanFromDocument(doc)
	if err != nil {
		t.Fatal(err)
	}
	var ups []rigUpstream
	for _, u := range doc.Spec.Target.Local.Upstreams {
		switch u.Kind {
		case "nats":
			ns := brokertest.NATS(t)
			ups = append(ups, rigUpstream{name: u.Name, broker: ns,
				url: func(addr string) string { return "nats://" + addr + "/IN?name=" + u.Name + "&ack_wait=3s&batch=64" },
				pub: func(ctx context.Context) (load.Publisher, error) {
					return load.NewJetStreamPublisher(ctx, "nats://"+ns.Addr, "IN", "in", 1)
				}})
		case "mqtt":
			mq := brokertest.Mosquitto(t)
			ups = append(ups, rigUpstream{name: u.Name, broker: mq,
				url: func(addr string) string { return "mqtt://" + addr + "/chaosgate/in?name=" + u.Name + "&shards=6" },
				pub: func(context.Context) (load.Publisher, error) {
					return load.NewMQTTPublisher(mq.Addr, "chaosgate/in", 6, "gameday-producer")
				}})
		}
	}
	r := startUpstreamRig(t, ups)
	plan.Arms = []engine.Arm{engine.ArmCanary}
	for i := range plan.Experiments {
		plan.Experiments[i].Abort = nil // no availability probe in this test
	}
	injectors := map[engine.FaultKind]engine.Injector{}
	for _, k := range []engine.FaultKind{engine.PodKill, engine.PodPause, engine.NetworkDelay, engine.Partition, engine.SplitBrain,
		engine.BrokerOutage, engine.ConsumerRebalance, engine.Backlog, engine.SlowDependency} {
		injectors[k] = r.in
	}
	cl := r.clusters()
	opt := engine.Options{DataDir: t.TempDir(), Injectors: injectors, Topology: cl, RecoverTimeout: 90 * time.Second,
		OnEvent: func(e engine.Event) {
			if e.Phase == engine.PhaseInject.String() && strings.Contains(e.Msg, "applied") {
				t.Logf("%s", e.Msg)
			}
		}}
	// load in short phases until the game day is over
	done := make(chan struct{})
	var lwg sync.WaitGroup
	lwg.Add(1)
	go func() {
		defer lwg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			r.runLoad(t, 5*time.Second, 50).Wait()
		}
	}()
	start := time.Now()
	res, err := runEveryStep(context.Background(), opt, plan)
	close(done)
	lwg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("game day upstreams: %s, %d faults", time.Since(start).Round(time.Second), len(res.Faults))
	kinds := map[engine.FaultKind]int{}
	for _, f := range res.Faults {
		t.Logf("%-17s %-4s %-12s %s", f.Kind, f.Target, f.Confirmed, f.Measurement)
		if f.RecoveredAt.IsZero() || f.Error != "" || f.Skipped != "" {
			t.Errorf("fault %s: recovered %v, error %q, skipped %q", f.ID, f.RecoveredAt, f.Error, f.Skipped)
		}
		if f.Confirmed != engine.Confirmed {
			t.Errorf("fault %s (%s) not confirmed: %s %s", f.ID, f.Kind, f.Confirmed, f.Measurement)
		}
		kinds[f.Kind]++
	}
	for _, k := range []engine.FaultKind{engine.ConsumerRebalance, engine.BrokerOutage, engine.Backlog, engine.SlowDependency, engine.PodKill} {
		if kinds[k] != 1 {
			t.Errorf("%s applied %d times, want once", k, kinds[k])
		}
	}
	if n := len(r.set.Toxics()); n != 0 {
		t.Errorf("%d toxics left", n)
	}
	rep := r.check(t)
	if c := rep.Counts; c.Lost != 0 || c.Duplicated != 0 || c.OrderViolations != 0 || c.Unexpected != 0 || c.SentOK == 0 {
		t.Fatalf("check: %+v", c)
	}
}
