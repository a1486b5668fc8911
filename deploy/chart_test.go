package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/chaosgate/chaosgate/internal/k8senv"
)

// PrometheusOperatorModule is the prometheus-operator root module whose
// example/prometheus-operator-crd holds the ServiceMonitor, PodMonitor and
// PrometheusRule CRDs. v0.94.1 is the newest release the module proxy
// serves (v0.95.x is refused); the monitoring.coreos.com/v1 kinds the chart
// uses are the same.
const PrometheusOperatorModule = "github.com/prometheus-operator/prometheus-operator@v0.94.1"

const (
	release   = "chaosgate"
	releaseNS = "chaosgate"
	tokenA    = "argo-viewer-0123456789abcdef"
	tokenB    = "ops-operator-fedcba9876543210"
)

// everything turns on every option of the chart.
func everything() map[string]any {
	return map[string]any{
		"targetNamespaces": []any{"chaosgate-demo", "shop"},
		"extraArgs":        []any{"--webhook-trusted-cidr=10.0.0.0/8"},
		"tokens": map[string]any{"create": true, "list": []any{
			map[string]any{"name": "argo", "role": "viewer", "token": tokenA},
			map[string]any{"name": "ops", "role": "operator", "token": tokenB},
		}},
		"tls":        map[string]any{"enabled": true, "existingSecret": "chaosgate-tls"},
		"aggregator": map[string]any{"enabled": true, "canaryExtraArgs": []any{"--defect=no-dedup"}},
		"monitoring": map[string]any{
			"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"},
				"tlsConfig": map[string]any{"serverName": "chaosgate.chaosgate.svc", "ca": map[string]any{"secret": map[string]any{"name": "chaosgate-tls", "key": "ca.crt"}}}},
			"podMonitor":     map[string]any{"enabled": true},
			"prometheusRule": map[string]any{"enabled": true},
		},
	}
}

func mustRender(t *testing.T, vals map[string]any) ([]*unstructured.Unstructured, string) {
	t.Helper()
	objs, notes, err := renderChart(release, releaseNS, vals)
	if err != nil {
		t.Fatal(err)
	}
	return objs, notes
}

func kinds(objs []*unstructured.Unstructured) map[string]int {
	out := map[string]int{}
	for _, o := range objs {
		out[o.GetKind()]++
	}
	return out
}

// TestChartRendersAndLints renders the chart for its defaults and with
// everything enabled, runs Helm's own linter, and checks what every
// object must have: the chart's labels, no token outside the Secret, pods
// that run as non-root with a read-only root file system.
func TestChartRendersAndLints(t *testing.T) {
	for _, tc := range []struct {
		name  string
		vals  map[string]any
		kinds map[string]int
	}{
		{"defaults", nil, map[string]int{"ServiceAccount": 1, "Role": 1, "RoleBinding": 1, "NetworkPolicy": 1, "ConfigMap": 1,
			"PersistentVolumeClaim": 1, "Deployment": 1, "Service": 1}},
		{"local target", map[string]any{"target": "local"}, map[string]int{"ServiceAccount": 1, "NetworkPolicy": 1, "ConfigMap": 1,
			"PersistentVolumeClaim": 1, "Deployment": 1, "Service": 1}},
		{"everything", everything(), map[string]int{"ServiceAccount": 1, "Role": 2, "RoleBinding": 2, "NetworkPolicy": 2, "ConfigMap": 1,
			"PersistentVolumeClaim": 1, "Deployment": 1, "Service": 5, "Secret": 1, "StatefulSet": 2,
			"ServiceMonitor": 1, "PodMonitor": 1, "PrometheusRule": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, notes := mustRender(t, tc.vals)
			if got := kinds(objs); !equalCounts(got, tc.kinds) {
				t.Fatalf("rendered kinds %v, want %v", got, tc.kinds)
			}
			if !strings.Contains(notes, "chaosgate serve is installed") {
				t.Errorf("NOTES.txt: %q", notes)
			}

			l := lint.RunAll(chartDir, tc.vals, releaseNS)
			for _, m := range l.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %v", m)
				} else {
					t.Logf("helm lint: %v", m)
				}
			}

			checkLabels(t, objs)
			checkPods(t, objs)
			checkNoPlainTokens(t, objs, tc.name == "everything")
			if tc.name == "everything" {
				checkServeOptions(t, objs)
			}
		})
	}
}

// checkServeOptions: tokens, TLS and extra flags reach serve's command
// line and mounts.
func checkServeOptions(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	spec := podSpecs(objs)["Deployment "+releaseNS+"/"+release]
	if spec == nil {
		t.Fatal("no serve Deployment")
	}
	b, _ := json.Marshal(spec)
	for _, want := range []string{
		`"--tokens=/etc/chaosgate/tokens/tokens.yaml"`, `"--tls-cert=/etc/chaosgate/tls/tls.crt"`, `"--tls-key=/etc/chaosgate/tls/tls.key"`,
		`"--webhook-trusted-cidr=10.0.0.0/8"`, `"--namespace=chaosgate-demo"`, `"scheme":"HTTPS"`,
		`"--data-dir=/var/lib/chaosgate/data"`, `"defaultMode":288`, `"secretName":"chaosgate-tokens"`, `"secretName":"chaosgate-tls"`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("serve's pod spec lacks %s", want)
		}
	}
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func checkLabels(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	want := map[string]string{
		"helm.sh/chart":                "chaosgate-0.1.0",
		"app.kubernetes.io/instance":   release,
		"app.kubernetes.io/managed-by": "Helm",
		"app.kubernetes.io/part-of":    "chaosgate",
		"app.kubernetes.io/version":    "v0.1.0",
	}
	check := func(what string, labels map[string]string) {
		for k, v := range want {
			if labels[k] != v {
				t.Errorf("%s: label %s = %q, want %q", what, k, labels[k], v)
			}
		}
		if labels["app.kubernetes.io/name"] == "" {
			t.Errorf("%s: no app.kubernetes.io/name label", what)
		}
	}
	for _, o := range objs {
		check(key(o), o.GetLabels())
		if tl, found, _ := unstructured.NestedStringMap(o.Object, "spec", "template", "metadata", "labels"); found {
			check(key(o)+" pod template", tl)
		}
	}
}

func checkPods(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	specs := podSpecs(objs)
	if len(specs) == 0 {
		t.Fatal("no workloads rendered")
	}
	for name, spec := range specs {
		if v, _, _ := unstructured.NestedBool(spec, "securityContext", "runAsNonRoot"); !v {
			t.Errorf("%s: pod securityContext.runAsNonRoot is not true", name)
		}
		if v, _, _ := unstructured.NestedFieldNoCopy(spec, "securityContext", "runAsUser"); fmt.Sprint(v) != "65532" {
			t.Errorf("%s: pod securityContext.runAsUser = %v, want 65532", name, v)
		}
		if v, _, _ := unstructured.NestedString(spec, "securityContext", "seccompProfile", "type"); v != "RuntimeDefault" {
			t.Errorf("%s: seccomp profile %q, want RuntimeDefault", name, v)
		}
		var containers []any
		for _, f := range []string{"initContainers", "containers"} {
			cs, _, _ := unstructured.NestedSlice(spec, f)
			containers = append(containers, cs...)
		}
		for _, c := range containers {
			cm := c.(map[string]any)
			what := name + " container " + cm["name"].(string)
			if v, found, _ := unstructured.NestedBool(cm, "securityContext", "allowPrivilegeEscalation"); !found || v {
				t.Errorf("%s: allowPrivilegeEscalation is not false", what)
			}
			if v, _, _ := unstructured.NestedBool(cm, "securityContext", "readOnlyRootFilesystem"); !v {
				t.Errorf("%s: readOnlyRootFilesystem is not true", what)
			}
			if v, _, _ := unstructured.NestedBool(cm, "securityContext", "privileged"); v {
				t.Errorf("%s: privileged", what)
			}
			if drop, _, _ := unstructured.NestedStringSlice(cm, "securityContext", "capabilities", "drop"); len(drop) != 1 || drop[0] != "ALL" {
				t.Errorf("%s: capabilities.drop = %v, want [ALL]", what, drop)
			}
			if u, found, _ := unstructured.NestedFieldNoCopy(cm, "securityContext", "runAsUser"); found && fmt.Sprint(u) == "0" {
				t.Errorf("%s: runs as root", what)
			}
		}
	}
}

// checkNoPlainTokens: the tokens are in the Secret and nowhere else.
func checkNoPlainTokens(t *testing.T, objs []*unstructured.Unstructured, withTokens bool) {
	t.Helper()
	inSecret := 0
	for _, o := range objs {
		b, err := json.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range []string{tokenA, tokenB} {
			if !strings.Contains(string(b), tok) {
				continue
			}
			if o.GetKind() != "Secret" {
				t.Errorf("%s holds a bearer token in plain text", key(o))
			} else {
				inSecret++
			}
		}
		if o.GetKind() == "ConfigMap" && regexp.MustCompile(`(?i)token:\s*\S{16,}`).Match(b) {
			t.Errorf("%s holds something that looks like a token", key(o))
		}
	}
	if withTokens && inSecret != 2 {
		t.Errorf("the Secret holds %d of the 2 tokens", inSecret)
	}
}

// TestChartAgreesWithKustomize: `helm install chaosgate` in namespace
// chaosgate with the aggregator enabled creates the objects deploy/serve
// and deploy/aggregator create (Namespaces aside), under the same names and
// namespaces, and everything the kustomize bases say (labels, selectors,
// ports, flags, probes, RBAC rules, policies, storage, experiments) is said
// the same way by the chart.
func TestChartAgreesWithKustomize(t *testing.T) {
	kust := append(kustomize(t, "serve"), kustomize(t, "aggregator")...)
	chart, _ := mustRender(t, map[string]any{"aggregator": map[string]any{"enabled": true}})
	diffs, compared := compareInstalls(kust, chart)
	for _, d := range diffs {
		t.Error(d)
	}
	if compared < 15 {
		t.Fatalf("compared only %d objects", compared)
	}
	// The comparison can fail: another partition count or target namespace
	// is a difference.
	other, _ := mustRender(t, map[string]any{"aggregator": map[string]any{"enabled": true, "partitions": 8, "namespace": "chaosgate-demo"}, "targetNamespaces": []any{"shop"}})
	diffs, _ = compareInstalls(kust, other)
	joined := strings.Join(diffs, "\n")
	for _, want := range []string{"--partitions=8, want --partitions=16", "--namespace=shop, want --namespace=chaosgate-demo", "deploy/ has Role chaosgate-demo/chaosgate; the chart does not"} {
		if !strings.Contains(joined, want) {
			t.Errorf("a changed chart was not told apart (no %q) in:\n%s", want, joined)
		}
	}
}

// compareInstalls lists where the chart's objects differ from the
// kustomize bases' (Namespaces aside): a missing or extra object, or a
// field of the kustomize object the chart's lacks or sets otherwise.
func compareInstalls(kust, chart []*unstructured.Unstructured) (diffs []string, compared int) {
	byKey := map[string]*unstructured.Unstructured{}
	for _, o := range chart {
		byKey[key(o)] = o
	}
	seen := map[string]bool{}
	body := func(o *unstructured.Unstructured) any {
		m := map[string]any{}
		for f, v := range o.Object {
			if f != "metadata" {
				m[f] = v
			}
		}
		m["labels"] = o.GetLabels()
		b, _ := json.Marshal(m)
		var out any
		_ = json.Unmarshal(b, &out)
		return out
	}
	for _, k := range kust {
		if k.GetKind() == "Namespace" {
			continue
		}
		c, ok := byKey[key(k)]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("deploy/ has %s; the chart does not", key(k)))
			continue
		}
		seen[key(k)] = true
		for _, d := range subset(key(k), body(k), body(c)) {
			diffs = append(diffs, "chart differs from deploy/: "+d)
		}
	}
	var extra []string
	for k := range byKey {
		if !seen[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		diffs = append(diffs, fmt.Sprintf("the chart has objects deploy/ does not: %v", extra))
	}
	return diffs, len(seen)
}

// TestChartRefusesBadValues: values.schema.json and the templates refuse
// what would install something broken or unsafe, naming the value.
func TestChartRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		vals map[string]any
		want string
	}{
		{"unknown target", map[string]any{"target": "cloud"}, "target"},
		{"short token", map[string]any{"tokens": map[string]any{"create": true, "list": []any{map[string]any{"name": "a", "role": "viewer", "token": "short"}}}}, "token"},
		{"unknown role", map[string]any{"tokens": map[string]any{"create": true, "list": []any{map[string]any{"name": "a", "role": "admin", "token": tokenA}}}}, "role"},
		{"root pod", map[string]any{"podSecurityContext": map[string]any{"runAsNonRoot": false}}, "runAsNonRoot"},
		{"privilege escalation", map[string]any{"securityContext": map[string]any{"allowPrivilegeEscalation": true}}, "allowPrivilegeEscalation"},
		{"misspelt value", map[string]any{"persistance": map[string]any{"enabled": false}}, "persistance"},
		{"bad namespace", map[string]any{"targetNamespaces": []any{"Not_A_Namespace"}}, "targetNamespaces"},
		{"tls without secret", map[string]any{"tls": map[string]any{"enabled": true}}, "tls.existingSecret"},
		{"tokens without list", map[string]any{"tokens": map[string]any{"create": true}}, "tokens.list is empty"},
		{"no namespace", map[string]any{"targetNamespaces": []any{}}, "targetNamespaces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := renderChart(release, releaseNS, tc.vals)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
}

var metricName = regexp.MustCompile(`\bchaosgate_[a-z0-9_]+`)

// exposedMetrics reads the metric names chaosgate registers from its
// sources: serve (web), the decision config store and the aggregator.
func exposedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, f := range []string{"../web/server.go", "../decision/config/store.go", "../aggregator/node/metrics.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?:Name:\s*|NewDesc\()"(chaosgate_[a-z0-9_]+)"`).FindAllSubmatch(b, -1) {
			out[string(m[1])] = true
		}
	}
	if len(out) < 20 {
		t.Fatalf("found only %d metric names in the sources: %v", len(out), out)
	}
	return out
}

// TestPrometheusRuleUsesRealMetrics: every alert expression of the chart's
// PrometheusRule names only metrics chaosgate exposes, and promtool (the
// Prometheus rule checker) accepts the rule groups.
func TestPrometheusRuleUsesRealMetrics(t *testing.T) {
	objs, _ := mustRender(t, everything())
	var rule *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "PrometheusRule" {
			rule = o
		}
	}
	if rule == nil {
		t.Fatal("no PrometheusRule rendered")
	}
	exposed := exposedMetrics(t)
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	n := 0
	for _, g := range groups {
		rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rules {
			rm := r.(map[string]any)
			expr, _ := rm["expr"].(string)
			names := metricName.FindAllString(expr, -1)
			if len(names) == 0 {
				t.Errorf("alert %v: expression %q uses none of chaosgate's metrics", rm["alert"], expr)
			}
			for _, name := range names {
				base := name
				for _, suf := range []string{"_bucket", "_count", "_sum"} {
					if !exposed[base] {
						base = strings.TrimSuffix(name, suf)
					}
				}
				if !exposed[base] {
					t.Errorf("alert %v: %s is not a metric chaosgate exposes", rm["alert"], name)
				}
			}
			n++
		}
	}
	if n < 8 {
		t.Fatalf("only %d rules", n)
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool is needed to check the rules (apt-get install prometheus, or make test): %v", err)
		}
		t.Skipf("the rules' PromQL is not parsed: promtool not on PATH (apt-get install prometheus): %v", err)
	}
	spec, _, _ := unstructured.NestedMap(rule.Object, "spec")
	b, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s\n%s", err, out, b)
	}
	if !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool check rules: %s", out)
	}
	// The check can fail: a broken expression is refused.
	bad := strings.Replace(string(b), "> 0.9", "> > 0.9", 1)
	if bad == string(b) {
		t.Fatal("the memory alert's threshold moved: update the negative check")
	}
	if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err == nil {
		t.Fatalf("promtool accepted a broken expression:\n%s", out)
	}
}

// installPrometheusOperatorCRDs installs the ServiceMonitor, PodMonitor
// and PrometheusRule CRDs from the prometheus-operator module.
func installPrometheusOperatorCRDs(t *testing.T, ctx context.Context, e *k8senv.Env) {
	t.Helper()
	dir, err := k8senv.ModuleDir(ctx, PrometheusOperatorModule)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Prometheus Operator CRDs: %v", err)
		}
		t.Skipf("the Prometheus Operator CRDs come from %s, which does not resolve here: %v", PrometheusOperatorModule, err)
	}
	for _, f := range []string{"servicemonitors", "podmonitors", "prometheusrules"} {
		if err := e.ApplyCRDFile(ctx, filepath.Join(dir, "example", "prometheus-operator-crd", "monitoring.coreos.com_"+f+".yaml")); err != nil {
			t.Fatal(err)
		}
	}
}

// TestChartServerSideDryRun submits every object the chart renders — for
// the defaults and with everything enabled — to a real kube-apiserver as a
// server-side dry run with strict field validation, with the Prometheus
// Operator CRDs installed.
func TestChartServerSideDryRun(t *testing.T) {
	e := k8senv.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	installPrometheusOperatorCRDs(t, ctx, e)
	a := e.NewApplier()
	for _, ns := range []string{releaseNS, "chaosgate-demo", "shop"} {
		if err := e.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		vals map[string]any
	}{{"defaults", nil}, {"everything", everything()}} {
		t.Run(tc.name, func(t *testing.T) {
			objs, _ := mustRender(t, tc.vals)
			if err := a.DryRun(ctx, "chart "+tc.name, objs); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d objects accepted: %v", len(objs), kinds(objs))
		})
	}
	// The check can fail: a ServiceMonitor with a misspelt field is refused.
	objs, _ := mustRender(t, everything())
	for _, o := range objs {
		if o.GetKind() != "ServiceMonitor" {
			continue
		}
		bad := o.DeepCopy()
		_ = unstructured.SetNestedField(bad.Object, "30s", "spec", "scrapeIntervall")
		err := a.DryRun(ctx, "typo", []*unstructured.Unstructured{bad})
		if err == nil || !strings.Contains(err.Error(), "scrapeIntervall") {
			t.Fatalf("a misspelt ServiceMonitor field was not refused: %v", err)
		}
		return
	}
	t.Fatal("no ServiceMonitor rendered")
}
