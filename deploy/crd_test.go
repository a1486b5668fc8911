package deploy_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/chaosgate/chaosgate/internal/crdgen"
	"github.com/chaosgate/chaosgate/internal/k8senv"
	"github.com/chaosgate/chaosgate/scenarios"
)

var update = flag.Bool("update", false, "rewrite deploy/crd/gamedays.chaosgate.io.yaml from scenarios/schema.json")

const gameDayCRDFile = "crd/gamedays.chaosgate.io.yaml"

const gameDayCRDHeader = `GameDay: a chaosgate game-day document stored in Kubernetes, so that game
days can be kept and reviewed with kubectl and GitOps tools. No controller
acts on it: chaosgate runs a game day from its file (chaosgate run -f FILE,
serve --experiments DIR); the object's spec is the file's spec.

Generated from scenarios/schema.json (#/$defs/Spec) by
  go test ./deploy -run TestGameDayCRDIsGenerated -update
Do not edit by hand.`

// gameDayCRD derives the CRD from the scenario JSON Schema.
func gameDayCRD(t *testing.T) *apiextv1.CustomResourceDefinition {
	t.Helper()
	c, err := crdgen.NewConverter(scenarios.SchemaJSON)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := c.Structural("#/$defs/Spec")
	if err != nil {
		t.Fatal(err)
	}
	meta, err := c.Pointer("#/$defs/Metadata/properties/name")
	if err != nil {
		t.Fatal(err)
	}
	pattern, _ := meta["pattern"].(string)
	if pattern == "" {
		t.Fatal("scenarios/schema.json: metadata.name has no pattern")
	}
	return crdgen.CRD{
		Group: "chaosgate.io", Version: "v1", Kind: "GameDay", Plural: "gamedays", Singular: "gameday",
		ShortNames: []string{"gd"}, Categories: []string{"chaosgate"},
		Scope:       apiextv1.NamespaceScoped,
		Spec:        spec,
		NamePattern: pattern,
		Description: "A chaosgate game day (or experiment): its spec is the spec of a chaosgate.io/v1 document as `chaosgate run -f` reads it. Stored only: no controller acts on it.",
		Columns: []apiextv1.CustomResourceColumnDefinition{
			{Name: "Steady", Type: "string", JSONPath: ".spec.steadyState"},
			{Name: "Policy", Type: "string", JSONPath: ".spec.decision.policy"},
			{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
		},
	}.Definition()
}

// TestGameDayCRDIsGenerated: the checked-in CRD is exactly what the
// generator derives from scenarios/schema.json (-update rewrites it), and
// its schema is structural.
func TestGameDayCRDIsGenerated(t *testing.T) {
	crd := gameDayCRD(t)
	want, err := crdgen.YAML(crd, gameDayCRDHeader)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(gameDayCRDFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(gameDayCRDFile)
	if err != nil {
		t.Fatalf("%v (hint: go test ./deploy -run TestGameDayCRDIsGenerated -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not what scenarios/schema.json generates (hint: go test ./deploy -run TestGameDayCRDIsGenerated -update)", gameDayCRDFile)
	}
	if problems := crdgen.CheckStructural(crd.Spec.Versions[0].Schema.OpenAPIV3Schema); len(problems) > 0 {
		t.Fatalf("not structural:\n%s", strings.Join(problems, "\n"))
	}
}

// asGameDay wraps a chaosgate.io/v1 document as a GameDay object in ns:
// its description (not a Kubernetes metadata field) becomes an annotation.
func asGameDay(t *testing.T, file, ns string) *unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	o := &unstructured.Unstructured{Object: doc}
	md, _ := doc["metadata"].(map[string]any)
	if d, ok := md["description"].(string); ok {
		delete(md, "description")
		o.SetAnnotations(map[string]string{"chaosgate.io/description": d})
	}
	o.SetNamespace(ns)
	return o
}

// TestGameDayCRDOnTheAPIServer installs the CRD on a real kube-apiserver,
// submits every shipped game day as a GameDay object (server-side dry run,
// strict field validation) and checks that invalid ones are refused with
// the path of the bad field.
func TestGameDayCRDOnTheAPIServer(t *testing.T) {
	e := k8senv.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.ApplyCRDFile(ctx, gameDayCRDFile); err != nil {
		t.Fatal(err)
	}
	const ns = "gamedays"
	if err := e.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	a := e.NewApplier()

	files, _ := filepath.Glob("../scenarios/library/*.yaml")
	good, _ := filepath.Glob("../scenarios/testdata/good/*.yaml")
	n := 0
	for _, f := range append(files, good...) {
		o := asGameDay(t, f, ns)
		if o.GetKind() != "GameDay" {
			continue
		}
		if err := scenarios.ValidateSchema(mustRead(t, f)); err != nil {
			t.Fatalf("%s does not meet scenarios/schema.json: %v", f, err)
		}
		if err := a.DryRun(ctx, f, []*unstructured.Unstructured{o}); err != nil {
			t.Error(err)
		}
		n++
	}
	if n < 3 {
		t.Fatalf("only %d game days found", n)
	}

	base := asGameDay(t, "../scenarios/library/default-gameday-quick.yaml", ns)
	for _, tc := range []struct {
		name   string
		mutate func(o map[string]any)
		want   []string
	}{
		{"canary step out of range", func(o map[string]any) {
			_ = unstructured.SetNestedSlice(o, []any{int64(50), int64(150)}, "spec", "canary", "steps")
		}, []string{"spec.canary.steps[1]", "less than or equal to 100"}},
		{"unknown fault mode", func(o map[string]any) {
			_ = unstructured.SetNestedSlice(o, []any{map[string]any{"duration": "5s", "podKill": map[string]any{"mode": "most"}}}, "spec", "faults")
		}, []string{"spec.faults[0].podKill.mode", "Unsupported value", `"most"`}},
		{"duration without unit", func(o map[string]any) {
			_ = unstructured.SetNestedField(o, "30", "spec", "steadyState")
		}, []string{"spec.steadyState", "should match"}},
		{"two fault kinds", func(o map[string]any) {
			_ = unstructured.SetNestedSlice(o, []any{map[string]any{"duration": "5s", "podKill": map[string]any{}, "partition": map[string]any{"shape": "halves"}}}, "spec", "faults")
		}, []string{"spec.faults[0]", "oneOf"}},
		{"misspelt field", func(o map[string]any) {
			_ = unstructured.SetNestedField(o, "1s", "spec", "steadystate")
		}, []string{`unknown field "spec.steadystate"`}},
		{"no target", func(o map[string]any) {
			unstructured.RemoveNestedField(o, "spec", "target")
		}, []string{"spec.target", "Required value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base.DeepCopy()
			o.SetName("bad-" + strings.ReplaceAll(tc.name, " ", "-"))
			tc.mutate(o.Object)
			err := a.DryRun(ctx, tc.name, []*unstructured.Unstructured{o})
			if err == nil {
				t.Fatal("the API server accepted it")
			}
			t.Logf("refused: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func mustRead(t *testing.T, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
