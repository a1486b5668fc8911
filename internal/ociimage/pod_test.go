package ociimage_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/chaosgate/chaosgate/internal/freeport"
	"github.com/chaosgate/chaosgate/internal/k8senv"
	"github.com/chaosgate/chaosgate/internal/kubelettest"
	"github.com/chaosgate/chaosgate/internal/ociimage"
)

// The image, imported into a real node's containerd, runs `chaosgate serve`
// as a pod: non-root, Ready through its readiness probe, serving the
// version of its label.
func TestImageRunsAsReadyNonRootPod(t *testing.T) {
	env := k8senv.Get(t)
	node := kubelettest.Get(t, env, kubelettest.Options{Name: "image-node", IP: "127.0.0.1"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	o := ociimage.OptionsForTest(t)
	img := ociimage.ImageForTest(t)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	ref := ociimage.Repository + ":" + o.Version
	tag, err := ociimage.Tag(ref)
	if err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "chaosgate-image.tar")
	if err := ociimage.WriteTarball(tarPath, img, tag); err != nil {
		t.Fatal(err)
	}
	if err := node.ImportImage(ctx, tarPath); err != nil {
		t.Fatal(err)
	}

	ports, err := freeport.Ports(1)
	if err != nil {
		t.Fatal(err)
	}
	port := ports[0]
	const ns = "image"
	if err := env.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "chaosgate", Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:    node.Name,
			HostNetwork: true,
			// The image's user; runAsNonRoot makes the kubelet check it.
			SecurityContext:               &corev1.PodSecurityContext{RunAsNonRoot: &yes},
			TerminationGracePeriodSeconds: new(int64(5)),
			Containers: []corev1.Container{{
				Name:            "chaosgate",
				Image:           ref,
				ImagePullPolicy: corev1.PullNever,
				// The image's data directory; loopback only (host network).
				Args: []string{"serve", fmt.Sprintf("--http=127.0.0.1:%d", port), "--data-dir=" + ociimage.DataDir},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt(port)}},
					PeriodSeconds: 1,
				},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: &no,
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
	created, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	running := waitReady(ctx, t, env, node, ns, pod.Name)
	if running.Status.PodIP != node.IP {
		t.Errorf("podIP %q, want the node's InternalIP %s", running.Status.PodIP, node.IP)
	}

	// The container's process runs as the image's user, not root.
	cs := running.Status.ContainerStatuses[0]
	pid, err := node.TaskPID(ctx, cs.ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	uids, gids := procIDs(t, pid)
	for _, u := range uids {
		if u == 0 || u != ociimage.UID {
			t.Errorf("container process %d runs with uids %v, want all %d (non-root)", pid, uids, ociimage.UID)
			break
		}
	}
	for _, g := range gids {
		if g != ociimage.GID {
			t.Errorf("container process %d runs with gids %v, want all %d", pid, gids, ociimage.GID)
			break
		}
	}

	// What it serves is the version its label names.
	code, body, err := kubelettest.HTTPGet(ctx, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil || code != 200 {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	served, err := buildInfoVersion(body)
	if err != nil {
		t.Fatal(err)
	}
	if label := cf.Config.Labels[ociimage.LabelVersion]; served != label {
		t.Errorf("chaosgate_build_info version %q, image label %q", served, label)
	}

	// The API server reaches the kubelet at the InternalIP for logs.
	logs, err := env.Client.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Errorf("pod logs through the API server: %v", err)
	} else if !bytes.Contains(logs, []byte("created the evidence keys in "+ociimage.DataDir)) {
		t.Errorf("pod logs do not show serve creating its keys in %s:\n%s", ociimage.DataDir, logs)
	}

	// Deleting the pod stops the container.
	if err := node.DeletePod(ctx, ns, pod.Name, created.UID); err != nil {
		t.Fatalf("%v\n%s", err, node.Log())
	}
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("container process %d still exists after the pod was deleted (kill -0: %v)", pid, err)
	}
}

// waitReady waits until the pod is Running with every container ready.
func waitReady(ctx context.Context, t *testing.T, env *k8senv.Env, node *kubelettest.Node, ns, name string) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var last string
	for time.Now().Before(deadline) {
		p, err := env.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		last = fmt.Sprintf("phase %s, conditions %v, containers %v", p.Status.Phase, p.Status.Conditions, p.Status.ContainerStatuses)
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			t.Fatalf("pod ended: %s\n%s", last, node.Log())
		}
		ready := p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) == 1
		for _, c := range p.Status.ContainerStatuses {
			ready = ready && c.Ready
		}
		if ready {
			return p
		}
		if err := ctx.Err(); err != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("pod not Running and Ready after 3m: %s\n%s", last, node.Log())
	return nil
}

// procIDs reads the real, effective, saved and filesystem uids and gids of
// a process.
func procIDs(t *testing.T, pid int) (uids, gids []int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		var dst *[]int
		switch k {
		case "Uid":
			dst = &uids
		case "Gid":
			dst = &gids
		default:
			continue
		}
		for _, f := range strings.Fields(v) {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("/proc/%d/status %s: %q", pid, k, v)
			}
			*dst = append(*dst, n)
		}
	}
	if len(uids) != 4 || len(gids) != 4 {
		t.Fatalf("/proc/%d/status: uids %v gids %v, want 4 of each", pid, uids, gids)
	}
	return uids, gids
}

// buildInfoVersion returns the version label of chaosgate_build_info.
func buildInfoVersion(metrics []byte) (string, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(metrics))
	if err != nil {
		return "", fmt.Errorf("parse /metrics: %w", err)
	}
	f := fams["chaosgate_build_info"]
	if f == nil || len(f.GetMetric()) != 1 {
		return "", errors.New("/metrics has no single chaosgate_build_info")
	}
	for _, l := range f.GetMetric()[0].GetLabel() {
		if l.GetName() == "version" {
			return l.GetValue(), nil
		}
	}
	return "", errors.New("chaosgate_build_info has no version label")
}
