package k8senv

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(Main(m), LeakOptions()...) }

func TestControlPlaneServesAndAuthenticates(t *testing.T) {
	e := Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	v, err := e.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if v.GitVersion != KubeAPIServerVersion && !strings.HasPrefix(v.GitVersion, "v0.0.0") {
		t.Logf("server reports %q (module builds carry no version stamp)", v.GitVersion)
	}

	tok, err := e.ServiceAccountToken(ctx, "harness", "probe")
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(e.ConfigForToken(tok))
	if err != nil {
		t.Fatal(err)
	}
	// A ServiceAccount with no bindings is authenticated but may read nothing.
	_, err = sa.CoreV1().Pods("harness").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("list pods as an unbound ServiceAccount: err = %v, want 403 Forbidden", err)
	}
	if !strings.Contains(err.Error(), "system:serviceaccount:harness:probe") {
		t.Fatalf("403 does not name the ServiceAccount: %v", err)
	}
	// A garbage token is not authenticated at all.
	bad, _ := kubernetes.NewForConfig(e.ConfigForToken("not-a-token"))
	if _, err := bad.CoreV1().Pods("harness").List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Fatalf("garbage token: err = %v, want 401", err)
	}
}

func TestChaosMeshCRDsRejectInvalidSpec(t *testing.T) {
	e := GetWithChaosMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.EnsureNamespace(ctx, "crd"); err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: "chaos-mesh.org", Version: "v1alpha1", Resource: "podchaos"}
	obj := func(action string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "PodChaos",
			"metadata": map[string]any{"generateName": "x-"},
			"spec": map[string]any{"action": action, "mode": "one",
				"selector": map[string]any{"namespaces": []any{"crd"}}},
		}}
	}
	if _, err := e.Dynamic.Resource(gvr).Namespace("crd").Create(ctx, obj("pod-kill"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("valid PodChaos refused: %v", err)
	}
	_, err := e.Dynamic.Resource(gvr).Namespace("crd").Create(ctx, obj("explode"), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.action") {
		t.Fatalf("invalid PodChaos: err = %v, want Invalid on spec.action", err)
	}
}

func TestDecodeObjectsReportsDocument(t *testing.T) {
	objs, err := DecodeObjects(strings.NewReader("a: 1\n---\n---\nb: 2\n"), "x.yaml")
	if err != nil || len(objs) != 2 {
		t.Fatalf("objs=%d err=%v, want 2 objects", len(objs), err)
	}
	_, err = DecodeObjects(strings.NewReader("a: 1\n---\nb: [\n"), "x.yaml")
	if err == nil || !strings.Contains(err.Error(), "x.yaml: document 2") {
		t.Fatalf("err = %v, want it to name x.yaml document 2", err)
	}
}

func FuzzDecodeObjects(f *testing.F) {
	f.Add("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\nkind: X\n")
	f.Add("{\"kind\":\"X\"}")
	f.Add("---\n---\n")
	f.Add("a: [\n")
	f.Fuzz(func(t *testing.T, s string) {
		objs, err := DecodeObjects(strings.NewReader(s), "fuzz")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz: document ") {
				t.Fatalf("error does not name the document: %v", err)
			}
			return
		}
		for _, o := range objs {
			if len(o.Object) == 0 {
				t.Fatal("empty object returned")
			}
		}
	})
}
