package k8s

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/internal/k8senv"
)

// BenchmarkBuildPlan measures planning one majorities-ring partition on 5
// pods: 5 NetworkChaos objects built, defaulted and checked with the Chaos
// Mesh webhook rules.
func BenchmarkBuildPlan(b *testing.B) {
	po := testOptions("ns", "bench").PlanOptions
	t := engine.Target{Arm: engine.ArmCanary, Nodes: pods5}
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f := engine.Fault{ID: fmt.Sprintf("b-%d", i), Kind: engine.Partition, Duration: time.Second, Shape: "majorities-ring"}
		if _, err := BuildPlan(ctx, po, t, f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInjectRecoverAPIServer measures one full networkDelay cycle
// against the real API server with the test controller playing Chaos Mesh
// (it reconciles every 50 ms; the injector polls every 50 ms): create,
// AllInjected, delete, AllRecovered and finalizer released.
func BenchmarkInjectRecoverAPIServer(b *testing.B) {
	e := k8senv.GetWithChaosMesh(b)
	ctx := context.Background()
	const ns = "bench"
	if err := e.EnsureNamespace(ctx, ns); err != nil {
		b.Fatal(err)
	}
	fc := k8senv.StartChaosController(nil, e.Dynamic, e.Client, ns)
	defer fc.Stop()
	in := NewWithClients(e.Client, e.Dynamic, testOptions(ns, "bench-run"))
	t := engine.Target{Arm: engine.ArmCanary, Nodes: pods5}
	for i := 0; b.Loop(); i++ {
		f := engine.Fault{ID: fmt.Sprintf("bench-%d", i), Kind: engine.NetworkDelay, Duration: time.Minute, Latency: 10 * time.Millisecond, Edges: engine.Edges{Into: "agg-0"}}
		a, err := in.Inject(ctx, t, f)
		if err != nil {
			b.Fatal(err)
		}
		if err := in.Recover(ctx, a); err != nil {
			b.Fatal(err)
		}
	}
}
