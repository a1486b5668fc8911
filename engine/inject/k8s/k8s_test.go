package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	cm "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/internal/k8senv"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(crashChild())
	}
	goleak.VerifyTestMain(k8senv.Main(m), k8senv.LeakOptions()...)
}

var pods5 = []string{"agg-0", "agg-1", "agg-2", "agg-3", "agg-4"}

func testOptions(ns, run string) Options {
	return Options{
		PlanOptions: PlanOptions{
			Owner:      Owner{RunID: run, Experiment: "k8s-test", Version: "test"},
			Namespaces: map[engine.Arm]string{engine.ArmCanary: ns, engine.ArmControl: ns},
			ChaosMesh:  true,
		},
		InjectTimeout:  5 * time.Second,
		RecoverTimeout: 5 * time.Second,
		ConfirmTimeout: time.Second,
		Poll:           50 * time.Millisecond,
	}
}

// allFaults is one fault of every kind and every partition shape.
func allFaults() []struct {
	t engine.Target
	f engine.Fault
} {
	base := engine.Target{Arm: engine.ArmCanary, Nodes: pods5}
	node := base
	node.Node = "agg-2"
	var out []struct {
		t engine.Target
		f engine.Fault
	}
	add := func(t engine.Target, f engine.Fault) {
		f.ID = fmt.Sprintf("run1-%03d-canary-%s", len(out)+1, f.Kind)
		out = append(out, struct {
			t engine.Target
			f engine.Fault
		}{t, f})
	}
	add(node, engine.Fault{Kind: engine.PodKill, Duration: 5 * time.Second, Mode: "one"})
	add(node, engine.Fault{Kind: engine.PodPause, Duration: 5 * time.Second, Mode: "one"})
	add(base, engine.Fault{Kind: engine.NetworkDelay, Duration: 10 * time.Second, Latency: 100 * time.Millisecond, Jitter: 10 * time.Millisecond, Correlation: 25, Edges: engine.Edges{Into: "agg-1"}})
	add(base, engine.Fault{Kind: engine.NetworkDelay, Duration: 10 * time.Second, Latency: 1500 * time.Microsecond, Edges: engine.Edges{Between: []string{"agg-0", "agg-3"}}})
	add(base, engine.Fault{Kind: engine.NetworkDelay, Duration: 10 * time.Second, Latency: 50 * time.Millisecond, Edges: engine.Edges{OutOf: "agg-4", Clients: true}})
	for _, s := range []string{"isolate-one", "halves", "majorities-ring", "bridge"} {
		add(base, engine.Fault{Kind: engine.Partition, Duration: 10 * time.Second, Shape: s})
	}
	add(base, engine.Fault{Kind: engine.SplitBrain, Duration: 10 * time.Second, Nodes: []string{"agg-1"}})
	add(base, engine.Fault{Kind: engine.ClockSkew, Duration: 10 * time.Second, Offset: -400 * time.Millisecond, Seed: "s"})
	add(node, engine.Fault{Kind: engine.CPUStress, Duration: 10 * time.Second, Load: 0.8, Mode: "one"})
	add(base, engine.Fault{Kind: engine.Bandwidth, Duration: 10 * time.Second, BytesPerSecond: 125000, RateText: "1mbit", Edges: engine.Edges{Into: "agg-1"}})
	add(base, engine.Fault{Kind: engine.PacketLoss, Duration: 10 * time.Second, LossRatio: 0.05, Edges: engine.Edges{Into: "agg-1", Clients: true}})
	add(base, engine.Fault{Kind: engine.Corrupt, Duration: 10 * time.Second, LossRatio: 0.005, Edges: engine.Edges{Between: []string{"agg-0", "agg-2"}}})
	add(node, engine.Fault{Kind: engine.MemoryStress, Duration: 10 * time.Second, MemoryBytes: 256 << 20, MemoryText: "256MiB", Mode: "one"})
	zone := base
	zone.Group = []string{"agg-3", "agg-1"}
	add(zone, engine.Fault{Kind: engine.ZoneOutage, Duration: 10 * time.Second, Zone: "b"})
	add(base, engine.Fault{Kind: engine.SlowDependency, Duration: 10 * time.Second, Latency: 200 * time.Millisecond, Jitter: 50 * time.Millisecond, Mode: "fixed", Nodes: []string{"agg-3", "agg-0"}})
	return out
}

func TestEveryObjectPassesWebhookRulesAndRealSchema(t *testing.T) {
	e := k8senv.GetWithChaosMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ns = "schema"
	if err := e.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	po := testOptions(ns, "run1").PlanOptions
	objects := 0
	for _, c := range allFaults() {
		p, err := BuildPlan(ctx, po, c.t, c.f)
		if err != nil {
			t.Fatalf("%s %s: %v", c.f.Kind, c.f.Shape, err)
		}
		for _, o := range p.Objects {
			m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
			if err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{Object: m}
			unstructured.RemoveNestedField(u.Object, "status")
			unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
			gvr := ObjectRef{Kind: u.GetKind()}.gvr()
			got, err := e.Dynamic.Resource(gvr).Namespace(ns).Create(ctx, u, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("the API server refused %s %s (%s %s): %v", u.GetKind(), u.GetName(), c.f.Kind, c.f.Shape, err)
			}
			objects++
			// Owner labels and the safety-net duration survive the round trip.
			if got.GetLabels()[LabelRun] != "run1" || got.GetLabels()[LabelManagedBy] != ManagedBy || got.GetLabels()[LabelVersion] != "test" {
				t.Fatalf("labels = %v", got.GetLabels())
			}
			d, _, _ := unstructured.NestedString(got.Object, "spec", "duration")
			if pd, err := time.ParseDuration(d); err != nil || pd <= c.f.Duration {
				t.Fatalf("%s spec.duration = %q, want longer than the fault's %s", got.GetName(), d, c.f.Duration)
			}
		}
	}
	if objects != 1+1+3+(2+2+5+2)+1+1+1+1+1+1+1+2+2 { // … cpuStress, bandwidth, packetLoss, corrupt, memoryStress, zoneOutage, slowDependency
		t.Fatalf("created %d objects", objects)
	}
}

func TestPlanShapes(t *testing.T) {
	po := testOptions("ns", "run1").PlanOptions
	ctx := context.Background()
	cases := map[string]string{
		"isolate-one":     "agg-0>agg-1,agg-2,agg-3,agg-4|agg-1,agg-2,agg-3,agg-4>agg-0",
		"halves":          "agg-0,agg-1>agg-2,agg-3,agg-4|agg-2,agg-3,agg-4>agg-0,agg-1",
		"bridge":          "agg-0,agg-1>agg-3,agg-4|agg-3,agg-4>agg-0,agg-1",
		"majorities-ring": "agg-0>agg-2,agg-3|agg-1>agg-3,agg-4|agg-2>agg-0,agg-4|agg-3>agg-0,agg-1|agg-4>agg-1,agg-2",
	}
	for shape, want := range cases {
		p, err := BuildPlan(ctx, po, engine.Target{Arm: engine.ArmCanary, Nodes: pods5}, engine.Fault{ID: "x-" + shape, Kind: engine.Partition, Duration: time.Second, Shape: shape})
		if err != nil {
			t.Fatal(err)
		}
		var sides []string
		for _, o := range p.Objects {
			nc := o.(*cm.NetworkChaos)
			if nc.Spec.Action != cm.PartitionAction || nc.Spec.Direction != cm.To || nc.Spec.Mode != cm.AllMode {
				t.Fatalf("%s: spec %+v", shape, nc.Spec)
			}
			sides = append(sides, strings.Join(nc.Spec.Selector.Pods["ns"], ",")+">"+strings.Join(nc.Spec.Target.Selector.Pods["ns"], ","))
		}
		if got := strings.Join(sides, "|"); got != want {
			t.Errorf("%s:\n got %s\nwant %s", shape, got, want)
		}
	}
	// Split brain: the leader cut from the rest, both directions.
	p, err := BuildPlan(ctx, po, engine.Target{Arm: engine.ArmControl, Nodes: pods5}, engine.Fault{ID: "sb", Kind: engine.SplitBrain, Duration: time.Second})
	if err == nil || !strings.Contains(err.Error(), "no leader pod") {
		t.Fatalf("split brain with no leader: %v", err)
	}
	po.Leaders = func(context.Context, engine.Arm) (map[int]string, error) {
		return map[int]string{0: "agg-3", 1: "agg-3", 2: "agg-1"}, nil
	}
	p, err = BuildPlan(ctx, po, engine.Target{Arm: engine.ArmControl, Nodes: pods5}, engine.Fault{ID: "sb", Kind: engine.SplitBrain, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	nc := p.Objects[0].(*cm.NetworkChaos)
	if nc.Spec.Direction != cm.Both || strings.Join(nc.Spec.Selector.Pods["ns"], ",") != "agg-3" || strings.Join(nc.Spec.Target.Selector.Pods["ns"], ",") != "agg-0,agg-1,agg-2,agg-4" {
		t.Fatalf("split brain spec %+v", nc.Spec)
	}
	// The delay renders tc-style units and a percentage correlation.
	p, err = BuildPlan(ctx, po, engine.Target{Arm: engine.ArmCanary, Nodes: pods5}, engine.Fault{ID: "d", Kind: engine.NetworkDelay, Duration: time.Second,
		Latency: 1500 * time.Microsecond, Jitter: 2 * time.Millisecond, Correlation: 0.25, Edges: engine.Edges{Into: "agg-1"}})
	if err != nil {
		t.Fatal(err)
	}
	d := p.Objects[0].(*cm.NetworkChaos)
	if d.Spec.Delay.Latency != "1500us" || d.Spec.Delay.Jitter != "2ms" || d.Spec.Delay.Correlation != "25" ||
		strings.Join(d.Spec.Target.Selector.Pods["ns"], ",") != "agg-1" || len(d.Spec.Selector.Pods["ns"]) != 4 {
		t.Fatalf("delay spec %+v %+v", d.Spec.Delay, d.Spec)
	}
}

func TestWrongSpecCaughtBeforeSend(t *testing.T) {
	ctx := context.Background()
	po := testOptions("ns", "run1").PlanOptions
	p, err := BuildPlan(ctx, po, engine.Target{Arm: engine.ArmCanary, Nodes: pods5}, engine.Fault{ID: "d", Kind: engine.NetworkDelay, Duration: time.Second, Latency: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	nc := p.Objects[0].(*cm.NetworkChaos)
	nc.Spec.Delay.Latency = "ten parsecs"
	err = Validate(ctx, nc)
	if err == nil || !strings.Contains(err.Error(), "Delay.Latency") || !strings.Contains(err.Error(), "ten parsecs") || !strings.Contains(err.Error(), nc.Name) || !strings.Contains(err.Error(), "webhook") {
		t.Fatalf("bad latency: %v", err)
	}
	pc := &cm.PodChaos{TypeMeta: metav1.TypeMeta{Kind: "PodChaos"}, ObjectMeta: metav1.ObjectMeta{Name: "bad"},
		Spec: cm.PodChaosSpec{Action: cm.ContainerKillAction, ContainerSelector: cm.ContainerSelector{PodSelector: cm.PodSelector{Mode: cm.AllMode}}}}
	if err := Validate(ctx, pc); err == nil || !strings.Contains(err.Error(), "containerNames") {
		t.Fatalf("container-kill without names: %v", err)
	}
	bad := "forever"
	pc = &cm.PodChaos{TypeMeta: metav1.TypeMeta{Kind: "PodChaos"}, ObjectMeta: metav1.ObjectMeta{Name: "bad"},
		Spec: cm.PodChaosSpec{Action: cm.PodFailureAction, Duration: &bad, ContainerSelector: cm.ContainerSelector{PodSelector: cm.PodSelector{Mode: cm.AllMode}}}}
	if err := Validate(ctx, pc); err == nil || !strings.Contains(err.Error(), "duration") {
		t.Fatalf("bad duration: %v", err)
	}
	// A TimeChaos with an offset the webhook cannot read is caught too.
	p, err = BuildPlan(ctx, po, engine.Target{Arm: engine.ArmCanary, Nodes: pods5, Node: "agg-3"}, engine.Fault{ID: "ts", Kind: engine.ClockSkew, Duration: time.Second, Offset: -300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tc := p.Objects[0].(*cm.TimeChaos)
	if tc.Spec.TimeOffset != "-300ms" || tc.Spec.Selector.Pods["ns"][0] != "agg-3" || tc.Labels[LabelKind] != "clockSkew" || tc.Spec.Duration == nil {
		t.Fatalf("time chaos: %+v", tc)
	}
	tc.Spec.TimeOffset = "yesterday"
	if err := Validate(ctx, tc); err == nil || !strings.Contains(err.Error(), "yesterday") || !strings.Contains(err.Error(), "TimeChaos") {
		t.Fatalf("bad time offset: %v", err)
	}
	// A StressChaos: one CPU worker at the load, in the chosen pod; the
	// webhook rules refuse a stressor with no workers.
	p, err = BuildPlan(ctx, po, engine.Target{Arm: engine.ArmCanary, Nodes: pods5, Node: "agg-2"}, engine.Fault{ID: "cs", Kind: engine.CPUStress, Duration: time.Second, Load: 0.6, Mode: "one"})
	if err != nil {
		t.Fatal(err)
	}
	sc := p.Objects[0].(*cm.StressChaos)
	if c := sc.Spec.Stressors.CPUStressor; c == nil || c.Workers != 1 || c.Load == nil || *c.Load != 60 || sc.Spec.Selector.Pods["ns"][0] != "agg-2" || sc.Labels[LabelKind] != "cpuStress" || sc.Spec.Duration == nil {
		t.Fatalf("stress chaos: %+v", sc.Spec)
	}
	if err := Validate(ctx, sc); err != nil {
		t.Fatalf("stress chaos refused: %v", err)
	}
	sc.Spec.Stressors = &cm.Stressors{}
	if err := Validate(ctx, sc); err == nil || !strings.Contains(err.Error(), "StressChaos") {
		t.Fatalf("stress chaos without a stressor: %v", err)
	}
	// A bandwidth cap: a NetworkChaos bandwidth action from the senders to
	// the capped pod, its rate in bytes per second; the webhook rules
	// refuse a rate without a unit.
	p, err = BuildPlan(ctx, po, engine.Target{Arm: engine.ArmCanary, Nodes: pods5[:3]}, engine.Fault{ID: "bw", Kind: engine.Bandwidth, Duration: time.Second, BytesPerSecond: 125000, Edges: engine.Edges{Into: "agg-1"}})
	if err != nil {
		t.Fatal(err)
	}
	bw := p.Objects[0].(*cm.NetworkChaos)
	if bw.Spec.Action != cm.BandwidthAction || bw.Spec.Bandwidth == nil || bw.Spec.Bandwidth.Rate != "125000bps" || bw.Spec.Target == nil ||
		bw.Spec.Target.Selector.Pods["ns"][0] != "agg-1" || len(bw.Spec.Selector.Pods["ns"]) != 2 || bw.Labels[LabelKind] != "bandwidth" {
		t.Fatalf("bandwidth chaos: %+v", bw.Spec)
	}
	if err := Validate(ctx, bw); err != nil {
		t.Fatalf("bandwidth chaos refused: %v", err)
	}
	bw.Spec.Bandwidth.Rate = "125000"
	if err := Validate(ctx, bw); err == nil || !strings.Contains(err.Error(), "rate") {
		t.Fatalf("bandwidth rate without a unit: %v", err)
	}
	// Packet loss and corruption: NetworkChaos loss / corrupt actions from
	// the senders, the share in percent; the webhook rules refuse a share
	// that is not a number.
	for _, k := range []engine.FaultKind{engine.PacketLoss, engine.Corrupt} {
		p, err = BuildPlan(ctx, po, engine.Target{Arm: engine.ArmCanary, Nodes: pods5[:3]}, engine.Fault{ID: "pl", Kind: k, Duration: time.Second, LossRatio: 0.05, Edges: engine.Edges{OutOf: "agg-1"}})
		if err != nil {
			t.Fatal(err)
		}
		nc := p.Objects[0].(*cm.NetworkChaos)
		share := ""
		switch {
		case k == engine.PacketLoss && nc.Spec.Action == cm.LossAction && nc.Spec.Loss != nil:
			share = nc.Spec.Loss.Loss
		case k == engine.Corrupt && nc.Spec.Action == cm.CorruptAction && nc.Spec.Corrupt != nil:
			share = nc.Spec.Corrupt.Corrupt
		}
		if share != "5" || nc.Spec.Selector.Pods["ns"][0] != "agg-1" || nc.Labels[LabelKind] != k.String() || nc.Spec.Duration == nil {
			t.Fatalf("%s chaos: %+v", k, nc.Spec)
		}
		if err := Validate(ctx, nc); err != nil {
			t.Fatalf("%s chaos refused: %v", k, err)
		}
		if nc.Spec.Loss != nil {
			nc.Spec.Loss.Loss = "five"
		} else {
			nc.Spec.Corrupt.Corrupt = "five"
		}
		if err := Validate(ctx, nc); err == nil || !strings.Contains(err.Error(), "five") {
			t.Fatalf("%s share that is not a number: %v", k, err)
		}
	}
	// A zone outage: the zone's pods fail (PodChaos pod-failure) and are
	// cut from the rest both ways (NetworkChaos partition).
	p, err = BuildPlan(ctx, po, engine.Target{Arm: engine.ArmCanary, Nodes: pods5, Group: []string{"agg-3", "agg-1"}}, engine.Fault{ID: "zo", Kind: engine.ZoneOutage, Duration: time.Second, Zone: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Objects) != 2 || p.OneShot {
		t.Fatalf("zone outage plan: %d objects, one-shot %v", len(p.Objects), p.OneShot)
	}
	pf, part := p.Objects[0].(*cm.PodChaos), p.Objects[1].(*cm.NetworkChaos)
	if pf.Spec.Action != cm.PodFailureAction || fmt.Sprint(pf.Spec.Selector.Pods["ns"]) != "[agg-1 agg-3]" ||
		part.Spec.Action != cm.PartitionAction || part.Spec.Direction != cm.Both || fmt.Sprint(part.Spec.Target.Selector.Pods["ns"]) != "[agg-0 agg-2 agg-4]" {
		t.Fatalf("zone outage objects: %+v / %+v", pf.Spec, part.Spec)
	}
	for _, o := range p.Objects {
		if err := Validate(ctx, o); err != nil {
			t.Fatalf("zone outage object refused: %v", err)
		}
	}
	// Invalid faults never reach the builder's output.
	for _, c := range []struct {
		f    engine.Fault
		want string
	}{
		{engine.Fault{ID: "a", Kind: engine.NetworkDelay, Duration: time.Second}, "latency"},
		{engine.Fault{ID: "a", Kind: engine.Partition, Duration: time.Second, Shape: "triangle"}, "unknown partition shape"},
		{engine.Fault{ID: "a", Kind: engine.Partition, Duration: time.Second, Shape: "majorities-ring"}, "needs at least 5 nodes, the arm has 3"},
		{engine.Fault{ID: "a", Kind: engine.PodKill}, "duration"},
		{engine.Fault{ID: "a", Kind: engine.PodKill, Duration: time.Second}, "no pod chosen"},
		{engine.Fault{Kind: engine.PodKill, Duration: time.Second}, "no id"},
		{engine.Fault{ID: "a", Kind: engine.ClockSkew, Duration: time.Second}, "clock skew of 0"},
		{engine.Fault{ID: "a", Kind: engine.CPUStress, Duration: time.Second, Load: 1.5}, "outside (0, 1)"},
		{engine.Fault{ID: "a", Kind: engine.Bandwidth, Duration: time.Second, Edges: engine.Edges{Into: "agg-1"}}, "must be positive"},
		{engine.Fault{ID: "a", Kind: engine.ZoneOutage, Duration: time.Second, Zone: "b"}, "has no pods"},
		{engine.Fault{ID: "a", Kind: engine.Overload, Duration: time.Second, Rate: 1000}, "overload has no Chaos Mesh object: the game day plays it, a burst from chaosgate's own load generator"},
		{engine.Fault{ID: "a", Kind: engine.BrokerOutage, Duration: time.Second}, "brokerOutage has no Kubernetes form"},
		{engine.Fault{ID: "a", Kind: engine.SlowDependency, Duration: time.Second}, "latency 0s must be positive"},
		{engine.Fault{ID: "a", Kind: engine.SlowDependency, Duration: time.Second, Latency: time.Second, ResetRatio: 0.05}, "errors (5% of the connections reset) have no Kubernetes form: Chaos Mesh's NetworkChaos has no reset action"},
		{engine.Fault{ID: "a", Kind: engine.SlowDependency, Duration: time.Second, Latency: time.Second, Mode: "fixed", Nodes: []string{"agg-9"}}, `node "agg-9" is not a pod of the arm`},
	} {
		_, err := BuildPlan(ctx, po, engine.Target{Arm: engine.ArmCanary, Nodes: pods5[:3]}, c.f)
		if engine.KindOf(err) != engine.KindInvalid || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want invalid mentioning %q", c.f, err, c.want)
		}
	}
}

func TestWithoutChaosMesh(t *testing.T) {
	ctx := context.Background()
	po := testOptions("ns", "run1").PlanOptions
	po.ChaosMesh = false
	tg := engine.Target{Arm: engine.ArmCanary, Nodes: pods5, Node: "agg-1"}
	p, err := BuildPlan(ctx, po, tg, engine.Fault{ID: "k", Kind: engine.PodKill, Duration: time.Second})
	if err != nil || p.Method != MethodPodDelete || len(p.Objects) != 0 || p.Pods[0] != "agg-1" {
		t.Fatalf("podKill fallback: %+v %v", p, err)
	}
	for _, f := range []engine.Fault{
		{ID: "d", Kind: engine.NetworkDelay, Duration: time.Second, Latency: time.Millisecond},
		{ID: "p", Kind: engine.Partition, Duration: time.Second, Shape: "halves"},
		{ID: "s", Kind: engine.SplitBrain, Duration: time.Second, Nodes: []string{"agg-0"}},
		{ID: "z", Kind: engine.PodPause, Duration: time.Second},
	} {
		_, err := BuildPlan(ctx, po, tg, f)
		if engine.KindOf(err) != engine.KindUnavailable || !strings.Contains(err.Error(), "Chaos Mesh is not installed") || !strings.Contains(err.Error(), "chaos-mesh.org/v1alpha1") {
			t.Errorf("%s without Chaos Mesh: %v", f.Kind, err)
		}
	}
}

func mkPods(t *testing.T, ctx context.Context, e *k8senv.Env, ns string, names ...string) {
	t.Helper()
	if err := e.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: ns, Labels: map[string]string{"app": "agg"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agg", Image: "registry.example/agg:1"}}}}
		if _, err := e.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

// TestCPUStressLifecycle: a cpuStress is a StressChaos on the chosen pod,
// injected (per-pod record Injected), confirmed, and on recovery deleted
// once Chaos Mesh reports AllRecovered; the reaper lists it while it
// exists.
func TestMemoryStressLifecycle(t *testing.T) {
	e := k8senv.GetWithChaosMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "memory-stress"
	mkPods(t, ctx, e, ns, pods5[:3]...)
	k8senv.StartChaosController(t, e.Dynamic, e.Client, ns)
	in := NewWithClients(e.Client, e.Dynamic, testOptions(ns, "run-mem"))
	tg := engine.Target{Arm: engine.ArmCanary, Nodes: pods5[:3], Node: "agg-2"}
	a, err := in.Inject(ctx, tg, engine.Fault{ID: "mem-001-canary-agg-2", Kind: engine.MemoryStress, Duration: 10 * time.Second, MemoryBytes: 256 << 20, MemoryText: "256MiB", Mode: "one"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := UndoOf(a)
	if err != nil || len(u.Objects) != 1 || u.Objects[0].Kind != "StressChaos" || len(u.Records) != 1 {
		t.Fatalf("applied %+v (%v)", u, err)
	}
	got, err := e.Dynamic.Resource(StressChaosGVR).Namespace(ns).Get(ctx, u.Objects[0].Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	size, _, _ := unstructured.NestedString(got.Object, "spec", "stressors", "memory", "size")
	workers, _, _ := unstructured.NestedInt64(got.Object, "spec", "stressors", "memory", "workers")
	pods, _, _ := unstructured.NestedStringSlice(got.Object, "spec", "selector", "pods", ns)
	if size != "268435456B" || workers != 1 || len(pods) != 1 || pods[0] != "agg-2" || got.GetLabels()[LabelKind] != "memoryStress" {
		t.Fatalf("stored StressChaos: size %q workers %d pods %v labels %v", size, workers, pods, got.GetLabels())
	}
	if c := in.Confirm(ctx, a); c.Outcome != engine.Confirmed || !strings.Contains(c.Measurement, "1/1 injected") {
		t.Fatalf("confirm %+v", c)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Dynamic.Resource(StressChaosGVR).Namespace(ns).Get(ctx, u.Objects[0].Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("StressChaos still there after recovery: %v", err)
	}
}

func TestCPUStressLifecycle(t *testing.T) {
	e := k8senv.GetWithChaosMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "stress"
	mkPods(t, ctx, e, ns, pods5[:3]...)
	k8senv.StartChaosController(t, e.Dynamic, e.Client, ns)
	in := NewWithClients(e.Client, e.Dynamic, testOptions(ns, "run-stress"))
	tg := engine.Target{Arm: engine.ArmCanary, Nodes: pods5[:3], Node: "agg-1"}
	a, err := in.Inject(ctx, tg, engine.Fault{ID: "st-001-canary-agg-1", Kind: engine.CPUStress, Duration: 10 * time.Second, Load: 0.7, Mode: "one"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := UndoOf(a)
	if err != nil || len(u.Objects) != 1 || u.Objects[0].Kind != "StressChaos" || len(u.Records) != 1 || u.Records[0].Phase != string(cm.Injected) {
		t.Fatalf("applied %+v (%v)", u, err)
	}
	got, err := e.Dynamic.Resource(StressChaosGVR).Namespace(ns).Get(ctx, u.Objects[0].Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l, _, _ := unstructured.NestedInt64(got.Object, "spec", "stressors", "cpu", "load"); l != 70 {
		t.Fatalf("stressor load %d, want 70", l)
	}
	if c := in.Confirm(ctx, a); c.Outcome != engine.Confirmed || !strings.Contains(c.Measurement, "1/1 injected") {
		t.Fatalf("confirm %+v", c)
	}
	owned, err := in.Owned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mine []string
	for _, o := range owned {
		if o.GetLabels()[LabelRun] == "run-stress" {
			mine = append(mine, o.GetKind()+"/"+o.GetName())
		}
	}
	if len(mine) != 1 || !strings.HasPrefix(mine[0], "StressChaos/") {
		t.Fatalf("the reaper's list holds %v of this run, want its StressChaos", mine)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Dynamic.Resource(StressChaosGVR).Namespace(ns).Get(ctx, u.Objects[0].Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("StressChaos still there after recovery: %v", err)
	}
}

// TestBandwidthLifecycle: a bandwidth cap is one NetworkChaos bandwidth
// action from the senders to the capped pod, stored by the real API
// server with the CRD's schema, injected, confirmed, and deleted on
// recovery.
func TestBandwidthLifecycle(t *testing.T) {
	e := k8senv.GetWithChaosMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "bandwidth"
	mkPods(t, ctx, e, ns, pods5[:3]...)
	k8senv.StartChaosController(t, e.Dynamic, e.Client, ns)
	in := NewWithClients(e.Client, e.Dynamic, testOptions(ns, "run-bw"))
	tg := engine.Target{Arm: engine.ArmCanary, Nodes: pods5[:3]}
	a, err := in.Inject(ctx, tg, engine.Fault{ID: "bw-001-canary", Kind: engine.Bandwidth, Duration: 10 * time.Second,
		BytesPerSecond: 250000, RateText: "2mbit", Edges: engine.Edges{Into: "agg-1"}})
	if err != nil {
		t.Fatal(err)
	}
	u, err := UndoOf(a)
	if err != nil || len(u.Objects) != 1 || u.Objects[0].Kind != "NetworkChaos" || len(u.Records) != 2 {
		t.Fatalf("applied %+v (%v)", u, err)
	}
	got, err := e.Dynamic.Resource(NetworkChaosGVR).Namespace(ns).Get(ctx, u.Objects[0].Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	action, _, _ := unstructured.NestedString(got.Object, "spec", "action")
	rate, _, _ := unstructured.NestedString(got.Object, "spec", "bandwidth", "rate")
	target, _, _ := unstructured.NestedStringSlice(got.Object, "spec", "target", "selector", "pods", ns)
	if action != "bandwidth" || rate != "250000bps" || len(target) != 1 || target[0] != "agg-1" {
		t.Fatalf("stored NetworkChaos: action %q rate %q target %v", action, rate, target)
	}
	if c := in.Confirm(ctx, a); c.Outcome != engine.Confirmed || !strings.Contains(c.Measurement, "2/2") {
		t.Fatalf("confirm %+v", c)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Dynamic.Resource(NetworkChaosGVR).Namespace(ns).Get(ctx, u.Objects[0].Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("NetworkChaos still there after recovery: %v", err)
	}
}

// TestSlowDependencyLifecycle: a slow dependency on Kubernetes is one
// NetworkChaos delay per chosen pod, from it to every other pod of its
// arm (its downstream edges), stored by the real API server, confirmed
// from its status and deleted on recovery; the pod is chosen from the
// fault's seed, the same on every arm of one size.
func TestSlowDependencyLifecycle(t *testing.T) {
	e := k8senv.GetWithChaosMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "slow-dependency"
	mkPods(t, ctx, e, ns, pods5[:3]...)
	k8senv.StartChaosController(t, e.Dynamic, e.Client, ns)
	in := NewWithClients(e.Client, e.Dynamic, testOptions(ns, "run-sd"))
	tg := engine.Target{Arm: engine.ArmCanary, Nodes: pods5[:3]}
	f := engine.Fault{ID: "sd-001-canary", Kind: engine.SlowDependency, Duration: 10 * time.Second, Latency: 200 * time.Millisecond, Jitter: 50 * time.Millisecond, Mode: "one", Seed: "run-sd/exp/slow/100"}
	a, err := in.Inject(ctx, tg, f)
	if err != nil {
		t.Fatal(err)
	}
	u, err := UndoOf(a)
	if err != nil || len(u.Objects) != 1 || u.Objects[0].Kind != "NetworkChaos" || len(u.Pods) != 1 {
		t.Fatalf("applied %+v (%v)", u, err)
	}
	chosen := u.Pods[0].Name
	other, err := BuildPlan(ctx, in.opts.PlanOptions, engine.Target{Arm: engine.ArmControl, Nodes: []string{"stable-0", "stable-1", "stable-2"}}, engine.Fault{ID: "sd-002-control", Kind: engine.SlowDependency, Duration: 10 * time.Second, Latency: 200 * time.Millisecond, Mode: "one", Seed: f.Seed})
	if err != nil || len(other.Pods) != 1 || other.Pods[0][len(other.Pods[0])-1] != chosen[len(chosen)-1] {
		t.Fatalf("the control's choice %v (%v) is not the canary's %s: one seed must choose the same place on every arm", other.Pods, err, chosen)
	}
	got, err := e.Dynamic.Resource(NetworkChaosGVR).Namespace(ns).Get(ctx, u.Objects[0].Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	action, _, _ := unstructured.NestedString(got.Object, "spec", "action")
	latency, _, _ := unstructured.NestedString(got.Object, "spec", "delay", "latency")
	jitter, _, _ := unstructured.NestedString(got.Object, "spec", "delay", "jitter")
	dir, _, _ := unstructured.NestedString(got.Object, "spec", "direction")
	from, _, _ := unstructured.NestedStringSlice(got.Object, "spec", "selector", "pods", ns)
	to, _, _ := unstructured.NestedStringSlice(got.Object, "spec", "target", "selector", "pods", ns)
	if action != "delay" || latency != "200ms" || jitter != "50ms" || dir != "to" || fmt.Sprint(from) != "["+chosen+"]" || len(to) != 2 || slices.Contains(to, chosen) {
		t.Fatalf("stored NetworkChaos: action %q latency %q jitter %q direction %q from %v to %v (chosen %s)", action, latency, jitter, dir, from, to, chosen)
	}
	if got.GetLabels()[LabelKind] != "slowDependency" || got.GetLabels()[LabelRun] != "run-sd" {
		t.Fatalf("labels %v", got.GetLabels())
	}
	if c := in.Confirm(ctx, a); c.Outcome != engine.Confirmed || !strings.Contains(c.Measurement, "1/1") {
		t.Fatalf("confirm %+v", c)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Dynamic.Resource(NetworkChaosGVR).Namespace(ns).Get(ctx, u.Objects[0].Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("NetworkChaos still there after recovery: %v", err)
	}
}

// TestPacketLossAndCorruptLifecycle: each is one NetworkChaos stored by
// the real API server with Chaos Mesh's CRD schema, owner labels and a
// safety-net duration, confirmed from its status and deleted on recovery.
func TestPacketLossAndCorruptLifecycle(t *testing.T) {
	e := k8senv.GetWithChaosMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "packet-loss"
	mkPods(t, ctx, e, ns, pods5[:3]...)
	k8senv.StartChaosController(t, e.Dynamic, e.Client, ns)
	in := NewWithClients(e.Client, e.Dynamic, testOptions(ns, "run-pl"))
	tg := engine.Target{Arm: engine.ArmCanary, Nodes: pods5[:3]}
	for i, k := range []engine.FaultKind{engine.PacketLoss, engine.Corrupt} {
		a, err := in.Inject(ctx, tg, engine.Fault{ID: fmt.Sprintf("pl-%03d-canary", i+1), Kind: k, Duration: 10 * time.Second,
			LossRatio: 0.025, Edges: engine.Edges{Into: "agg-2"}})
		if err != nil {
			t.Fatal(err)
		}
		u, err := UndoOf(a)
		if err != nil || len(u.Objects) != 1 || u.Objects[0].Kind != "NetworkChaos" {
			t.Fatalf("%s applied %+v (%v)", k, u, err)
		}
		got, err := e.Dynamic.Resource(NetworkChaosGVR).Namespace(ns).Get(ctx, u.Objects[0].Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		action, _, _ := unstructured.NestedString(got.Object, "spec", "action")
		share, _, _ := unstructured.NestedString(got.Object, "spec", k.String(), k.String())
		if k == engine.PacketLoss {
			share, _, _ = unstructured.NestedString(got.Object, "spec", "loss", "loss")
		}
		duration, _, _ := unstructured.NestedString(got.Object, "spec", "duration")
		target, _, _ := unstructured.NestedStringSlice(got.Object, "spec", "target", "selector", "pods", ns)
		if (k == engine.PacketLoss) != (action == "loss") || share != "2.5" || duration == "" || len(target) != 1 || target[0] != "agg-2" ||
			got.GetLabels()[LabelRun] != "run-pl" || got.GetLabels()[LabelKind] != k.String() {
			t.Fatalf("stored %s NetworkChaos: action %q share %q duration %q target %v labels %v", k, action, share, duration, target, got.GetLabels())
		}
		if c := in.Confirm(ctx, a); c.Outcome != engine.Confirmed {
			t.Fatalf("%s confirm %+v", k, c)
		}
		if err := in.Recover(ctx, a); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Dynamic.Resource(NetworkChaosGVR).Namespace(ns).Get(ctx, u.Objects[0].Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("%s NetworkChaos still there after recovery: %v", k, err)
		}
	}
}

func TestNetworkFaultLifecycle(t *testing.T) {
	e := k8senv.GetWithChaosMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "lifecycle"
	mkPods(t, ctx, e, ns, pods5...)
	k8senv.StartChaosController(t, e.Dynamic, e.Client, ns)
	opts := testOptions(ns, "run-life")
	opts.DetectChaosMesh = true
	in := NewWithClients(e.Client, e.Dynamic, opts)
	if ok, err := in.HasChaosMesh(ctx); !ok || err != nil {
		t.Fatalf("detect Chaos Mesh: %v %v", ok, err)
	}
	tg := engine.Target{Arm: engine.ArmCanary, Nodes: pods5}
	f := engine.Fault{ID: "life-001-canary", Kind: engine.Partition, Duration: 10 * time.Second, Shape: "halves"}

	intent, err := in.Prepare(ctx, tg, f)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	a, err := in.Inject(ctx, tg, f)
	if err != nil {
		t.Fatal(err)
	}
	if a.At.Before(before) || a.Backend != Backend || !strings.Contains(a.Detail, "NetworkChaos") {
		t.Fatalf("applied %+v", a)
	}
	u, err := UndoOf(a)
	if err != nil {
		t.Fatal(err)
	}
	// Per-pod records for the evidence: 2 + 3 pods selected by the two sides.
	if len(u.Records) != 5 || u.Records[0].Phase != string(cm.Injected) || u.Records[0].InjectedCount != 1 || len(u.Records[0].Events) != 1 {
		t.Fatalf("records %+v", u.Records)
	}
	// The intent names the same objects: a crash after it is recoverable.
	iu, _ := UndoOf(intent)
	if fmt.Sprint(iu.Objects) != fmt.Sprint(u.Objects) {
		t.Fatalf("intent objects %v != applied %v", iu.Objects, u.Objects)
	}
	// Idempotent: injecting the same fault again reuses the objects.
	if _, err := in.Inject(ctx, tg, f); err != nil {
		t.Fatalf("second inject: %v", err)
	}
	if c := in.Confirm(ctx, a); c.Outcome != engine.Confirmed || !strings.Contains(c.Measurement, "5/5") {
		t.Fatalf("confirm %+v", c)
	}
	if err := in.Pause(ctx, a, true); err != nil {
		t.Fatal(err)
	}
	got, _ := e.Dynamic.Resource(NetworkChaosGVR).Namespace(ns).Get(ctx, u.Objects[0].Name, metav1.GetOptions{})
	if got.GetAnnotations()[cm.PauseAnnotationKey] != "true" {
		t.Fatalf("pause annotation %v", got.GetAnnotations())
	}
	if c := in.Confirm(ctx, a); c.Outcome != engine.Mismatch {
		t.Fatalf("confirm while paused %+v", c)
	}
	if err := in.Pause(ctx, a, false); err != nil {
		t.Fatal(err)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
	if rs := in.Records(f.ID); len(rs) < 5 || rs[0].Phase != string(cm.Injected) || !strings.HasPrefix(rs[0].Object, "NetworkChaos lifecycle/") {
		t.Fatalf("records kept for the evidence: %+v", rs)
	}
	for _, r := range u.Objects {
		if _, err := e.Dynamic.Resource(NetworkChaosGVR).Namespace(ns).Get(ctx, r.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("%s still exists after recover: %v", r, err)
		}
	}
	// Recover is idempotent and works from the intent alone.
	if err := in.Recover(ctx, intent); err != nil {
		t.Fatalf("second recover: %v", err)
	}
}

func TestInjectTimesOutAndCleansUp(t *testing.T) {
	e := k8senv.GetWithChaosMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ns = "noinject"
	mkPods(t, ctx, e, ns, pods5[:3]...)
	fc := k8senv.StartChaosController(t, e.Dynamic, e.Client, ns)
	fc.Set(true, false, false)
	opts := testOptions(ns, "run-timeout")
	opts.InjectTimeout = time.Second
	in := NewWithClients(e.Client, e.Dynamic, opts)
	tg := engine.Target{Arm: engine.ArmCanary, Nodes: pods5[:3], Node: "agg-1"}
	start := time.Now()
	_, err := in.Inject(ctx, tg, engine.Fault{ID: "to-001", Kind: engine.PodPause, Duration: 5 * time.Second})
	if engine.KindOf(err) != engine.KindUnavailable || !strings.Contains(err.Error(), "PodChaos noinject/cg-podpause-to-001") || !strings.Contains(err.Error(), "not injected after 1s") {
		t.Fatalf("err = %v", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("inject took %s with a 1s timeout", el)
	}
	// The failed inject deleted what it created; the controller then
	// releases the finalizer.
	fc.Set(false, false, false)
	waitGone(t, ctx, e, ns)
}

func waitGone(t *testing.T, ctx context.Context, e *k8senv.Env, ns string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := 0
		for _, gvr := range []struct{ r ObjectRef }{{ObjectRef{Kind: "PodChaos"}}, {ObjectRef{Kind: "NetworkChaos"}}} {
			l, err := e.Dynamic.Resource(gvr.r.gvr()).Namespace(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			n += len(l.Items)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d chaos objects left in %s", n, ns)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRecoverNeverReportedIsAClearError(t *testing.T) {
	e := k8senv.GetWithChaosMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ns = "norecover"
	mkPods(t, ctx, e, ns, pods5[:3]...)
	fc := k8senv.StartChaosController(t, e.Dynamic, e.Client, ns)
	opts := testOptions(ns, "run-norecover")
	opts.RecoverTimeout = time.Second
	in := NewWithClients(e.Client, e.Dynamic, opts)
	tg := engine.Target{Arm: engine.ArmCanary, Nodes: pods5[:3]}
	a, err := in.Inject(ctx, tg, engine.Fault{ID: "nr-001", Kind: engine.NetworkDelay, Duration: 5 * time.Second, Latency: 20 * time.Millisecond, Edges: engine.Edges{Into: "agg-0"}})
	if err != nil {
		t.Fatal(err)
	}
	fc.Set(false, true, false)
	start := time.Now()
	err = in.Recover(ctx, a)
	if engine.KindOf(err) != engine.KindUnavailable || !strings.Contains(err.Error(), "NetworkChaos norecover/cg-networkdelay-nr-001") ||
		!strings.Contains(err.Error(), "AllRecovered") || !strings.Contains(err.Error(), "finalizers [chaos-mesh/records]") {
		t.Fatalf("err = %v", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("recover took %s with a 1s timeout", el)
	}
	fc.Set(false, false, false)
	if err := in.Recover(ctx, a); err != nil {
		t.Fatalf("recover once the controller works again: %v", err)
	}
	waitGone(t, ctx, e, ns)
}

func TestPodKillWithChaosMeshWaitsForReplacement(t *testing.T) {
	e := k8senv.GetWithChaosMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ns = "podkill"
	mkPods(t, ctx, e, ns, pods5[:3]...)
	k8senv.StartChaosController(t, e.Dynamic, e.Client, ns)
	in := NewWithClients(e.Client, e.Dynamic, testOptions(ns, "run-kill"))
	old, _ := e.Client.CoreV1().Pods(ns).Get(ctx, "agg-2", metav1.GetOptions{})
	tg := engine.Target{Arm: engine.ArmControl, Nodes: pods5[:3], Node: "agg-2"}
	a, err := in.Inject(ctx, tg, engine.Fault{ID: "pk-001", Kind: engine.PodKill, Duration: 3 * time.Second, Mode: "one"})
	if err != nil {
		t.Fatal(err)
	}
	c := in.Confirm(ctx, a)
	if c.Outcome != engine.Confirmed || !strings.Contains(c.Measurement, "recreated with a new UID, 0 of 1 pods ready (none was ready before the kill") {
		t.Fatalf("confirm %+v", c)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
	now, err := e.Client.CoreV1().Pods(ns).Get(ctx, "agg-2", metav1.GetOptions{})
	if err != nil || now.UID == old.UID {
		t.Fatalf("agg-2 not replaced: %v", err)
	}
	waitGone(t, ctx, e, ns)
}

func TestPodKillFallbackDeletesPod(t *testing.T) {
	e := k8senv.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ns = "directdelete"
	mkPods(t, ctx, e, ns, pods5[:3]...)
	opts := testOptions(ns, "run-direct")
	opts.ChaosMesh = false
	opts.RecoverTimeout = time.Second
	opts.PodSelectors = map[engine.Arm]string{engine.ArmCanary: "app=agg"}
	in := NewWithClients(e.Client, e.Dynamic, opts)
	tg := engine.Target{Arm: engine.ArmCanary, Nodes: pods5[:3], Node: "agg-0"}
	a, err := in.Inject(ctx, tg, engine.Fault{ID: "dd-001", Kind: engine.PodKill, Duration: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a.Detail, "deleted pod directdelete/agg-0 directly") {
		t.Fatalf("detail %q", a.Detail)
	}
	if _, err := e.Client.CoreV1().Pods(ns).Get(ctx, "agg-0", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("agg-0 still exists: %v", err)
	}
	if c := in.Confirm(ctx, a); c.Outcome != engine.Confirmed || !strings.Contains(c.Measurement, "deleted, not replaced and ready within 1s (2 of 3 pods back") {
		t.Fatalf("confirm %+v", c)
	}
	// No controller recreates it here: recovery says so, clearly, in time.
	err = in.Recover(ctx, a)
	if engine.KindOf(err) != engine.KindUnavailable || !strings.Contains(err.Error(), "directdelete/agg-0 not replaced") || !strings.Contains(err.Error(), "2 of 3 pods back") {
		t.Fatalf("recover without a replacement: %v", err)
	}
	// Once the workload's controller replaces it (a new name, as for a
	// Deployment), recovery succeeds.
	mkPods(t, ctx, e, ns, "agg-7")
	// With a kubelet the replacement becomes ready: the confirmation says so.
	for _, n := range []string{"agg-1", "agg-2", "agg-7"} {
		p, err := e.Client.CoreV1().Pods(ns).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		if _, err := e.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if c := in.Confirm(ctx, a); c.Outcome != engine.Confirmed || !strings.Contains(c.Measurement, "replaced, 3 of 3 pods ready") {
		t.Fatalf("confirm with a ready replacement %+v", c)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
}

// TestPodKillOfAReadyPodSaysWhyItsReplacementIsNotReady: a killed pod
// that was ready is recovered once it is replaced; while the replacement
// is not ready the confirmation says so and why (its phase and the
// container's waiting reason).
func TestPodKillOfAReadyPodSaysWhyItsReplacementIsNotReady(t *testing.T) {
	e := k8senv.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ns = "readykill"
	mkPods(t, ctx, e, ns, pods5[:3]...)
	setStatus := func(name string, ready bool, waiting string) {
		t.Helper()
		p, err := e.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = corev1.PodPending
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "agg", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: waiting}}}}
		if ready {
			p.Status.Phase = corev1.PodRunning
			p.Status.Conditions[0].Status = corev1.ConditionTrue
			p.Status.ContainerStatuses[0].State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
		}
		if _, err := e.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range pods5[:3] {
		setStatus(n, true, "")
	}
	opts := testOptions(ns, "run-ready")
	opts.ChaosMesh = false
	opts.RecoverTimeout = time.Second
	opts.ConfirmTimeout = time.Second
	in := NewWithClients(e.Client, e.Dynamic, opts)
	tg := engine.Target{Arm: engine.ArmCanary, Nodes: pods5[:3], Node: "agg-1"}
	a, err := in.Inject(ctx, tg, engine.Fault{ID: "rk-001", Kind: engine.PodKill, Duration: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// The controller recreates it under its name; its container cannot
	// start yet.
	mkPods(t, ctx, e, ns, "agg-1")
	setStatus("agg-1", false, "ContainerCreating")
	c := in.Confirm(ctx, a)
	if c.Outcome != engine.Confirmed || !strings.Contains(c.Measurement, "replaced, not all ready within 1s (1 of 1 pods back, 0 ready (1 were before the kill); agg-1 is Pending") ||
		!strings.Contains(c.Measurement, "waiting: ContainerCreating") {
		t.Fatalf("confirm while the replacement is not ready %+v", c)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatalf("recover once replaced: %v", err)
	}
	setStatus("agg-1", true, "")
	if c := in.Confirm(ctx, a); c.Outcome != engine.Confirmed || !strings.Contains(c.Measurement, "replaced, 1 of 1 pods ready") {
		t.Fatalf("confirm once the replacement is ready %+v", c)
	}
}

func TestWriteYAMLStream(t *testing.T) {
	po := testOptions("ns", "run1").PlanOptions
	var objs []runtime.Object
	for _, c := range allFaults() {
		p, err := BuildPlan(context.Background(), po, c.t, c.f)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, p.Objects...)
	}
	var buf bytes.Buffer
	if err := WriteYAML(&buf, objs); err != nil {
		t.Fatal(err)
	}
	back, err := k8senv.DecodeObjects(&buf, "stream")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range back {
		kinds[o.GetKind()]++
	}
	if len(back) != len(objs) || back[0].GetKind() != "PodChaos" || kinds["NetworkChaos"] == 0 || kinds["TimeChaos"] == 0 || kinds["StressChaos"] != 2 { // cpu and memory
		t.Fatalf("%d objects back, want %d; kinds %v", len(back), len(objs), kinds)
	}
}

func FuzzUndoOf(f *testing.F) {
	f.Add([]byte(`{"method":"chaos-mesh","namespace":"x","objects":[{"kind":"PodChaos","namespace":"x","name":"a"}]}`))
	f.Add([]byte(`{"records":[{"events":[{"time":"bad"}]}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := UndoOf(engine.Applied{ID: "f", Undo: b})
		if err != nil {
			if engine.KindOf(err) != engine.KindInvalid {
				t.Fatalf("kind %v for %v", engine.KindOf(err), err)
			}
			return
		}
		if _, err := json.Marshal(u); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzCut(f *testing.F) {
	f.Add("halves", 5, 0)
	f.Add("majorities-ring", 7, 3)
	f.Add("bridge", 3, 1)
	f.Add("isolate-one", 2, 1)
	f.Fuzz(func(t *testing.T, shape string, n, iso int) {
		if n < 0 || n > 50 {
			return
		}
		nodes := make([]string, n)
		for i := range nodes {
			nodes[i] = fmt.Sprintf("p%02d", i)
		}
		isolate := ""
		if n > 0 && iso >= 0 {
			isolate = nodes[iso%n]
		}
		sides, err := Cut(shape, nodes, isolate)
		if err != nil {
			return
		}
		// Every side is non-empty, cuts off at least one pod, and never
		// lists a pod on both ends.
		for _, s := range sides {
			if len(s.From) == 0 || len(s.To) == 0 {
				t.Fatalf("%s n=%d: empty side %+v", shape, n, s)
			}
			for _, x := range s.From {
				if contains(s.To, x) {
					t.Fatalf("%s n=%d: %s on both ends", shape, n, x)
				}
			}
		}
		// Cuts are symmetric: a cannot reach b iff b cannot reach a.
		cut := map[[2]string]bool{}
		for _, s := range sides {
			for _, a := range s.From {
				for _, b := range s.To {
					cut[[2]string{a, b}] = true
				}
			}
		}
		for k := range cut {
			if !cut[[2]string{k[1], k[0]}] {
				t.Fatalf("%s n=%d: %s→%s cut but not back", shape, n, k[0], k[1])
			}
		}
	})
}

func TestParsePodsFile(t *testing.T) {
	pf, err := ParsePodsFile("p.yaml", []byte("canary: {namespace: a, pods: [x2, x1]}\ncontrol: {namespace: b, pods: [y]}\n"))
	if err != nil || pf.Canary.Pods[0] != "x1" || pf.Control.Namespace != "b" {
		t.Fatalf("%+v %v", pf, err)
	}
	for in, want := range map[string]string{
		"canary: {namespace: a, pods: [x]}\n":                                         "control.namespace is empty",
		"canary: {namespace: a, pods: [x, x]}\ncontrol: {namespace: b, pods: [y]}\n":  "canary.pods[1]",
		"canary: {namespace: a, pods: [x]}\ncontrol: {namespace: b, pods: [y]}\nz: 1": "unknown field",
		"canary: [\n": "p.yaml",
	} {
		_, err := ParsePodsFile("p.yaml", []byte(in))
		if engine.KindOf(err) != engine.KindInvalid || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want it to mention %q", in, err, want)
		}
	}
}

func FuzzParsePodsFile(f *testing.F) {
	f.Add([]byte("canary: {namespace: a, pods: [x]}\ncontrol: {namespace: b, pods: [y]}\n"))
	f.Add([]byte("{\"canary\":{\"namespace\":\"a\",\"pods\":[\"\"]}}"))
	f.Add([]byte(":"))
	f.Add([]byte("canary: {namespace: a, pods: [x, y], zones: {b: [y]}}\ncontrol: {namespace: b, pods: [y], zones: {b: [q]}}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pf, err := ParsePodsFile("f", b)
		if err != nil {
			if engine.KindOf(err) != engine.KindInvalid {
				t.Fatalf("kind %v: %v", engine.KindOf(err), err)
			}
			return
		}
		if pf.Canary.Namespace == "" || pf.Control.Namespace == "" || len(pf.Canary.Pods) == 0 || len(pf.Control.Pods) == 0 {
			t.Fatalf("accepted an incomplete file: %+v", pf)
		}
		// Every zone's pods are pods of the arm.
		for _, a := range []ArmPods{pf.Canary, pf.Control} {
			for z := range a.Zones {
				pods, err := a.ZonePods(z)
				for _, p := range pods {
					if !slices.Contains(a.Pods, p) {
						t.Fatalf("zone %s holds %q, not a pod of the arm %v", z, p, a.Pods)
					}
				}
				if err != nil && len(a.Zones[z]) > 0 {
					t.Fatalf("zone %s of %+v: %v", z, a, err)
				}
			}
		}
	})
}

func TestRecoverRefusesAnotherBackendsFault(t *testing.T) {
	in := NewWithClients(nil, nil, testOptions("ns", "r"))
	err := in.Recover(context.Background(), engine.Applied{ID: "x", Backend: "local", Undo: json.RawMessage(`{"toxics":[]}`)})
	if engine.KindOf(err) != engine.KindInvalid || !strings.Contains(err.Error(), `"local" backend`) {
		t.Fatalf("err = %v", err)
	}
}

func TestLocalNodeNamesMapToPods(t *testing.T) {
	ctx := context.Background()
	po := testOptions("ns", "run1").PlanOptions
	base := engine.Target{Arm: engine.ArmCanary, Nodes: []string{"agg-2", "agg-0", "agg-1"}}
	// network-delay.yaml: edges {into: n2, clients: true} → every packet agg-1 sends.
	p, err := BuildPlan(ctx, po, base, engine.Fault{ID: "d", Kind: engine.NetworkDelay, Duration: time.Second, Latency: 80 * time.Millisecond,
		Edges: engine.Edges{Into: "n2", Clients: true}})
	if err != nil {
		t.Fatal(err)
	}
	if nc := p.Objects[0].(*cm.NetworkChaos); strings.Join(nc.Spec.Selector.Pods["ns"], ",") != "agg-1" || nc.Spec.Target != nil {
		t.Fatalf("into n2: %+v", nc.Spec)
	}
	node := base
	node.Node = "n3"
	p, err = BuildPlan(ctx, po, node, engine.Fault{ID: "k", Kind: engine.PodKill, Duration: time.Second, Mode: "fixed"})
	if err != nil || p.Pods[0] != "agg-2" {
		t.Fatalf("n3: %+v %v", p.Pods, err)
	}
	p, err = BuildPlan(ctx, po, base, engine.Fault{ID: "b", Kind: engine.NetworkDelay, Duration: time.Second, Latency: time.Millisecond,
		Edges: engine.Edges{Between: []string{"n1", "agg-2"}}})
	if nc := p.Objects[0].(*cm.NetworkChaos); err != nil || nc.Spec.Selector.Pods["ns"][0] != "agg-0" || nc.Spec.Target.Selector.Pods["ns"][0] != "agg-2" {
		t.Fatalf("between n1 and agg-2: %v", err)
	}
	for name, want := range map[string]string{"n4": "only 3 pods", "web-0": "not a pod of the arm (agg-0, agg-1, agg-2)", "n0": "not a pod"} {
		node.Node = name
		_, err := BuildPlan(ctx, po, node, engine.Fault{ID: "k", Kind: engine.PodKill, Duration: time.Second})
		if engine.KindOf(err) != engine.KindInvalid || !strings.Contains(err.Error(), want) {
			t.Errorf("node %q: err = %v, want %q", name, err, want)
		}
	}
	// A delay into the only pod has nobody sending to it.
	_, err = BuildPlan(ctx, po, engine.Target{Arm: engine.ArmCanary, Nodes: []string{"solo"}}, engine.Fault{ID: "s", Kind: engine.NetworkDelay,
		Duration: time.Second, Latency: time.Millisecond, Edges: engine.Edges{Into: "solo"}})
	if engine.KindOf(err) != engine.KindInvalid || !strings.Contains(err.Error(), "no pod sends") {
		t.Fatalf("delay into the only pod: %v", err)
	}
}

// TestMajoritiesRingOfSevenPodsKeepsAMajority: each of 7 pods still reaches
// 4 of its 6 peers (itself and 4 is a majority of 7), as the local backend's
// ring does — both take the cut from engine/geometry.
func TestMajoritiesRingOfSevenPodsKeepsAMajority(t *testing.T) {
	pods := []string{"p0", "p1", "p2", "p3", "p4", "p5", "p6"}
	sides, err := Cut("majorities-ring", pods, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(sides) != 7 {
		t.Fatalf("sides %+v", sides)
	}
	for _, s := range sides {
		if len(s.From) != 1 || len(s.To) != 2 {
			t.Fatalf("pod %v loses %v: want 2 of 6 peers lost", s.From, s.To)
		}
	}
	if _, err := Cut("halves", pods, "p9"); err == nil || !strings.Contains(err.Error(), `pod "p9" is not one of the arm's pods`) {
		t.Fatalf("unknown isolate: %v", err)
	}
}
