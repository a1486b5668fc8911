package kubelettest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/probe/logs"
	"github.com/chaosgate/chaosgate/engine/proxy"
	k8starget "github.com/chaosgate/chaosgate/engine/target/k8s"
	"github.com/chaosgate/chaosgate/internal/freeport"
	"github.com/chaosgate/chaosgate/internal/k8senv"
	"github.com/chaosgate/chaosgate/internal/kubelettest"
	"github.com/chaosgate/chaosgate/internal/logstest"
)

// TestClusterRunsTheAggregatorAsPods runs the reference aggregator's canary
// and stable arms as StatefulSets on a three-node test cluster: real pods
// from a real controller manager, on real kubelets, going Ready through
// their readiness probes; a raft cluster across each arm's pods that takes
// a write on one pod and answers it from another; a deleted pod replaced
// by the StatefulSet controller (a new pod, back on its node, Ready again,
// with its raft state); a container killed through containerd restarted by
// its kubelet.
func TestClusterRunsTheAggregatorAsPods(t *testing.T) {
	env := k8senv.Get(t)
	c := kubelettest.GetCluster(t, env, kubelettest.ClusterOptions{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ref, tarPath, err := kubelettest.ChaosgateImage(ctx, t.TempDir(), "v0.0.0-clustertest")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ImportImage(ctx, tarPath); err != nil {
		t.Fatal(err)
	}
	ports, err := freeport.Ports(4)
	if err != nil {
		t.Fatal(err)
	}
	const ns = "aggregator-cluster"
	arms := []kubelettest.Aggregator{
		{Namespace: ns, Name: "aggregator-canary", Labels: map[string]string{"app.kubernetes.io/name": "aggregator", "track": "canary"},
			Replicas: 3, Image: ref, HTTPPort: ports[0], RaftPort: ports[1], ThroughProxies: true},
		{Namespace: ns, Name: "aggregator-stable", Labels: map[string]string{"app.kubernetes.io/name": "aggregator", "track": "stable"},
			Replicas: 3, Image: ref, HTTPPort: ports[2], RaftPort: ports[3]},
	}
	for _, a := range arms {
		if _, err := c.Deploy(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	pods := env.Client.CoreV1().Pods(ns)
	// Every pod Ready, each on the node its ordinal names.
	waitReady := func(what string, want int) map[string]corev1.Pod {
		t.Helper()
		var last string
		for ctx.Err() == nil {
			list, err := pods.List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ready := map[string]corev1.Pod{}
			last = ""
			for _, p := range list.Items {
				ok := p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil
				for _, cs := range p.Status.ContainerStatuses {
					ok = ok && cs.Ready
				}
				if ok && len(p.Status.ContainerStatuses) > 0 {
					ready[p.Name] = p
				}
				last += fmt.Sprintf(" %s:%s/%s", p.Name, p.Spec.NodeName, p.Status.Phase)
			}
			if len(ready) == want {
				return ready
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Fatalf("%s: pods not all Ready:%s\n%s", what, last, c.Log())
		return nil
	}
	ready := waitReady("start", 6)
	for i := range 3 {
		for _, a := range arms {
			p := ready[fmt.Sprintf("%s-%d", a.Name, i)]
			if p.Spec.NodeName != c.NodeOf(i).Name || p.Status.PodIP != c.NodeOf(i).IP {
				t.Errorf("pod %s on %s (%s), want %s (%s)", p.Name, p.Spec.NodeName, p.Status.PodIP, c.NodeOf(i).Name, c.NodeOf(i).IP)
			}
			if len(p.OwnerReferences) == 0 || p.OwnerReferences[0].Kind != "StatefulSet" {
				t.Errorf("pod %s owners %v: want its StatefulSet (the controller manager made it)", p.Name, p.OwnerReferences)
			}
		}
	}

	// A write on the canary's pod 0, read back from pod 2 (forwarded to
	// the key's raft leader, wherever it runs).
	canary := arms[0]
	put := func(addr, key, value string) (int, string) {
		body, _ := json.Marshal(map[string]any{"state": "PROCESSING", "value": value, "expected_version": 0})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+addr+"/v1/state/"+key, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	get := func(addr, key string) (int, string) {
		code, body, err := kubelettest.HTTPGet(ctx, "http://"+addr+"/v1/state/"+key)
		if err != nil {
			return 0, err.Error()
		}
		return code, string(body)
	}
	writeRead := func(what, key, value string) {
		t.Helper()
		var last string
		written := false
		for try := 0; try < 60 && ctx.Err() == nil; try++ {
			code, body := http.StatusOK, ""
			if !written {
				// A retried write of a key that exists (409) was written.
				code, body = put(c.PodAddr(0, canary.HTTPPort), key, value)
				written = code == http.StatusOK || code == http.StatusConflict
			}
			if written {
				if code, body = get(c.PodAddr(2, canary.HTTPPort), key); code == http.StatusOK && bytes.Contains([]byte(body), []byte(value)) {
					return
				}
			}
			last = fmt.Sprintf("%d %s", code, body)
			time.Sleep(500 * time.Millisecond)
		}
		t.Fatalf("%s: write on pod 0, read on pod 2: %s", what, last)
	}
	writeRead("start", "cluster-test", "first")

	// Each kubelet writes its pods' logs under its own node's directory
	// (two kubelets sharing one would remove each other's), and the log
	// agent the tests play ships them to a real VictoriaLogs labelled by
	// namespace and pod.
	for name, p := range ready {
		var dir string
		for _, n := range c.Nodes {
			if n.Name == p.Spec.NodeName {
				dir = n.PodLogsDir
			}
		}
		if files, _ := filepath.Glob(filepath.Join(dir, ns+"_"+name+"_"+string(p.UID), "*", "*.log")); dir == "" || len(files) == 0 {
			t.Errorf("pod %s on %s: no container log under the node's pod logs directory %q", name, p.Spec.NodeName, dir)
		}
	}
	// The API server reaches each kubelet for a pod's logs (kubectl logs).
	for name := range ready {
		if b, err := pods.GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx); err != nil || len(b) == 0 {
			t.Errorf("logs of %s through the API server: %d bytes, %v", name, len(b), err)
		}
	}
	vl := logstest.Start(t)
	logServer := &logs.Server{Kind: logs.VictoriaLogs, URL: vl.URL}
	shipper := c.ShipPodLogs(logServer, ns)
	shipped := map[string]bool{}
	for try := 0; len(shipped) < len(ready) && try < 60 && ctx.Err() == nil; try++ {
		time.Sleep(500 * time.Millisecond)
		rows, err := logServer.Query(ctx, `_stream:{namespace="`+ns+`"} | stats by (pod) count() lines`, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			shipped[r["pod"]] = true
		}
	}
	if n, err := shipper.Stop(); err != nil || len(shipped) < len(ready) {
		t.Errorf("pod log agent: %d lines shipped (err %v); VictoriaLogs has lines of pods %v, want all %d", n, err, shipped, len(ready))
	}

	// A NetworkChaos delay into canary pod 1, played on the proxies its
	// peers dial it through: a round trip through them takes the latency
	// longer, and no longer once it is reverted.
	via, ok := c.InboundAddr(canary.Name+"-1", canary.HTTPPort)
	if !ok {
		t.Fatal("no inbound proxy in front of pod 1")
	}
	rt := proxy.HTTPRoundTrip("/readyz")
	before := proxy.Measure(ctx, rt, via, 10, 2*time.Second)
	nc := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos",
		"metadata": map[string]any{"name": "slow-1", "namespace": ns},
		"spec": map[string]any{"action": "delay", "delay": map[string]any{"latency": "100ms"}, "direction": "to",
			"selector": map[string]any{"pods": map[string]any{ns: []any{canary.Name + "-0"}}},
			"target":   map[string]any{"selector": map[string]any{"pods": map[string]any{ns: []any{canary.Name + "-1"}}}}}}}
	eff := c.NetworkEffect()
	if err := eff.Apply(ctx, nc); err != nil {
		t.Fatal(err)
	}
	during := proxy.Measure(ctx, rt, via, 10, 2*time.Second)
	if err := eff.Revert(ctx, nc); err != nil {
		t.Fatal(err)
	}
	after := proxy.Measure(ctx, rt, via, 10, 2*time.Second)
	// The delay is a floor under every round trip, so the fastest one
	// tells whether it is there: a busy host inflates the median of ten
	// round trips by tens of milliseconds, never the fastest below 100ms.
	if during.N-during.Failed < 5 || during.Min < 95*time.Millisecond || after.Min >= 90*time.Millisecond {
		t.Errorf("round trips into pod 1 (fastest/median): %v/%v before, %v/%v with a 100ms delay (%d of %d failed), %v/%v after",
			before.Min, before.Median, during.Min, during.Median, during.Failed, during.N, after.Min, after.Median)
	}
	writeRead("after the delay", "cluster-test-delay", "delayed")

	// A NetworkChaos partition cutting canary pod 0 off from pods 1 and 2,
	// played on the source filters in front of their ports: pod 1 refuses
	// what comes from pod 0's node and still relays pod 2's; the majority
	// leads every raft partition without pod 0 and takes writes; once the
	// partition is reverted, pod 0 serves again.
	cut := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos",
		"metadata": map[string]any{"name": "cut-0", "namespace": ns},
		"spec": map[string]any{"action": "partition", "direction": "both",
			"selector": map[string]any{"pods": map[string]any{ns: []any{canary.Name + "-0"}}},
			"target":   map[string]any{"selector": map[string]any{"pods": map[string]any{ns: []any{canary.Name + "-1", canary.Name + "-2"}}}}}}}
	led := func(from int) map[int]string {
		t.Helper()
		code, body, err := kubelettest.HTTPGet(ctx, "http://"+c.PodAddr(from, canary.HTTPPort)+"/v1/cluster")
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET /v1/cluster on pod %d: %d %v", from, code, err)
		}
		var ci struct {
			Partitions []struct {
				ID     int    `json:"id"`
				Leader string `json:"leader"`
			} `json:"partitions"`
		}
		if err := json.Unmarshal(body, &ci); err != nil {
			t.Fatal(err)
		}
		m := map[int]string{}
		for _, p := range ci.Partitions {
			m[p.ID] = p.Leader
		}
		return m
	}
	ledBy0 := func(m map[int]string) (n int) {
		for _, l := range m {
			if l == canary.Name+"-0" || l == "" {
				n++
			}
		}
		return n
	}
	before0 := ledBy0(led(1))
	if err := eff.Apply(ctx, cut); err != nil {
		t.Fatal(err)
	}
	if got, want := c.CutFrom(canary.Name+"-1", canary.RaftPort), []string{c.NodeOf(0).IP}; !slices.Equal(got, want) {
		t.Errorf("pod 1's raft port refuses %v, want %v", got, want)
	}
	if got, want := c.CutFrom(canary.Name+"-0", canary.RaftPort), []string{c.NodeOf(1).IP, c.NodeOf(2).IP}; !slices.Equal(got, want) {
		t.Errorf("pod 0's raft port refuses %v, want %v", got, want)
	}
	via1, _ := c.InboundAddr(canary.Name+"-1", canary.HTTPPort)
	if code, err := readyzFrom(ctx, c.NodeOf(0).IP, via1); err == nil {
		t.Errorf("pod 0's node reached pod 1 through the partition: %d", code)
	}
	if code, err := readyzFrom(ctx, c.NodeOf(2).IP, via1); err != nil || code != http.StatusOK {
		t.Errorf("pod 2's node to pod 1 during the partition: %d %v", code, err)
	}
	var now0 int
	for try := 0; try < 60 && ctx.Err() == nil; try++ {
		if now0 = ledBy0(led(1)); now0 == 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if now0 != 0 {
		t.Errorf("30 s into the partition, pod 1 sees %d of its raft partitions led by the cut-off pod 0 or by none (%d before)", now0, before0)
	}
	t.Logf("partition: pod 0 led (or left leaderless) %d raft partitions before the cut, %d after", before0, now0)
	var last string
	for try := 0; try < 60 && ctx.Err() == nil; try++ {
		code, body := put(c.PodAddr(1, canary.HTTPPort), "cluster-test-cut", "majority")
		if code == http.StatusOK || code == http.StatusConflict {
			if code, body = get(c.PodAddr(2, canary.HTTPPort), "cluster-test-cut"); code == http.StatusOK && strings.Contains(body, "majority") {
				last = ""
				break
			}
		}
		last = fmt.Sprintf("%d %s", code, body)
		time.Sleep(500 * time.Millisecond)
	}
	if last != "" {
		t.Errorf("during the partition, a write on pod 1 read on pod 2: %s", last)
	}
	if err := eff.Revert(ctx, cut); err != nil {
		t.Fatal(err)
	}
	if got := c.CutFrom(canary.Name+"-1", canary.RaftPort); len(got) != 0 {
		t.Errorf("after the revert pod 1's raft port still refuses %v", got)
	}
	writeRead("after the partition", "cluster-test-healed", "healed")

	// Delete pod 1: the StatefulSet controller replaces it on its node.
	old := ready[canary.Name+"-1"]
	grace := int64(0)
	if err := pods.Delete(ctx, old.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
		t.Fatal(err)
	}
	var replaced corev1.Pod
	for ctx.Err() == nil {
		ready = waitReady("after the delete", 6)
		if p := ready[old.Name]; p.UID != old.UID {
			replaced = p
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if replaced.Spec.NodeName != old.Spec.NodeName {
		t.Errorf("replacement of %s on %s, want %s", old.Name, replaced.Spec.NodeName, old.Spec.NodeName)
	}
	writeRead("after the replacement", "cluster-test-2", "second")
	if code, body := get(c.PodAddr(1, canary.HTTPPort), "cluster-test"); code != http.StatusOK || !bytes.Contains([]byte(body), []byte("first")) {
		t.Errorf("the replaced pod lost the first write: %d %s", code, body)
	}

	// Kill pod 2's container through containerd: its kubelet restarts it.
	victim := ready[canary.Name+"-2"]
	node := c.NodeOf(2)
	pid, err := node.TaskPID(ctx, victim.Status.ContainerStatuses[0].ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	if err := node.KillTask(ctx, victim.Status.ContainerStatuses[0].ContainerID); err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		p, err := pods.Get(ctx, victim.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.UID != victim.UID {
			t.Fatalf("pod %s was replaced (uid %s → %s); want its container restarted in place", victim.Name, victim.UID, p.UID)
		}
		if cs := p.Status.ContainerStatuses; len(cs) == 1 && cs[0].RestartCount >= 1 && cs[0].Ready {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if ctx.Err() != nil {
		t.Fatalf("container of %s (pid %d) not restarted\n%s", victim.Name, pid, c.Log())
	}
	writeRead("after the restart", "cluster-test-3", "third")

	runsADeployment(ctx, t, env, c, ref)
}

// runsADeployment runs the chaosgate image as a Deployment, the kind most
// services ship as: its ReplicaSet's pods run and go Ready through their
// readiness probe; chaosgate's Kubernetes target resolves it to its
// revision and the image digest the kubelets report; a deleted pod is
// replaced under a new name, which the target follows; a changed pod
// template is a new revision. Each pod is a one-node aggregator on an
// emptyDir (a raft cluster across a Deployment's pods would lack the
// stable names a StatefulSet gives).
func runsADeployment(ctx context.Context, t *testing.T, env *k8senv.Env, c *kubelettest.Cluster, image string) {
	t.Helper()
	const ns = "deployment-cluster"
	if err := env.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	ports, err := freeport.Ports(2)
	if err != nil {
		t.Fatal(err)
	}
	lbl := map[string]string{"app.kubernetes.io/name": "web", "track": "canary"}
	field := func(path string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
	}
	raft := fmt.Sprintf("$(POD_IP):%d", ports[1])
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web-canary", Namespace: ns, Labels: lbl},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			// Recreate: pods use host network ports, so an old and a new
			// pod must not share a node.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec: corev1.PodSpec{
					HostNetwork:                   true,
					TerminationGracePeriodSeconds: ptr.To(int64(2)),
					AutomountServiceAccountToken:  ptr.To(false),
					Containers: []corev1.Container{{
						Name: "web", Image: image, ImagePullPolicy: corev1.PullNever,
						Args: []string{"aggregator", "--id=$(POD_NAME)", fmt.Sprintf("--http=$(POD_IP):%d", ports[0]), "--raft=" + raft,
							"--peers=$(POD_NAME)=" + raft, "--data-dir=/var/lib/aggregator", "--partitions=1"},
						Env:   []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: field("metadata.name")}, {Name: "POD_IP", ValueFrom: field("status.podIP")}},
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(ports[0])}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
							Path: "/readyz", Port: intstr.FromInt32(int32(ports[0]))}}, PeriodSeconds: 1, FailureThreshold: 3},
						VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/aggregator"}},
					}},
					Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				},
			},
		},
	}
	deps := env.Client.AppsV1().Deployments(ns)
	if _, err := deps.Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res := k8starget.NewResolver(env.Client, nil)
	sel := k8starget.Selector{Namespace: ns, MatchLabels: lbl}
	// resolved waits until the target sees want Ready pods of revision
	// rev, none of them named gone.
	resolved := func(what, rev string, want int, gone string) *k8starget.Workload {
		t.Helper()
		var last string
		for ctx.Err() == nil {
			w, err := res.Resolve(ctx, engine.ArmCanary, sel)
			if err != nil {
				t.Fatal(err)
			}
			ready := 0
			for _, p := range w.Pods {
				if p.Ready && p.Name != gone {
					ready++
				}
			}
			last = fmt.Sprintf("%s revision %s, %d pods (%d Ready), digests %v", w.Ref(), w.Revision, len(w.Pods), ready, w.Digests)
			if w.Revision == rev && ready == want && len(w.Pods) == want {
				return w
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Fatalf("%s: %s\n%s", what, last, c.Log())
		return nil
	}
	w := resolved("deployment", "1", 2, "")
	pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	digest := ""
	for _, p := range pods.Items {
		if len(p.OwnerReferences) == 0 || p.OwnerReferences[0].Kind != "ReplicaSet" {
			t.Errorf("pod %s owners %v: want the Deployment's ReplicaSet", p.Name, p.OwnerReferences)
		}
		for _, cs := range p.Status.ContainerStatuses {
			if d := k8starget.DigestOf(cs.ImageID); d != "" && digest == "" {
				digest = d
			}
		}
	}
	sub := w.Subject()
	if w.Kind != k8starget.Deployment || sub.Name != "Deployment/"+ns+"/web-canary@1" || digest == "" || sub.Digest["sha256"] != digest {
		t.Errorf("subject %s %v (kind %v); want Deployment/%s/web-canary@1 at the kubelet's image digest %q", sub.Name, sub.Digest, w.Kind, ns, digest)
	}
	// A deleted pod: the ReplicaSet makes another under a new name.
	victim := w.Pods[0].Name
	grace := int64(0)
	if err := env.Client.CoreV1().Pods(ns).Delete(ctx, victim, metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
		t.Fatal(err)
	}
	w = resolved("after a pod was deleted", "1", 2, victim)
	for _, p := range w.Pods {
		if p.Name == victim {
			t.Errorf("the target still lists the deleted pod %s", victim)
		}
	}
	// A changed pod template: a new ReplicaSet, revision 2. The
	// Deployment controller writes the object's status meanwhile, so the
	// update is retried on a conflict, as kubectl's edit would be.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := deps.Get(ctx, "web-canary", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Spec.Template.Annotations = map[string]string{"chaosgate.io/restarted": "1"}
		_, err = deps.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	w = resolved("after a template change", "2", 2, "")
	if sub := w.Subject(); sub.Name != "Deployment/"+ns+"/web-canary@2" || sub.Digest["sha256"] != digest {
		t.Errorf("after the template change: subject %s %v, want revision 2 at %s", sub.Name, sub.Digest, digest)
	}
	t.Logf("Deployment: %s at sha256:%s, pod %s replaced, template change → revision %s", sub.Name, digest, victim, w.Revision)
	if err := deps.Delete(ctx, "web-canary", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// readyzFrom asks GET /readyz of addr over a connection dialled from the
// local IP source (a node's address), as a pod of that node would.
func readyzFrom(ctx context.Context, source, addr string) (int, error) {
	d := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, nil
}
