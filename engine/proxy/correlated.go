package proxy

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/Shopify/toxiproxy/v2/toxics"
)

// correlatedLatencyType is the toxic type of CorrelatedLatency.
const correlatedLatencyType = "chaosgate_latency"

var registerOnce sync.Once

func registerToxics() {
	registerOnce.Do(func() {
		toxics.Register(correlatedLatencyType, new(CorrelatedLatency))
		toxics.Register(segmentLossType, new(SegmentLoss))
	})
}

// CorrelatedLatency is a Toxiproxy toxic that delays data by latency ±
// jitter where successive jitter samples are correlated as in Linux netem:
// u = (1−ρ)·fresh + ρ·previous, delay = latency + jitter·(2u−1). With ρ = 0
// it is Toxiproxy's own latency toxic.
type CorrelatedLatency struct {
	Latency     int64   `json:"latency"`     // milliseconds
	Jitter      int64   `json:"jitter"`      // milliseconds
	Correlation float64 `json:"correlation"` // 0..1
}

type correlationState struct {
	mu   sync.Mutex
	last float64
	rng  *rand.Rand
}

// NewState gives each connection its own jitter sequence.
func (t *CorrelatedLatency) NewState() any {
	return &correlationState{last: 0.5, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

// GetBufferSize is the chunk buffer between this toxic and the next.
func (t *CorrelatedLatency) GetBufferSize() int { return 1024 }

// next returns the next delay of a connection's sequence.
func (t *CorrelatedLatency) next(s *correlationState) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	rho := min(max(t.Correlation, 0), 1)
	u := (1-rho)*s.rng.Float64() + rho*s.last
	s.last = u
	d := float64(t.Latency) + float64(t.Jitter)*(2*u-1)
	if d < 0 {
		d = 0
	}
	return time.Duration(d * float64(time.Millisecond))
}

// Pipe delays every chunk by the next delay of the sequence, counted from
// when the chunk arrived.
func (t *CorrelatedLatency) Pipe(stub *toxics.ToxicStub) {
	s, ok := stub.State.(*correlationState)
	if !ok {
		s = t.NewState().(*correlationState)
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
			sleep := t.next(s) - time.Since(c.Timestamp)
			timer := time.NewTimer(sleep)
			select {
			case <-timer.C:
				c.Timestamp = c.Timestamp.Add(sleep)
				stub.Output <- c
			case <-stub.Interrupt:
				timer.Stop()
				stub.Output <- c // deliver what was in flight, then stop
				return
			}
		}
	}
}
