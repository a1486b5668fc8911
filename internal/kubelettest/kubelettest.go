// Package kubelettest runs a real Kubernetes node for tests: Debian's
// containerd and runc, and a kubelet built from the Go module proxy
// (scripts/build-kubelet.sh), registered with a k8senv control plane.
//
// The node has no CNI: only hostNetwork pods run, scheduled with
// spec.nodeName. The rig plays the cloud controller: it sets the Node's
// InternalIP (127.0.0.N) and lifts the "uninitialized" taint. containerd
// runs with its own root, state and socket under a temporary directory and
// a pause image built here (internal/kubelettest/pause packed by
// internal/ociimage) as its sandbox image; images are loaded with
// `ctr images import` and pods use imagePullPolicy: Never.
//
// Stop ends everything the node started by pid: the kubelet, every
// container task (found with `ctr tasks ls`), containerd, and the
// containerd shims serving this node's socket; then it unmounts what is
// still mounted below the node's directory and removes it.
package kubelettest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/chaosgate/chaosgate/internal/freeport"
	"github.com/chaosgate/chaosgate/internal/k8senv"
	"github.com/chaosgate/chaosgate/internal/ociimage"
	"github.com/chaosgate/chaosgate/internal/waitctx"
)

// KubeletVersion is the kubelet release scripts/build-kubelet.sh builds.
const KubeletVersion = "v1.34.2"

// PauseImage is the sandbox image the node builds and imports.
const PauseImage = "chaosgate.test/pause:v1"

// Namespace is containerd's namespace for Kubernetes (the CRI plugin's).
const Namespace = "k8s.io"

// Binaries are the programs a node runs.
type Binaries struct {
	Kubelet, Containerd, Ctr, Runc, Shim string
}

// FindBinaries locates the kubelet (KUBELET, else the build cache) and
// containerd, ctr, runc and containerd-shim-runc-v2 on PATH. The error is a
// *k8senv.Unavailable saying what is missing.
func FindBinaries() (Binaries, error) {
	var b Binaries
	if runtime.GOOS != "linux" {
		return b, &k8senv.Unavailable{Reason: "a kubelet node needs Linux"}
	}
	if os.Geteuid() != 0 {
		return b, &k8senv.Unavailable{Reason: "containerd and the kubelet need root"}
	}
	b.Kubelet = os.Getenv("KUBELET")
	if b.Kubelet == "" {
		b.Kubelet = filepath.Join(k8senv.CacheDir(), "kubelet-"+KubeletVersion)
	}
	if st, err := os.Stat(b.Kubelet); err != nil || st.IsDir() {
		return b, &k8senv.Unavailable{Reason: fmt.Sprintf("kubelet %s not found at %s (run scripts/build-kubelet.sh, or make test-deps)", KubeletVersion, b.Kubelet)}
	}
	for _, p := range []struct {
		dst  *string
		name string
	}{{&b.Containerd, "containerd"}, {&b.Ctr, "ctr"}, {&b.Runc, "runc"}, {&b.Shim, "containerd-shim-runc-v2"}} {
		path, err := exec.LookPath(p.name)
		if err != nil {
			return b, &k8senv.Unavailable{Reason: p.name + " not found on PATH (apt-get install containerd runc, or make test-deps)"}
		}
		*p.dst = path
	}
	return b, nil
}

// Options configure a node.
type Options struct {
	// Name is the Node name (default "node-1").
	Name string
	// IP is the Node's InternalIP and so its hostNetwork pods' podIP
	// (default 127.0.0.1).
	IP string
}

// Node is a running kubelet with its own containerd.
type Node struct {
	// Name is the Node object's name.
	Name string
	// IP is the Node's InternalIP.
	IP string
	// Socket is containerd's gRPC socket.
	Socket string
	// PodLogsDir is where this node's kubelet writes its containers' logs
	// (the kubelet's podLogsDir; /var/log/pods on a real node). Each test
	// node has its own: a kubelet's garbage collector removes every pod
	// log directory under it that is not one of its own pods, so two
	// kubelets on one host must never share it.
	PodLogsDir string

	env     *k8senv.Env
	bins    Binaries
	dir     string
	procs   []*proc
	stopped bool
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

// Start runs containerd and a kubelet registered with env's API server,
// imports the pause image and waits until the Node has its InternalIP. The
// caller must call Stop.
func Start(ctx context.Context, env *k8senv.Env, o Options) (*Node, error) {
	bins, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = "node-1"
	}
	if o.IP == "" {
		o.IP = "127.0.0.1"
	}
	dir, err := os.MkdirTemp("", "chaosgate-node-")
	if err != nil {
		return nil, fmt.Errorf("kubelettest: temp dir: %w", err)
	}
	n := &Node{Name: o.Name, IP: o.IP, env: env, bins: bins, dir: dir, Socket: filepath.Join(dir, "containerd.sock"), PodLogsDir: filepath.Join(dir, "pod-logs")}
	ok := false
	defer func() {
		if !ok {
			n.Stop()
		}
	}()
	pause, err := n.buildPause(ctx)
	if err != nil {
		return nil, err
	}
	defaults, err := exec.CommandContext(ctx, bins.Containerd, "config", "default").Output()
	if err != nil {
		return nil, fmt.Errorf("kubelettest: containerd config default: %w", err)
	}
	cfg, err := ContainerdConfig(defaults, filepath.Join(dir, "containerd"), filepath.Join(dir, "containerd-state"), n.Socket, PauseImage)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "containerd.toml")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return nil, err
	}
	if err := n.spawn("containerd", bins.Containerd, "--config", cfgPath); err != nil {
		return nil, err
	}
	if err := n.waitCtr(ctx, 30*time.Second); err != nil {
		return nil, err
	}
	if err := n.ImportImage(ctx, pause); err != nil {
		return nil, err
	}

	kubeconfig := filepath.Join(dir, "kubelet.kubeconfig")
	if err := env.Kubeconfig(kubeconfig); err != nil {
		return nil, err
	}
	ports, err := freeport.Ports(1)
	if err != nil {
		return nil, err
	}
	kroot := filepath.Join(dir, "kubelet")
	kcfg := filepath.Join(dir, "kubelet-config.yaml")
	if err := os.WriteFile(kcfg, KubeletConfig(n.PodLogsDir), 0o600); err != nil {
		return nil, err
	}
	if err := n.spawn("kubelet", bins.Kubelet,
		"--config", kcfg,
		"--kubeconfig", kubeconfig,
		"--container-runtime-endpoint", "unix://"+n.Socket,
		"--cgroup-driver", "cgroupfs",
		"--fail-swap-on=false",
		"--cgroups-per-qos=false",
		"--enforce-node-allocatable=",
		"--cloud-provider=external",
		// The API server reaches the kubelet at the Node's InternalIP
		// (kubectl logs, exec).
		"--address", o.IP,
		"--port", strconv.Itoa(ports[0]),
		"--read-only-port", "0",
		"--healthz-port", "0",
		"--root-dir", kroot,
		"--cert-dir", filepath.Join(kroot, "pki"),
		"--volume-plugin-dir", filepath.Join(dir, "volume-plugins"),
		"--hostname-override", o.Name,
		"--pod-infra-container-image", PauseImage,
		// The test host's disk is shared: never collect the imported images.
		"--image-gc-high-threshold", "100",
		"--image-gc-low-threshold", "99",
		"--eviction-hard", "memory.available<1Mi",
		"--v", "1",
	); err != nil {
		return nil, err
	}
	if err := n.initNode(ctx); err != nil {
		return nil, err
	}
	ok = true
	return n, nil
}

// KubeletConfig is the test kubelet's KubeletConfiguration file: its own
// pod logs directory (podLogsDir has no flag), and the API server's
// requests to the kubelet (logs, exec) served as the kubelet serves them
// when started from flags alone — anonymous authentication, AlwaysAllow.
// A configuration file's defaults are stricter (webhook authentication
// and authorization), and the test API server's kubelet client would get
// 401 on `kubectl logs`.
func KubeletConfig(podLogsDir string) []byte {
	return []byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n" +
		"podLogsDir: " + strconv.Quote(podLogsDir) + "\n" +
		"authentication:\n  anonymous:\n    enabled: true\n  webhook:\n    enabled: false\n" +
		"authorization:\n  mode: AlwaysAllow\n")
}

// buildPause compiles the pause program statically and writes its image as
// a tarball in the node's directory.
func (n *Node) buildPause(ctx context.Context) (string, error) {
	bin := filepath.Join(n.dir, "pause")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "github.com/chaosgate/chaosgate/internal/kubelettest/pause")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("kubelettest: build pause: %w\n%s", err, out)
	}
	img, err := ociimage.Pause(bin, time.Unix(0, 0).Add(time.Second))
	if err != nil {
		return "", err
	}
	tag, err := ociimage.Tag(PauseImage)
	if err != nil {
		return "", err
	}
	tarPath := filepath.Join(n.dir, "pause.tar")
	return tarPath, ociimage.WriteTarball(tarPath, img, tag)
}

// ContainerdConfig rewrites `containerd config default` output for a
// private containerd: its own root, state and socket, the sandbox image,
// restrict_oom_score_adj (runc cannot lower its OOM score otherwise) and no
// debug or metrics listeners. Every setting it changes must be present.
func ContainerdConfig(defaults []byte, root, state, socket, sandboxImage string) ([]byte, error) {
	want := map[string]bool{"root": false, "state": false, "grpc.address": false, "sandbox_image": false, "restrict_oom_score_adj": false, "opt.path": false}
	var out bytes.Buffer
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(defaults))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		trim := strings.TrimSpace(line)
		indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		key, _, isKV := strings.Cut(trim, "=")
		key = strings.TrimSpace(key)
		switch {
		case strings.HasPrefix(trim, "["):
			section = strings.Trim(trim, "[] ")
		case !isKV:
		case section == "" && key == "root":
			line, want["root"] = fmt.Sprintf("%sroot = %q", indent, root), true
		case section == "" && key == "state":
			line, want["state"] = fmt.Sprintf("%sstate = %q", indent, state), true
		case section == "grpc" && key == "address":
			line, want["grpc.address"] = fmt.Sprintf("%saddress = %q", indent, socket), true
		case key == "sandbox_image":
			line, want["sandbox_image"] = fmt.Sprintf("%ssandbox_image = %q", indent, sandboxImage), true
		case key == "restrict_oom_score_adj":
			line, want["restrict_oom_score_adj"] = indent+"restrict_oom_score_adj = true", true
		case section == `plugins."io.containerd.internal.v1.opt"` && key == "path":
			line, want["opt.path"] = fmt.Sprintf("%spath = %q", indent, filepath.Join(root, "opt")), true
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kubelettest: containerd default config: %w", err)
	}
	var missing []string
	for k, seen := range want {
		if !seen {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("kubelettest: containerd default config has no %s (hint: containerd 1.6's `containerd config default` format is expected)", strings.Join(missing, ", "))
	}
	return out.Bytes(), nil
}

// ctr runs ctr against the node's containerd in the k8s.io namespace.
func (n *Node) ctr(ctx context.Context, args ...string) ([]byte, error) {
	full := append([]string{"--address", n.Socket, "--namespace", Namespace}, args...)
	cmd := exec.CommandContext(ctx, n.bins.Ctr, full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("kubelettest: ctr %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

func (n *Node) waitCtr(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		if n.procs[0].exited() {
			return fmt.Errorf("kubelettest: containerd exited\n%s", n.procs[0].tail())
		}
		if _, last = n.ctr(ctx, "version"); last == nil {
			return nil
		}
		if err := waitctx.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("kubelettest: containerd not answering after %s: %v\n%s", limit, last, n.procs[0].tail())
}

// ImportImage loads a `docker load`-style or OCI tarball into the node's
// containerd (namespace k8s.io), for pods with imagePullPolicy: Never.
func (n *Node) ImportImage(ctx context.Context, tarPath string) error {
	_, err := n.ctr(ctx, "images", "import", "--no-unpack=false", tarPath)
	return err
}

// initNode waits for the kubelet to register the Node, then plays the cloud
// controller (InternalIP, no uninitialized taint) until the Node shows the
// address. The Node never turns Ready: with no CNI the runtime's network is
// not ready, which stops only pods that are not hostNetwork.
func (n *Node) initNode(ctx context.Context) error {
	kubelet := n.procs[len(n.procs)-1]
	nodes := n.env.Client.CoreV1().Nodes()
	deadline := time.Now().Add(2 * time.Minute)
	var last string
	for time.Now().Before(deadline) {
		if kubelet.exited() {
			return fmt.Errorf("kubelettest: kubelet exited\n%s", kubelet.tail())
		}
		node, err := nodes.Get(ctx, n.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			last = "node not registered yet"
		case err != nil:
			last = err.Error()
		case hasAddress(node, n.IP):
			return nil
		default:
			if err := n.initialize(ctx, node); err != nil {
				last = err.Error()
			} else {
				last = "addresses set; waiting to read them back"
			}
		}
		if err := waitctx.Sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("kubelettest: node %s not initialized after 2m (last: %s)\n%s", n.Name, last, kubelet.tail())
}

func hasAddress(node *corev1.Node, ip string) bool {
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP && a.Address == ip {
			for _, t := range node.Spec.Taints {
				if t.Key == "node.cloudprovider.kubernetes.io/uninitialized" {
					return false
				}
			}
			return true
		}
	}
	return false
}

func (n *Node) initialize(ctx context.Context, node *corev1.Node) error {
	nodes := n.env.Client.CoreV1().Nodes()
	var taints []corev1.Taint
	for _, t := range node.Spec.Taints {
		if t.Key != "node.cloudprovider.kubernetes.io/uninitialized" {
			taints = append(taints, t)
		}
	}
	if len(taints) != len(node.Spec.Taints) {
		node.Spec.Taints = taints
		updated, err := nodes.Update(ctx, node, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("lift uninitialized taint: %w", err)
		}
		node = updated
	}
	patch := fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":%q},{"type":"Hostname","address":%q}]}}`, n.IP, n.Name)
	if _, err := nodes.PatchStatus(ctx, n.Name, []byte(patch)); err != nil {
		return fmt.Errorf("set node addresses: %w", err)
	}
	return nil
}

// TaskPID returns the host pid of a running container, given its id
// (a pod status containerID "containerd://ID", or ID alone).
func (n *Node) TaskPID(ctx context.Context, containerID string) (int, error) {
	id := strings.TrimPrefix(containerID, "containerd://")
	out, err := n.ctr(ctx, "tasks", "ls")
	if err != nil {
		return 0, err
	}
	tasks, err := ParseTasks(out)
	if err != nil {
		return 0, err
	}
	for _, t := range tasks {
		if t.ID == id {
			return t.PID, nil
		}
	}
	return 0, fmt.Errorf("kubelettest: no containerd task %s", id)
}

// KillTask kills a container's task with SIGKILL through containerd (as
// Chaos Mesh's container-kill does), given its id ("containerd://ID" or
// ID); the kubelet then restarts the container per the pod's restart
// policy.
func (n *Node) KillTask(ctx context.Context, containerID string) error {
	_, err := n.ctr(ctx, "tasks", "kill", "--signal", "SIGKILL", strings.TrimPrefix(containerID, "containerd://"))
	return err
}

// Task is one line of `ctr tasks ls`.
type Task struct {
	ID     string
	PID    int
	Status string
}

// ParseTasks reads `ctr tasks ls` output: a "TASK PID STATUS" header, then
// one task a line.
func ParseTasks(out []byte) ([]Task, error) {
	var tasks []Task
	for i, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if i == 0 && len(f) == 3 && f[0] == "TASK" && f[1] == "PID" {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("kubelettest: ctr tasks ls line %d %q: want TASK PID STATUS", i+1, line)
		}
		pid, err := strconv.Atoi(f[1])
		if err != nil || pid < 0 {
			return nil, fmt.Errorf("kubelettest: ctr tasks ls line %d %q: pid %q is not a number", i+1, line, f[1])
		}
		tasks = append(tasks, Task{ID: f[0], PID: pid, Status: f[2]})
	}
	return tasks, nil
}

// DeletePod deletes a pod and waits until the kubelet has stopped its
// containers and the API server forgot it.
func (n *Node) DeletePod(ctx context.Context, namespace, name string, uid types.UID) error {
	pods := n.env.Client.CoreV1().Pods(namespace)
	grace := int64(5)
	err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &grace, Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kubelettest: delete pod %s/%s: %w", namespace, name, err)
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && p.UID != uid) {
			return nil
		}
		if err := waitctx.Sleep(ctx, 300*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("kubelettest: pod %s/%s still present a minute after deletion", namespace, name)
}

// Stop ends the kubelet, every container task, containerd and the shims of
// this node (by pid), unmounts what is left below the node's directory and
// removes it. Safe to call twice.
func (n *Node) Stop() {
	if n == nil || n.stopped {
		return
	}
	n.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The kubelet first, so it restarts nothing.
	for i := len(n.procs) - 1; i >= 0; i-- {
		if n.procs[i].name == "kubelet" {
			n.procs[i].stop()
		}
	}
	var pids []int
	if len(n.procs) > 0 && !n.procs[0].exited() {
		if out, err := n.ctr(ctx, "tasks", "ls"); err == nil {
			tasks, _ := ParseTasks(out)
			for _, t := range tasks {
				if t.PID > 0 {
					pids = append(pids, t.PID)
				}
				_, _ = n.ctr(ctx, "tasks", "kill", "--all", "--signal", "SIGKILL", t.ID)
			}
			for _, t := range tasks {
				_, _ = n.ctr(ctx, "tasks", "delete", "--force", t.ID)
			}
		}
	}
	for _, p := range n.procs {
		if p.name == "containerd" {
			p.stop()
		}
	}
	// Whatever survived: container processes seen above, and the shims
	// started for this node's socket (they outlive containerd by design).
	for _, pid := range append(pids, n.shimPIDs()...) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, p := range n.procs {
		_ = p.log.Close()
	}
	unmountBelow(n.dir)
	_ = os.RemoveAll(n.dir) // the pod logs with it
}

// shimPIDs lists containerd-shim processes whose command line names this
// node's containerd socket.
func (n *Node) shimPIDs() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 0 && strings.Contains(filepath.Base(args[0]), "containerd-shim") && slices.Contains(args, n.Socket) {
			out = append(out, pid)
		}
	}
	return out
}

// unmountBelow lazily unmounts every mount point below dir, deepest first.
func unmountBelow(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, mp := range points {
		_ = syscall.Unmount(mp, syscall.MNT_DETACH)
	}
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (n *Node) spawn(name, bin string, args ...string) error {
	p, err := spawn(n.dir, name, bin, args...)
	if err != nil {
		return err
	}
	n.procs = append(n.procs, p)
	return nil
}

// spawn starts bin with its output in dir/name.log; it dies with the test
// process (Pdeathsig).
func spawn(dir, name, bin string, args ...string) (*proc, error) {
	lf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = lf.Close()
		return nil, fmt.Errorf("kubelettest: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: lf, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail returns the end of the process log, for error messages.
func (p *proc) tail() string {
	b, err := os.ReadFile(p.log.Name())
	if err != nil {
		return ""
	}
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return fmt.Sprintf("--- %s log (tail) ---\n%s", p.name, b)
}

// Log returns the end of the kubelet's and containerd's logs, for test
// failure messages.
func (n *Node) Log() string {
	var b strings.Builder
	for _, p := range n.procs {
		b.WriteString(p.tail())
		b.WriteByte('\n')
	}
	return b.String()
}

// HTTPGet fetches url with a short timeout and returns the status and body.
func HTTPGet(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes(), err
}

// T is the part of testing.TB a node needs.
type T interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Get starts a node on env for one test and stops it when the test ends.
// When the node cannot run here (no root, no containerd, no kubelet) it
// skips the test saying why, or fails it with CI=true.
func Get(t T, env *k8senv.Env, o Options) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	n, err := Start(ctx, env, o)
	if err != nil {
		var u *k8senv.Unavailable
		if errors.As(err, &u) && os.Getenv("CI") != "true" {
			t.Skipf("%v", err)
		}
		t.Fatalf("%v", err)
	}
	t.Cleanup(n.Stop)
	return n
}

// LinesAbout returns the last max lines of the node's kubelet and
// containerd logs that mention needle (a pod's name or UID), for test
// failure messages that must say why one pod is not running.
func (n *Node) LinesAbout(needle string, max int) string {
	var b strings.Builder
	for _, p := range n.procs {
		raw, err := os.ReadFile(p.log.Name())
		if err != nil {
			continue
		}
		var hits []string
		for line := range strings.Lines(string(raw)) {
			if strings.Contains(line, needle) {
				hits = append(hits, strings.TrimRight(line, "\n"))
			}
		}
		if len(hits) > max {
			hits = hits[len(hits)-max:]
		}
		if len(hits) > 0 {
			fmt.Fprintf(&b, "--- %s %s, lines about %s ---\n%s\n", n.Name, p.name, needle, strings.Join(hits, "\n"))
		}
	}
	return b.String()
}
