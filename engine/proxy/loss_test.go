package proxy

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/engine"
)

// TestSegmentLossStallsRoundTrips: 10 % segment loss on a real proxied
// TCP edge stalls about 19 % of one-byte round trips by a retransmission
// timeout; none stall before it or after it is healed; and the echoed
// bytes are all there (loss delays, it never drops data).
func TestSegmentLossStallsRoundTrips(t *testing.T) {
	echo := startEcho(t)
	s := newSet(t)
	addr, err := s.Add(EdgeName("canary", "n1", "n2"), echo.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const loss = 0.10
	n := 200 // LossRoundTrips(0.1) is 43; more here to bound the ratio tightly
	before := MeasureStalls(ctx, EchoRoundTrip(), addr, n, 5*time.Second)
	if c := ConfirmLoss(before, loss); c.Outcome != engine.Mismatch || before.Stalled != 0 {
		t.Fatalf("before any loss: %+v, %+v", before, c)
	}
	if err := s.AddLoss("canary/n1->n2", "lossy", loss); err != nil {
		t.Fatal(err)
	}
	if got := s.Toxics(); len(got) != 2 || got[0].Type != segmentLossType {
		t.Fatalf("toxics = %+v", got)
	}
	during := MeasureStalls(ctx, EchoRoundTrip(), addr, n, 10*time.Second)
	c := ConfirmLoss(during, loss)
	t.Logf("10 %% segment loss over %d round trips: %s", n, c.Measurement)
	if c.Outcome != engine.Confirmed || during.Failed != 0 {
		t.Fatalf("with 10 %% loss: %+v", c)
	}
	// The stall ratio is near 1−0.9² = 19 %: within five binomial
	// standard deviations (never a flake, and far from 0 or 100 %).
	ratio := float64(during.Stalled) / float64(during.N)
	if sd := math.Sqrt(0.19 * 0.81 / float64(during.N)); math.Abs(ratio-0.19) > 5*sd {
		t.Fatalf("stall ratio %.3f over %d round trips, want 0.19 ± %.3f", ratio, during.N, 5*sd)
	}
	if err := s.Heal(ctx, "canary/n1->n2", "lossy"); err != nil {
		t.Fatal(err)
	}
	if len(s.Toxics()) != 0 {
		t.Fatalf("toxics left after heal: %+v", s.Toxics())
	}
	healed := MeasureStalls(ctx, EchoRoundTrip(), addr, n, 5*time.Second)
	if healed.Stalled != 0 {
		t.Fatalf("after heal: %+v", healed)
	}
	if got := echo.received(); got != 3*n {
		t.Fatalf("the echo server received %d bytes, want %d: loss must delay data, never drop it", got, 3*n)
	}
}

// TestSegmentLossBacksOff: consecutive losses on one connection double
// the hold, as TCP's retransmission timer does, and a delivered chunk
// resets it; a large chunk is more likely to lose one of its segments.
func TestSegmentLossBacksOff(t *testing.T) {
	all := &SegmentLoss{Loss: 1}
	st := all.NewState().(*lossState)
	var holds []time.Duration
	for range 7 {
		holds = append(holds, all.hold(st, 10))
	}
	want := []time.Duration{200, 400, 800, 1600, 3200, 6400, 6400}
	for i := range want {
		if holds[i] != want[i]*time.Millisecond {
			t.Fatalf("holds %v, want %v ms", holds, want)
		}
	}
	none := &SegmentLoss{Loss: 0}
	if d := none.hold(st, 1<<20); d != 0 {
		t.Fatalf("no loss held a chunk %s", d)
	}
	some := &SegmentLoss{Loss: 0.01}
	st2 := some.NewState().(*lossState)
	small, big := 0, 0
	for range 4000 {
		if some.hold(st2, 100) > 0 {
			small++
		}
		st2.rto = MinRTO
		if some.hold(st2, 32*segmentBytes) > 0 {
			big++
		}
		st2.rto = MinRTO
	}
	// 1 % per chunk of one segment, 1−0.99³² = 27.5 % for 32 segments.
	if small < 15 || small > 80 || big < 950 || big > 1250 {
		t.Fatalf("of 4000 chunks: %d one-segment and %d 32-segment chunks held", small, big)
	}
}

// TestConfirmResetsOutcomes: the share of failed round trips against the
// share of connections reset.
func TestConfirmResetsOutcomes(t *testing.T) {
	for _, c := range []struct {
		s    Sample
		want engine.Confirmation
	}{
		{Sample{N: 50, Failed: 16, LastErr: "connection reset by peer"}, engine.Confirmed},
		{Sample{N: 50, Failed: 5}, engine.Confirmed}, // a third of 15
		{Sample{N: 50, Failed: 4}, engine.Mismatch},
		{Sample{N: 50}, engine.Mismatch},
		{Sample{N: 5, Failed: 2}, engine.Inconclusive},
	} {
		if got := ConfirmResets(c.s, 0.3); got.Outcome != c.want {
			t.Errorf("%+v: %v (%s), want %v", c.s, got.Outcome, got.Measurement, c.want)
		}
	}
	if n := ResetRoundTrips(0.3); n != 50 {
		t.Errorf("round trips at 30 %%: %d, want 50", n)
	}
}
