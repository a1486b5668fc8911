package k8s

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/traffic"
	"github.com/chaosgate/chaosgate/internal/k8senv"
)

// TestArmsMoveTrafficAndFindZones: on the real API server, the target sets
// a step's split on an HTTPRoute (the Gateway API CRD from its module) and
// reads it back, and finds a zone's pods by their zone label.
func TestArmsMoveTrafficAndFindZones(t *testing.T) {
	e := k8senv.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "arms-traffic"
	gw, err := k8senv.ModuleDir(ctx, "sigs.k8s.io/gateway-api@v1.6.3")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ApplyCRDFile(ctx, filepath.Join(gw, "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, z := range []string{"z1", "z2", "z1"} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "agg-canary-" + string(rune('a'+i)), Namespace: ns,
			Labels: map[string]string{"app": "agg", "track": "canary", ZoneLabel: z}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agg", Image: "aggregator:test"}}}}
		if _, err := e.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := traffic.New(e.Dynamic, traffic.Config{Provider: traffic.GatewayAPI, Namespace: ns, Route: "agg", Gateway: "public",
		StableService: "agg-stable", CanaryService: "agg-canary", Port: 7001, Header: &traffic.HeaderMatch{Name: "x-canary", Value: "always"}})
	if err != nil {
		t.Fatal(err)
	}
	canary := &Workload{Arm: engine.ArmCanary, Kind: Deployment, Namespace: ns, Name: "agg-canary", PodSelector: "app=agg,track=canary"}
	control := &Workload{Arm: engine.ArmControl, Kind: Deployment, Namespace: ns, Name: "agg", PodSelector: "app=agg,track=stable"}
	a, err := NewArms(ctx, ArmsConfig{Pair: Pair{Canary: canary, Control: control}, Resolver: NewResolver(e.Client, e.Dynamic), Partitions: 4, Router: r})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []int{1, 10, 50, 0} {
		msg, err := a.SetCanaryWeight(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(msg, "HTTPRoute "+ns+"/agg") || !strings.Contains(msg, "x-canary: always → canary") {
			t.Fatalf("at %d%%: %s", w, msg)
		}
		if s, _ := r.Read(ctx); s.Weights["agg-canary"] != int64(w) || s.Weights["agg-stable"] != int64(100-w) {
			t.Fatalf("at %d%% the route holds %v", w, s.Weights)
		}
	}
	if got, err := a.ZoneNodes(ctx, engine.ArmCanary, "z1"); err != nil || strings.Join(got, ",") != "agg-canary-a,agg-canary-c" {
		t.Fatalf("zone z1: %v, %v", got, err)
	}
	if _, err := a.ZoneNodes(ctx, engine.ArmControl, "z1"); err == nil || !strings.Contains(err.Error(), ZoneLabel+"=z1") {
		t.Fatalf("zone z1 of the control (no pods): %v", err)
	}
	// Without a traffic section the route is left alone.
	plain, err := NewArms(ctx, ArmsConfig{Pair: Pair{Canary: canary, Control: control}, Resolver: NewResolver(e.Client, e.Dynamic), Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	if msg, err := plain.SetCanaryWeight(ctx, 50); err != nil || msg != "" {
		t.Fatalf("no router: %q, %v", msg, err)
	}
	if s, _ := r.Read(ctx); s.Weights["agg-canary"] != 0 {
		t.Fatalf("a target without a traffic section moved the route: %v", s.Weights)
	}
}
