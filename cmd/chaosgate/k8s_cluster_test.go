package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/gameday"
	k8sinject "github.com/chaosgate/chaosgate/engine/inject/k8s"
	"github.com/chaosgate/chaosgate/engine/traffic"
	"github.com/chaosgate/chaosgate/evidence"
	"github.com/chaosgate/chaosgate/internal/freeport"
	"github.com/chaosgate/chaosgate/internal/k8senv"
	"github.com/chaosgate/chaosgate/internal/kubelettest"
	"github.com/chaosgate/chaosgate/internal/promtest"
)

// clusterExperiment is the experiment the gate runs on the test cluster:
// the aggregator's canary and stable StatefulSets chosen by labels, a
// calibration StatefulSet of the stable build measuring the A/A noise, the
// game day's probes, a pod kill in each arm at each canary step, and each
// step's split set on an HTTPRoute. (Network faults on real pods are
// TestK8sBurstAndSlowDependencyOnRealPods's: they need the harness's fault
// proxies between the pods, and nine pods' raft traffic through them beside
// five gates is more than a 2-core host carries.)
const clusterExperiment = `apiVersion: chaosgate.io/v1
kind: Experiment
metadata:
  name: k8s-pod-kill
  description: kill one pod of each arm at every canary step, then judge the step
spec:
  target:
    kubernetes:
      namespace: %s
      canary: {matchLabels: {app.kubernetes.io/name: aggregator, track: canary}}
      control: {matchLabels: {app.kubernetes.io/name: aggregator, track: stable}}
      calibration: {matchLabels: {app.kubernetes.io/name: aggregator, track: calibration}}
      replicas: 3
  steadyState: 2s
  canary:
    steps: [50, 100]
  traffic:
    provider: gatewayAPI
    route: aggregator
    gateway: public
    stableService: aggregator-stable
    canaryService: aggregator-canary
    port: 7001
    header: {name: x-deployment-id, value: canary}
  probes:
    availability: {sources: 4, rate: 60}
    consistency: {}
    metrics: {interval: 1s}
  faults:
    - name: kill-one
      duration: 3s
      podKill: {mode: one}
`

// TestK8sGateOnRealPods is chaosgate gate --target k8s on a cluster that
// runs pods for real (kubelettest.Cluster: kubelets, containerd, a real
// controller manager): the aggregator's canary and stable StatefulSets,
// the game day's load and probes on the pods, a pod kill through a
// PodChaos that the harness plays as Chaos Mesh would (it deletes the pod;
// the real StatefulSet controller replaces it), the judge on the windows.
// A good canary is promoted (exit 0); the same canary rolled to a build
// with the error-rate defect is blocked on error_rate (exit 1). The
// evidence's subject is the canary StatefulSet at its image digest.
func TestK8sGateOnRealPods(t *testing.T) {
	env := k8senv.GetWithChaosMesh(t)
	cluster := kubelettest.GetCluster(t, env, kubelettest.ClusterOptions{Nodes: 3})
	// Five gates (a good canary may hold once and run again), two image
	// builds and a rolling update on a loaded 2-core CI machine: about
	// 10 minutes alone, 16 to 20 beside the other packages' tests.
	ctx, cancel := context.WithTimeout(context.Background(), 28*time.Minute)
	defer cancel()
	dir := t.TempDir()
	ref, tarPath, err := kubelettest.ChaosgateImage(ctx, dir, "v0.0.0-gatetest")
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.ImportImage(ctx, tarPath); err != nil {
		t.Fatal(err)
	}
	ports, err := freeport.Ports(6)
	if err != nil {
		t.Fatal(err)
	}
	const ns = "gate-pods"
	canary := kubelettest.Aggregator{Namespace: ns, Name: "aggregator-canary", Labels: map[string]string{"app.kubernetes.io/name": "aggregator", "track": "canary"},
		Replicas: 3, Image: ref, HTTPPort: ports[0], RaftPort: ports[1], Partitions: 2}
	stable := kubelettest.Aggregator{Namespace: ns, Name: "aggregator-stable", Labels: map[string]string{"app.kubernetes.io/name": "aggregator", "track": "stable"},
		Replicas: 3, Image: ref, HTTPPort: ports[2], RaftPort: ports[3], Partitions: 2}
	calibration := kubelettest.Aggregator{Namespace: ns, Name: "aggregator-calibration", Labels: map[string]string{"app.kubernetes.io/name": "aggregator", "track": "calibration"},
		Replicas: 3, Image: ref, HTTPPort: ports[4], RaftPort: ports[5], Partitions: 2}
	for _, a := range []kubelettest.Aggregator{canary, stable, calibration} {
		if _, err := cluster.Deploy(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	// The harness plays Chaos Mesh's controller on the namespace; the
	// StatefulSet controller, not the harness, replaces a killed pod. The
	// pods dial each other directly, as pods do.
	cm := k8senv.StartChaosController(t, env.Dynamic, env.Client, ns)
	cm.Set(false, false, true)
	waitPodsReady(t, ctx, env, cluster, ns, 9)
	// The traffic section's HTTPRoute, on the Gateway API's own CRD: each
	// step's split is applied to it, and a block rolls it back.
	gwAPI, err := k8senv.ModuleDir(ctx, "sigs.k8s.io/gateway-api@v1.6.3")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.ApplyCRDFile(ctx, filepath.Join(gwAPI, "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml")); err != nil {
		t.Fatal(err)
	}
	route, err := traffic.New(env.Dynamic, traffic.Config{Provider: traffic.GatewayAPI, Namespace: ns, Route: "aggregator", Gateway: "public",
		StableService: "aggregator-stable", CanaryService: "aggregator-canary", Port: 7001})
	if err != nil {
		t.Fatal(err)
	}
	routeHolds := func(what string, canaryPercent float64) {
		t.Helper()
		s, err := route.Read(ctx)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if s.CanaryPercent != canaryPercent || s.Header == nil || s.Header.Name != "x-deployment-id" {
			t.Fatalf("%s: %s holds %+v, want %.0f%% canary with the x-deployment-id match", what, route.Describe(), s, canaryPercent)
		}
		t.Logf("%s: %s holds %.0f%% canary %v", what, route.Describe(), s.CanaryPercent, s.Weights)
	}

	kc := filepath.Join(dir, "kubeconfig")
	if err := env.Kubeconfig(kc); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "experiment.yaml")
	if err := os.WriteFile(file, fmt.Appendf(nil, clusterExperiment, ns), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	bin := chaosgateBinary(t)
	type result struct {
		Tag      string   `json:"-"` // the --revision given
		Raw      []byte   `json:"-"` // the report as printed
		RunID    string   `json:"run_id"`
		Verdict  string   `json:"verdict"`
		ExitCode int      `json:"exit_code"`
		Revision string   `json:"revision"`
		Reason   string   `json:"reason"`
		Failing  []string `json:"failing_dimensions"`
		Error    string   `json:"error"`
		// Unsettled is set when the run reported, after its health wait,
		// that it judged a step on arms that had not settled — pods not
		// ready, or not yet serving a chunk of load without timeouts
		// since they became ready: the host did not bring an arm back
		// after its pod kill in time (the run's own log line).
		Unsettled string `json:"-"`
		Faults    []struct {
			Kind, Arm, Target, Confirmed string
			Availability                 json.RawMessage
		} `json:"faults"`
		Evidence *struct {
			LedgerIndex uint64 `json:"ledger_index"`
		} `json:"evidence"`
		Probes map[string]json.RawMessage `json:"probes"`
		Steps  []struct {
			Weight     int               `json:"weight"`
			Verdict    string            `json:"verdict"`
			ConfigHash string            `json:"config_hash"`
			Dimensions []json.RawMessage `json:"dimensions"`
		} `json:"steps"`
	}
	// A real Prometheus discovers the pods through the API server and
	// scrapes them with the scrape configuration chaosgate ships
	// (deploy/prometheus); chaosgate finds each arm's series by namespace
	// and pod name.
	prom := promtest.StartConfig(t, promtest.KubernetesSDBinary(t), shippedScrapeConfig(t, kc, ns))
	// gateWant runs chaosgate gate --target k8s and wants one of the exit
	// codes (the revision it records is v-WHAT).
	gateWant := func(what string, want []int, extra ...string) result {
		t.Helper()
		out, errOut, code, err := runChaosgate(t, ctx, bin, append([]string{"gate", "--target", "k8s", "-f", file, "--kubeconfig", kc,
			"--inject-timeout", "60s", "--recover-timeout", "60s", "--confirm-timeout", "20s",
			"--data-dir", dataDir, "-o", "json", "--revision", "v-" + what}, extra...)...)
		var res result
		if jerr := json.Unmarshal(out.Bytes(), &res); jerr != nil {
			t.Fatalf("%s: %v: %v\n%s\n%s", what, err, jerr, out.String(), errOut.String())
		}
		// Why it held or blocked: the data notes and the judged
		// dimensions the run printed, first, so that a cut log keeps them.
		var why []string
		if code != exitPromote {
			for _, line := range strings.Split(errOut.String(), "\n") {
				if strings.Contains(line, "PromQL: ") || strings.Contains(line, "inconclusive") || strings.Contains(line, "WARNING") ||
					strings.Contains(line, " fail: ") || strings.Contains(line, "system breach") || strings.Contains(line, "not all healthy") {
					why = append(why, line)
				}
			}
		}
		if !slices.Contains(want, code) {
			t.Fatalf("%s: exit %d (%v), want %v; verdict %s: %s %s\nwhy:\n%s\n%s", what, code, err, want, res.Verdict, res.Reason, res.Error,
				strings.Join(why, "\n"), tail(errOut.String(), 6000))
		}
		t.Logf("%s: %s (exit %d): %s; failing %v", what, res.Verdict, code, res.Reason, res.Failing)
		for _, line := range why {
			t.Logf("%s: %s", what, line)
		}
		res.ExitCode, res.Tag, res.Raw = code, "v-"+what, out.Bytes()
		for _, line := range strings.Split(errOut.String(), "\n") {
			if strings.Contains(line, "not all healthy") && strings.Contains(line, "judging anyway") {
				res.Unsettled = strings.TrimSpace(line)
			}
		}
		return res
	}
	gate := func(what string, wantCode int, extra ...string) result {
		t.Helper()
		return gateWant(what, []int{wantCode}, extra...)
	}
	// goodGate runs a good canary's gate: it must never block, and must
	// promote by the second run. A first run judges on the A/A windows its
	// own calibration workload records at each step, and on a loaded host
	// its judge may hold for more data (a pod kill that hit a leader in one
	// arm and a follower in the other); the second run has the first run's
	// A/A windows too, as a user's next run would.
	//
	// It may block only when the run itself says that it judged a step on
	// arms that had not settled after their health wait (a pod kill on a
	// loaded host, and an arm did not elect its leaders or serve without
	// timeouts in time): the judge then saw that arm's sessions really
	// broken. The next run must promote.
	goodGate := func(what string, extra ...string) result {
		t.Helper()
		r := gateWant(what, []int{exitPromote, exitHold, exitBlock}, extra...)
		switch {
		case r.ExitCode == exitPromote:
			return r
		case r.ExitCode == exitBlock && r.Unsettled == "":
			t.Fatalf("%s: a good canary blocked on settled arms: %s (failing %v)", what, r.Reason, r.Failing)
		case r.ExitCode == exitBlock:
			t.Logf("%s: blocked on a step judged before the arms settled (%s); running it again", what, r.Unsettled)
		}
		return gateWant(what+"-again", []int{exitPromote}, extra...)
	}

	good := goodGate("good")
	if good.Verdict != "promote" || good.Evidence == nil || !strings.HasPrefix(good.Revision, "StatefulSet/"+ns+"/aggregator-canary@") {
		t.Fatalf("good canary: %+v", good)
	}
	// The Kubernetes target runs the local target's pipeline, so its report
	// and evidence have what a local run's have: probe summaries, every
	// step's dimensions under the decision config's hash, each measured
	// arm's availability through each fault, and the evidence blobs.
	for _, probe := range []string{"availability", "consistency", "metrics"} {
		if len(good.Probes[probe]) == 0 {
			t.Errorf("good run's report has no %s probe summary: %v", probe, good.Probes)
		}
	}
	if len(good.Steps) == 0 {
		t.Errorf("good run's report has no steps")
	}
	for _, st := range good.Steps {
		if st.ConfigHash == "" || len(st.Dimensions) == 0 {
			t.Errorf("step %d%%: config hash %q, %d dimensions; want both", st.Weight, st.ConfigHash, len(st.Dimensions))
		}
	}
	for _, f := range good.Faults {
		if (f.Arm == "canary" || f.Arm == "control") && len(f.Availability) == 0 {
			t.Errorf("fault %s on %s %s: no availability through it", f.Kind, f.Arm, f.Target)
		}
	}
	// checkBlobs wants the judge's windows, the verdicts, the metrics and
	// the faults among the blobs of a run's evidence statement.
	checkBlobs := func(what string, index uint64) {
		t.Helper()
		l, err := evidence.OpenDataDir(ctx, dataDir, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, payload := statementOf(t, ctx, l, index)
		l.Close()
		var st struct {
			Predicate struct {
				Blobs []struct {
					Name string `json:"name"`
				} `json:"blobs"`
			} `json:"predicate"`
		}
		if err := json.Unmarshal(payload, &st); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, b := range st.Predicate.Blobs {
			names = append(names, b.Name)
		}
		for _, want := range []string{gameday.BlobWindows, gameday.BlobVerdicts, gameday.BlobMetrics, gameday.BlobFaults} {
			if !slices.Contains(names, want) {
				t.Errorf("%s run's evidence lacks the %s blob: %v", what, want, names)
			}
		}
	}
	checkBlobs("good", good.Evidence.LedgerIndex)
	routeHolds("good canary promoted", 100) // a promotion leaves the last step's weight
	checkReportShape(t, "good run", good.Raw)
	withProm := []string{"--metrics-source", "prometheus", "--prometheus", prom.URL}
	if g := goodGate("good-promql", withProm...); g.Verdict != "promote" {
		t.Fatalf("good canary, metrics from Prometheus: %+v", g)
	} else {
		// The judged windows came from PromQL: the run kept both views of
		// every window, and Prometheus counted the arms' requests.
		b, err := os.ReadFile(filepath.Join(dataDir, "runs", g.RunID, "metrics-agreement.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var a struct {
				Arm    string             `json:"arm"`
				PromQL map[string]float64 `json:"promql"`
			}
			if err := json.Unmarshal([]byte(line), &a); err != nil {
				t.Fatal(err)
			}
			if a.PromQL["requests"] > 0 {
				n++
			}
		}
		if n < 4 {
			t.Fatalf("metrics agreement: %d windows with PromQL requests, want every judged window of both arms\n%s", n, b)
		}
	}
	count := map[string]int{}
	for _, f := range good.Faults {
		count[f.Kind]++
		if f.Confirmed != "confirmed" {
			t.Errorf("fault %+v not confirmed", f)
		}
	}
	if count["podKill"] != 6 || len(good.Faults) != 6 {
		t.Errorf("good run faults %+v: want a confirmed pod kill per arm (calibration included) and step", good.Faults)
	}

	// Roll the canary to another image (its own digest) whose build has
	// the error-rate defect turned on: the StatefulSet controller replaces
	// its pods one by one.
	badRef, badTar, err := kubelettest.ChaosgateImage(ctx, t.TempDir(), "v0.0.0-gatetest-error-rate")
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.ImportImage(ctx, badTar); err != nil {
		t.Fatal(err)
	}
	ss, err := env.Client.AppsV1().StatefulSets(ns).Get(ctx, canary.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := &ss.Spec.Template.Spec.Containers[0]
	c.Image = badRef
	c.Args = append(c.Args, "--defect=error-rate")
	if _, err := env.Client.AppsV1().StatefulSets(ns).Update(ctx, ss, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		pods := waitPodsReady(t, ctx, env, cluster, ns, 9)
		rolled := 0
		for _, p := range pods {
			if p.Labels["track"] == "canary" && p.Spec.Containers[0].Image == badRef && slices.Contains(p.Spec.Containers[0].Args, "--defect=error-rate") {
				rolled++
			}
		}
		if rolled == 3 {
			break
		}
		time.Sleep(time.Second)
	}
	// The error-rate defect fails a share of the canary's requests: its
	// error rate rises, and so does the share of client sessions those
	// failures interrupt. The block must rest on one of those two. When a
	// loaded host pushes the control over the error-rate SLO too, the judge
	// calls that a system breach and compares the arms within the A/A
	// noise, so the block may rest on session interruptions alone.
	movedByDefect := func(failing []string) bool {
		return slices.Contains(failing, "error_rate") || slices.Contains(failing, "session_interruption")
	}
	// blockGate runs a defective canary's gate: it must never promote,
	// and must block by the second run. A hold is the judge refusing to
	// decide on missing data — on a loaded host an arm's pods may all be
	// unready through a step after its pod kill, and Prometheus then has
	// no series of theirs for the window — so the gate runs once more, as
	// a user's pipeline would retry a hold.
	blockGate := func(what string, extra ...string) result {
		t.Helper()
		if r := gateWant(what, []int{exitBlock, exitHold}, extra...); r.ExitCode == exitBlock {
			return r
		}
		return gateWant(what+"-again", []int{exitBlock}, extra...)
	}
	bad := blockGate("error-rate")
	if bad.Verdict != "block" || !movedByDefect(bad.Failing) {
		t.Fatalf("defective canary: verdict %s failing %v (want a block on error_rate or session_interruption): %s", bad.Verdict, bad.Failing, bad.Reason)
	}
	routeHolds("defective canary blocked", 0) // rolled back
	if b := blockGate("error-rate-promql", withProm...); b.Verdict != "block" || !movedByDefect(b.Failing) {
		t.Fatalf("defective canary, metrics from Prometheus: verdict %s failing %v (want a block on error_rate or session_interruption): %s", b.Verdict, b.Failing, b.Reason)
	}

	// The evidence: the canary StatefulSet at the image digest the kubelet
	// reports, answering at the gate for the digest and for --revision too.
	l, err := evidence.OpenDataDir(ctx, dataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	goodDigest, badDigest := subjectDigest(t, ctx, l, ns, good.Evidence.LedgerIndex), subjectDigest(t, ctx, l, ns, bad.Evidence.LedgerIndex)
	if goodDigest == badDigest {
		t.Fatalf("the good and the defective canary images have one digest %s", goodDigest)
	}
	for rev, want := range map[string]string{good.Tag: "promote", "sha256:" + goodDigest: "promote", bad.Tag: "block", "sha256:" + badDigest: "block", bad.Revision: "block"} {
		v, ok, err := l.LatestDecision(ctx, rev)
		if err != nil || !ok || v.Predicate.Decision.Verdict != want {
			t.Errorf("gate lookup by %q: found %v (%+v), %v; want %s", rev, ok, v.Predicate.Decision, err, want)
		}
	}
	l.Close()

	// Argo Rollouts' analysis and Flagger's webhooks ask serve about the
	// images these Kubernetes runs judged, as deploy/examples has them ask.
	p, tok, tmpl := serveForControllers(t, dir, dataDir)
	flagger := func(step, revision string) int {
		return askLikeFlagger(t, p.url, ns, "aggregator-canary", step, revision)
	}
	for _, c := range []struct {
		revision, phase, value string
		confirm, preRollout    int
	}{
		{"sha256:" + goodDigest, "Successful", "promote", 200, 200},
		{"sha256:" + badDigest, "Failed", "block", 412, 412},
		{"0a1b2c3d4", "Inconclusive", "pending", 412, 200}, // no run judged it yet
	} {
		if phase, value := measureLikeArgo(t, tmpl, p.url, map[string]string{"revision": c.revision, "token": tok["viewer"]}); phase != c.phase || value != c.value {
			t.Errorf("Argo measurement for %q: %s (%s), want %s (%s)", c.revision, phase, value, c.phase, c.value)
		}
		if code := flagger("confirm-promotion", c.revision); code != c.confirm {
			t.Errorf("Flagger confirm-promotion for %q: HTTP %d, want %d\n%s", c.revision, code, c.confirm, p.logs())
		}
		if code := flagger("pre-rollout", c.revision); code != c.preRollout {
			t.Errorf("Flagger pre-rollout for %q: HTTP %d, want %d\n%s", c.revision, code, c.preRollout, p.logs())
		}
	}

	// One step loop for every target: a scripted judge that promotes the
	// first judged window and blocks the next drives the Kubernetes run
	// through 50 % (promote) and 100 % (block, then the rollback), and the
	// run's report and evidence have what the local path's have (the same
	// report keys as the local quick demo's blocked run, the same blobs).
	// It runs last: its block must not become the newest verdict of an
	// image whose gate answers are checked above.
	script := &scriptedJudge{answers: []decision.Decision{decision.Promote, decision.Block}}
	stepJudge = script
	t.Cleanup(func() { stepJudge = nil })
	scripted := gate("scripted", exitBlock)
	stepJudge = nil
	var stepVerdicts []string
	for _, st := range scripted.Steps {
		stepVerdicts = append(stepVerdicts, fmt.Sprintf("%d%% %s", st.Weight, st.Verdict))
	}
	if got := strings.Join(stepVerdicts, ", "); got != "50% promote, 100% block" || script.Calls() != 2 || scripted.Evidence == nil {
		t.Fatalf("scripted promote then block: steps %s, %d judge calls, evidence %+v: %s", got, script.Calls(), scripted.Evidence, scripted.Reason)
	}
	checkReportShape(t, "scripted run", scripted.Raw)
	checkBlobs("scripted", scripted.Evidence.LedgerIndex)
	routeHolds("scripted block at 100%", 0)
	// Every run closed its journal with the split recovered or left by a
	// verdict: nothing is outstanding for a reaper.
	if reaped, err := engine.Reap(ctx, dataDir, nil, nil); err != nil || len(reaped) != 0 {
		t.Fatalf("after the gates the reaper found %v, %v", reaped, err)
	}
}

// subjectDigest returns the image digest of the evidence record at index,
// whose first subject must be the canary StatefulSet.
func subjectDigest(t *testing.T, ctx context.Context, l *evidence.Ledger, ns string, index uint64) string {
	t.Helper()
	_, payload := statementOf(t, ctx, l, index)
	var st struct {
		Subject []struct {
			Name   string            `json:"name"`
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(payload, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Subject) == 0 || st.Subject[0].Name != "StatefulSet/"+ns+"/aggregator-canary" || len(st.Subject[0].Digest["sha256"]) != 64 {
		t.Fatalf("evidence subjects %+v: want the canary StatefulSet at its image digest", st.Subject)
	}
	return st.Subject[0].Digest["sha256"]
}

// shippedScrapeConfig is deploy/prometheus/scrape-config.yaml as a user
// would deploy it, pointed at the test cluster: Kubernetes service
// discovery of the pods of ns through the API server (kubeconfig), the
// shipped relabelling (PODIP:prometheus.io/port, labels namespace, pod and
// track) unchanged. Every 2 s with a 2 s timeout: a pod's /metrics on a
// loaded 2-core host may take longer than 1 s, and chaosgate reads the
// interval from the targets API and queries at least three of them. The
// recording rules are left out (promtool tests them).
func shippedScrapeConfig(t *testing.T, kubeconfig, ns string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "prometheus", "scrape-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Global        map[string]any `json:"global"`
		RuleFiles     []string       `json:"rule_files,omitempty"`
		ScrapeConfigs []struct {
			JobName             string           `json:"job_name"`
			KubernetesSDConfigs []map[string]any `json:"kubernetes_sd_configs"`
			RelabelConfigs      []map[string]any `json:"relabel_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.UnmarshalStrict(raw, &conf); err != nil {
		t.Fatalf("deploy/prometheus/scrape-config.yaml: %v", err)
	}
	if len(conf.ScrapeConfigs) != 1 || len(conf.ScrapeConfigs[0].KubernetesSDConfigs) != 1 {
		t.Fatalf("deploy/prometheus/scrape-config.yaml: want one job with one kubernetes_sd_configs entry: %+v", conf.ScrapeConfigs)
	}
	conf.Global = map[string]any{"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "2s"}
	conf.RuleFiles = nil
	sd := conf.ScrapeConfigs[0].KubernetesSDConfigs[0]
	sd["kubeconfig_file"] = kubeconfig
	sd["namespaces"] = map[string]any{"names": []string{ns}}
	out, err := yaml.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// waitPodsReady waits until want pods of ns are Running and Ready.
func waitPodsReady(t *testing.T, ctx context.Context, env *k8senv.Env, c *kubelettest.Cluster, ns string, want int) []corev1.Pod {
	t.Helper()
	var last string
	var notReady []corev1.Pod
	for ctx.Err() == nil {
		list, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var ready []corev1.Pod
		last, notReady = "", nil
		for _, p := range list.Items {
			ok := p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && len(p.Status.ContainerStatuses) > 0
			for _, cs := range p.Status.ContainerStatuses {
				ok = ok && cs.Ready
			}
			if ok {
				ready = append(ready, p)
			} else {
				notReady = append(notReady, p)
			}
			last += fmt.Sprintf(" %s:%s", p.Name, p.Status.Phase)
		}
		if len(ready) == want && len(list.Items) == want {
			return ready
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Why each pod is not ready comes first: a CI log may cut the tails.
	var why strings.Builder
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range notReady {
		why.WriteString(c.Diagnose(dctx, &notReady[i]))
	}
	t.Fatalf("pods not all Ready:%s\n%s\n%s", last, why.String(), c.Log())
	return nil
}

// burstAndSlowDependencyExperiment runs the two faults that were local
// only on Kubernetes pods: a slow dependency (a NetworkChaos delay out of
// one pod of each arm to the others) and an overload burst that the game
// day sends with its own load generator straight to each arm's pods.
const burstAndSlowDependencyExperiment = `apiVersion: chaosgate.io/v1
kind: Experiment
metadata:
  name: k8s-burst-and-slow-dependency
  description: a slow dependency and an overload burst on the pods of each arm
spec:
  target:
    kubernetes:
      namespace: %s
      canary: {matchLabels: {app.kubernetes.io/name: aggregator, track: canary}}
      control: {matchLabels: {app.kubernetes.io/name: aggregator, track: stable}}
      replicas: 3
  steadyState: 2s
  canary:
    steps: [100]
  probes:
    availability: {sources: 4, rate: 150}
    consistency: {}
    metrics: {interval: 1s}
  faults:
    - name: slow-downstream
      duration: 3s
      slowDependency: {latency: 100ms, jitter: 20ms, mode: one}
    - name: burst
      duration: 2s
      overload: {rate: 1500, batch: 2, payload: 512}
`

// TestK8sBurstAndSlowDependencyOnRealPods is chaosgate run --target k8s
// with a slow dependency and an overload burst on pods that run for real
// (kubelettest.Cluster). The slow dependency's NetworkChaos is played by
// the harness on the proxies the pods dial each other through (it delays
// what reaches the target pods, a superset of what Chaos Mesh's egress
// delay out of the chosen pod slows); the burst needs nothing in the
// cluster. Both are confirmed on both arms by what they measured: the
// Chaos Mesh records of the delay, and the burst's own counts against the
// pods. Both arms run the same good build, so the run must not block.
func TestK8sBurstAndSlowDependencyOnRealPods(t *testing.T) {
	env := k8senv.GetWithChaosMesh(t)
	cluster := kubelettest.GetCluster(t, env, kubelettest.ClusterOptions{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	dir := t.TempDir()
	ref, tarPath, err := kubelettest.ChaosgateImage(ctx, dir, "v0.0.0-bursttest")
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.ImportImage(ctx, tarPath); err != nil {
		t.Fatal(err)
	}
	ports, err := freeport.Ports(4)
	if err != nil {
		t.Fatal(err)
	}
	const ns = "burst-pods"
	for i, track := range []string{"canary", "stable"} {
		a := kubelettest.Aggregator{Namespace: ns, Name: "aggregator-" + track, Labels: map[string]string{"app.kubernetes.io/name": "aggregator", "track": track},
			Replicas: 3, Image: ref, HTTPPort: ports[2*i], RaftPort: ports[2*i+1], Partitions: 4, ThroughProxies: true}
		if _, err := cluster.Deploy(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	cm := k8senv.StartChaosController(t, env.Dynamic, env.Client, ns)
	cm.Set(false, false, true)
	cm.SetEffect(cluster.NetworkEffect())
	waitPodsReady(t, ctx, env, cluster, ns, 6)
	kc := filepath.Join(dir, "kubeconfig")
	if err := env.Kubeconfig(kc); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "experiment.yaml")
	if err := os.WriteFile(file, fmt.Appendf(nil, burstAndSlowDependencyExperiment, ns), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code, err := runChaosgate(t, ctx, chaosgateBinary(t), "run", "--target", "k8s", "-f", file, "--kubeconfig", kc,
		"--inject-timeout", "60s", "--recover-timeout", "60s", "--confirm-timeout", "20s",
		"--data-dir", filepath.Join(dir, "data"), "-o", "json")
	var res struct {
		Verdict string   `json:"verdict"`
		Reason  string   `json:"reason"`
		Failing []string `json:"failing_dimensions"`
		Faults  []struct {
			Kind, Arm, Target, Confirmed, Measurement string
			Detail                                    string `json:"detail"`
		} `json:"faults"`
	}
	if jerr := json.Unmarshal(out.Bytes(), &res); jerr != nil || (code != exitPromote && code != exitHold) {
		t.Fatalf("run: exit %d (%v), want promote or hold: verdict %s %s failing %v (%v)\n%s\n%s", code, err, res.Verdict, res.Reason, res.Failing, jerr, out.String(), tail(errOut.String(), 6000))
	}
	t.Logf("burst and slow dependency on pods: %s (exit %d): %s", res.Verdict, code, res.Reason)
	seen := map[string]bool{}
	for _, f := range res.Faults {
		t.Logf("%s on %s %s: %s: %s", f.Kind, f.Arm, f.Target, f.Confirmed, f.Measurement)
		if f.Confirmed != "confirmed" {
			t.Errorf("%s on %s %s not confirmed: %s (%s)\n%s", f.Kind, f.Arm, f.Target, f.Confirmed, f.Measurement, tail(errOut.String(), 4000))
		}
		seen[f.Kind+"/"+f.Arm] = true
		switch f.Kind {
		case "overload":
			if !strings.Contains(f.Measurement, "burst offered") || !strings.Contains(f.Measurement, "the arm's nodes:") {
				t.Errorf("overload on %s measured %q: want the burst's counts and the pods' shedding counters", f.Arm, f.Measurement)
			}
		case "slowDependency":
			if !strings.Contains(f.Measurement, "Chaos Mesh records: 1/1 injected") {
				t.Errorf("slowDependency on %s measured %q: want its one NetworkChaos injected", f.Arm, f.Measurement)
			}
		}
	}
	for _, want := range []string{"overload/canary", "overload/control", "slowDependency/canary", "slowDependency/control"} {
		if !seen[want] {
			t.Errorf("no %s fault in the report: %+v", want, res.Faults)
		}
	}
	// Every Chaos Mesh object is gone and nothing is left for a reaper.
	for _, gvr := range []schema.GroupVersionResource{k8sinject.NetworkChaosGVR} {
		l, err := env.Dynamic.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: k8sinject.OwnedSelector})
		if err != nil || len(l.Items) != 0 {
			t.Errorf("%s left after the run: %v (%v)", gvr.Resource, l, err)
		}
	}
	if reaped, err := engine.Reap(ctx, filepath.Join(dir, "data"), nil, nil); err != nil || len(reaped) != 0 {
		t.Fatalf("after the run the reaper found %v, %v", reaped, err)
	}
}

// runChaosgate runs chaosgate with args as a user runs it: the built binary
// (chaosgateBinary), or in this process when a test hook is set
// (stepJudge). The real-pod tests run their game days out of process: the
// test binary is built with the race detector and already carries the
// harness's fault proxies, which every raft message of the pods crosses;
// the game day's load, probes and judge beside them under the race
// detector's cost starved the proxies on a 2-core host, and the pods lost
// their raft leaders and their readiness for minutes. The game day's code
// runs under the race detector in its own packages' tests and the
// in-process runs. When ctx ends the binary gets SIGTERM, and a minute to
// recover its faults as on any interrupt.
func runChaosgate(t *testing.T, ctx context.Context, bin string, args ...string) (stdout, stderr *bytes.Buffer, code int, err error) {
	t.Helper()
	stdout, stderr = &bytes.Buffer{}, &bytes.Buffer{}
	if stepJudge != nil {
		root := newRootCmd()
		root.SetOut(stdout)
		root.SetErr(stderr)
		root.SetArgs(args)
		err = root.ExecuteContext(ctx)
		var ee *exitError
		if errors.As(err, &ee) {
			return stdout, stderr, ee.code, err
		} else if err != nil {
			return stdout, stderr, -1, err
		}
		return stdout, stderr, 0, nil
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	// A test binary that dies (its timeout, a panic) takes the run down
	// too, and the run recovers its faults on the way out.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.WaitDelay = time.Minute
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return stdout, stderr, ee.ExitCode(), err
	} else if err != nil {
		return stdout, stderr, -1, err
	}
	return stdout, stderr, 0, nil
}
