package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/jsonpath"
	"sigs.k8s.io/yaml"

	k8starget "github.com/chaosgate/chaosgate/engine/target/k8s"
	"github.com/chaosgate/chaosgate/internal/k8senv"
	"github.com/chaosgate/chaosgate/scenarios"
)

// argoTemplate is the part of an Argo Rollouts AnalysisTemplate a web
// metric measurement uses.
type argoTemplate struct {
	Spec struct {
		Metrics []struct {
			Name             string `json:"name"`
			SuccessCondition string `json:"successCondition"`
			FailureCondition string `json:"failureCondition"`
			Provider         struct {
				Web struct {
					URL     string `json:"url"`
					Headers []struct {
						Key, Value string
					} `json:"headers"`
					JSONPath string `json:"jsonPath"`
				} `json:"web"`
			} `json:"provider"`
		} `json:"metrics"`
	} `json:"spec"`
}

// serveForControllers starts serve on dataDir, trusting 127.0.0.1/32 for
// Flagger's token-less webhooks (as deploy/examples/flagger's
// --webhook-trusted-cidr does), and returns it, its tokens and the
// AnalysisTemplate of deploy/examples/argo-rollouts.
func serveForControllers(t *testing.T, dir, dataDir string) (*serveProc, map[string]string, argoTemplate) {
	t.Helper()
	cfg := filepath.Join(dir, "serve.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "listen: 127.0.0.1:0\ndata_dir: %s\n", dataDir), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, chaosgateBinary(t), "-c", cfg, "--webhook-trusted-cidr", "127.0.0.1/32")
	tok := serveTokens(t, dataDir)
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "examples", "argo-rollouts", "analysistemplate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var tmpl argoTemplate
	if err := yaml.Unmarshal(data, &tmpl); err != nil || len(tmpl.Spec.Metrics) == 0 {
		t.Fatalf("AnalysisTemplate: %v", err)
	}
	return p, tok, tmpl
}

// askLikeFlagger posts one of Flagger's webhooks (no token: serve trusts
// the loopback network) with the payload Flagger sends for the Canary
// namespace/name at revision, and returns the HTTP status.
func askLikeFlagger(t *testing.T, base, namespace, name, step, revision string) int {
	t.Helper()
	payload := fmt.Sprintf(`{"name":%q,"namespace":%q,"phase":"Progressing","checksum":"7b8c","type":%q,"metadata":{"revision":%q}}`, name, namespace, step, revision)
	resp, err := http.Post(base+"/api/v1/gate/flagger/"+step, "application/json", strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

var argoCondition = regexp.MustCompile(`^result == "([a-z]+)"$`)

// measureLikeArgo takes one measurement of the AnalysisTemplate's first
// metric as Argo Rollouts' web provider does: it fills {{args.*}}, sends
// the GET with the template's headers to base instead of the in-cluster
// Service, extracts the value with k8s.io/client-go/util/jsonpath (the
// library the provider uses) and evaluates the success and failure
// conditions. Argo's outcome: "Successful", "Failed", "Inconclusive", or
// "Error" for a non-2xx answer or a value the path cannot extract.
func measureLikeArgo(t *testing.T, tmpl argoTemplate, base string, args map[string]string) (phase, value string) {
	t.Helper()
	m := tmpl.Spec.Metrics[0]
	fill := func(s string) string {
		for k, v := range args {
			s = strings.ReplaceAll(s, "{{args."+k+"}}", v)
		}
		return s
	}
	u := fill(m.Provider.Web.URL)
	i := strings.Index(u, "/api/")
	if i < 0 {
		t.Fatalf("template url %q has no /api/ path", m.Provider.Web.URL)
	}
	req, _ := http.NewRequest("GET", base+u[i:], nil)
	for _, h := range m.Provider.Web.Headers {
		req.Header.Set(h.Key, fill(h.Value))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return "Error", fmt.Sprintf("HTTP %d: %s", resp.StatusCode, body)
	}
	jp := jsonpath.New("metrics")
	if err := jp.Parse(m.Provider.Web.JSONPath); err != nil {
		t.Fatalf("jsonPath %q: %v", m.Provider.Web.JSONPath, err)
	}
	var data any
	if err := json.Unmarshal(body, &data); err != nil {
		return "Error", err.Error()
	}
	var out bytes.Buffer
	if err := jp.Execute(&out, data); err != nil {
		return "Error", err.Error()
	}
	value = out.String()
	cond := func(c string) bool {
		mm := argoCondition.FindStringSubmatch(c)
		if mm == nil {
			t.Fatalf("condition %q is not of the form result == \"verdict\"", c)
		}
		return value == mm[1]
	}
	switch {
	case cond(m.FailureCondition):
		return "Failed", value
	case cond(m.SuccessCondition):
		return "Successful", value
	}
	return "Inconclusive", value
}

// TestK8sArgoRolloutRunThenGateReplay runs the pod-kill experiment with an
// Argo Rollout as the target on a real API server carrying Argo's CRDs
// (no Argo controller or kubelet: the Rollout's status and the pods'
// status are written as they would be mid-update). The canary arm is the
// ReplicaSet of status.currentPodHash, the control that of
// status.stableRS, and the evidence answers the gate under the keys Argo
// can send. Then `chaosgate serve` on the run's data directory is asked
// exactly as the shipped AnalysisTemplate (deploy/examples/argo-rollouts)
// and the Flagger Canary's webhooks (deploy/examples/flagger) ask: the
// run's hold is Argo's Inconclusive and Flagger's 412 for promotion; a
// revision no run judged is pending (Inconclusive, never an Error).
func TestK8sArgoRolloutRunThenGateReplay(t *testing.T) {
	if _, _, err := k8senv.Binaries(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	e, err := k8senv.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	if err := e.InstallArgoRolloutCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	const ns = "shop"
	if err := e.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	digest := strings.Repeat("e", 64)
	fx := k8senv.RolloutFixture{Namespace: ns, Name: "aggregator", CanaryHash: "6f8d7c9b4", StableHash: "5c4b8d7f6", CanaryPods: 3, StablePods: 3,
		CanaryImage: "ghcr.io/chaosgate/chaosgate@sha256:" + digest, CanaryImageID: "ghcr.io/chaosgate/chaosgate@sha256:" + digest,
		StableImage: "ghcr.io/chaosgate/chaosgate:v0.0.9", StableImageID: "ghcr.io/chaosgate/chaosgate@sha256:" + strings.Repeat("f", 64)}
	if _, err := e.SeedRollout(ctx, fx); err != nil {
		t.Fatal(err)
	}
	// The ReplicaSet controller's part: a deleted pod comes back.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			for name, lbl := range fx.PodLabels() {
				if _, err := e.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
					_ = e.RunningPod(ctx, ns, name, lbl, "x", "")
				}
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := e.Kubeconfig(kc); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	// The Kubernetes run of serve's API on these process-less pods (the
	// fault suite; no probe reaches them, so it holds).
	var out bytes.Buffer
	doc, err := scenarios.Open("pod-kill")
	if err != nil {
		t.Fatal(err)
	}
	k := &k8sOpts{kubeconfig: kc, namespace: ns, rollout: "aggregator", injectTimeout: 5 * time.Second, recoverTimeout: 10 * time.Second, confirmTimeout: time.Second, aggregatorPort: 7001}
	_, err = runK8s(ctx, &out, k, doc, k8sRunConfig{DataDir: dataDir, Output: "json"})
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitHold || ee.err != nil {
		t.Fatalf("run: %v (want exit 3: no probe judged it)\n%s", err, out.String())
	}
	var res struct {
		Revision        string `json:"revision"`
		ControlRevision string `json:"control_revision"`
		Verdict         string `json:"verdict"`
		Faults          []struct{ Kind, Arm, Target, Confirmed string }
		Evidence        *struct {
			LedgerIndex uint64 `json:"ledger_index"`
		} `json:"evidence"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if res.Revision != "ReplicaSet/shop/aggregator-6f8d7c9b4@sha256:"+digest || res.ControlRevision != "ReplicaSet/shop/aggregator-5c4b8d7f6@sha256:"+strings.Repeat("f", 64) ||
		res.Verdict != "hold" || res.Evidence == nil || len(res.Faults) != 2 {
		t.Fatalf("report:\n%s", out.String())
	}
	for _, f := range res.Faults {
		want := "aggregator-" + map[string]string{"canary": fx.CanaryHash, "control": fx.StableHash}[f.Arm] + "-"
		if f.Kind != "podKill" || !strings.HasPrefix(f.Target, want) {
			t.Fatalf("fault %+v killed outside its arm's ReplicaSet (want %s*)", f, want)
		}
	}

	// What Argo's analysis sends: podTemplateHashValue Latest is the
	// Rollout's status.currentPodHash; a fieldRef on
	// metadata.annotations['rollout.argoproj.io/revision'] its revision.
	ro, err := e.Dynamic.Resource(k8starget.RolloutResource).Namespace(ns).Get(ctx, "aggregator", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	latest, _, _ := unstructured.NestedString(ro.Object, "status", "currentPodHash")
	rev := ro.GetAnnotations()[k8starget.RolloutRevisionAnnotation]

	p, tok, tmpl := serveForControllers(t, dir, dataDir)
	for _, c := range []struct{ revision, phase, value string }{
		{latest, "Inconclusive", "hold"},
		{"Rollout/shop/aggregator@" + rev, "Inconclusive", "hold"},
		{"sha256:" + digest, "Inconclusive", "hold"},
		// A canary no run judged yet: pending, measured again next interval.
		{"0a1b2c3d4", "Inconclusive", "pending"},
		// The stable ReplicaSet was never the canary of a run.
		{fx.StableHash, "Inconclusive", "pending"},
	} {
		phase, value := measureLikeArgo(t, tmpl, p.url, map[string]string{"revision": c.revision, "token": tok["viewer"]})
		if phase != c.phase || value != c.value {
			t.Errorf("Argo measurement for %q: %s (%s), want %s (%s)", c.revision, phase, value, c.phase, c.value)
		}
	}
	// A wrong token is an Argo Error (counted against consecutiveErrorLimit), not a verdict.
	if phase, _ := measureLikeArgo(t, tmpl, p.url, map[string]string{"revision": latest, "token": "wrong"}); phase != "Error" {
		t.Errorf("bad token: Argo phase %s, want Error", phase)
	}

	// Flagger's webhooks: no token (serve trusts 127.0.0.1/32, as the
	// example's --webhook-trusted-cidr trusts Flagger's network), payload
	// as Flagger sends it.
	flagger := func(step, revision string) int { return askLikeFlagger(t, p.url, "shop", "aggregator", step, revision) }
	for _, c := range []struct {
		step, revision string
		code           int
	}{
		{"confirm-promotion", latest, 412}, // hold: not promoted
		{"rollback", latest, 412},          // hold: not rolled back either
		{"pre-rollout", latest, 200},       // only a block stops the rollout before it starts
		{"rollout", latest, 200},           // nor fails an analysis iteration
		{"confirm-promotion", "0a1b2c3d4", 412},
		{"pre-rollout", "0a1b2c3d4", 200},
	} {
		if code := flagger(c.step, c.revision); code != c.code {
			t.Errorf("Flagger %s for %q: HTTP %d, want %d\n%s", c.step, c.revision, code, c.code, p.logs())
		}
	}

	// kubectl's connection flags reach the API server: a kubeconfig whose
	// current context points nowhere works with --context, and --as
	// impersonates a user without RBAC, whom the API server refuses.
	kcfg, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	good := kcfg.CurrentContext
	kcfg.Clusters["nowhere"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1"}
	kcfg.Contexts["nowhere"] = &clientcmdapi.Context{Cluster: "nowhere", AuthInfo: kcfg.Contexts[good].AuthInfo}
	kcfg.CurrentContext = "nowhere"
	kc2 := filepath.Join(dir, "kubeconfig-two-contexts")
	if err := clientcmd.WriteToFile(*kcfg, kc2); err != nil {
		t.Fatal(err)
	}
	dry := func(extra ...string) (string, error) {
		var out bytes.Buffer
		root := newRootCmd()
		root.SetOut(&out)
		root.SetErr(io.Discard)
		root.SetArgs(append([]string{"run", "--target", "k8s", "-f", "pod-kill", "--kubeconfig", kc2, "-n", ns, "--rollout", "aggregator", "--dry-run=server", "-o", "yaml"}, extra...))
		err := root.ExecuteContext(ctx)
		return out.String(), err
	}
	if _, err := dry(); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("current context nowhere: %v", err)
	}
	if out, err := dry("--context", good, "--request-timeout", "20s"); err != nil || !strings.Contains(out, "# canary: ReplicaSet/shop/aggregator-6f8d7c9b4") {
		t.Errorf("--context %s: %v\n%s", good, err, out)
	}
	if _, err := dry("--context", good, "--as", "nobody"); err == nil || !strings.Contains(err.Error(), "forbidden") || !strings.Contains(err.Error(), `"nobody"`) {
		t.Errorf("--as nobody: %v", err)
	}
	k = &k8sOpts{}
	cmd := &cobra.Command{Use: "x"}
	k.flags(cmd)
	if err := cmd.ParseFlags([]string{"--kubeconfig", kc2, "--context", good, "--as", "alice", "--as-group", "sre", "--request-timeout", "7s", "-n", "shop"}); err != nil {
		t.Fatal(err)
	}
	rc, err := k.restConfig()
	if err != nil || rc.Impersonate.UserName != "alice" || len(rc.Impersonate.Groups) != 1 || rc.Timeout != 7*time.Second || k.namespace != "shop" || !strings.HasPrefix(rc.Host, "https://127.0.0.1:") || strings.HasSuffix(rc.Host, ":1") {
		t.Errorf("connection flags: %v %+v ns %q", err, rc, k.namespace)
	}
	// The API client's rate limit: chaosgate's defaults, or the flags'.
	if err == nil && (rc.QPS != defaultKubeQPS || rc.Burst != defaultKubeBurst) {
		t.Errorf("default client limit %g/s burst %d, want %d/%d", rc.QPS, rc.Burst, defaultKubeQPS, defaultKubeBurst)
	}
	k = &k8sOpts{}
	cmd = &cobra.Command{Use: "x"}
	k.flags(cmd)
	if err := cmd.ParseFlags([]string{"--kubeconfig", kc2, "--context", good, "--kube-api-qps", "7.5", "--kube-api-burst", "9"}); err != nil {
		t.Fatal(err)
	}
	if rc, err := k.restConfig(); err != nil || rc.QPS != 7.5 || rc.Burst != 9 {
		t.Errorf("--kube-api-qps 7.5 --kube-api-burst 9: %v, %+v", err, rc)
	}
	k.qps = -1
	if _, err := k.restConfig(); err == nil || !strings.Contains(err.Error(), "--kube-api-qps") {
		t.Errorf("negative qps: %v", err)
	}
}
