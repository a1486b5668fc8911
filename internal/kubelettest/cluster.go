package kubelettest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chaosgate/chaosgate/engine/proxy"
	"github.com/chaosgate/chaosgate/internal/freeport"
	"github.com/chaosgate/chaosgate/internal/k8senv"
	"github.com/chaosgate/chaosgate/internal/waitctx"
)

// ControllerManagerControllers are the kube-controller-manager controllers
// the test cluster runs: the workload controllers that create and replace
// pods, and the garbage collector that deletes what they owned. The node
// lifecycle controller is left out on purpose: with no CNI the Nodes never
// turn Ready, and it would evict every pod.
var ControllerManagerControllers = []string{"deployment", "replicaset", "statefulset", "garbage-collector-controller"}

// PodIndexLabel is the label a StatefulSet puts on its pods with their
// ordinal (Kubernetes ≥ 1.28).
const PodIndexLabel = "apps.kubernetes.io/pod-index"

// ClusterOptions configure a test cluster.
type ClusterOptions struct {
	// Nodes is the number of kubelet nodes (default 3). Node i (from 0) is
	// named node-(i+1) with InternalIP 127.0.0.(i+2).
	Nodes int
}

// Cluster is a test cluster that runs pods for real: the k8senv control
// plane, N kubelet nodes (each with its own containerd) and a real
// kube-controller-manager, so that Deployments and StatefulSets get pods and
// a deleted pod is replaced. The harness plays two parts no binary plays
// here: the cloud controller (each Node's InternalIP, see Node) and the
// scheduler, which binds every pending pod by one rule (see Place).
type Cluster struct {
	Env   *k8senv.Env
	Nodes []*Node

	dir     string
	kcm     *proc
	stopSch context.CancelFunc
	schDone chan struct{}

	mu      sync.Mutex
	bindErr string
	stopped bool
	// proxies stand in front of pods' ports for their peers (an
	// Aggregator with ThroughProxies); inbound lists each pod's. Peers
	// dial the source filter in front of each (filters, by proxy name),
	// from their node's address (podIP, by pod).
	proxies *proxy.Set
	inbound map[string][]string
	filters map[string]*sourceFilter
	podIP   map[string]string
}

// ControllerManagerBinary locates kube-controller-manager
// (KUBE_CONTROLLER_MANAGER, else the build cache); the error is a
// *k8senv.Unavailable saying how to build it.
func ControllerManagerBinary() (string, error) {
	p := os.Getenv("KUBE_CONTROLLER_MANAGER")
	if p == "" {
		p = filepath.Join(k8senv.CacheDir(), "kube-controller-manager-"+KubeletVersion)
	}
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		return "", &k8senv.Unavailable{Reason: fmt.Sprintf("kube-controller-manager %s not found at %s (run scripts/build-kube-controller-manager.sh, or make test-deps)", KubeletVersion, p)}
	}
	return p, nil
}

// StartCluster starts the nodes, the controller manager and the harness's
// scheduler on env. The caller must call Stop.
func StartCluster(ctx context.Context, env *k8senv.Env, o ClusterOptions) (*Cluster, error) {
	if o.Nodes <= 0 {
		o.Nodes = 3
	}
	if o.Nodes > 200 {
		return nil, fmt.Errorf("kubelettest: %d nodes: at most 200 (127.0.0.2–127.0.0.201)", o.Nodes)
	}
	if _, err := FindBinaries(); err != nil {
		return nil, err
	}
	kcmBin, err := ControllerManagerBinary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "chaosgate-cluster-")
	if err != nil {
		return nil, fmt.Errorf("kubelettest: temp dir: %w", err)
	}
	c := &Cluster{Env: env, dir: dir}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()
	// The nodes start one after the other: each builds and imports the
	// pause image, which a two-core host does better in sequence.
	for i := range o.Nodes {
		n, err := Start(ctx, env, Options{Name: fmt.Sprintf("node-%d", i+1), IP: fmt.Sprintf("127.0.0.%d", i+2)})
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	kubeconfig := filepath.Join(dir, "kube-controller-manager.kubeconfig")
	if err := env.Kubeconfig(kubeconfig); err != nil {
		return nil, err
	}
	ports, err := freeport.Ports(1)
	if err != nil {
		return nil, err
	}
	c.kcm, err = spawn(dir, "kube-controller-manager", kcmBin,
		"--kubeconfig", kubeconfig,
		"--authentication-kubeconfig", kubeconfig,
		"--authorization-kubeconfig", kubeconfig,
		"--controllers", strings.Join(ControllerManagerControllers, ","),
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--bind-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(ports[0]),
		"--cert-dir", filepath.Join(dir, "kcm-pki"),
		// Replace a deleted pod at once, as on a healthy cluster.
		"--concurrent-statefulset-syncs", "5",
		"--v", "1",
	)
	if err != nil {
		return nil, err
	}
	schCtx, cancel := context.WithCancel(context.Background())
	c.stopSch, c.schDone = cancel, make(chan struct{})
	go func() { defer close(c.schDone); c.schedule(schCtx) }()
	ok = true
	return c, nil
}

// Place is the harness scheduler's rule: a StatefulSet's pod of ordinal i
// runs on node i mod N, so a replaced pod comes back on its node with the
// same address (what a StatefulSet with local volumes and a topology
// constraint gives); any other pod runs on the node with the fewest pods.
func (c *Cluster) Place(p *corev1.Pod, podsPerNode map[string]int) *Node {
	if v, ok := p.Labels[PodIndexLabel]; ok {
		if i, err := strconv.Atoi(v); err == nil && i >= 0 {
			return c.Nodes[i%len(c.Nodes)]
		}
	}
	best := c.Nodes[0]
	for _, n := range c.Nodes[1:] {
		if podsPerNode[n.Name] < podsPerNode[best.Name] {
			best = n
		}
	}
	return best
}

// NodeOf returns the node the rule places a StatefulSet's pod of ordinal
// i on.
func (c *Cluster) NodeOf(ordinal int) *Node { return c.Nodes[ordinal%len(c.Nodes)] }

// schedule binds pending pods until ctx ends.
func (c *Cluster) schedule(ctx context.Context) {
	for ctx.Err() == nil {
		if err := c.bindPending(ctx); err != nil && ctx.Err() == nil {
			c.mu.Lock()
			c.bindErr = err.Error()
			c.mu.Unlock()
		}
		if waitctx.Sleep(ctx, 200*time.Millisecond) != nil {
			return
		}
	}
}

func (c *Cluster) bindPending(ctx context.Context) error {
	pods, err := c.Env.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	per := map[string]int{}
	var pending []*corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		switch {
		case p.Spec.NodeName != "":
			per[p.Spec.NodeName]++
		case p.DeletionTimestamp == nil && p.Spec.SchedulerName == corev1.DefaultSchedulerName:
			pending = append(pending, p)
		}
	}
	var errs []error
	for _, p := range pending {
		n := c.Place(p, per)
		b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
			Target: corev1.ObjectReference{Kind: "Node", Name: n.Name}}
		err := c.Env.Client.CoreV1().Pods(p.Namespace).Bind(ctx, b, metav1.CreateOptions{})
		switch {
		case err == nil:
			per[n.Name]++
		case apierrors.IsConflict(err), apierrors.IsNotFound(err), apierrors.IsAlreadyExists(err):
		default:
			errs = append(errs, fmt.Errorf("bind %s/%s to %s: %w", p.Namespace, p.Name, n.Name, err))
		}
	}
	return errors.Join(errs...)
}

// ImportImage loads an image tarball into every node's containerd.
func (c *Cluster) ImportImage(ctx context.Context, tarPath string) error {
	for _, n := range c.Nodes {
		if err := n.ImportImage(ctx, tarPath); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}

// Dir is a directory of the cluster's own, removed by Stop (e.g. for
// hostPath volumes).
func (c *Cluster) Dir() string { return c.dir }

// Log returns the end of the controller manager's log, the scheduler's last
// binding error and every node's logs, for test failure messages.
func (c *Cluster) Log() string {
	var b strings.Builder
	if c.kcm != nil {
		b.WriteString(c.kcm.tail())
		b.WriteByte('\n')
	}
	c.mu.Lock()
	if c.bindErr != "" {
		fmt.Fprintf(&b, "--- scheduler ---\nlast binding error: %s\n", c.bindErr)
	}
	c.mu.Unlock()
	for _, n := range c.Nodes {
		b.WriteString(n.Log())
	}
	return b.String()
}

// Stop ends the scheduler and the controller manager (so nothing is
// replaced any more), then every node, and removes the cluster's
// directory. Safe to call twice.
func (c *Cluster) Stop() {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.stopped = true
	c.mu.Unlock()
	if c.stopSch != nil {
		c.stopSch()
		<-c.schDone
	}
	if c.kcm != nil {
		c.kcm.stop()
		_ = c.kcm.log.Close()
	}
	for _, f := range c.filters {
		_ = f.Close()
	}
	if c.proxies != nil {
		_ = c.proxies.Close()
	}
	for _, n := range slices.Backward(c.Nodes) {
		n.Stop()
	}
	unmountBelow(c.dir)
	_ = os.RemoveAll(c.dir)
}

// GetCluster starts a cluster on env for one test and stops it when the
// test ends. When it cannot run here (no root, no containerd, no kubelet or
// controller manager) it skips the test saying why, or fails it with CI=true.
func GetCluster(t T, env *k8senv.Env, o ClusterOptions) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, env, o)
	if err != nil {
		var u *k8senv.Unavailable
		if errors.As(err, &u) && os.Getenv("CI") != "true" {
			t.Skipf("%v", err)
		}
		t.Fatalf("%v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

// Diagnose says why pod is not running and ready: its node, phase,
// conditions and container states from the API, then the lines of its
// node's kubelet and containerd logs that name it. Test failure messages
// print it before the logs' tails, which a CI log may cut.
func (c *Cluster) Diagnose(ctx context.Context, p *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pod %s/%s (uid %s) on node %q: phase %s", p.Namespace, p.Name, p.UID, p.Spec.NodeName, p.Status.Phase)
	if p.DeletionTimestamp != nil {
		fmt.Fprintf(&b, ", deleting since %s", p.DeletionTimestamp.Format(time.RFC3339))
	}
	b.WriteByte('\n')
	for _, cond := range p.Status.Conditions {
		fmt.Fprintf(&b, "  condition %s=%s %s %s\n", cond.Type, cond.Status, cond.Reason, cond.Message)
	}
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			fmt.Fprintf(&b, "  container %s waiting: %s %s\n", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
		case cs.State.Terminated != nil:
			fmt.Fprintf(&b, "  container %s terminated: %s exit %d\n", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
		default:
			fmt.Fprintf(&b, "  container %s running, ready %v, restarts %d\n", cs.Name, cs.Ready, cs.RestartCount)
		}
	}
	if evs, err := c.Env.Client.CoreV1().Events(p.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + p.Name}); err == nil {
		for _, ev := range evs.Items {
			fmt.Fprintf(&b, "  event %s %s: %s (x%d)\n", ev.Type, ev.Reason, ev.Message, ev.Count)
		}
	}
	for _, n := range c.Nodes {
		if n.Name == p.Spec.NodeName || p.Spec.NodeName == "" {
			b.WriteString(n.LinesAbout(p.Name, 25))
		}
	}
	return b.String()
}
