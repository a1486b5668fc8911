package k8s

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/internal/k8senv"
	"github.com/chaosgate/chaosgate/scenarios"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(k8senv.Main(m), k8senv.LeakOptions()...) }

const digestA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func int32p(v int32) *int32 { return &v }

// seed creates a stable StatefulSet and a canary Deployment with pods, as a
// controller-manager and kubelet would have (status written by hand).
func seed(t *testing.T, ctx context.Context, c kubernetes.Interface, ns string) {
	t.Helper()
	tmpl := func(track string, image string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agg", "track": track}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agg", Image: image}}},
		}
	}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agg-stable", Namespace: ns},
		Spec: appsv1.StatefulSetSpec{Replicas: int32p(3), ServiceName: "agg-stable",
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agg", "track": "stable"}},
			Template: tmpl("stable", "registry.example/agg:1.0")},
	}
	sts, err := c.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sts.Status = appsv1.StatefulSetStatus{Replicas: 3, ReadyReplicas: 3, CurrentRevision: "agg-stable-5d8f", UpdateRevision: "agg-stable-5d8f"}
	if _, err := c.AppsV1().StatefulSets(ns).UpdateStatus(ctx, sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "agg-canary", Namespace: ns, Annotations: map[string]string{RevisionAnnotation: "7"}},
		Spec: appsv1.DeploymentSpec{Replicas: int32p(5),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agg", "track": "canary"}},
			Template: tmpl("canary", "registry.example/agg@sha256:"+digestA)},
	}
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mkPod(t, ctx, c, ns, fmt.Sprintf("agg-stable-%d", i), map[string]string{"app": "agg", "track": "stable", "controller-revision-hash": "agg-stable-5d8f"},
			"docker-pullable://registry.example/agg@sha256:"+strings.Repeat("b", 64))
	}
	for i := range 5 {
		mkPod(t, ctx, c, ns, fmt.Sprintf("agg-canary-%d", i), map[string]string{"app": "agg", "track": "canary", "pod-template-hash": "abc"}, "")
	}
}

func mkPod(t *testing.T, ctx context.Context, c kubernetes.Interface, ns, name string, lbl map[string]string, imageID string) {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: lbl},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agg", Image: "registry.example/agg:1.0"}}}}
	p, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if imageID != "" {
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "agg", Image: "registry.example/agg:1.0", ImageID: imageID, Ready: true}}
		if _, err := c.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestResolvePairAgainstAPIServer(t *testing.T) {
	e := k8senv.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ns = "resolve"
	if err := e.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	seed(t, ctx, e.Client, ns)
	r := NewResolver(e.Client, nil)
	canary, control, err := Selectors(&scenarios.KubernetesTarget{Namespace: "ignored",
		Canary:  scenarios.Selector{MatchLabels: map[string]string{"track": "canary"}},
		Control: scenarios.Selector{MatchLabels: map[string]string{"track": "stable"}}}, ns)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := r.ResolvePair(ctx, canary, control)
	if err != nil {
		t.Fatal(err)
	}
	c, s := pair.Canary, pair.Control
	if c.Kind != Deployment || c.Name != "agg-canary" || c.Revision != "7" || c.Replicas != 5 || len(c.Pods) != 5 {
		t.Fatalf("canary = %+v", c)
	}
	if s.Kind != StatefulSet || s.Name != "agg-stable" || s.Revision != "agg-stable-5d8f" || len(s.Pods) != 3 || !s.Pods[0].Ready {
		t.Fatalf("control = %+v", s)
	}
	// Digests: the canary pins its image by digest; the stable pods report one.
	if len(c.Digests) != 1 || c.Digests[0] != digestA {
		t.Fatalf("canary digests = %v", c.Digests)
	}
	if got := c.Subject(); got.Digest["sha256"] != digestA || got.Name != "Deployment/resolve/agg-canary@7" {
		t.Fatalf("canary subject = %+v", got)
	}
	if got := s.RevisionString(); got != "StatefulSet/resolve/agg-stable@sha256:"+strings.Repeat("b", 64) {
		t.Fatalf("stable revision = %q", got)
	}
	if c.Pods[0].Revision != "abc" || s.Pods[2].Revision != "agg-stable-5d8f" {
		t.Fatalf("pod revisions %q %q", c.Pods[0].Revision, s.Pods[2].Revision)
	}
	// What a rollout controller may ask the gate for: the pods'
	// pod-template-hash (controller-revision-hash) and the single digest.
	if got := strings.Join(c.GateKeys(), ","); got != "abc,sha256:"+digestA {
		t.Fatalf("canary gate keys %s", got)
	}
	if got := strings.Join(s.GateKeys(), ","); got != "agg-stable-5d8f,sha256:"+strings.Repeat("b", 64) {
		t.Fatalf("stable gate keys %s", got)
	}
	if tg := pair.Target(engine.ArmControl); tg.Arm != engine.ArmControl || strings.Join(tg.Nodes, ",") != "agg-stable-0,agg-stable-1,agg-stable-2" {
		t.Fatalf("target = %+v", tg)
	}

	// Blast radius from the real replica counts: 2 of 5 is allowed, 3 of 5
	// is a quorum; 1 of 3 is allowed, 2 of 3 is a quorum.
	br := scenarios.BlastRadius{}
	if ok, why := c.Budget(br, 2); !ok {
		t.Fatalf("2 of 5: %s", why)
	}
	if ok, why := c.Budget(br, 3); ok || !strings.Contains(why, "Deployment/resolve/agg-canary") || !strings.Contains(why, "quorum") {
		t.Fatalf("3 of 5: ok=%v why=%q", ok, why)
	}
	if got := s.MaxImpaired(br); got != 1 {
		t.Fatalf("stable max impaired = %d, want 1", got)
	}
	if got := c.MaxImpaired(scenarios.BlastRadius{AllowQuorum: true, MaxReplicas: 4}); got != 4 {
		t.Fatalf("canary max impaired with allowQuorum,maxReplicas 4 = %d", got)
	}

	// A selector matching both workloads is refused, naming both.
	_, err = r.Resolve(ctx, engine.ArmCanary, Selector{Namespace: ns, MatchLabels: map[string]string{"app": "agg"}})
	if engine.KindOf(err) != engine.KindInvalid || !strings.Contains(err.Error(), "Deployment/resolve/agg-canary") || !strings.Contains(err.Error(), "StatefulSet/resolve/agg-stable") {
		t.Fatalf("ambiguous selector: %v", err)
	}
	// Nothing matches.
	_, err = r.Resolve(ctx, engine.ArmCanary, Selector{Namespace: ns, MatchLabels: map[string]string{"track": "blue"}})
	if engine.KindOf(err) != engine.KindNotFound {
		t.Fatalf("no match: %v", err)
	}
	// The same workload for both arms.
	_, err = r.ResolvePair(ctx, canary, canary)
	if engine.KindOf(err) != engine.KindInvalid || !strings.Contains(err.Error(), "both select") {
		t.Fatalf("same workload: %v", err)
	}
}

func TestResolveForbiddenHasHint(t *testing.T) {
	e := k8senv.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok, err := e.ServiceAccountToken(ctx, "forbidden", "nobody")
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(e.ConfigForToken(tok))
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewResolver(c, nil).Resolve(ctx, engine.ArmCanary, Selector{Namespace: "forbidden", MatchLabels: map[string]string{"a": "b"}})
	var ee *engine.Error
	if !errors.As(err, &ee) || !strings.Contains(err.Error(), "hint: the ServiceAccount needs") {
		t.Fatalf("forbidden: %v", err)
	}
}

func TestSelectorsNeedNamespace(t *testing.T) {
	if _, _, err := Selectors(nil, "x"); engine.KindOf(err) != engine.KindInvalid {
		t.Fatalf("nil target: %v", err)
	}
	if _, _, err := Selectors(&scenarios.KubernetesTarget{}, ""); err == nil || !strings.Contains(err.Error(), "--namespace") {
		t.Fatalf("no namespace: %v", err)
	}
}

func TestDigestOf(t *testing.T) {
	h := strings.Repeat("c", 64)
	for in, want := range map[string]string{
		"docker-pullable://r/x@sha256:" + h:     h,
		"sha256:" + h:                           h,
		"r/x:1.0":                               "",
		"r/x@sha256:short":                      "",
		"r/x@sha256:" + strings.Repeat("z", 64): "",
	} {
		if got := DigestOf(in); got != want {
			t.Errorf("DigestOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzDigestOf(f *testing.F) {
	f.Add("docker-pullable://r/x@sha256:" + strings.Repeat("c", 64))
	f.Add("sha256:")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		d := DigestOf(s)
		if d != "" && (len(d) != 64 || !strings.Contains(strings.ToLower(s), d)) {
			t.Fatalf("DigestOf(%q) = %q", s, d)
		}
	})
}
