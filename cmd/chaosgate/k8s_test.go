package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/gameday"
	k8sinject "github.com/chaosgate/chaosgate/engine/inject/k8s"
	k8starget "github.com/chaosgate/chaosgate/engine/target/k8s"
	"github.com/chaosgate/chaosgate/evidence"
	"github.com/chaosgate/chaosgate/internal/k8senv"
	"github.com/chaosgate/chaosgate/scenarios"
)

func TestK8sDryRunOfflineWithPodsFile(t *testing.T) {
	dir := t.TempDir()
	pods := filepath.Join(dir, "pods.yaml")
	if err := os.WriteFile(pods, []byte("canary: {namespace: shop, pods: [web-canary-0, web-canary-1, web-canary-2]}\ncontrol: {namespace: shop, pods: [web-0, web-1, web-2, web-3, web-4]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc, err := scenarios.Open("partition-halves")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	k := &k8sOpts{podsFile: pods}
	if err := k8sDryRun(context.Background(), &out, k, doc, "dry-1", "yaml"); err != nil {
		t.Fatal(err)
	}
	objs, err := k8senv.DecodeObjects(bytes.NewReader(out.Bytes()), "dry run")
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	// halves on both arms at every canary step: 2 NetworkChaos per arm per step.
	steps := len(doc.Spec.Canary.StepsOrDefault())
	if len(objs) != 2*2*steps {
		t.Fatalf("%d objects, want %d\n%s", len(objs), 4*steps, out.String())
	}
	for _, o := range objs {
		l := o.GetLabels()
		if o.GetKind() != "NetworkChaos" || o.GetNamespace() != "shop" || l["app.kubernetes.io/managed-by"] != "chaosgate" || l["chaosgate.io/run-id"] != "dry-1" {
			t.Fatalf("object %s/%s labels %v", o.GetKind(), o.GetName(), l)
		}
	}
	if !strings.Contains(out.String(), "nothing created") || !strings.Contains(out.String(), "# step 5%") {
		t.Fatalf("no header or notes:\n%s", out.String())
	}

	// A pod-kill in mode one shows which pod and says it is chosen at run time.
	doc, _ = scenarios.Open("pod-kill")
	out.Reset()
	if err := k8sDryRun(context.Background(), &out, k, doc, "dry-2", "yaml"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "one pod is chosen at run time") || !strings.Contains(out.String(), "kind: PodChaos") {
		t.Fatalf("pod-kill dry run:\n%s", out.String())
	}

	// The library's network-delay names n2: the second pod of each arm.
	doc, _ = scenarios.Open("network-delay")
	out.Reset()
	if err := k8sDryRun(context.Background(), &out, k, doc, "dry-3", "yaml"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "- web-canary-1\n") || !strings.Contains(out.String(), "- web-1\n") || !strings.Contains(out.String(), "latency: 80ms") {
		t.Fatalf("network-delay dry run:\n%s", out.String())
	}

	// Every library experiment renders offline except those whose faults
	// act on upstream brokers the local target starts: node faults in
	// mode one or leader show a pod and say it is chosen at run time; an
	// overload burst is played by chaosgate's load generator, no object.
	wantRendered := map[string][]string{
		"cpu-saturation":  {"kind: StressChaos", "the leader is found at run time; shown: web-canary-0"},
		"memory-pressure": {"kind: StressChaos", "one pod is chosen at run time; shown: web-canary-"},
		"slow-dependency": {"kind: NetworkChaos", "action: delay", "latency: 200ms", "direction: to", "one pod is chosen at run time; shown: web-canary-"},
		"overload":        {"# no object: chaosgate's load generator sends a burst of 2000 msg/s (2 per request) for 3s straight to the pods web-canary-0, web-canary-1, web-canary-2, web-canary-3, web-canary-4"},
	}
	upstreamOnly := map[string]bool{"backlog": true, "broker-outage": true, "consumer-rebalance": true, "upstreams": true}
	// Five pods per arm (the majorities ring needs five), two in zone b.
	pods5 := filepath.Join(dir, "pods5.yaml")
	if err := os.WriteFile(pods5, []byte(`canary: {namespace: shop, pods: [web-canary-0, web-canary-1, web-canary-2, web-canary-3, web-canary-4], zones: {a: [web-canary-0, web-canary-2], b: [web-canary-1, web-canary-3], c: [web-canary-4]}}
control: {namespace: shop, pods: [web-0, web-1, web-2, web-3, web-4], zones: {a: [web-0, web-2], b: [web-1, web-3], c: [web-4]}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	k5 := &k8sOpts{podsFile: pods5}
	wantRendered["zone-outage"] = []string{"action: pod-failure", "- web-canary-1\n      - web-canary-3\n"}
	for _, name := range scenarios.LibraryNames() {
		doc, err := scenarios.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		out.Reset()
		err = k8sDryRun(context.Background(), &out, k5, doc, "dry-lib", "yaml")
		if upstreamOnly[name] {
			if err == nil || !strings.Contains(err.Error(), "has no Kubernetes form") {
				t.Errorf("%s: dry run %v, want a fault with no Kubernetes form", name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: dry run: %v", name, err)
			continue
		}
		for _, want := range wantRendered[name] {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%s dry run lacks %q:\n%s", name, want, out.String())
			}
		}
	}

	// Bad input: the file and the field are named; -o must be yaml.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("canary: {namespace: shop, pods: []}\ncontrol: {namespace: shop, pods: [a]}\n"), 0o600)
	err = k8sDryRun(context.Background(), &out, &k8sOpts{podsFile: bad}, doc, "x", "yaml")
	if err == nil || !strings.Contains(err.Error(), "bad.yaml") || !strings.Contains(err.Error(), "canary.pods is empty") {
		t.Fatalf("bad pods file: %v", err)
	}
	os.WriteFile(bad, []byte("canary: {namespace: shop, pods: [a], zones: {b: [z]}}\ncontrol: {namespace: shop, pods: [a]}\n"), 0o600)
	if err := k8sDryRun(context.Background(), &out, &k8sOpts{podsFile: bad}, doc, "x", "yaml"); err == nil || !strings.Contains(err.Error(), `canary.zones.b[0]: "z" is not one of canary.pods`) {
		t.Fatalf("zone pod not in pods: %v", err)
	}
	zdoc, _ := scenarios.Open("zone-outage")
	if err := k8sDryRun(context.Background(), &out, k, zdoc, "x", "yaml"); err == nil || !strings.Contains(err.Error(), "gives no zones") || !strings.Contains(err.Error(), "hint: zones: {b: [POD, ...]}") {
		t.Fatalf("zone outage with no zones in the pods file: %v", err)
	}
	os.WriteFile(bad, []byte("canary: {namespace: shop, podz: [a]}\n"), 0o600)
	if err := k8sDryRun(context.Background(), &out, &k8sOpts{podsFile: bad}, doc, "x", "yaml"); err == nil || !strings.Contains(err.Error(), "podz") {
		t.Fatalf("unknown field: %v", err)
	}
	var ee *exitError
	if err := k8sDryRun(context.Background(), &out, k, doc, "x", "json"); !errors.As(err, &ee) || ee.code != exitUsage {
		t.Fatalf("-o json: %v", err)
	}
}

func int32p(v int32) *int32 { return &v }

// seedAggregators creates the deploy/aggregator shapes with a kubelet's
// and controller-manager's status written by hand: a canary Deployment
// pinned by digest and a stable StatefulSet; their pods stay Pending.
func seedAggregators(t *testing.T, ctx context.Context, c kubernetes.Interface, ns string) {
	t.Helper()
	lbl := func(track string) map[string]string {
		return map[string]string{"app.kubernetes.io/name": "aggregator", "track": track}
	}
	tmpl := func(track, image string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbl(track)},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "aggregator", Image: image}}}}
	}
	digest := strings.Repeat("d", 64)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "aggregator-canary", Namespace: ns, Annotations: map[string]string{"deployment.kubernetes.io/revision": "4"}},
		Spec: appsv1.DeploymentSpec{Replicas: int32p(3), Selector: &metav1.LabelSelector{MatchLabels: lbl("canary")},
			Template: tmpl("canary", "ghcr.io/chaosgate/chaosgate@sha256:"+digest)}}
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "aggregator-stable", Namespace: ns},
		Spec: appsv1.StatefulSetSpec{Replicas: int32p(3), ServiceName: "aggregator-stable-peers", Selector: &metav1.LabelSelector{MatchLabels: lbl("stable")},
			Template: tmpl("stable", "ghcr.io/chaosgate/chaosgate:v0.0.9")}}
	got, err := c.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Status = appsv1.StatefulSetStatus{Replicas: 3, CurrentRevision: "aggregator-stable-6c9", UpdateRevision: "aggregator-stable-6c9"}
	if _, err := c.AppsV1().StatefulSets(ns).UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"aggregator-canary-0", "aggregator-canary-1", "aggregator-canary-2"} {
		mkAggPod(t, ctx, c, ns, n, lbl("canary"))
	}
	for _, n := range []string{"aggregator-stable-0", "aggregator-stable-1", "aggregator-stable-2"} {
		mkAggPod(t, ctx, c, ns, n, lbl("stable"))
	}
}

func mkAggPod(t *testing.T, ctx context.Context, c kubernetes.Interface, ns, name string, lbl map[string]string) {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: lbl},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "aggregator", Image: "ghcr.io/chaosgate/chaosgate:v0.0.9"}}}}
	if _, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// replacePods plays the workload controllers: a deleted pod comes back
// under the same name (StatefulSet-style) with a new UID.
func replacePods(ctx context.Context, c kubernetes.Interface, ns string, want map[string]map[string]string, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
		for name, lbl := range want {
			if _, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: lbl},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "aggregator", Image: "x"}}}}
				_, _ = c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
			}
		}
	}
}

// TestK8sRunPodKillEndToEnd runs the built-in pod-kill experiment against a
// real API server without Chaos Mesh (pod-kill falls back to a direct
// delete; no kubelet: pods stay Pending) and checks the evidence subject is
// the canary workload's revision.
func TestK8sRunPodKillEndToEnd(t *testing.T) {
	if _, _, err := k8senv.Binaries(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e, err := k8senv.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	const ns = "shop"
	if err := e.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	seedAggregators(t, ctx, e.Client, ns)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	want := map[string]map[string]string{}
	for _, n := range []string{"aggregator-canary-0", "aggregator-canary-1", "aggregator-canary-2"} {
		want[n] = map[string]string{"app.kubernetes.io/name": "aggregator", "track": "canary"}
	}
	for _, n := range []string{"aggregator-stable-0", "aggregator-stable-1", "aggregator-stable-2"} {
		want[n] = map[string]string{"app.kubernetes.io/name": "aggregator", "track": "stable"}
	}
	go func() { defer wg.Done(); replacePods(ctx, e.Client, ns, want, stop) }()
	defer func() { close(stop); wg.Wait() }()

	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := e.Kubeconfig(kc); err != nil {
		t.Fatal(err)
	}
	doc, err := scenarios.Open("pod-kill")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	k := &k8sOpts{kubeconfig: kc, namespace: ns, injectTimeout: 5 * time.Second, recoverTimeout: 10 * time.Second, confirmTimeout: time.Second, aggregatorPort: 7001}

	// Dry run against the cluster: reads the targets, creates nothing.
	if err := k8sDryRun(ctx, &out, k, doc, "dry", "yaml"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# canary: Deployment/shop/aggregator-canary revision Deployment/shop/aggregator-canary@sha256:", "# Chaos Mesh installed: false",
		"# would delete pods aggregator-"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("dry run output lacks %q:\n%s", want, out.String())
		}
	}
	if pods, _ := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); len(pods.Items) != 6 {
		t.Fatalf("the dry run changed the pods: %d", len(pods.Items))
	}
	out.Reset()

	dataDir := filepath.Join(dir, "data")
	junit := filepath.Join(dir, "report.xml")
	// The fault suite alone (runK8s, k8s_faultsuite_test.go: no probes on
	// these process-less pods, so it holds); the commands' --target k8s
	// runs the game day's pipeline on pods that serve
	// (TestK8sGateOnRealPods). The revision comes from the canary workload;
	// --revision, given, is one more subject the gate answers for.
	commit := "0123456789abcdef0123456789abcdef01234567"
	_, err = runK8s(ctx, &out, k, doc, k8sRunConfig{DataDir: dataDir, Output: "json", JUnitFile: junit, Revision: commit})
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitHold || ee.err != nil {
		t.Fatalf("run: %v (want exit 3: no probes judged it)\n%s", err, out.String())
	}
	var res struct {
		Schema          string `json:"schema"`
		Revision        string `json:"revision"`
		ControlRevision string `json:"control_revision"`
		Verdict         string `json:"verdict"`
		ExitCode        int    `json:"exit_code"`
		Faults          []struct {
			Kind, Arm, Target, Confirmed string
		} `json:"faults"`
		Evidence *struct {
			LedgerIndex uint64 `json:"ledger_index"`
		} `json:"evidence"`
		Subject struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	digest := strings.Repeat("d", 64)
	if res.Schema != "report/v1" || res.Revision != "Deployment/shop/aggregator-canary@sha256:"+digest || res.ControlRevision != "StatefulSet/shop/aggregator-stable@aggregator-stable-6c9" ||
		res.Verdict != "hold" || res.ExitCode != exitHold || res.Evidence == nil {
		t.Fatalf("report:\n%s", out.String())
	}
	if len(res.Faults) != 2 {
		t.Fatalf("want one podKill per arm:\n%s", out.String())
	}
	for _, f := range res.Faults {
		if f.Kind != "podKill" || f.Confirmed != "confirmed" || !strings.HasPrefix(f.Target, "aggregator-") {
			t.Fatalf("fault %+v\n%s", f, out.String())
		}
	}
	if x, err := os.ReadFile(junit); err != nil || !strings.Contains(string(x), "<testsuites") {
		t.Fatalf("junit report: %v\n%s", err, x)
	}
	// The evidence record's subject is the canary's image digest.
	l, err := evidence.OpenDataDir(ctx, dataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	en, payload := statementOf(t, ctx, l, res.Evidence.LedgerIndex)
	var st struct {
		Subject []struct {
			Name   string            `json:"name"`
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
		Predicate struct {
			Injections []struct{ Kind, Target, Confirmed string } `json:"injections"`
		} `json:"predicate"`
	}
	if err := json.Unmarshal(payload, &st); err != nil {
		t.Fatal(err)
	}
	// Its subjects: the canary workload at its image digest, then the
	// names a rollout controller or CI may ask the gate for instead — the
	// digest alone and the commit given as --revision.
	if len(st.Subject) != 3 || st.Subject[0].Digest["sha256"] != digest || st.Subject[0].Name != "Deployment/shop/aggregator-canary" ||
		st.Subject[1].Name != "sha256:"+digest || st.Subject[2].Name != commit || st.Subject[2].Digest["gitCommit"] != commit {
		t.Fatalf("evidence subjects %+v", st.Subject)
	}
	for _, rev := range []string{res.Revision, "sha256:" + digest, commit} {
		v, ok, err := l.LatestDecision(ctx, rev)
		if err != nil || !ok || v.Entry.Index != res.Evidence.LedgerIndex || v.Predicate.Decision.Verdict != "hold" {
			t.Fatalf("gate lookup by %q: found %v, %+v, %v", rev, ok, v.Entry, err)
		}
	}
	if len(st.Predicate.Injections) != 2 || st.Predicate.Injections[0].Kind != "podKill" {
		t.Fatalf("evidence injections %+v", st.Predicate.Injections)
	}
	// faults.json is bound like a game day's: both pod kills, applied,
	// confirmed and removed.
	if len(en.Record.Blobs) != 1 {
		t.Fatalf("evidence blobs %v", en.Record.Blobs)
	}
	data, err := l.Blobs().Get(en.Record.Blobs[0])
	if err != nil {
		t.Fatal(err)
	}
	var fb gameday.FaultsBlob
	if err := json.Unmarshal(data, &fb); err != nil || len(fb.Faults) != 2 || fb.Faults[0].Kind != "podKill" || !fb.Faults[0].Applied || fb.Faults[0].Confirmed != "confirmed" ||
		!fb.Faults[0].Recovered || fb.Faults[0].DurationS == nil {
		t.Fatalf("faults.json of a Kubernetes run: %v %s", err, data)
	}
	// Without Chaos Mesh the network faults fail, naming what is missing.
	b, err := newK8sBackend(ctx, k, doc, "no-cm")
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.injector.Inject(ctx, b.pair.Target(engine.ArmCanary), engine.Fault{ID: "nd", Kind: engine.NetworkDelay, Duration: time.Second, Latency: time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "Chaos Mesh is not installed") || !strings.Contains(err.Error(), "NetworkChaos (delay)") {
		t.Fatalf("network delay without Chaos Mesh: %v", err)
	}
	// Zones are a pod label: the canary pod labelled zone z1 is that zone
	// of the canary arm; a zone no pod names is an error saying so.
	cps, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: b.pair.Canary.PodSelector})
	if err != nil || len(cps.Items) == 0 {
		t.Fatalf("canary pods: %v", err)
	}
	zoned := cps.Items[0].Name
	patch := []byte(`{"metadata":{"labels":{"` + k8starget.ZoneLabel + `":"z1"}}}`)
	if _, err := e.Client.CoreV1().Pods(ns).Patch(ctx, zoned, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := k8starget.ZonePods(ctx, e.Client, b.pair.Canary, "z1"); err != nil || len(got) != 1 || got[0] != zoned {
		t.Fatalf("zone z1 of the canary: %v, %v; want [%s]", got, err, zoned)
	}
	if got, err := k8starget.ZonePods(ctx, e.Client, b.pair.Control, "z1"); err == nil || !strings.Contains(err.Error(), "no pod") {
		t.Fatalf("zone z1 of the control: %v, %v; want an error", got, err)
	}
	// Every pod is back (no chaosgate object, nothing left behind).
	pods, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(pods.Items) != 6 {
		t.Fatalf("%d pods after the run: %v", len(pods.Items), err)
	}
}

func TestK8sLeaderLookupFromAggregatorAPI(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/cluster" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, `{"node":"agg-1","partitions":[{"id":0,"leader":"agg-2"},{"id":1,"leader":"agg-2"},{"id":2,"leader":"agg-0"}]}`)
	}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	w := &k8starget.Workload{Kind: k8starget.StatefulSet, Namespace: "ns", Name: "agg",
		Pods: []k8starget.Pod{{Name: "agg-0"}, {Name: "agg-1", IP: host}, {Name: "agg-2", IP: host}}}
	b := &k8sBackend{pair: k8starget.Pair{Canary: w, Control: w}, port: p, hc: srv.Client()}
	ctx := context.Background()
	if l, err := b.Leader(ctx, engine.ArmCanary, nil); err != nil || l != "agg-2" {
		t.Fatalf("leader = %q, %v; want agg-2 (leads 2 of 3 partitions)", l, err)
	}
	if a := b.Addrs(engine.ArmCanary); len(a) != 2 || a["agg-1"] != srv.Listener.Addr().String() {
		t.Fatalf("addrs %v", a)
	}
	two := 2
	if l, err := b.Leader(ctx, engine.ArmCanary, &two); err != nil || l != "agg-0" {
		t.Fatalf("leader of partition 2 = %q, %v", l, err)
	}
	w2 := &k8starget.Workload{Kind: k8starget.StatefulSet, Namespace: "ns", Name: "cold", Pods: []k8starget.Pod{{Name: "cold-0"}}}
	b.pair = k8starget.Pair{Canary: w2, Control: w2}
	if _, err := b.Leader(ctx, engine.ArmControl, nil); err == nil || !strings.Contains(err.Error(), "StatefulSet/ns/cold has an IP") && !strings.Contains(err.Error(), "no pod of StatefulSet/ns/cold has an IP") {
		t.Fatalf("no IPs: %v", err)
	}
}

const crashHelperEnv = "CHAOSGATE_K8S_CRASH_HELPER"

// TestK8sCrashHelperProcess is not a test: it is the chaosgate run that
// TestK8sRunSIGKILLThenNextRunReaps starts and SIGKILLs mid-experiment.
func TestK8sCrashHelperProcess(t *testing.T) {
	if os.Getenv(crashHelperEnv) != "1" {
		t.Skip("helper process of TestK8sRunSIGKILLThenNextRunReaps")
	}
	doc, err := scenarios.LoadFile(os.Getenv("SCENARIO"))
	if err != nil {
		t.Fatal(err)
	}
	k := &k8sOpts{kubeconfig: os.Getenv("KUBECONFIG_FILE"), injectTimeout: 10 * time.Second, recoverTimeout: 10 * time.Second, confirmTimeout: time.Second, aggregatorPort: 7001}
	_, err = runK8s(context.Background(), os.Stdout, k, doc, k8sRunConfig{DataDir: os.Getenv("DATA_DIR"), Output: "json"})
	t.Fatalf("the helper run ended instead of being killed: %v", err)
}

// TestK8sRunSIGKILLThenNextRunReaps SIGKILLs a Kubernetes run while its
// partition is in effect, then checks that the next run's reaper removes
// every object the dead run owned.
func TestK8sRunSIGKILLThenNextRunReaps(t *testing.T) {
	if _, _, err := k8senv.Binaries(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e, err := k8senv.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	if err := e.InstallChaosMeshCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	const ns = "crashns"
	if err := e.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	seedAggregators(t, ctx, e.Client, ns)
	cc := k8senv.StartChaosController(nil, e.Dynamic, e.Client, ns)
	defer cc.Stop()

	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := e.Kubeconfig(kc); err != nil {
		t.Fatal(err)
	}
	scen := filepath.Join(dir, "long-partition.yaml")
	if err := os.WriteFile(scen, []byte(`apiVersion: chaosgate.io/v1
kind: Experiment
metadata: {name: long-partition}
spec:
  target:
    kubernetes:
      namespace: crashns
      replicas: 3
      canary: {matchLabels: {app.kubernetes.io/name: aggregator, track: canary}}
      control: {matchLabels: {app.kubernetes.io/name: aggregator, track: stable}}
  faults:
    - name: cut
      duration: 5m
      partition: {shape: halves}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	// --dry-run=server: every NetworkChaos the run would create is
	// accepted by the API server's dry run (the real CRD schema), printed
	// as the server would store it, and none is persisted.
	doc, err := scenarios.Open(scen)
	if err != nil {
		t.Fatal(err)
	}
	var dry bytes.Buffer
	sk := &k8sOpts{kubeconfig: kc, dryRun: dryRunServer, aggregatorPort: 7001}
	if err := k8sDryRun(ctx, &dry, sk, doc, "dry", "yaml"); err != nil {
		t.Fatalf("server-side dry run: %v", err)
	}
	for _, want := range []string{"server-side dry run of long-partition", "accepted by the API server's dry run", "kind: NetworkChaos", "# Chaos Mesh installed: true"} {
		if !strings.Contains(dry.String(), want) {
			t.Fatalf("server-side dry run output lacks %q:\n%s", want, dry.String())
		}
	}
	gvr := schema.GroupVersionResource{Group: "chaos-mesh.org", Version: "v1alpha1", Resource: "networkchaos"}
	if l, err := e.Dynamic.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Fatalf("the server-side dry run persisted objects: %v %v", l, err)
	}
	dk := &k8sOpts{kubeconfig: kc, dryRun: dryRunServer, podsFile: filepath.Join(dir, "pods.yaml")}
	if err := k8sDryRun(ctx, &dry, dk, doc, "dry", "yaml"); err == nil || !strings.Contains(err.Error(), "--dry-run=client offline") {
		t.Fatalf("--dry-run=server with --pods: %v", err)
	}

	dataDir := filepath.Join(dir, "data")
	child := exec.Command(os.Args[0], "-test.run=^TestK8sCrashHelperProcess$")
	child.Env = append(os.Environ(), crashHelperEnv+"=1", "KUBECONFIG_FILE="+kc, "DATA_DIR="+dataDir, "SCENARIO="+scen)
	child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var childOut bytes.Buffer
	child.Stdout, child.Stderr = &childOut, &childOut
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = child.Wait(); close(exited) }()

	// Wait until both arms' partitions are in effect (2 sides each).
	owned := func() (run string, injected int, total int) {
		l, err := e.Dynamic.Resource(k8sinject.NetworkChaosGVR).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: k8sinject.OwnedSelector})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range l.Items {
			run = o.GetLabels()[k8sinject.LabelRun]
			conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
			for _, c := range conds {
				if m, _ := c.(map[string]any); m["type"] == "AllInjected" && m["status"] == "True" {
					injected++
				}
			}
		}
		return run, injected, len(l.Items)
	}
	deadline := time.Now().Add(90 * time.Second)
	var deadRun string
	for {
		run, inj, _ := owned()
		if inj == 4 {
			deadRun = run
			break
		}
		select {
		case <-exited:
			t.Fatalf("the run ended before it was killed:\n%s", childOut.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = child.Process.Kill()
			<-exited
			t.Fatalf("the partitions were not in effect after 90s:\n%s", childOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := syscall.Kill(child.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	if _, _, total := owned(); total != 4 {
		t.Fatalf("after SIGKILL %d objects remain, want the 4 the dead run owned", total)
	}

	// The next run reaps them before it starts.
	doc, err = scenarios.Open("pod-kill")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	k := &k8sOpts{kubeconfig: kc, namespace: ns, injectTimeout: 5 * time.Second, recoverTimeout: 10 * time.Second, confirmTimeout: time.Second, aggregatorPort: 7001}
	_, err = runK8s(ctx, &out, k, doc, k8sRunConfig{DataDir: dataDir, Output: "json"})
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitHold {
		t.Fatalf("next run: %v\n%s", err, out.String())
	}
	var res struct {
		Reaped []struct{ Run, What, Result string } `json:"reaped"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	recovered := 0
	for _, r := range res.Reaped {
		if r.Run == deadRun && r.What == "fault" && r.Result == "recovered" {
			recovered++
		}
	}
	if recovered != 2 {
		t.Fatalf("reaped %+v, want the dead run's 2 partitions (canary, control) recovered", res.Reaped)
	}
	if _, _, total := owned(); total != 0 {
		t.Fatalf("%d NetworkChaos left after the next run's reaper", total)
	}
}

// statementOf returns the ledger entry at index and its signed statement
// (the DSSE envelope's decoded payload).
func statementOf(t *testing.T, ctx context.Context, l *evidence.Ledger, index uint64) (evidence.Entry, []byte) {
	t.Helper()
	en, err := l.Entry(ctx, index)
	if err != nil {
		t.Fatal(err)
	}
	var env struct{ Payload string }
	if err := json.Unmarshal(en.Envelope, &env); err != nil {
		t.Fatal(err)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	return en, payload
}
