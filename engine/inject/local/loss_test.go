package local

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/internal/pktloss"
)

// TestPacketLossAndCorruptStallRealConnections loses 10 % of the segments
// on every edge into n2 (clients included) on the real proxies (forced,
// where the kernel could drop real packets): the
// confirmation counts round trips to n2 stalled by a retransmission
// timeout; recovery removes every toxic; with the toxics removed behind the
// injector's back the confirmation says mismatch. Corrupt is played the
// same way and says so.
func TestPacketLossAndCorruptStallRealConnections(t *testing.T) {
	set := httpNodesServing(t, "canary", []byte("ok"), nodes3...)
	in := New(Config{Proxies: set, LossInProxies: true})
	ctx := context.Background()
	for _, k := range []engine.FaultKind{engine.PacketLoss, engine.Corrupt} {
		f := engine.Fault{ID: "loss-" + k.String(), Kind: k, LossRatio: 0.10, Edges: engine.Edges{Into: "n2", Clients: true}}
		a, err := in.Inject(ctx, target(""), f)
		if err != nil {
			t.Fatal(err)
		}
		if got := set.Toxics(); len(got) != 6 { // n1->n2, n3->n2, client->n2; each way
			t.Fatalf("%s: toxics = %+v, want 6", k, got)
		}
		if !strings.Contains(a.Detail, "10% of the packets") || len(a.Affected) != 1 || a.Affected[0] != "n2" {
			t.Errorf("%s applied: detail %q, affected %v", k, a.Detail, a.Affected)
		}
		if k == engine.Corrupt && !strings.Contains(a.Detail, "checksum") {
			t.Errorf("corrupt applied without saying how it is played: %q", a.Detail)
		}
		c := in.Confirm(ctx, a)
		t.Logf("%s: %s", k, c.Measurement)
		if c.Outcome != engine.Confirmed || !strings.Contains(c.Measurement, "canary/client->n2") {
			t.Fatalf("%s confirm = %+v", k, c)
		}
		if err := set.HealAll(ctx); err != nil {
			t.Fatal(err)
		}
		if c := in.Confirm(ctx, a); c.Outcome != engine.Mismatch {
			t.Fatalf("%s confirm with the toxics gone = %+v, want mismatch", k, c)
		}
		if _, err := in.Inject(ctx, target(""), f); err != nil {
			t.Fatal(err)
		}
		if err := in.Recover(ctx, a); err != nil {
			t.Fatal(err)
		}
		if len(set.Toxics()) != 0 {
			t.Fatalf("%s: toxics left after recovery: %+v", k, set.Toxics())
		}
	}
}

// TestPacketLossDropsRealPacketsInTheKernel loses 10 % of the packets on
// every edge into n2 in the kernel (nftables): no toxic is added; the
// confirmation counts stalled round trips and reads back the packets the
// kernel dropped; with the table deleted behind the injector's back it
// says mismatch; a fresh injector (the reaper after a crash) recovers the
// fault from its journaled form alone, twice without error, and no table
// is left.
func TestPacketLossDropsRealPacketsInTheKernel(t *testing.T) {
	if err := pktloss.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("nftables: %v", err)
		}
		t.Skipf("cannot program nftables here (%v): kernel packet loss needs root or CAP_NET_ADMIN", err)
	}
	set := httpNodesServing(t, "canary", []byte("ok"), nodes3...)
	in := New(Config{Proxies: set})
	ctx := context.Background()
	f := engine.Fault{ID: "kernel-loss", Kind: engine.PacketLoss, LossRatio: 0.10, Edges: engine.Edges{Into: "n2", Clients: true}}
	a, err := in.Inject(ctx, target(""), f)
	if err != nil {
		t.Fatal(err)
	}
	var u Undo
	if err := json.Unmarshal(a.Undo, &u); err != nil {
		t.Fatal(err)
	}
	if u.KernelLoss == nil || len(u.KernelLoss.Ports) != 3 || len(set.Toxics()) != 0 || !strings.Contains(a.Detail, "dropped in the kernel") {
		t.Fatalf("applied: detail %q, undo %+v, toxics %+v", a.Detail, u, set.Toxics())
	}
	t.Cleanup(func() { pktloss.Remove(u.KernelLoss.Table) }) //nolint:errcheck // the test checks recovery below
	c := in.Confirm(ctx, a)
	t.Logf("%s; %s", a.Detail, c.Measurement)
	if c.Outcome != engine.Confirmed || !strings.Contains(c.Measurement, "the kernel dropped") {
		t.Fatalf("confirm = %+v", c)
	}
	if err := pktloss.Remove(u.KernelLoss.Table); err != nil {
		t.Fatal(err)
	}
	if c := in.Confirm(ctx, a); c.Outcome != engine.Mismatch {
		t.Fatalf("confirm with the table gone = %+v, want mismatch", c)
	}
	if _, err := in.Inject(ctx, target(""), f); err != nil {
		t.Fatal(err)
	}
	journaled, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var back engine.Applied
	if err := json.Unmarshal(journaled, &back); err != nil {
		t.Fatal(err)
	}
	reaper := New(Config{})
	for i := 0; i < 2; i++ {
		if err := reaper.Recover(ctx, back); err != nil {
			t.Fatalf("recovery %d: %v", i+1, err)
		}
	}
	if _, err := pktloss.Read(u.KernelLoss.Table); !errors.Is(err, pktloss.ErrNoTable) {
		t.Fatalf("table after recovery: %v", err)
	}
}
