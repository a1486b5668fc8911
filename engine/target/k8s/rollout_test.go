package k8s

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/internal/k8senv"
	"github.com/chaosgate/chaosgate/scenarios"
)

// seedRollout creates a Rollout mid-update: a canary ReplicaSet (revision
// 3, image pinned by digestA) and a stable one (revision 2).
func seedRollout(t *testing.T, ctx context.Context, e *k8senv.Env, ns, name, canaryHash, stableHash string, canaryPods, stablePods int) *unstructured.Unstructured {
	t.Helper()
	ro, err := e.SeedRollout(ctx, k8senv.RolloutFixture{Namespace: ns, Name: name, CanaryHash: canaryHash, StableHash: stableHash,
		CanaryPods: canaryPods, StablePods: stablePods,
		CanaryImage: "registry.example/agg@sha256:" + digestA, CanaryImageID: "registry.example/agg@sha256:" + digestA,
		StableImage: "registry.example/agg:1.0", StableImageID: "docker-pullable://registry.example/agg@sha256:" + strings.Repeat("b", 64)})
	if err != nil {
		t.Fatal(err)
	}
	return ro
}

// TestResolveArgoRolloutAgainstAPIServer resolves an Argo Rollout mid-update
// on a real API server with Argo's own CRDs: the canary arm is the
// ReplicaSet of status.currentPodHash, the control that of status.stableRS;
// the canary's gate keys are what Argo's analysis can send. A Rollout that
// is not updating, has no status yet, is missing, or whose hash labels a
// ReplicaSet it does not own, is refused with a reason.
func TestResolveArgoRolloutAgainstAPIServer(t *testing.T) {
	e := k8senv.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.InstallArgoRolloutCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	const ns = "rollouts"
	if err := e.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	seedRollout(t, ctx, e, ns, "agg", "7c9d5f", "5b6c44", 1, 3)
	r := NewResolver(e.Client, e.Dynamic)
	pair, err := r.ResolveRollout(ctx, ns, "agg")
	if err != nil {
		t.Fatal(err)
	}
	c, s := pair.Canary, pair.Control
	if c.Kind != ReplicaSet || c.Ref() != "ReplicaSet/rollouts/agg-7c9d5f" || c.Rollout != "Rollout/rollouts/agg" || c.Revision != "3" ||
		c.Replicas != 1 || len(c.Pods) != 1 || c.Arm != engine.ArmCanary {
		t.Fatalf("canary %+v", c)
	}
	if s.Ref() != "ReplicaSet/rollouts/agg-5b6c44" || s.Revision != "2" || s.Replicas != 3 || len(s.Pods) != 3 || s.Arm != engine.ArmControl {
		t.Fatalf("control %+v", s)
	}
	if got, want := c.RevisionString(), "ReplicaSet/rollouts/agg-7c9d5f@sha256:"+digestA; got != want {
		t.Errorf("canary revision %q, want %q", got, want)
	}
	if got, want := strings.Join(c.GateKeys(), " "), "7c9d5f Rollout/rollouts/agg@3 sha256:"+digestA; got != want {
		t.Errorf("canary gate keys %q, want %q", got, want)
	}
	if got := s.GateKeys(); len(got) != 3 || got[0] != "5b6c44" || got[1] != "Rollout/rollouts/agg@2" {
		t.Errorf("control gate keys %q", got)
	}
	// The blast radius counts each ReplicaSet's real size: the one-pod
	// canary cannot lose its only pod without losing its quorum; the
	// three-pod stable can lose one.
	if c.MaxImpaired(scenarios.BlastRadius{}) != 0 || s.MaxImpaired(scenarios.BlastRadius{}) != 1 {
		t.Errorf("budgets: canary %d, control %d", c.MaxImpaired(scenarios.BlastRadius{}), s.MaxImpaired(scenarios.BlastRadius{}))
	}
	if c.PodSelector != "app=agg,rollouts-pod-template-hash=7c9d5f" {
		t.Errorf("canary pod selector %q", c.PodSelector)
	}

	// Not updating: current == stable.
	ro := seedRollout(t, ctx, e, ns, "idle", "111aaa", "222bbb", 1, 1)
	unstructured.SetNestedField(ro.Object, "222bbb", "status", "currentPodHash")
	if _, err := e.Dynamic.Resource(RolloutResource).Namespace(ns).UpdateStatus(ctx, ro, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ResolveRollout(ctx, ns, "idle"); engine.KindOf(err) != engine.KindInvalid || !strings.Contains(err.Error(), "not being updated") {
		t.Errorf("idle rollout: %v", err)
	}
	// No status yet.
	fresh := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
		"metadata": map[string]any{"name": "fresh", "namespace": ns},
		"spec": map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"app": "fresh"}},
			"template": map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "fresh"}},
				"spec": map[string]any{"containers": []any{map[string]any{"name": "c", "image": "x"}}}}}}}
	if _, err := e.Dynamic.Resource(RolloutResource).Namespace(ns).Create(ctx, fresh, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ResolveRollout(ctx, ns, "fresh"); engine.KindOf(err) != engine.KindInvalid || !strings.Contains(err.Error(), "wait until the Argo Rollouts controller") {
		t.Errorf("rollout without status: %v", err)
	}
	// Missing.
	if _, err := r.ResolveRollout(ctx, ns, "nope"); engine.KindOf(err) != engine.KindNotFound || !strings.Contains(err.Error(), "kubectl get rollouts.argoproj.io -n rollouts") {
		t.Errorf("missing rollout: %v", err)
	}
	// A ReplicaSet with the canary's hash label that another Rollout owns is
	// not this Rollout's canary.
	orphan := seedRollout(t, ctx, e, ns, "shadow", "333ccc", "444ddd", 1, 1)
	if err := e.Client.AppsV1().ReplicaSets(ns).Delete(ctx, "shadow-333ccc", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	foreign := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "impostor-333ccc", Namespace: ns,
		Labels:          map[string]string{"app": "shadow", RolloutHashLabel: "333ccc"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "shadow", UID: types.UID("not-" + string(orphan.GetUID()))}}},
		Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "shadow", RolloutHashLabel: "333ccc"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "shadow", RolloutHashLabel: "333ccc"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}}}
	if _, err := e.Client.AppsV1().ReplicaSets(ns).Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ResolveRollout(ctx, ns, "shadow"); engine.KindOf(err) != engine.KindNotFound || !strings.Contains(err.Error(), "no ReplicaSet owned by Rollout/rollouts/shadow carries rollouts-pod-template-hash=333ccc") {
		t.Errorf("foreign ReplicaSet: %v", err)
	}
	if _, err := NewResolver(e.Client, nil).ResolveRollout(ctx, ns, "agg"); engine.KindOf(err) != engine.KindInvalid {
		t.Errorf("no dynamic client: %v", err)
	}
}
