package deploy_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/chaosgate/chaosgate/internal/k8senv"
)

const chartDir = "helm/chaosgate"

// renderChart renders the chart as `helm template` would for an install of
// release into namespace with vals over values.yaml (validated against
// values.schema.json), and returns the objects and NOTES.txt.
func renderChart(release, namespace string, vals map[string]any) ([]*unstructured.Unstructured, string, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, "", fmt.Errorf("load chart %s: %w", chartDir, err)
	}
	top, err := chartutil.ToRenderValues(ch, vals, common.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true, Revision: 1}, nil)
	if err != nil {
		return nil, "", fmt.Errorf("values: %w", err)
	}
	files, err := engine.Render(ch, top)
	if err != nil {
		return nil, "", fmt.Errorf("render: %w", err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var objs []*unstructured.Unstructured
	notes := ""
	for _, n := range names {
		switch {
		case strings.HasSuffix(n, "NOTES.txt"):
			notes = files[n]
			continue
		case !strings.HasSuffix(n, ".yaml"), strings.TrimSpace(files[n]) == "":
			continue
		}
		o, err := k8senv.DecodeObjects(strings.NewReader(files[n]), n)
		if err != nil {
			return nil, "", fmt.Errorf("%w\n%s", err, files[n])
		}
		objs = append(objs, o...)
	}
	return objs, notes, nil
}

// kustomize renders a kustomization directory with kustomize's own
// library, as `kubectl kustomize DIR` does.
func kustomize(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := k8senv.Kustomize(dir)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func key(o *unstructured.Unstructured) string {
	return o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
}

// podSpecs returns the pod spec of every workload among objs, by object.
func podSpecs(objs []*unstructured.Unstructured) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, o := range objs {
		switch o.GetKind() {
		case "Deployment", "StatefulSet", "DaemonSet", "Job":
			spec, _, _ := unstructured.NestedMap(o.Object, "spec", "template", "spec")
			out[key(o)] = spec
		}
	}
	return out
}

// subset reports where want is not contained in got: maps key by key,
// lists element by element (same length), scalars equal.
func subset(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %v, want an object %v", path, got, want)}
		}
		var diffs []string
		for k, v := range w {
			diffs = append(diffs, subset(path+"."+k, v, g[k])...)
		}
		return diffs
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: %v, want %v", path, got, want)}
		}
		var diffs []string
		for i := range w {
			diffs = append(diffs, subset(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return diffs
	default:
		if fmt.Sprint(want) != fmt.Sprint(got) {
			return []string{fmt.Sprintf("%s: %v, want %v", path, got, want)}
		}
		return nil
	}
}
