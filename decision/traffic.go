package decision

import (
	"math"
)

// minTrafficEvidence is the expected canary request count below which the
// traffic ratio is unknown rather than a collapse.
const minTrafficEvidence = 30

// trafficRatio is the canary's share of traffic now relative to its median
// share in the history (NaN when unknown).
func (e *evaluator) trafficRatio() float64 {
	// A share of requests, not of per-second rates: a canary weight is a
	// fraction of the requests. The two arms of a judged window are
	// observed over the same period, where both agree; an A/A window made
	// by splitting one arm's time into two pseudo-arms (as the game day
	// records them) carries its share only in its counts: per second its
	// halves serve alike, so a share of rates would read 0.5 at any weight.
	share := func(a, b ArmInput) (float64, bool) {
		if !a.Requests.OK() || !b.Requests.OK() {
			return 0, false
		}
		ra, rb := a.Requests.V, b.Requests.V
		if ra+rb <= 0 {
			return 0, false
		}
		return ra / (ra + rb), true
	}
	now, ok := share(e.in.Canary, e.in.Control)
	if !ok {
		return math.NaN()
	}
	var past []float64
	for _, h := range e.hist {
		if s, ok := share(h.Canary, h.Control); ok && s > 0 {
			past = append(past, s)
		}
	}
	total := e.in.Canary.Requests.V + e.in.Control.Requests.V
	if len(past) == 0 {
		if now == 0 && total >= minTrafficEvidence {
			return 0
		}
		return 1
	}
	med := median(past)
	if med*total < minTrafficEvidence {
		return math.NaN() // too few expected canary requests to tell a collapse from noise
	}
	return now / med
}
