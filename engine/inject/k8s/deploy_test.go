package k8s

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/chaosgate/chaosgate/engine"
	tk8s "github.com/chaosgate/chaosgate/engine/target/k8s"
	"github.com/chaosgate/chaosgate/internal/k8senv"
)

// Modules whose CRDs the deploy/ examples need (only their files are read:
// nothing of them is compiled in).
const (
	argoRolloutsModule = "github.com/argoproj/argo-rollouts@v1.9.0"
	flaggerModule      = "github.com/fluxcd/flagger@v1.36.1"
)

var deployDir = filepath.Join("..", "..", "..", "deploy")

// apply creates objs on the API server: Namespaces for real (dry-run
// objects need their namespace to exist), everything else with server-side
// dry-run unless real is set.
func apply(t *testing.T, ctx context.Context, e *k8senv.Env, mapper meta.RESTMapper, file string, objs []*unstructured.Unstructured, real bool) {
	t.Helper()
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: %s %s: no such resource on the API server: %v", file, gvk, o.GetName(), err)
		}
		var ri dynamic.ResourceInterface = e.Dynamic.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ns := o.GetNamespace()
			if ns == "" {
				t.Fatalf("%s: %s %s has no namespace", file, gvk.Kind, o.GetName())
			}
			ri = e.Dynamic.Resource(m.Resource).Namespace(ns)
		}
		opts := metav1.CreateOptions{FieldValidation: "Strict"}
		if !real && gvk.Kind != "Namespace" {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		if _, err := ri.Create(ctx, o, opts); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("%s: the API server refused %s %s: %v", file, gvk.Kind, o.GetName(), err)
		}
	}
}

// kustomizeBuild renders a kustomization directory with kustomize's krusty
// library (what `kubectl kustomize DIR` runs), so rendering is checked
// whether or not a kubectl is installed.
func kustomizeBuild(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := k8senv.Kustomize(dir)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// kustomizeResources checks that a kustomization lists every manifest of
// its directory and returns them.
func kustomizeResources(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.UnmarshalStrict(b, &k, yaml.DisallowUnknownFields); err != nil {
		// images and other kustomize fields are fine; only resources matter.
		if err := yaml.Unmarshal(b, &k); err != nil {
			t.Fatalf("%s/kustomization.yaml: %v", dir, err)
		}
	}
	listed := map[string]bool{}
	for _, r := range k.Resources {
		listed[r] = true
		if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
			t.Fatalf("%s/kustomization.yaml lists %s: %v", dir, r, err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range files {
		if base := filepath.Base(f); base != "kustomization.yaml" && !listed[base] {
			t.Fatalf("%s is not listed in %s/kustomization.yaml", base, dir)
		}
	}
	return k.Resources
}

func TestDeployManifestsServerSideDryRun(t *testing.T) {
	e := k8senv.GetWithChaosMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(e.Client.Discovery()))
	total := 0
	for _, base := range []string{"aggregator", "serve"} { // serve's Role lives in the aggregator's namespace
		dir := filepath.Join(deployDir, base)
		perBase := 0
		for _, r := range kustomizeResources(t, dir) {
			objs, err := k8senv.ReadObjects(filepath.Join(dir, r))
			if err != nil {
				t.Fatal(err)
			}
			apply(t, ctx, e, mapper, base+"/"+r, objs, false)
			total += len(objs)
			perBase += len(objs)
		}
		// The kustomization renders (kustomize's own library, as `kubectl
		// apply -k` runs it) into the same objects, which the server accepts.
		objs := kustomizeBuild(t, dir)
		if len(objs) != perBase {
			t.Fatalf("kustomize %s renders %d objects, its files hold %d", base, len(objs), perBase)
		}
		apply(t, ctx, e, mapper, "kustomize "+base, objs, false)
	}
	// Every example with a kustomization renders too.
	examples, _ := filepath.Glob(filepath.Join(deployDir, "examples", "*", "kustomization.yaml"))
	for _, k := range examples {
		kustomizeBuild(t, filepath.Dir(k))
	}
	// The check can fail: a misspelt field is refused (strict validation).
	bad, err := k8senv.DecodeObjects(strings.NewReader("apiVersion: v1\nkind: Service\nmetadata: {name: typo, namespace: chaosgate}\nspec: {portz: [{port: 1}]}\n"), "typo")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := mapper.RESTMapping(bad[0].GroupVersionKind().GroupKind(), "v1")
	_, err = e.Dynamic.Resource(m.Resource).Namespace("chaosgate").Create(ctx, bad[0], metav1.CreateOptions{FieldValidation: "Strict", DryRun: []string{metav1.DryRunAll}})
	if err == nil || !strings.Contains(err.Error(), "portz") {
		t.Fatalf("a misspelt field was not refused: %v", err)
	}
	if total < 15 {
		t.Fatalf("applied only %d objects from deploy/serve and deploy/aggregator", total)
	}

	// Examples that need other projects' CRDs: installed from their Go
	// modules when the module proxy serves them, skipped otherwise.
	for _, ex := range []struct{ name, module, crd, file string }{
		{"argo-rollouts", argoRolloutsModule, "manifests/crds/analysis-template-crd.yaml", "examples/argo-rollouts/analysistemplate.yaml"},
		{"flagger", flaggerModule, "artifacts/flagger/crd.yaml", "examples/flagger/canary.yaml"},
	} {
		t.Run(ex.name, func(t *testing.T) {
			dir, err := k8senv.ModuleDir(ctx, ex.module)
			if err != nil {
				if os.Getenv("CI") == "true" {
					t.Fatalf("%s CRDs: %v", ex.name, err)
				}
				t.Skipf("%s is not applied: its CRDs come from %s, which does not resolve here: %v", ex.file, ex.module, err)
			}
			if err := e.ApplyCRDFile(ctx, filepath.Join(dir, ex.crd)); err != nil {
				t.Fatal(err)
			}
			mapper.Reset()
			objs, err := k8senv.ReadObjects(filepath.Join(deployDir, ex.file))
			if err != nil {
				t.Fatal(err)
			}
			if err := e.EnsureNamespace(ctx, "chaosgate-demo"); err != nil {
				t.Fatal(err)
			}
			apply(t, ctx, e, mapper, ex.file, objs, false)
		})
	}
}

func TestDeployCIExamplesRunTheGate(t *testing.T) {
	for _, f := range []string{"examples/ci/github-actions.yaml", "examples/ci/gitlab-ci.yml"} {
		b, err := os.ReadFile(filepath.Join(deployDir, f))
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		s := string(b)
		for _, want := range []string{"chaosgate gate", "--target k8s", "--kubeconfig", "--namespace", "--revision", "--junit"} {
			if !strings.Contains(s, want) {
				t.Errorf("%s does not contain %q", f, want)
			}
		}
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		out, err := exec.Command(promtool, "check", "rules", filepath.Join(deployDir, "prometheus", "rules.yaml")).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool check rules: %v\n%s", err, out)
		}
	}
}

// TestServeRBACForReal applies deploy/serve's ServiceAccount and RBAC for
// real, takes a real token of that ServiceAccount from the TokenRequest API
// and checks that what chaosgate needs succeeds and everything else is
// refused with 403.
func TestServeRBACForReal(t *testing.T) {
	e := k8senv.GetWithChaosMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(e.Client.Discovery()))
	for _, f := range []string{"aggregator/namespace.yaml", "serve/namespace.yaml", "serve/serviceaccount.yaml", "serve/rbac.yaml"} {
		objs, err := k8senv.ReadObjects(filepath.Join(deployDir, f))
		if err != nil {
			t.Fatal(err)
		}
		apply(t, ctx, e, mapper, f, objs, true)
	}
	// The Role is bound in the target namespace only: another namespace,
	// with pods of its own, is out of reach.
	const ns, other = "chaosgate-demo", "rbac-elsewhere"
	mkPods(t, ctx, e, other, "web-0")
	mkPods(t, ctx, e, ns, "agg-0", "agg-1", "agg-2")
	tok, err := e.ServiceAccountToken(ctx, "chaosgate", "chaosgate")
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.ConfigForToken(tok)
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	grace := int64(0)
	pc := func() *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "PodChaos",
			"metadata": map[string]any{"name": "rbac-probe"},
			"spec":     map[string]any{"action": "pod-kill", "mode": "one", "selector": map[string]any{"namespaces": []any{ns}}},
		}}
	}
	allowed := map[string]func() error{
		"list pods": func() error {
			_, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			return err
		},
		"get a pod": func() error { _, err := kube.CoreV1().Pods(ns).Get(ctx, "agg-0", metav1.GetOptions{}); return err },
		"watch pods": func() error {
			w, err := kube.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		},
		"delete a pod": func() error {
			return kube.CoreV1().Pods(ns).Delete(ctx, "agg-2", metav1.DeleteOptions{GracePeriodSeconds: &grace})
		},
		"list deployments":  func() error { _, err := kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{}); return err },
		"list statefulsets": func() error { _, err := kube.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{}); return err },
		"list replicasets (an Argo Rollout's)": func() error {
			_, err := kube.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
			return err
		},
		"create, patch and delete a PodChaos": func() error {
			if _, err := dyn.Resource(PodChaosGVR).Namespace(ns).Create(ctx, pc(), metav1.CreateOptions{}); err != nil {
				return err
			}
			if _, err := dyn.Resource(PodChaosGVR).Namespace(ns).Patch(ctx, "rbac-probe", "application/merge-patch+json",
				[]byte(`{"metadata":{"annotations":{"experiment.chaos-mesh.org/pause":"true"}}}`), metav1.PatchOptions{}); err != nil {
				return err
			}
			return dyn.Resource(PodChaosGVR).Namespace(ns).Delete(ctx, "rbac-probe", metav1.DeleteOptions{})
		},
		"list NetworkChaos": func() error {
			_, err := dyn.Resource(NetworkChaosGVR).Namespace(ns).List(ctx, metav1.ListOptions{})
			return err
		},
	}
	denied := map[string]func() error{
		"list secrets":    func() error { _, err := kube.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); return err },
		"read configmaps": func() error { _, err := kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{}); return err },
		"create a pod": func() error {
			_, err := kube.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "evil"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}}}, metav1.CreateOptions{})
			return err
		},
		"exec into a pod": func() error {
			return kube.CoreV1().RESTClient().Post().Namespace(ns).Resource("pods").Name("agg-0").SubResource("exec").Do(ctx).Error()
		},
		"delete a deployment": func() error {
			return kube.AppsV1().Deployments(ns).Delete(ctx, "web", metav1.DeleteOptions{})
		},
		"scale a statefulset": func() error {
			_, err := kube.AppsV1().StatefulSets(ns).Patch(ctx, "agg", "application/merge-patch+json", []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{})
			return err
		},
		"list nodes": func() error { _, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); return err },
		"create a namespace": func() error {
			_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "evil"}}, metav1.CreateOptions{})
			return err
		},
		"list replicasets in another namespace": func() error {
			_, err := kube.AppsV1().ReplicaSets(other).List(ctx, metav1.ListOptions{})
			return err
		},
		"scale a replicaset": func() error {
			_, err := kube.AppsV1().ReplicaSets(ns).Patch(ctx, "any", "application/merge-patch+json", []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{})
			return err
		},
		"edit its own role": func() error {
			_, err := kube.RbacV1().Roles(ns).Patch(ctx, "chaosgate", "application/merge-patch+json", []byte(`{"rules":[]}`), metav1.PatchOptions{})
			return err
		},
		"list pods in all namespaces": func() error {
			_, err := kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
			return err
		},
		"delete a pod in another namespace": func() error {
			return kube.CoreV1().Pods(other).Delete(ctx, "web-0", metav1.DeleteOptions{GracePeriodSeconds: &grace})
		},
		"create a PodChaos in another namespace": func() error {
			_, err := dyn.Resource(PodChaosGVR).Namespace(other).Create(ctx, pc(), metav1.CreateOptions{})
			return err
		},
		"list NetworkChaos in all namespaces": func() error {
			_, err := dyn.Resource(NetworkChaosGVR).List(ctx, metav1.ListOptions{})
			return err
		},
		"list deployments in all namespaces": func() error {
			_, err := kube.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
			return err
		},
	}
	names := func(m map[string]func() error) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	for _, n := range names(allowed) {
		if err := allowed[n](); err != nil {
			t.Errorf("chaosgate ServiceAccount: %s: %v", n, err)
		}
	}
	for _, n := range names(denied) {
		if err := denied[n](); !apierrors.IsForbidden(err) {
			t.Errorf("chaosgate ServiceAccount: %s: err = %v, want 403 Forbidden", n, err)
		}
	}

	// The injector, the target resolver and the reaper work with exactly
	// these permissions.
	k8senv.StartChaosController(t, e.Dynamic, e.Client, ns)
	opts := testOptions(ns, "rbac-run")
	opts.DetectChaosMesh = true
	in := NewWithClients(kube, dyn, opts)
	tg := engine.Target{Arm: engine.ArmCanary, Nodes: []string{"agg-0", "agg-1"}}
	a, err := in.Inject(ctx, tg, engine.Fault{ID: "rbac-001", Kind: engine.NetworkDelay, Duration: time.Minute, Latency: 10 * time.Millisecond, Edges: engine.Edges{Into: "agg-0"}})
	if err != nil {
		t.Fatalf("inject as the ServiceAccount: %v", err)
	}
	if err := in.Pause(ctx, a, true); err != nil {
		t.Fatalf("pause as the ServiceAccount: %v", err)
	}
	if _, err := in.ReapOrphans(ctx, func(run string) bool { return run != "rbac-run" }); err != nil {
		t.Fatalf("reap as the ServiceAccount: %v", err)
	}
	if left := ownedBy(t, ctx, in, "rbac-run"); len(left) != 0 {
		t.Fatalf("left after reaping: %v", left)
	}
	if _, err := tk8s.NewResolver(kube, nil).Resolve(ctx, engine.ArmCanary, tk8s.Selector{Namespace: ns, MatchLabels: map[string]string{"app": "agg"}}); engine.KindOf(err) != engine.KindNotFound {
		t.Fatalf("resolve as the ServiceAccount (no workloads there): %v", err)
	}
	// An Argo Rollout mid-update resolves with the same Role (rollouts and
	// replicasets read-only).
	if err := e.InstallArgoRolloutCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.SeedRollout(ctx, k8senv.RolloutFixture{Namespace: ns, Name: "web", CanaryHash: "c1", StableHash: "s1", CanaryPods: 1, StablePods: 2,
		CanaryImage: "registry.example/web:2", StableImage: "registry.example/web:1"}); err != nil {
		t.Fatal(err)
	}
	pair, err := tk8s.NewResolver(kube, dyn).ResolveRollout(ctx, ns, "web")
	if err != nil || pair.Canary.Name != "web-c1" || pair.Control.Name != "web-s1" || len(pair.Control.Pods) != 2 {
		t.Fatalf("resolve a Rollout as the ServiceAccount: %+v %v", pair, err)
	}
	if _, err := tk8s.NewResolver(kube, dyn).ResolveRollout(ctx, other, "web"); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("a Rollout in another namespace: %v, want forbidden", err)
	}
}

// TestDeployHardening: the shipped manifests bind serve's rights in the
// target namespace only (no ClusterRole), admit traffic to serve and the
// aggregator only through NetworkPolicies, and run every pod with seccomp
// RuntimeDefault.
func TestDeployHardening(t *testing.T) {
	var objs []*unstructured.Unstructured
	for _, base := range []string{"serve", "aggregator"} {
		for _, r := range kustomizeResources(t, filepath.Join(deployDir, base)) {
			o, err := k8senv.ReadObjects(filepath.Join(deployDir, base, r))
			if err != nil {
				t.Fatal(err)
			}
			objs = append(objs, o...)
		}
	}
	policies := map[string]bool{}
	pods := 0
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole", "ClusterRoleBinding":
			t.Errorf("%s %s: serve's rights must be namespaced", o.GetKind(), o.GetName())
		case "Role", "RoleBinding":
			if o.GetNamespace() != "chaosgate-demo" {
				t.Errorf("%s %s in %q, want the target namespace chaosgate-demo", o.GetKind(), o.GetName(), o.GetNamespace())
			}
		case "NetworkPolicy":
			app, _, _ := unstructured.NestedString(o.Object, "spec", "podSelector", "matchLabels", "app.kubernetes.io/name")
			policies[app] = true
		case "Deployment", "StatefulSet":
			pods++
			p, _, _ := unstructured.NestedString(o.Object, "spec", "template", "spec", "securityContext", "seccompProfile", "type")
			if p != "RuntimeDefault" {
				t.Errorf("%s %s: seccomp profile %q, want RuntimeDefault", o.GetKind(), o.GetName(), p)
			}
		}
	}
	if !policies["chaosgate"] || !policies["aggregator"] || pods < 3 {
		t.Fatalf("network policies for %v, %d workloads", policies, pods)
	}
}
