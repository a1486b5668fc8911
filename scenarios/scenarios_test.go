package scenarios

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the expected error files under testdata/bad")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBadFixturesMatchGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) < 10 {
		t.Fatalf("only %d bad fixtures", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := LoadFile(f)
			if err == nil {
				t.Fatalf("%s loaded without error", f)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error is %T, want Errors", err)
			}
			for _, e := range es {
				if e.Line < 1 || e.Column < 1 {
					t.Errorf("error without a position: %v", e)
				}
				if e.Hint == "" && !strings.Contains(e.Msg, "expected") {
					t.Errorf("error without a hint: %v", e)
				}
			}
			golden := strings.TrimSuffix(f, ".yaml") + ".err"
			got := err.Error() + "\n"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("no golden file (run with -update): %v", rerr)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s\n got:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestGoodFixturesAndLibraryLoad(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yaml")
	for _, f := range files {
		doc, err := LoadFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, err := Resolve(doc); err != nil {
			t.Fatalf("%s: resolve: %v", f, err)
		}
	}
	names := LibraryNames()
	want := []string{"backlog", "broker-outage", "clock-skew", "clock-skew-far", "consumer-rebalance", "cpu-saturation", "default-gameday", "default-gameday-quick", "memory-pressure", "network-bandwidth", "network-delay", "overload", "overload-moderate", "packet-loss", "partition-bridge", "partition-halves",
		"partition-isolate-one", "partition-majorities-ring", "pod-kill", "pod-pause", "replication-lag", "slow-dependency", "split-brain", "upstreams", "zone-outage", "zone-outage-gameday"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("library = %v, want %v", names, want)
	}
	for _, n := range names {
		if _, err := Library(n); err != nil {
			t.Fatalf("library %s: %v", n, err)
		}
	}
}

func TestExamplesValidateAgainstSchema(t *testing.T) {
	var files []string
	good, _ := filepath.Glob("testdata/good/*.yaml")
	files = append(files, good...)
	for _, n := range LibraryNames() {
		files = append(files, filepath.Join("library", n+".yaml"))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := ValidateSchema(data); err != nil {
			t.Errorf("%s does not validate against schema.json: %v", f, err)
		}
	}
	// The schema rejects what the loader rejects for structure.
	for _, f := range []string{"unknown-field", "shape-enum", "header", "two-kinds", "types"} {
		data, _ := os.ReadFile(filepath.Join("testdata/bad", f+".yaml"))
		if err := ValidateSchema(data); err == nil {
			t.Errorf("bad fixture %s validates against the schema", f)
		}
	}
}

// TestSchemaInSyncWithTypes walks the Go types from Document and checks that
// each struct's yaml fields are exactly the schema definition's properties,
// with the same required set.
func TestSchemaInSyncWithTypes(t *testing.T) {
	var s struct {
		Defs map[string]struct {
			Properties map[string]any `yaml:"properties"`
			Required   []string       `yaml:"required"`
		} `yaml:"$defs"`
	}
	if err := yaml.Unmarshal(SchemaJSON, &s); err != nil {
		t.Fatal(err)
	}
	seen := map[reflect.Type]bool{}
	var walk func(rt reflect.Type)
	walk = func(rt reflect.Type) {
		for rt.Kind() == reflect.Pointer || rt.Kind() == reflect.Slice || rt.Kind() == reflect.Map {
			rt = rt.Elem()
		}
		if rt.Kind() != reflect.Struct || seen[rt] {
			return
		}
		seen[rt] = true
		if reflect.PointerTo(rt).Implements(reflect.TypeFor[scalar]()) {
			if _, ok := s.Defs[rt.Name()]; !ok {
				t.Errorf("schema has no definition for scalar type %s", rt.Name())
			}
			return
		}
		def, ok := s.Defs[rt.Name()]
		if !ok {
			t.Errorf("schema has no definition for %s", rt.Name())
			return
		}
		var goNames, goReq []string
		for _, f := range structFields(rt) {
			goNames = append(goNames, f.name)
			if f.required {
				goReq = append(goReq, f.name)
			}
			walk(rt.Field(f.index).Type)
		}
		var schemaNames []string
		for k := range def.Properties {
			schemaNames = append(schemaNames, k)
		}
		sort.Strings(goNames)
		sort.Strings(schemaNames)
		sort.Strings(goReq)
		req := append([]string(nil), def.Required...)
		sort.Strings(req)
		if !reflect.DeepEqual(goNames, schemaNames) {
			t.Errorf("%s: Go fields %v, schema properties %v", rt.Name(), goNames, schemaNames)
		}
		if len(goReq)+len(req) > 0 && !reflect.DeepEqual(goReq, req) {
			t.Errorf("%s: Go required %v, schema required %v", rt.Name(), goReq, req)
		}
	}
	walk(reflect.TypeFor[Document]())
	if len(seen) < 20 {
		t.Fatalf("walked only %d types", len(seen))
	}
}

func TestDefaultsAndBudget(t *testing.T) {
	doc, err := Library("pod-kill")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(doc.Spec.Canary.Steps, DefaultSteps) {
		t.Errorf("default steps = %v", doc.Spec.Canary.Steps)
	}
	if doc.Spec.Faults[0].PodKill.Mode != ModeOne || doc.Spec.Decision.Policy != "default" || doc.Spec.Target.Local.Partitions != DefaultPartitions {
		t.Errorf("defaults not applied: %+v", doc.Spec)
	}
	cases := []struct {
		b        BlastRadius
		impaired int
		n        int
		ok       bool
	}{
		{BlastRadius{}, 1, 3, true},
		{BlastRadius{}, 2, 3, false},
		{BlastRadius{}, 2, 5, true},
		{BlastRadius{}, 3, 5, false},
		{BlastRadius{AllowQuorum: true}, 3, 3, true},
		{BlastRadius{MaxReplicas: 1}, 2, 5, false},
		{BlastRadius{MaxShare: Percent{0.2}}, 1, 5, true},
		{BlastRadius{MaxShare: Percent{0.2}}, 2, 5, false},
	}
	for _, c := range cases {
		if ok, why := c.b.Allows(c.impaired, c.n); ok != c.ok {
			t.Errorf("%+v.Allows(%d, %d) = %v (%s), want %v", c.b, c.impaired, c.n, ok, why, c.ok)
		}
	}
	// A shape that leaves a majority somewhere is charged less than a
	// quorum; halves of an even cluster and one node isolated from a pair
	// leave none, so they are charged every replica and need allowQuorum.
	// (engine/geometry checks each charge against the cut itself.)
	for shape, min := range ShapeMinNodes {
		for n := min; n <= 9; n++ {
			noMajority := shape == ShapeHalves && n%2 == 0 || shape == ShapeIsolateOne && n == 2
			imp := ShapeImpact(shape, n)
			switch {
			case noMajority && imp != n:
				t.Errorf("ShapeImpact(%s, %d) = %d, want every replica (no side keeps a majority)", shape, n, imp)
			case !noMajority && (imp >= Quorum(n) || imp < 1):
				t.Errorf("ShapeImpact(%s, %d) = %d, quorum %d", shape, n, imp, Quorum(n))
			}
		}
	}
}

func TestDefaultGameDayStaysShort(t *testing.T) {
	for name, limit := range map[string]time.Duration{"default-gameday": 100 * time.Second, "default-gameday-quick": 30 * time.Second} {
		doc, err := Library(name)
		if err != nil {
			t.Fatal(err)
		}
		exps, err := Resolve(doc)
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[string]bool{}
		for _, e := range exps {
			for _, f := range e.Spec.Faults {
				kinds[f.Kind()] = true
			}
		}
		// Both skew a clock with a leadership handover (the HLC
		// invariant) and burst far above the sustainable rate (the
		// admission caps).
		want := []string{"podKill", "networkDelay", "partition", "splitBrain", "clockSkew", "overload"}
		for _, k := range want {
			if !kinds[k] {
				t.Errorf("%s does not run %s", name, k)
			}
		}
		d, err := EstimatedDuration(doc)
		if err != nil {
			t.Fatal(err)
		}
		if d > limit {
			t.Errorf("%s fault phases take %s, more than %s", name, d, limit)
		}
	}
	doc, _ := Library("default-gameday")
	exps, _ := Resolve(doc)
	if len(exps) != 10 {
		t.Errorf("default-gameday runs %d experiments, want 10", len(exps))
	}
}

func TestOpenByNameAndPath(t *testing.T) {
	if _, err := Open("split-brain"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open("testdata/good/kubernetes.yaml"); err != nil {
		t.Fatal(err)
	}
	_, err := Open("split-brian")
	if err == nil || !strings.Contains(err.Error(), `did you mean "split-brain"`) {
		t.Fatalf("Open(split-brian) = %v", err)
	}
	_, err = Open(filepath.Join(t.TempDir(), "missing.yaml"))
	if err == nil || !strings.Contains(err.Error(), "cannot read") {
		t.Fatalf("missing file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, n := range LibraryNames() {
		data, _ := LibraryFS().(interface{ ReadFile(string) ([]byte, error) }).ReadFile(n + ".yaml")
		f.Add(data)
	}
	for _, dir := range []string{"testdata/good", "testdata/bad"} {
		files, _ := filepath.Glob(dir + "/*.yaml")
		for _, p := range files {
			data, _ := os.ReadFile(p)
			f.Add(data)
		}
	}
	f.Add([]byte("a: &x [*x]"))
	f.Add([]byte("---\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := Parse("fuzz.yaml", data)
		if err == nil {
			if doc == nil || doc.APIVersion != APIVersion {
				t.Fatalf("accepted a document without the api version: %+v", doc)
			}
			return
		}
		var es Errors
		if !errors.As(err, &es) || len(es) == 0 {
			t.Fatalf("error %T is not a non-empty Errors", err)
		}
		for _, e := range es {
			if e.File != "fuzz.yaml" || e.Msg == "" {
				t.Fatalf("malformed error %+v", e)
			}
		}
	})
}

// TestDocumentsRoundTripThroughJSON writes every library document as JSON
// (what `scenarios explain -o json` prints), checks the JSON against the
// schema, and parses it back (JSON is YAML) to the same document.
func TestDocumentsRoundTripThroughJSON(t *testing.T) {
	for _, n := range LibraryNames() {
		doc, err := Library(n)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if err := ValidateSchema(b); err != nil {
			t.Errorf("%s as JSON does not validate: %v\n%s", n, err, b)
			continue
		}
		back, err := Parse(n+".json", b)
		if err != nil {
			t.Errorf("%s: JSON does not parse back: %v\n%s", n, err, b)
			continue
		}
		back.Source, back.pos, doc.pos = doc.Source, nil, nil
		if !reflect.DeepEqual(back, doc) {
			t.Errorf("%s: round trip differs\n got %+v\nwant %+v", n, back.Spec, doc.Spec)
		}
	}
}

// TestCanaryIncrement: the seeds' plan, steps 1, 10, 50 then +5 % per
// batch, as a file and as weights; an increment alone starts at itself.
func TestCanaryIncrement(t *testing.T) {
	doc, err := Parse("increment.yaml", []byte(`apiVersion: chaosgate.io/v1
kind: Experiment
metadata: {name: seeds-steps}
spec:
  target:
    local: {nodes: 3}
  canary: {steps: [1, 10, 50], increment: 5%}
  faults:
    - duration: 2s
      podKill: {mode: one}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []int{1, 10, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 100}
	if got := doc.Spec.Canary.StepsOrDefault(); !reflect.DeepEqual(got, want) {
		t.Fatalf("steps %v, want %v", got, want)
	}
	for _, c := range []struct {
		canary Canary
		want   []int
	}{
		{Canary{Increment: Percent{0.25}}, []int{25, 50, 75, 100}},
		{Canary{Increment: Percent{0.30}}, []int{30, 60, 90, 100}},
		{Canary{Steps: []int{5, 100}}, []int{5, 100}},
		{Canary{}, DefaultSteps},
	} {
		if got := c.canary.StepsOrDefault(); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%+v: steps %v, want %v", c.canary, got, c.want)
		}
	}
}

// probes.availability.retryBudget is a percentage that reaches the load as
// a share; absent, it is 0 (every message retried).
func TestAvailabilityRetryBudget(t *testing.T) {
	doc := func(avail string) string {
		return "apiVersion: chaosgate.io/v1\nkind: Experiment\nmetadata: {name: budget}\nspec:\n  target:\n    local: {nodes: 3}\n  probes:\n    availability: " + avail + "\n  faults:\n    - duration: 10s\n      podKill: {}\n"
	}
	d, err := Parse("budget.yaml", []byte(doc(`{sources: 4, rate: 100, retryBudget: "20%"}`)))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Spec.Probes.Availability.RetryBudget.Value; got != 0.2 {
		t.Fatalf("retryBudget 20%% decoded as %v", got)
	}
	d, err = Parse("budget.yaml", []byte(doc(`{sources: 4, rate: 100}`)))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Spec.Probes.Availability.RetryBudget.Value; got != 0 {
		t.Fatalf("no retryBudget decoded as %v", got)
	}
}
