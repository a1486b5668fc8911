package local

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/proxy"
)

// TestBandwidthCapsEdgesAndIsConfirmedByThroughput caps every edge into n2
// (clients included) through the real proxies, confirms the cap by
// measuring a 50 kB transfer through one of them, checks the throughput of
// another edge by hand, and recovers.
func TestBandwidthCapsEdgesAndIsConfirmedByThroughput(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 50_000)
	set := httpNodesServing(t, "canary", body, nodes3...)
	in := New(Config{Proxies: set})
	ctx := context.Background()
	const capBytes = 250_000 // "2mbit": a 50 kB transfer takes 0.2 s
	f := engine.Fault{ID: "bw1", Kind: engine.Bandwidth, BytesPerSecond: capBytes, RateText: "2mbit", Edges: engine.Edges{Into: "n2", Clients: true}}
	a, err := in.Inject(ctx, target(""), f)
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Toxics(); len(got) != 6 { // n1->n2, n3->n2, client->n2; each way
		t.Fatalf("toxics = %+v, want 6 bandwidth toxics", got)
	}
	if !strings.Contains(a.Detail, "2mbit") || len(a.Affected) != 1 || a.Affected[0] != "n2" {
		t.Errorf("applied: detail %q, affected %v", a.Detail, a.Affected)
	}
	c := in.Confirm(ctx, a)
	if c.Outcome != engine.Confirmed {
		t.Fatalf("confirm = %+v", c)
	}
	t.Log(c.Measurement)
	// A node→node edge into n2 is capped too; an edge into n1 is not.
	addr := func(n string) string { a, _ := set.Addr(n); return a }
	tr := proxy.HTTPTransfer("/")
	capped := proxy.MeasureThroughput(ctx, tr, addr(proxy.EdgeName("canary", "n3", "n2")), 2, transferTimeout(capBytes))
	free := proxy.MeasureThroughput(ctx, tr, addr(proxy.EdgeName("canary", "n3", "n1")), 2, transferTimeout(capBytes))
	if capped.BytesPerSecond > 1.5*capBytes || free.BytesPerSecond < 2*capBytes {
		t.Errorf("n3->n2 %.0f B/s, n3->n1 %.0f B/s; want the first at most 1.5× and the second above 2× the cap %d", capped.BytesPerSecond, free.BytesPerSecond, capBytes)
	}
	if _, err := in.Inject(ctx, target(""), f); err != nil {
		t.Fatalf("inject twice: %v", err)
	}
	if got := len(set.Toxics()); got != 6 {
		t.Fatalf("inject twice made %d toxics", got)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatal(err)
	}
	if len(set.Toxics()) != 0 {
		t.Fatalf("toxics left: %+v", set.Toxics())
	}
	after := proxy.MeasureThroughput(ctx, tr, addr(proxy.EdgeName("canary", "client", "n2")), 2, transferTimeout(capBytes))
	if after.BytesPerSecond < 2*capBytes {
		t.Errorf("after recovery client->n2 carries %.0f B/s, want above 2× the cap", after.BytesPerSecond)
	}
}

// TestBandwidthConfirmationSeesACapThatIsNotThere removes the toxics behind
// the injector's back: the confirmation must say mismatch, not confirmed.
func TestBandwidthConfirmationSeesACapThatIsNotThere(t *testing.T) {
	set := httpNodesServing(t, "canary", bytes.Repeat([]byte("x"), 50_000), nodes3...)
	in := New(Config{Proxies: set})
	ctx := context.Background()
	f := engine.Fault{ID: "bw2", Kind: engine.Bandwidth, BytesPerSecond: 250_000, RateText: "250kbps", Edges: engine.Edges{OutOf: "n1", Clients: true}}
	a, err := in.Inject(ctx, target(""), f)
	if err != nil {
		t.Fatal(err)
	}
	if err := set.HealAll(ctx); err != nil {
		t.Fatal(err)
	}
	if len(set.Toxics()) != 0 {
		t.Fatalf("HealAll left %+v", set.Toxics())
	}
	if c := in.Confirm(ctx, a); c.Outcome != engine.Mismatch {
		t.Fatalf("confirm of a removed cap = %+v, want mismatch", c)
	}
	if err := in.Recover(ctx, a); err != nil {
		t.Fatalf("recover after the toxics are gone: %v", err)
	}
}

func TestConfirmBandwidthOutcomes(t *testing.T) {
	fast := proxy.Throughput{N: 3, BytesPerSecond: 5e6, Fastest: 6e6, Bytes: 50_000}
	cases := []struct {
		name          string
		before, after proxy.Throughput
		want          engine.Confirmation
	}{
		{"held to the cap", fast, proxy.Throughput{N: 3, BytesPerSecond: 240_000, Bytes: 50_000}, engine.Confirmed},
		{"not held", fast, proxy.Throughput{N: 3, BytesPerSecond: 4e6, Bytes: 50_000}, engine.Mismatch},
		{"slow before too", proxy.Throughput{N: 3, BytesPerSecond: 300_000, Fastest: 400_000}, proxy.Throughput{N: 3, BytesPerSecond: 240_000}, engine.Inconclusive},
		{"fast once before", proxy.Throughput{N: 3, BytesPerSecond: 300_000, Fastest: 900_000}, proxy.Throughput{N: 3, BytesPerSecond: 240_000}, engine.Confirmed},
		{"no transfer after", fast, proxy.Throughput{N: 3, Failed: 3, LastErr: "timeout"}, engine.Inconclusive},
		{"between", fast, proxy.Throughput{N: 3, BytesPerSecond: 450_000}, engine.Inconclusive},
	}
	for _, c := range cases {
		if got := proxy.ConfirmBandwidth(c.before, c.after, 250_000); got.Outcome != c.want {
			t.Errorf("%s: %v (%s), want %v", c.name, got.Outcome, got.Measurement, c.want)
		}
	}
}
