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
	// diffs are the differences the threshold is calibrated on
	// (calibratedK): the same context's, or its class's when the context
	// has too few.
	diffs []float64
	// same, all: the number of windows in the same-context pool and in the
	// whole history; thin: same < baseline.min_windows.
	same, all int
	thin      bool
}

// poolSet is the nested pools of A/A history a judgement reads its noise
// from.
type poolSet struct {
	all []HistoryWindow
	// class: the windows of the judged window's class — steady windows for
	// a steady judged window, windows under any fault for a faulted one;
	// a fault context the history has not seen borrows from the faults it
	// has seen, not from the steady state.
	class []HistoryWindow
	// same: the windows of the judged window's context.
	same []HistoryWindow
	// filtered: the judged window carries a context (else class and same
	// are the whole history).
	filtered bool
}

// pools splits the selected history into its nested pools.
func (e *evaluator) pools() poolSet {
	ps := poolSet{all: e.hist, class: e.hist, same: e.hist}
	if e.in.Context == nil {
		return ps
	}
	ps.filtered, ps.class, ps.same = true, nil, nil
	for _, h := range e.hist {
		if h.Context != nil && h.Context.Steady() == e.in.Context.Steady() {
			ps.class = append(ps.class, h)
		}
		if e.in.Context.Matches(h.Context, e.cfg.Baseline.IntensityTolerance) {
			ps.same = append(ps.same, h)
		}
	}
	return ps
}

// className names the judged window's class of windows.
func (e *evaluator) className() string {
	if e.in.Context.Steady() {
		return "steady"
	}
	return "faulted"
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

// meanOf is the arithmetic mean (NaN for no values).
func meanOf(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// shrinkToward pulls an estimate from n windows toward target with s
// pseudo-windows.
func shrinkToward(est float64, n int, target, s float64) float64 {
	if n == 0 || math.IsNaN(est) {
		return target
	}
	return (float64(n)*est + s*target) / (float64(n) + s)
}

// minCalibration is the fewest A/A differences whose tail is read to
// calibrate a threshold.
const minCalibration = 20

// nestedEstimate is one statistic of the A/A history read through the
// nested pools.
type nestedEstimate struct {
	value  float64
	source string
	// calib are the values the threshold is calibrated on: the context's,
	// else its class's when the context has fewer than minCalibration.
	calib []float64
	same  int
	all   int
	thin  bool
}

// nested estimates est over the values f gives the history windows, through
// the nested pools: the prior; the whole history (alone once it has
// baseline.min_windows windows, else shrunk toward the prior); the judged
// window's class; its context; and, with bucket, the time-of-day bucket —
// each shrunk toward the level above it with baseline.shrink
// pseudo-windows. With raise, a faulted context with fewer than
// min_windows windows is shrunk toward at least the prior: faults the
// history has rarely seen are not assumed quieter than it. adjust, when
// not nil, corrects each pool's estimate with that pool's own windows
// before it is shrunk — e.g. a spread less the sampling noise of the
// pool's windows, so that what is shrunk toward the prior is the same
// quantity the prior stands for (the prior itself is never adjusted).
func (e *evaluator) nested(f func(HistoryWindow) (float64, bool), est func([]float64) float64, prior float64, priorName string, raise, bucket bool, adjust func(pool []HistoryWindow, est float64) float64) nestedEstimate {
	ps := e.pools()
	s, mw := e.cfg.Baseline.Shrink, e.cfg.Baseline.MinWindows
	estOf := func(pool []HistoryWindow, vals []float64) float64 {
		v := est(vals)
		if adjust != nil && !math.IsNaN(v) {
			v = adjust(pool, v)
		}
		return v
	}
	all := values(ps.all, f)
	same := values(ps.same, f)
	ne := nestedEstimate{all: len(all), same: len(same), calib: same, thin: len(same) < mw}
	if len(same) < minCalibration {
		// The class (steady, or under faults) when the context has too
		// few; never across classes: a faulted window's difference read
		// against a steady σ̂ is not a steady tail.
		if cls := values(ps.class, f); len(cls) >= minCalibration {
			ne.calib = cls
		}
	}
	v, src := prior, priorName
	switch {
	case len(all) >= mw && len(all) > 0:
		v, src = estOf(ps.all, all), fmt.Sprintf("whole history n=%d", len(all))
	case len(all) > 0:
		v = shrinkToward(estOf(ps.all, all), len(all), prior, s)
		src = fmt.Sprintf("whole history n=%d shrunk toward the %s", len(all), priorName)
	}
	if ps.filtered {
		if cls := values(ps.class, f); len(cls) > 0 && len(cls) < len(all) {
			v = shrinkToward(estOf(ps.class, cls), len(cls), v, s)
			src = fmt.Sprintf("%s windows n=%d within %s", e.className(), len(cls), src)
		}
		if raise && !e.in.Context.Steady() && ne.thin && prior > v {
			v, src = prior, src+" raised to the "+priorName+" (context rarely seen)"
		}
		if len(same) > 0 {
			v = shrinkToward(estOf(ps.same, same), len(same), v, s)
		}
		src = fmt.Sprintf("context %s n=%d shrunk toward %s", e.in.Context, len(same), src)
	}
	if e.cfg.Baseline.SigmaUncertainty != "" {
		own, parent, clsPool := len(all), len(all), ps.all
		if ps.filtered {
			own, clsPool = len(same), ps.class
			if cls := values(ps.class, f); len(cls) > 0 {
				parent = len(cls)
			}
		}
		var wnote string
		v, wnote = e.widen(v, own, parent, clsPool, logMADVar, true, func(pool []HistoryWindow) (float64, int) {
			vals := values(pool, f)
			return estOf(pool, vals), len(vals)
		})
		src += wnote
	}
	if b := e.cfg.Baseline.Bucket; bucket && b > 0 {
		var bw []HistoryWindow
		for _, h := range ps.same {
			if todDistance(h.At, e.in.At) <= b/2 {
				bw = append(bw, h)
			}
		}
		if bv := values(bw, f); len(bv) >= 3 {
			v = shrinkToward(estOf(bw, bv), len(bv), v, s)
			src = fmt.Sprintf("time-of-day bucket n=%d within %s", len(bv), src)
		}
	}
	ne.value, ne.source = v, src
	return ne
}

// spreadOf estimates σ̂ of f(canary) − f(control) over the A/A history
// through the nested pools (see nested and the top of this file). prior is
// σ without history, floor bounds σ̂ below while the judged window's
// context is thin.
func (e *evaluator) spreadOf(prior, floor float64, f func(HistoryWindow) (float64, bool)) spread {
	ne := e.nested(f, zeroSigma, prior, "prior", true, true, nil)
	sp := spread{same: ne.same, all: ne.all, diffs: ne.calib, thin: ne.thin}
	sigma, src := ne.value, ne.source
	mw := e.cfg.Baseline.MinWindows
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
		sp.histConf = 0.5 + 0.5*clamp01(float64(sp.same)/float64(mw))
	}
	return sp
}

// ratioPool sums a ratio statistic Σnum/Σden over a pool of windows.
type ratioPool struct {
	num, den float64
	n        int
}

func sumRatio(hs []HistoryWindow, f func(HistoryWindow) (num, den float64, ok bool)) ratioPool {
	var p ratioPool
	for _, h := range hs {
		num, den, ok := f(h)
		if !ok || den <= 0 || math.IsNaN(num) || math.IsInf(num, 0) || math.IsInf(den, 0) {
			continue
		}
		p.num += num
		p.den += den
		p.n++
	}
	return p
}

// nestedRatio estimates Σnum/Σden through the nested pools (see nested):
// each pool's ratio is shrunk toward the level above with baseline.shrink
// pseudo-windows of the pool's mean denominator. A ratio of sums weighs
// each window by how much it can tell (its denominator), where a mean of
// per-window ratios lets a window with almost no events dominate.
func (e *evaluator) nestedRatio(f func(HistoryWindow) (num, den float64, ok bool), prior float64, priorName string, raise bool) (float64, string, int) {
	ps := e.pools()
	s, mw := e.cfg.Baseline.Shrink, e.cfg.Baseline.MinWindows
	shrink := func(p ratioPool, target float64) float64 {
		if p.n == 0 || p.den <= 0 {
			return target
		}
		dbar := p.den / float64(p.n)
		return (p.num + s*target*dbar) / (p.den + s*dbar)
	}
	all, same := sumRatio(ps.all, f), sumRatio(ps.same, f)
	v, src := prior, priorName
	switch {
	case all.n >= mw && all.n > 0:
		v, src = all.num/all.den, fmt.Sprintf("whole history n=%d", all.n)
	case all.n > 0:
		v = shrink(all, prior)
		src = fmt.Sprintf("whole history n=%d shrunk toward the %s", all.n, priorName)
	}
	if ps.filtered {
		if cls := sumRatio(ps.class, f); cls.n > 0 && cls.n < all.n {
			v = shrink(cls, v)
			src = fmt.Sprintf("%s windows n=%d within %s", e.className(), cls.n, src)
		}
		if raise && !e.in.Context.Steady() && same.n < mw && prior > v {
			v, src = prior, src+" raised to the "+priorName+" (context rarely seen)"
		}
		v = shrink(same, v)
		src = fmt.Sprintf("context %s n=%d shrunk toward %s", e.in.Context, same.n, src)
	}
	if e.cfg.Baseline.SigmaUncertainty != "" && v > 0 {
		own, parent, clsPool := all.n, all.n, ps.all
		if ps.filtered {
			own, clsPool = same.n, ps.class
			if cls := sumRatio(ps.class, f); cls.n > 0 {
				parent = cls.n
			}
		}
		root, wnote := e.widen(math.Sqrt(v), own, parent, clsPool, logRatioVar, false, func(pool []HistoryWindow) (float64, int) {
			p := sumRatio(pool, f)
			if p.den <= 0 {
				return math.NaN(), p.n
			}
			return math.Sqrt(p.num / p.den), p.n
		})
		v, src = root*root, src+wnote
	}
	return v, src, all.n
}

// dispersion is the overdispersion φ = Σd²/Σv of the A/A history's
// canary−control differences d over their binomial or Poisson variances v
// (1 = the count model is right; under faults the arms differ more),
// through the nested pools with 1 as the prior. Unlike the MAD it keeps the
// heavy tail that faults put into the differences, which is what a count
// test must not mistake for a regression. Never below 1.
func (e *evaluator) dispersion(f func(HistoryWindow) (d, v float64, ok bool)) (float64, string) {
	sq := func(h HistoryWindow) (float64, float64, bool) {
		d, v, ok := f(h)
		return d * d, v, ok
	}
	phi, src, n := e.nestedRatio(sq, 1, "count model φ=1", false)
	if n == 0 {
		return 1, "no history: φ=1"
	}
	return math.Max(1, phi), "φ: " + src
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
