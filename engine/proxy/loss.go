package proxy

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/Shopify/toxiproxy/v2/toxics"

	"github.com/chaosgate/chaosgate/engine"
)

// segmentLossType is the toxic type of SegmentLoss.
const segmentLossType = "chaosgate_segment_loss"

// TCP's figures the loss toxic plays: the payload of one segment on an
// Ethernet path, Linux's minimum retransmission timeout, and the ceiling
// of its exponential backoff.
const (
	segmentBytes = 1448
	MinRTO       = 200 * time.Millisecond
	maxRTO       = 6400 * time.Millisecond
)

// SegmentLoss is a Toxiproxy toxic that plays what packet loss (or
// corruption, which a TCP receiver's checksum turns into loss) does to a
// TCP stream between two processes: each chunk of Size bytes is a run of
// ⌈Size/1448⌉ segments, any of which is lost with probability Loss; a
// chunk with a lost segment is held for one retransmission timeout (200 ms,
// Linux's minimum), doubled for each loss in a row on the connection and
// reset by a chunk that got through, and everything behind it waits
// (TCP delivers in order). A proxy relays a byte stream, so this is the
// loss as the application sees it; it does not drop real packets.
type SegmentLoss struct {
	Loss float64 `json:"loss"` // 0..1 per segment
}

type lossState struct {
	mu  sync.Mutex
	rng *rand.Rand
	rto time.Duration
}

// NewState gives each connection its own random sequence and backoff.
func (t *SegmentLoss) NewState() any {
	return &lossState{rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), rto: MinRTO}
}

// GetBufferSize is the chunk buffer between this toxic and the next.
func (t *SegmentLoss) GetBufferSize() int { return 1024 }

// hold is how long a chunk of n bytes waits: 0, or the connection's
// current retransmission timeout when one of its segments was lost.
func (t *SegmentLoss) hold(s *lossState, n int) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	segments := max(1, (n+segmentBytes-1)/segmentBytes)
	pChunk := 1 - math.Pow(1-min(max(t.Loss, 0), 1), float64(segments))
	if s.rng.Float64() >= pChunk {
		s.rto = MinRTO
		return 0
	}
	d := s.rto
	s.rto = min(2*s.rto, maxRTO)
	return d
}

// Pipe passes every chunk on, holding the ones with a lost segment.
func (t *SegmentLoss) Pipe(stub *toxics.ToxicStub) {
	s, _ := stub.State.(*lossState)
	if s == nil {
		s = t.NewState().(*lossState)
	}
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if d := t.hold(s, len(c.Data)); d > 0 {
				select {
				case <-time.After(d):
				case <-stub.Interrupt:
					stub.Output <- c // never drop data on the floor
					return
				}
			}
			stub.Output <- c
		}
	}
}

// AddLoss loses each TCP segment through every connection of the proxy
// with probability loss (0..1), in both directions (SegmentLoss). The
// toxics are named toxic+"-loss-up" and toxic+"-loss-down".
func (s *Set) AddLoss(proxyName, toxic string, loss float64) error {
	p, err := s.get(proxyName)
	if err != nil {
		return err
	}
	names := lossNames(toxic)
	for i, dir := range []string{"upstream", "downstream"} {
		if err := s.addToxic(p, toxicJSON{Name: names[i], Type: segmentLossType, Stream: dir, Toxicity: 1,
			Attributes: map[string]any{"loss": loss}}); err != nil {
			return err
		}
	}
	return nil
}

// AddReset resets a share (0..1) of the connections through the proxy:
// Toxiproxy's reset_peer toxic at that toxicity, so each connection is
// chosen when it opens (and again whenever the toxics change), and a
// chosen one is closed with a TCP RST as soon as data arrives. The toxic
// is named toxic+"-reset".
func (s *Set) AddReset(proxyName, toxic string, share float64) error {
	p, err := s.get(proxyName)
	if err != nil {
		return err
	}
	return s.addToxic(p, toxicJSON{Name: resetName(toxic), Type: "reset_peer", Stream: "upstream", Toxicity: float32(share),
		Attributes: map[string]any{"timeout": 0}})
}

func resetName(toxic string) string { return toxic + "-reset" }

// ResetRoundTrips is how many round trips a reset confirmation takes so
// that about fifteen are expected to fail (at least 40, at most 300).
func ResetRoundTrips(share float64) int {
	if share <= 0 {
		return 40
	}
	return min(300, max(40, int(math.Ceil(15/share))))
}

// ConfirmResets compares the share of failed round trips (each on a fresh
// connection) with the share of connections reset: confirmed when at
// least a third of the expected failures happened, mismatch when fewer
// did.
func ConfirmResets(s Sample, share float64) engine.ConfirmResult {
	want := share * float64(s.N)
	m := fmt.Sprintf("%d of %d round trips on fresh connections failed (%.0f expected at %.3g %% of connections reset)", s.Failed, s.N, want, 100*share)
	if s.Failed > 0 {
		m += " (" + shortErr(s.LastErr) + ")"
	}
	if s.N < 10 {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: m}
	}
	if s.Failed > 0 && float64(s.Failed) >= want/3 {
		return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: m}
	}
	return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: m}
}

// lossNames are the toxic names AddLoss creates for toxic.
func lossNames(toxic string) []string { return []string{toxic + "-loss-up", toxic + "-loss-down"} }

// Stalls counts round trips that took a retransmission timeout longer
// than the fastest of them.
type Stalls struct {
	N       int           `json:"n"`
	Failed  int           `json:"failed"`
	Stalled int           `json:"stalled"`
	Fastest time.Duration `json:"fastest"`
	LastErr string        `json:"last_error,omitempty"`
}

// MeasureStalls takes n round trips to addr, each bounded by timeout, and
// counts those at least MinRTO·¾ slower than the fastest.
func MeasureStalls(ctx context.Context, rt RoundTrip, addr string, n int, timeout time.Duration) Stalls {
	ds, m := measure(ctx, rt, addr, n, timeout)
	s := Stalls{N: m.N, Failed: m.Failed, LastErr: m.LastErr, Fastest: m.Min}
	for _, d := range ds {
		if d-s.Fastest >= MinRTO*3/4 {
			s.Stalled++
		}
	}
	return s
}

// LossRoundTrips is how many round trips a loss confirmation takes so that
// about fifteen of them are expected to stall (at least 40, at most 400):
// enough that fewer than a quarter of those, a mismatch, happens by chance
// less than once in 5,000 confirmations at loss ≥ 2 %.
func LossRoundTrips(loss float64) int {
	p := ExpectedStallRatio(loss)
	if p <= 0 {
		return 40
	}
	return min(400, max(40, int(math.Ceil(15/p))))
}

// ExpectedStallRatio is the share of small request/response round trips
// (one segment each way) that lose a segment at a per-segment loss.
func ExpectedStallRatio(loss float64) float64 { return 1 - (1-loss)*(1-loss) }

// ConfirmLoss compares the stalls seen through an edge with what its loss
// should cause: confirmed when round trips stalled at no less than a quarter
// of the expected rate (a stall is a retransmission timeout, never host
// noise of tens of milliseconds), mismatch when fewer did, inconclusive
// when too few round trips succeeded.
func ConfirmLoss(s Stalls, loss float64) engine.ConfirmResult {
	ok := s.N - s.Failed
	want := ExpectedStallRatio(loss)
	m := fmt.Sprintf("%d of %d round trips stalled by a retransmission timeout (%.1f %%; %.1f %% expected at %.3g %% segment loss), fastest %s",
		s.Stalled, ok, 100*float64(s.Stalled)/float64(max(ok, 1)), 100*want, 100*loss, s.Fastest.Round(10*time.Microsecond))
	if s.Failed > 0 {
		m += fmt.Sprintf("; %d failed (%s)", s.Failed, shortErr(s.LastErr))
	}
	if ok < 10 {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: m}
	}
	if s.Stalled > 0 && float64(s.Stalled) >= want*float64(ok)/4 {
		return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: m}
	}
	return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: m}
}
