package local

import (
	"context"
	"strings"
	"testing"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/proxy"
)

// TestZoneOutageCutsAndKillsTheZone takes zone b (n2, n4) of a five-node
// arm down: every edge between the zone and the other nodes and every
// client edge into it is black-holed, both processes are killed (the
// supervisor restarts them), the confirmation sees both, and recovery
// lifts the cut and waits for the new processes.
func TestZoneOutageCutsAndKillsTheZone(t *testing.T) {
	nodes := []string{"n1", "n2", "n3", "n4", "n5"}
	set := httpNodes(t, "canary", nodes...)
	p := newProcs(t, nodes...)
	in := New(Config{Proxies: set, Nodes: p})
	ctx := context.Background()
	tg := engine.Target{Arm: engine.ArmCanary, Nodes: nodes, Group: []string{"n2", "n4"}}
	before := map[string]int{}
	for _, n := range nodes {
		before[n], _ = p.Pid(engine.ArmCanary, n)
	}
	f := engine.Fault{ID: "zone1", Kind: engine.ZoneOutage, Zone: "b"}
	a, err := in.Inject(ctx, tg, f)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a.Detail, "zone b (n2, n4)") || len(a.Affected) != 2 {
		t.Errorf("applied: detail %q, affected %v", a.Detail, a.Affected)
	}
	// 2 client edges + 2 zone nodes × 3 other nodes × 2 directions, each
	// a black hole of two toxics.
	if got := len(set.Toxics()); got != 2*(2+2*3*2) {
		t.Fatalf("%d toxics, want %d", got, 2*(2+2*3*2))
	}
	for _, x := range []struct{ from, to string }{{"n1", "n2"}, {"n4", "n5"}, {"client", "n4"}} {
		if !hasToxic(set.Toxics(), "canary/"+x.from+"->"+x.to) {
			t.Errorf("edge %s->%s not cut", x.from, x.to)
		}
	}
	if hasToxic(set.Toxics(), "canary/n2->n4") || hasToxic(set.Toxics(), "canary/n1->n3") || hasToxic(set.Toxics(), "canary/client->n1") {
		t.Error("an edge inside the zone or outside it was cut")
	}
	c := in.Confirm(ctx, a)
	if c.Outcome != engine.Confirmed || !strings.Contains(c.Measurement, "clients reach 0 of 2") {
		t.Fatalf("confirm = %+v", c)
	}
	t.Log(c.Measurement)
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
	if len(set.Toxics()) != 0 {
		t.Fatalf("toxics left: %+v", set.Toxics())
	}
	for _, n := range nodes {
		pid, _ := p.Pid(engine.ArmCanary, n)
		zone := n == "n2" || n == "n4"
		if zone == (pid == before[n]) {
			t.Errorf("%s: pid %d before, %d after (in the zone: %v)", n, before[n], pid, zone)
		}
	}
}

// TestZoneOutageConfirmationSeesAZoneStillReachable lifts the cut behind
// the injector's back: the confirmation must say mismatch.
func TestZoneOutageConfirmationSeesAZoneStillReachable(t *testing.T) {
	set := httpNodes(t, "canary", nodes3...)
	p := newProcs(t, nodes3...)
	in := New(Config{Proxies: set, Nodes: p})
	ctx := context.Background()
	a, err := in.Inject(ctx, engine.Target{Arm: engine.ArmCanary, Nodes: nodes3, Group: []string{"n3"}}, engine.Fault{ID: "zone2", Kind: engine.ZoneOutage, Zone: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if err := set.HealAll(ctx); err != nil {
		t.Fatal(err)
	}
	if c := in.Confirm(ctx, a); c.Outcome != engine.Mismatch || !strings.Contains(c.Measurement, "clients reach 1 of 1") {
		t.Fatalf("confirm of a reachable zone = %+v, want mismatch", c)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
	// A zone without nodes is refused before anything is done.
	if _, err := in.Inject(ctx, engine.Target{Arm: engine.ArmCanary, Nodes: nodes3}, engine.Fault{ID: "zone3", Kind: engine.ZoneOutage, Zone: "d"}); engine.KindOf(err) != engine.KindInvalid {
		t.Fatalf("empty zone: %v", err)
	}
}

func hasToxic(ts []proxy.Toxic, proxyName string) bool {
	for _, x := range ts {
		if x.Proxy == proxyName {
			return true
		}
	}
	return false
}
