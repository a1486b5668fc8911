package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/chaosgate/chaosgate/internal/freeport"
	"github.com/chaosgate/chaosgate/internal/k8senv"
	"github.com/chaosgate/chaosgate/internal/kubelettest"
)

// TestChartServePodRunsOnAKubelet runs serve's pod as the chart renders it
// — its security context (non-root, fsGroup, read-only root file system,
// no capabilities), its data directory, and its bearer tokens from the
// chart's Secret mounted as a volume — on a real kubelet with the image
// `make image` builds. Only what a CNI-less test node needs is changed:
// host network, the node name, a free loopback port, the image pulled from
// the node. The pod must go Ready and serve must accept the Secret's token.
func TestChartServePodRunsOnAKubelet(t *testing.T) {
	env := k8senv.Get(t)
	node := kubelettest.Get(t, env, kubelettest.Options{Name: "chart-node", IP: "127.0.0.1"})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	// The image, as `make image` builds it.
	ref, tarPath, err := kubelettest.ChaosgateImage(ctx, t.TempDir(), "v0.0.0-charttest")
	if err != nil {
		t.Fatal(err)
	}
	if err := node.ImportImage(ctx, tarPath); err != nil {
		t.Fatal(err)
	}

	const ns, token = "chart-kubelet", "argo-viewer-token-0123456789"
	objs, _, err := renderChart("chaosgate", ns, map[string]any{
		"image":       map[string]any{"tag": "v0.0.0-charttest", "pullPolicy": "Never"},
		"target":      "local",
		"persistence": map[string]any{"enabled": false},
		"tokens":      map[string]any{"create": true, "list": []any{map[string]any{"name": "argo", "role": "viewer", "token": token}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	var dep *unstructured.Unstructured
	var deps []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "Deployment":
			dep = o
		case "Secret", "ConfigMap", "ServiceAccount":
			deps = append(deps, o)
		}
	}
	if err := env.NewApplier().Create(ctx, "chart", deps); err != nil {
		t.Fatal(err)
	}
	if dep == nil {
		t.Fatal("the chart renders no Deployment")
	}
	var tmpl corev1.PodTemplateSpec
	raw, _, _ := unstructured.NestedMap(dep.Object, "spec", "template")
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &tmpl); err != nil {
		t.Fatal(err)
	}
	ports, err := freeport.Ports(1)
	if err != nil {
		t.Fatal(err)
	}
	port := ports[0]
	spec := tmpl.Spec
	spec.NodeName, spec.HostNetwork = node.Name, true
	c := &spec.Containers[0]
	for i, a := range c.Args {
		if a == "--http=:8080" {
			c.Args[i] = fmt.Sprintf("--http=127.0.0.1:%d", port)
		}
	}
	c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}
	if c.Image != ref || c.ImagePullPolicy != corev1.PullNever {
		t.Fatalf("chart image %s (%s), want %s", c.Image, c.ImagePullPolicy, ref)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "chaosgate-0", Namespace: ns, Labels: tmpl.Labels}, Spec: spec}
	created, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer node.DeletePod(context.Background(), ns, pod.Name, created.UID)
	if p := waitPodReady(ctx, t, env, node, ns, pod.Name); p == nil {
		return
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	gate := func(tok string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/gate/7c9d5f", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if code, body := gate(token); code != 200 || !strings.Contains(body, `"pending"`) {
		t.Errorf("gate with the Secret's token: %d %s", code, body)
	}
	if code, _ := gate("not-the-token-at-all"); code != 401 {
		t.Errorf("gate with a wrong token: %d, want 401", code)
	}
	logs, err := env.Client.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(logs, []byte("/var/lib/chaosgate/data")) || bytes.Contains(logs, []byte("created /var/lib/chaosgate/data/tokens.yaml")) {
		t.Errorf("serve's log: want its data in /var/lib/chaosgate/data and the Secret's tokens (no tokens file created):\n%s", logs)
	}
}

// waitPodReady waits until the pod is Running and every container ready;
// a pod that ends fails the test with the node's logs.
func waitPodReady(ctx context.Context, t *testing.T, env *k8senv.Env, node *kubelettest.Node, ns, name string) *corev1.Pod {
	t.Helper()
	var last string
	for ctx.Err() == nil {
		p, err := env.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		st, _ := json.Marshal(p.Status.ContainerStatuses)
		last = fmt.Sprintf("phase %s, containers %s", p.Status.Phase, st)
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			logs, _ := env.Client.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
			t.Fatalf("pod ended: %s\nlogs: %s\n%s", last, logs, node.Log())
		}
		ready := p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) > 0
		for _, c := range p.Status.ContainerStatuses {
			ready = ready && c.Ready
			if w := c.LastTerminationState.Terminated; w != nil {
				logs, _ := env.Client.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Previous: true}).DoRaw(ctx)
				t.Fatalf("container %s exited %d (%s): %s\nlogs: %s", c.Name, w.ExitCode, w.Reason, last, logs)
			}
		}
		if ready {
			return p
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("pod not Running and Ready: %s\n%s", last, node.Log())
	return nil
}
