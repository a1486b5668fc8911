package gameday

import (
	"slices"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/scenarios"
)

// TestNodeArgs: every node gets the target's max clock offset, and the
// admission caps only when the plan has an overload burst.
func TestNodeArgs(t *testing.T) {
	doc := &scenarios.Document{Spec: scenarios.Spec{Target: scenarios.Target{Local: &scenarios.LocalTarget{Nodes: 5,
		MaxClockOffset: scenarios.Duration{Duration: 2 * time.Second}}}}}
	r := &Run{cfg: Config{Doc: doc}}
	if got := r.nodeArgs(); !slices.Equal(got, []string{"--max-clock-offset", "2s"}) {
		t.Fatalf("node args %v", got)
	}
	r.plan.Experiments = []engine.Experiment{{Faults: []engine.Fault{{Kind: engine.Overload}}}}
	if got := r.nodeArgs(); !slices.Equal(got, append(slices.Clone(AdmissionArgs), "--max-clock-offset", "2s")) {
		t.Fatalf("node args with an overload burst %v", got)
	}
	doc.Spec.Target.Local.MaxClockOffset = scenarios.Duration{}
	r.plan.Experiments = nil
	if got := r.nodeArgs(); len(got) != 0 {
		t.Fatalf("node args of a plain target %v", got)
	}
}
