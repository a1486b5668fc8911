package local

import (
	"context"
	"strings"
	"testing"

	"github.com/chaosgate/chaosgate/engine"
)

// TestPacketLossAndCorruptStallRealConnections loses 10 % of the segments
// on every edge into n2 (clients included) through the real proxies: the
// confirmation counts round trips to n2 stalled by a retransmission
// timeout; recovery removes every toxic; with the toxics removed behind the
// injector's back the confirmation says mismatch. Corrupt is played the
// same way and says so.
func TestPacketLossAndCorruptStallRealConnections(t *testing.T) {
	set := httpNodesServing(t, "canary", []byte("ok"), nodes3...)
	in := New(Config{Proxies: set})
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
