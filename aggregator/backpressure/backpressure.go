// Package backpressure holds the admission controls of the aggregator:
// keyed token buckets (per source, per connection) and an adaptive (AIMD)
// limit on in-flight work.
package backpressure

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Keyed is a set of token buckets, one per key, bounded in number: when it
// holds more than max keys it starts over (idle keys are the common case).
type Keyed struct {
	mu      sync.Mutex
	limit   rate.Limit
	burst   int
	max     int
	buckets map[string]*rate.Limiter
}

// NewKeyed returns buckets refilling at perSecond with the given burst.
// perSecond <= 0 disables the limit.
func NewKeyed(perSecond float64, burst, max int) *Keyed {
	if burst <= 0 {
		burst = int(perSecond)
	}
	return &Keyed{limit: rate.Limit(perSecond), burst: max1(burst), max: max1(max), buckets: map[string]*rate.Limiter{}}
}

func max1(v int) int {
	if v < 1 {
		return 1
	}
	return v
}

// Allow takes n tokens from key's bucket at now. When refused it returns how
// long until n tokens will be available.
func (k *Keyed) Allow(key string, n int, now time.Time) (bool, time.Duration) {
	if k == nil || k.limit <= 0 {
		return true, 0
	}
	k.mu.Lock()
	b := k.buckets[key]
	if b == nil {
		if len(k.buckets) >= k.max {
			k.buckets = map[string]*rate.Limiter{}
		}
		b = rate.NewLimiter(k.limit, k.burst)
		k.buckets[key] = b
	}
	k.mu.Unlock()
	if n > k.burst {
		n = k.burst
	}
	r := b.ReserveN(now, n)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Forget drops key's bucket (its connection closed), so a closed
// connection holds no memory.
func (k *Keyed) Forget(key string) {
	if k == nil {
		return
	}
	k.mu.Lock()
	delete(k.buckets, key)
	k.mu.Unlock()
}

// Len is the number of buckets held.
func (k *Keyed) Len() int {
	if k == nil {
		return 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.buckets)
}

// AIMD is an adaptive concurrency limit: it grows additively while work
// completes within the latency target and shrinks multiplicatively when it
// does not (or fails), at most once per target interval.
type AIMD struct {
	mu       sync.Mutex
	limit    float64
	min, max float64
	target   time.Duration
	inflight int
	lastDown time.Time
}

// NewAIMD returns a limiter starting at initial, kept within [min, max].
func NewAIMD(initial, min, max int, target time.Duration) *AIMD {
	return &AIMD{limit: float64(initial), min: float64(min), max: float64(max), target: target}
}

// Acquire admits n units of work if they fit under the limit.
func (a *AIMD) Acquire(n int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.inflight > 0 && float64(a.inflight+n) > a.limit {
		return false
	}
	a.inflight += n
	return true
}

// Release returns n units that took latency; ok=false means they failed.
func (a *AIMD) Release(n int, latency time.Duration, ok bool, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inflight -= n
	if ok && latency <= a.target {
		a.limit = min(a.max, a.limit+float64(n)/max(1, a.limit)*8)
		return
	}
	if now.Sub(a.lastDown) >= a.target {
		a.limit = max(a.min, a.limit*0.8)
		a.lastDown = now
	}
}

// Limit returns the current limit.
func (a *AIMD) Limit() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return int(a.limit)
}

// Inflight returns the units in flight.
func (a *AIMD) Inflight() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inflight
}
