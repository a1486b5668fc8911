package decision

import (
	"fmt"
	"math"
	"time"
)

// The judge measures noise instead of assuming it: σ̂ of a canary−control
// difference, and the overdispersion φ of counts, come from the A/A
// history — two arms running the same build — in three nested pools:
//
//	whole history (the baseline window)
//	  └ same context (the faults active in the judged window, at a similar intensity)
//	      └ same time-of-day bucket
//
// Each pool's estimate is shrunk toward the one above it with
// baseline.shrink pseudo-windows, so a thin pool borrows from its parent
// and a rich one speaks for itself. The dimension's prior (sigma_prior)
// sits above the whole history, and the floor (sigma_floor) bounds σ̂ below,
// only while the judged window's context has fewer than
// baseline.min_windows windows: a rich history decides σ̂ on its own, tight
// or wide.

// spread is σ̂ of one dimension's canary−control difference and where it
// came from.
type spread struct {
	sigma  float64
	source string
	// histConf is the history factor of the dimension's confidence.
	histConf float64
	// diffs are the same-context pool's differences: the A/A z-values of
	// this pool calibrate the threshold (calibratedK).
	diffs []float64
	// same, all: the number of windows in the same-context pool and in the
	// whole history; thin: same < baseline.min_windows.
	same, all int
	thin      bool
}

// pools splits the selected history into the whole history and the
// windows of the judged window's context (the whole history when the
// judged window carries no context).
func (e *evaluator) pools() (all, same []HistoryWindow, filtered bool) {
	all = e.hist
	if e.in.Context == nil {
		return all, all, false
	}
	for _, h := range all {
		if e.in.Context.Matches(h.Context, e.cfg.Baseline.IntensityTolerance) {
			same = append(same, h)
		}
	}
	return all, same, true
}

// values applies f to every window of hs and keeps the finite results.
func values(hs []HistoryWindow, f func(HistoryWindow) (float64, bool)) []float64 {
	var out []float64
	for _, h := range hs {
		d, ok := f(h)
		if ok && !math.IsNaN(d) && !math.IsInf(d, 0) {
			out = append(out, d)
		}
	}
	return out
}

// zeroSigma is 1.4826·median|d|: a robust σ of A/A differences about zero.
// An A/A difference is centred on zero by construction; a steady offset
// between two healthy arms is part of how far they drift apart, so it is
// not taken out.
func zeroSigma(d []float64) float64 {
	if len(d) == 0 {
		return math.NaN()
	}
	abs := make([]float64, len(d))
	for i, x := range d {
		abs[i] = math.Abs(x)
	}
	return 1.4826 * median(abs)
}

// shrinkToward pulls an estimate from n windows toward target with s
// pseudo-windows.
func shrinkToward(est float64, n int, target, s float64) float64 {
	if n == 0 || math.IsNaN(est) {
		return target
	}
	return (float64(n)*est + s*target) / (float64(n) + s)
}

// spreadOf estimates σ̂ of f(canary) − f(control) over the A/A history (see
// the top of this file). prior is σ without history, floor bounds σ̂ below
// while the judged window's context is thin.
func (e *evaluator) spreadOf(prior, floor float64, f func(HistoryWindow) (float64, bool)) spread {
	allW, sameW, filtered := e.pools()
	all, same := values(allW, f), values(sameW, f)
	s := e.cfg.Baseline.Shrink
	mw := e.cfg.Baseline.MinWindows
	sp := spread{same: len(same), all: len(all), diffs: same, thin: len(same) < mw}

	// The whole history, shrunk toward the prior while it is thin.
	top, src := prior, "prior"
	if len(all) >= 1 {
		if len(all) >= mw {
			top = zeroSigma(all)
			src = fmt.Sprintf("whole history n=%d", len(all))
		} else {
			top = shrinkToward(zeroSigma(all), len(all), prior, s)
			src = fmt.Sprintf("whole history n=%d shrunk toward the prior %.3g", len(all), prior)
		}
	}
	sigma := top
	if filtered {
		target := top
		if !e.in.Context.Steady() && sp.thin && prior > target {
			// Faults this history has rarely seen: they are not assumed
			// quieter than the prior.
			target, src = prior, src+" raised to the prior (context rarely seen)"
		}
		if len(same) >= 1 {
			sigma = shrinkToward(zeroSigma(same), len(same), target, s)
			src = fmt.Sprintf("context %s n=%d shrunk toward %s", e.in.Context, len(same), src)
		} else {
			sigma = target
			src = fmt.Sprintf("context %s n=%d: %s", e.in.Context, len(same), src)
		}
	}
	// The time-of-day bucket inside the context.
	if b := e.cfg.Baseline.Bucket; b > 0 {
		var bucket []HistoryWindow
		for _, h := range sameW {
			if todDistance(h.At, e.in.At) <= b/2 {
				bucket = append(bucket, h)
			}
		}
		if bv := values(bucket, f); len(bv) >= 3 {
			sigma = shrinkToward(zeroSigma(bv), len(bv), sigma, s)
			src = fmt.Sprintf("time-of-day bucket n=%d within %s", len(bv), src)
		}
	}
	if sp.thin && (sigma < floor || math.IsNaN(sigma)) {
		sigma = floor
		src += fmt.Sprintf(", floored at %.3g (fewer than %d windows of this context)", floor, mw)
	}
	if math.IsNaN(sigma) || sigma <= 0 {
		// A rich history of identical differences: no spread was measured.
		// The smallest positive spread keeps z finite; the effect floor
		// still stands between it and a failure.
		sigma = math.Max(floor*1e-3, 1e-9)
		src += ", no spread measured"
	}
	sp.sigma, sp.source = sigma, src
	sp.histConf = 1
	if mw > 0 {
		sp.histConf = 0.5 + 0.5*clamp01(float64(len(same))/float64(mw))
	}
	return sp
}

// dispersion is the Pearson overdispersion φ = mean(u²) of the A/A
// history's standardised canary−control differences u (1 = the binomial or
// Poisson model is right; under faults the arms differ more), in the same
// nested pools as σ̂: the whole history shrunk toward 1, the judged
// window's context shrunk toward the whole history. Unlike the MAD it keeps
// the heavy tail that faults put into the differences, which is what a
// count test must not mistake for a regression. Never below 1.
func (e *evaluator) dispersion(f func(HistoryWindow) (float64, bool)) (float64, string) {
	allW, sameW, filtered := e.pools()
	all, same := values(allW, f), values(sameW, f)
	s := e.cfg.Baseline.Shrink
	meanSq := func(u []float64, target float64) float64 {
		var sum float64
		for _, x := range u {
			sum += x * x
		}
		return (sum + s*target) / (float64(len(u)) + s)
	}
	if len(all) == 0 {
		return 1, "no history: φ=1"
	}
	phi := meanSq(all, 1)
	src := fmt.Sprintf("Pearson φ over %d A/A windows", len(all))
	if filtered {
		phi = meanSq(same, phi)
		src = fmt.Sprintf("Pearson φ over %d A/A windows of context %s, shrunk toward %d in all", len(same), e.in.Context, len(all))
	}
	return math.Max(1, phi), src
}

// todDistance is the circular time-of-day distance between a and b.
func todDistance(a, b time.Time) time.Duration {
	day := 24 * time.Hour
	ta := time.Duration(a.UTC().Hour())*time.Hour + time.Duration(a.UTC().Minute())*time.Minute + time.Duration(a.UTC().Second())*time.Second
	tb := time.Duration(b.UTC().Hour())*time.Hour + time.Duration(b.UTC().Minute())*time.Minute + time.Duration(b.UTC().Second())*time.Second
	d := ta - tb
	if d < 0 {
		d = -d
	}
	if d > day/2 {
		d = day - d
	}
	return d
}
