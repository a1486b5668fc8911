package gameday

import (
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/internal/leakcheck"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/probe/consistency"
	"github.com/chaosgate/chaosgate/scenarios"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leakcheck.StuckToxiproxyLink()) }

func TestDefaultGameDaysRunEveryFaultKind(t *testing.T) {
	for _, quick := range []bool{false, true} {
		doc, err := Quick(quick)
		if err != nil {
			t.Fatal(err)
		}
		r, err := New(Config{Doc: doc, DataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[engine.FaultKind]bool{}
		for _, e := range r.plan.Experiments {
			for _, f := range e.Faults {
				kinds[f.Kind] = true
			}
		}
		for _, k := range []engine.FaultKind{engine.PodKill, engine.NetworkDelay, engine.Partition, engine.SplitBrain} {
			if !kinds[k] {
				t.Errorf("quick=%v: the default game day has no %s", quick, k)
			}
		}
		if r.cfg.Revision != "local:good" {
			t.Errorf("default revision %q", r.cfg.Revision)
		}
	}
}

func TestNewRejectsWhatItCannotRun(t *testing.T) {
	if _, err := New(Config{DataDir: t.TempDir()}); err == nil || engine.KindOf(err) != engine.KindInvalid {
		t.Fatalf("no document: %v", err)
	}
	doc, err := scenarios.Parse("k8s.yaml", []byte(`apiVersion: chaosgate.io/v1
kind: Experiment
metadata: {name: k}
spec:
  target:
    kubernetes:
      namespace: shop
      replicas: 3
      canary: {matchLabels: {track: canary}}
      control: {matchLabels: {track: stable}}
  faults:
    - {duration: 5s, podKill: {}}
`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Doc: doc, DataDir: t.TempDir()})
	if err == nil || engine.KindOf(err) != engine.KindInvalid || !strings.Contains(err.Error(), "hint") {
		t.Fatalf("a Kubernetes target must be refused with a hint, got %v", err)
	}
	good, _ := Quick(true)
	if _, err := New(Config{Doc: good}); err == nil {
		t.Fatal("no data dir must be refused")
	}
	r, err := New(Config{Doc: good, DataDir: t.TempDir(), CanaryDefects: []string{"no-dedup", "slow-path"}})
	if err != nil || r.cfg.Revision != "local:defect-no-dedup+slow-path" {
		t.Fatalf("defect revision: %v %q", err, r.cfg.Revision)
	}
	// A defect of the upstream consumers needs a broker to consume: the
	// quick game day has none, the upstreams game day does.
	_, err = New(Config{Doc: good, DataDir: t.TempDir(), CanaryDefects: []string{"commit-before-store"}})
	if err == nil || engine.KindOf(err) != engine.KindInvalid || !strings.Contains(err.Error(), "spec.target.local.upstreams") || !strings.Contains(err.Error(), "gate -f upstreams") {
		t.Fatalf("commit-before-store without upstreams: %v", err)
	}
	ups, err := scenarios.Library("upstreams")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Doc: ups, DataDir: t.TempDir(), CanaryDefects: []string{"commit-before-store"}}); err != nil {
		t.Fatalf("commit-before-store on the upstreams game day: %v", err)
	}
}

func TestViolationsCountsEveryInvariant(t *testing.T) {
	rep := consistency.Report{OK: false, Counts: consistency.Counts{Lost: 2, Duplicated: 1, SplitBrain: 1, Linearizability: consistency.LinIllegal}}
	if got := Violations(rep); got != 5 {
		t.Fatalf("violations %v, want 5", got)
	}
	if got := Violations(consistency.Report{OK: true, Counts: consistency.Counts{Linearizability: consistency.LinOK}}); got != 0 {
		t.Fatalf("a clean report has %v violations", got)
	}
	// A failed report whose counters say nothing still counts its violations.
	if got := Violations(consistency.Report{OK: false, Violations: []consistency.Violation{{Invariant: "I6"}}}); got != 1 {
		t.Fatalf("violations %v, want 1", got)
	}
}

// TestAbortedRunRecordsAHold: a game day aborted after a judged step records
// a hold in its evidence, never the controller's empty decision ("invalid")
// or a promotion; a block stays a block.
func TestAbortedRunRecordsAHold(t *testing.T) {
	for _, c := range []struct {
		out  RunOutcome
		want string
	}{
		{RunOutcome{Aborted: "pager"}, "hold"},
		{RunOutcome{Aborted: "pager", Decision: decision.Promote}, "hold"},
		{RunOutcome{Aborted: "pager", Decision: decision.Block}, "block"},
		{RunOutcome{Decision: decision.Promote}, "promote"},
	} {
		if got := evidenceVerdict(&c.out); got != c.want {
			t.Errorf("%+v: %s, want %s", c.out, got, c.want)
		}
	}
}
