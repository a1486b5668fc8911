package decision

import (
	"fmt"
	"math"
	"sort"
)

// p99Of returns an arm's p99 and its sample count.
func p99Of(a ArmInput) (p99, n float64, ok bool) {
	if a.LatencyMS.OK() && len(a.LatencyMS.V) > 0 {
		return quantile(a.LatencyMS.V, 0.99), float64(len(a.LatencyMS.V)), true
	}
	if a.LatencyP99.OK() {
		n := 0.0
		if a.Requests.OK() {
			n = a.Requests.V
		}
		return a.LatencyP99.V, n, true
	}
	return 0, 0, false
}

// latencyField picks the latency source of an arm for data checks.
func latencyField(a ArmInput) (Samples, []field) {
	if a.LatencyMS.State != Missing {
		return a.LatencyMS, nil
	}
	return Samples{State: Present}, []field{{"latency_quantiles.p99", a.LatencyP99}}
}

func (e *evaluator) latencyDim(dc DimensionConfig, r DimensionResult) DimensionResult {
	r.Unit = "ms"
	r.Test = MethodSigma
	cs, cf := latencyField(e.in.Canary)
	ks, kf := latencyField(e.in.Control)
	if st, d := e.check(cf, nil, &cs, nil, "latency_ms"); st != DataOK {
		return inconclusive(r, st, d)
	}
	if st, d := e.check(nil, kf, nil, &ks, "latency_ms"); st != DataOK {
		return inconclusive(r, st, d)
	}
	pc, nc, okc := p99Of(e.in.Canary)
	pk, nk, okk := p99Of(e.in.Control)
	r.Query = fmt.Sprintf("p99(latency_ms): canary %.4g ms over %g samples, control %.4g ms over %g samples", pc, nc, pk, nk)
	if !okc || !okk {
		return inconclusive(r, DataEmpty, "no latency samples")
	}
	if pc <= 0 || pk <= 0 {
		return inconclusive(r, "invalid", "non-positive p99 latency cannot be compared on a log scale")
	}
	r.Canary, r.Control = pc, pk
	r.SamplesCanary, r.SamplesControl = nc, nk
	sign := dc.Direction.sign()
	if math.Min(nc, nk) < minP99Samples {
		// Too few samples for a p99, but enough for a median: a body that
		// is slower by the whole floor fails the canary on its own.
		body := ""
		if sh := shapeOf(e.in.Canary, e.in.Control); sh.ok {
			l := e.intervals()
			zBody, bodyEffect, kBody, _, bodyNote := e.bodyShift(dc, sign, l)
			if zBody > kBody && bodyEffect >= dc.MinEffect {
				r.Effect, r.Z, r.K = bodyEffect, zBody, kBody
				r.trend = trendOf(r.Effect)
				setConfidence(&r, math.Min(nc, nk)/math.Max(dc.MinSamples, 1), e.spreadOf(dc.SigmaPrior, 0, p50Diff).histConf)
				r.Outcome, r.Rule = Fail, RuleBodyShift
				r.Reason = fmt.Sprintf("too few samples for a p99 (canary %g, control %g), but the whole distribution moved by more than the floor %.1f%%: %s, median %+.1f%%", nc, nk, 100*dc.MinEffect, bodyNote, 100*bodyEffect)
				return r
			}
			body = fmt.Sprintf("; the body did not clearly move by the floor (%s, median %+.1f%%)", bodyNote, 100*bodyEffect)
		}
		r = inconclusive(r, DataFew, fmt.Sprintf("p99 needs at least %d samples per arm (canary %g, control %g): below that it is only the maximum%s", minP99Samples, nc, nk, body))
		return r
	}
	sp := e.spreadOf(dc.SigmaPrior, dc.SigmaFloor, p99Diff)
	sigma, src := sp.sigma, sp.source+" (log scale)"
	// The history's spread is the drift between healthy arms plus the
	// sampling error of its windows' p99s. The drift lasts; the sampling
	// error is this window's own: smaller for a window that rests on more
	// observations, larger for one that rests on fewer.
	// Each pool's spread less the median sampling error of its own
	// windows is the drift that pool shows; those drifts are shrunk toward
	// the prior (a drift too: two healthy arms' p99s apart by more than
	// their sampling error), and this window's sampling error is added.
	if seNow, seHist := p99SEPair(e.in.Canary, e.in.Control), e.historyP99SE(); seNow > 0 && seHist > 0 {
		lessSE := func(pool []HistoryWindow, s float64) float64 {
			var se []float64
			for _, h := range pool {
				if v := p99SEPair(h.Canary, h.Control); v > 0 {
					se = append(se, v)
				}
			}
			if len(se) == 0 {
				return s
			}
			m := median(se)
			return math.Sqrt(math.Max(0, s*s-m*m))
		}
		dn := e.nested(p99Diff, zeroSigma, dc.SigmaPrior, "prior", true, true, lessSE)
		if s2 := math.Hypot(dn.value, seNow); s2 > 0 && !math.IsNaN(s2) {
			sigma = s2
			src = fmt.Sprintf("%s (log scale): drift between healthy arms %.3g (each pool's spread less its windows' p99 sampling error, here %.3g) and this window's sampling error %.3g", dn.source, dn.value, seHist, seNow)
			if sp.thin && sigma < dc.SigmaFloor {
				sigma = dc.SigmaFloor
				src += fmt.Sprintf(", floored at %.3g (fewer than %d windows of this context)", dc.SigmaFloor, e.cfg.Baseline.MinWindows)
			}
		}
	}
	// The threshold is calibrated on the A/A history's own z-values of this
	// context, at the level spent at this look: a history whose tails are
	// heavier than the normal raises k instead of causing false alarms.
	l := e.intervals()
	k, note := e.calibratedK(dc.K, sign, sp.sigma, sp.diffs, l)
	r.Sigma, r.SigmaSource, r.K = sigma, src+note, k
	r.sigmaAssumed = sp.thin
	d := math.Log(pc) - math.Log(pk)
	r.Z = sign * d / sigma
	r.Effect = math.Exp(sign*d) - 1
	r.trend = trendOf(r.Effect)
	setConfidence(&r, math.Min(nc, nk)/math.Max(dc.MinSamples, 1), sp.histConf)
	what := fmt.Sprintf("p99 canary %.4g ms vs control %.4g ms (%+.1f%%)", pc, pk, 100*r.Effect)
	floor := fmt.Sprintf("%.1f%%", 100*dc.MinEffect)
	// The body: a slower release moves the median and the lower quartile
	// too, a wider one the lower spread. These are tested on their own
	// order-statistic errors, so a body regression fails even where the
	// tail is too noisy to tell.
	zBody, bodyEffect, kBody, sigmaBody, bodyNote := e.bodyShift(dc, sign, l)
	sh := shapeOf(e.in.Canary, e.in.Control)
	// The lower spread's difference drifts between healthy arms too: the
	// history has no quantiles below the median, so the median's drift
	// stands in for it.
	if sh.spreadOK {
		sh.seSpread = math.Hypot(sh.seSpread, sigmaBody)
		sh.zSpread = sh.spread / sh.seSpread
	}
	// The p99 of the body: where the release itself puts the tail, read
	// from the median and the lower spread.
	bodyP99Effect := math.Exp(sign*sh.bodyP99) - 1
	tailEffect := r.Effect
	if sh.spreadOK {
		tailEffect = math.Max(tailEffect, bodyP99Effect)
	}
	switch {
	case r.Z > k && r.Effect >= dc.MinEffect:
		// The tail itself: a retry path, a lock or a slow dependency call
		// moves the p99 and little else — the regression p99 is there to
		// catch.
		r.Outcome, r.Rule = Fail, RuleAdaptiveSigma
		r.Reason = fmt.Sprintf("%s: z=%.2f > k=%.2f and effect above floor %s (body: %s, median %+.1f%%)", what, r.Z, k, floor, bodyNote, 100*bodyEffect)
	case zBody > kBody && (bodyEffect >= dc.MinEffect || (bodyEffect >= dc.MinEffect/2 && tailEffect >= dc.MinEffect)):
		// The whole distribution moved: the median is clearly and
		// practically slower, by the floor itself or by half of it with the
		// p99 (measured or of the body) up by more than the floor.
		r.Outcome, r.Rule, r.K, r.Z = Fail, "body-shift", kBody, zBody
		body := ""
		if sh.spreadOK {
			body = fmt.Sprintf(", body p99 %+.1f%%", 100*bodyP99Effect)
		}
		r.Reason = fmt.Sprintf("%s%s, floor %s: the whole distribution moved: %s, median %+.1f%%", what, body, floor, bodyNote, 100*bodyEffect)
	case sh.spreadOK && sign*sh.zSpread > kBody && sign*sh.spread >= math.Log1p(dc.MinEffect) && bodyP99Effect >= dc.MinEffect:
		// Same centre, wider body: a variance regression. The lower spread
		// ln(p30/p5) is compared with its order-statistic standard error.
		r.Outcome, r.Rule, r.K, r.Z = Fail, "spread", kBody, sign*sh.zSpread
		r.Reason = fmt.Sprintf("%s: the body widened: ln(p30/p5) canary %.3f vs control %.3f (%+.1f%%, z=%.2f > k=%.2f, SE %.3g: order statistics and the median's drift between healthy arms), body p99 %+.1f%% above floor %s", what, sh.spreadC, sh.spreadK, 100*(math.Exp(sign*sh.spread)-1), sign*sh.zSpread, kBody, sh.seSpread, 100*bodyP99Effect, floor)
	case r.Z > k:
		r.Outcome, r.Rule = Pass, RuleEffectFloor
		r.Reason = fmt.Sprintf("%s: z=%.2f > k=%.2f but effect below floor %s", what, r.Z, k, floor)
	default:
		r.Outcome, r.Rule = Pass, RuleWithinSigma
		r.Reason = fmt.Sprintf("%s: z=%.2f ≤ k=%.2f", what, r.Z, k)
	}
	// Not proven slower, but leaning slower: the body (median and lower
	// quartile) is slower with z > leanZ and by a practical margin (the
	// floor, for the median or for the p99), or the body is wider with
	// z > leanZ and its p99 up by the floor. Passing it would promote a
	// canary that looks materially slower on too little data to tell, so
	// the verdict holds for more data instead (never a block on it).
	if r.Outcome == Pass {
		bodySlower := zBody > leanZ && (bodyEffect >= dc.MinEffect || tailEffect >= dc.MinEffect)
		bodyWider := sh.spreadOK && sign*sh.zSpread > leanZ && bodyP99Effect >= dc.MinEffect
		if bodySlower || bodyWider {
			r.Leaning = true
			r.Diagnosis = append(r.Diagnosis, fmt.Sprintf("leans slower: body %s; body p99 %+.1f%% (floor %s): not promoted on this until more data decides",
				bodyNote, 100*bodyP99Effect, floor))
		}
	}
	return r
}

// p99Diff is ln p99(canary) − ln p99(control) of a history window.
func p99Diff(h HistoryWindow) (float64, bool) {
	a, _, ok1 := p99Of(h.Canary)
	b, _, ok2 := p99Of(h.Control)
	if !ok1 || !ok2 || a <= 0 || b <= 0 {
		return 0, false
	}
	return math.Log(a) - math.Log(b), true
}

// p99SE is the sampling standard error of ln p99 of one arm's window, by
// the same rule for every window so that the judged window and its
// history compare like with like: that of a log-normal body through p50 and
// p99, s·√(q(1−q)/n)/φ(z_q), with n the latency observations the quantiles
// rest on (latency_samples, else the raw samples' count, else the
// requests) — or, when the window carries raw samples, the
// distribution-free width of its order statistics around the p99 if that
// is wider (a tail that is not log-normal). 0 when it cannot be told.
func p99SE(a ArmInput) float64 {
	p50, ok1 := p50Of(a)
	p99, _, ok2 := p99Of(a)
	n := 0.0
	switch {
	case a.LatencySamples.OK():
		n = a.LatencySamples.V
	case a.LatencyMS.OK() && len(a.LatencyMS.V) > 0:
		n = float64(len(a.LatencyMS.V))
	case a.Requests.OK():
		n = a.Requests.V
	}
	if !ok1 || !ok2 || n < minP99Samples || p50 <= 0 || p99 <= p50 {
		return 0
	}
	z := normalQuantile(0.99)
	shape := (math.Log(p99) - math.Log(p50)) / z
	density := math.Exp(-z*z/2) / math.Sqrt(2*math.Pi)
	se := shape * math.Sqrt(0.99*0.01/n) / density
	// With raw samples the window says how wide its own p99 is: the
	// distribution-free interval of the order statistics around rank
	// 0.99·n. A tail that is not log-normal — a slow path of a few per cent,
	// whose p99 sits at the edge of a gap — has a p99 far less certain
	// than the log-normal formula says, and this is where that shows.
	if a.LatencyMS.OK() && len(a.LatencyMS.V) >= minP99Samples {
		s := append([]float64(nil), a.LatencyMS.V...)
		sort.Float64s(s)
		if df := logQuantileSE(s, 0.99); !math.IsInf(df, 0) && !math.IsNaN(df) && df > se {
			se = df
		}
	}
	return se
}

// p99SEPair is the sampling standard error of ln p99(canary) − ln p99(control).
func p99SEPair(c, k ArmInput) float64 { return math.Hypot(p99SE(c), p99SE(k)) }

// historyP99SE is the median sampling error of the p99 difference over the
// history windows of the judged window's context (0 when none can be told).
func (e *evaluator) historyP99SE() float64 {
	same := e.pools().same
	var se []float64
	for _, h := range same {
		if v := p99SEPair(h.Canary, h.Control); v > 0 {
			se = append(se, v)
		}
	}
	if len(se) == 0 {
		return 0
	}
	return median(se)
}

// leanZ is the z above which a latency body that passed still leans slower.
const leanZ = 2

// minP99Samples is the fewest samples a p99 is judged on.
const minP99Samples = 100

// p50Of returns an arm's median latency.
func p50Of(a ArmInput) (float64, bool) {
	if a.LatencyMS.OK() && len(a.LatencyMS.V) > 0 {
		return quantile(a.LatencyMS.V, 0.5), true
	}
	if a.LatencyP50.OK() {
		return a.LatencyP50.V, true
	}
	return 0, false
}

// p50Diff is ln p50(canary) − ln p50(control) of a history window.
func p50Diff(h HistoryWindow) (float64, bool) {
	a, ok1 := p50Of(h.Canary)
	b, ok2 := p50Of(h.Control)
	if !ok1 || !ok2 || a <= 0 || b <= 0 {
		return 0, false
	}
	return math.Log(a) - math.Log(b), true
}

// bodyShift tests the canary's median (and lower quartile) against the
// control's. σ̂ is the A/A history's spread of the median difference — per
// window, as it is: a longer window does not average away a slower host —
// widened to the history's own tail, never below the order-statistic
// standard error of this window's quantiles when raw samples are present.
// The σ̂ floor stands only while the history is thin (fewer than
// baseline.min_windows windows): with enough A/A history, the history
// itself says how far two healthy arms of this service drift apart. It
// returns z (the smaller of the median's and the lower quartile's), the
// median's effect, the threshold k at this look, the history's σ̂ of the
// median difference and a note for the explanation.
func (e *evaluator) bodyShift(dc DimensionConfig, sign float64, l int) (z, effect, k, sigmaHist float64, note string) {
	mc, ok1 := p50Of(e.in.Canary)
	mk, ok2 := p50Of(e.in.Control)
	if !ok1 || !ok2 || mc <= 0 || mk <= 0 {
		return 0, 0, dc.K, 0, "no p50"
	}
	floor := dc.SigmaFloor / 2
	sp := e.spreadOf(dc.SigmaPrior, floor, p50Diff)
	sigma, src := sp.sigma, sp.source
	sigmaHist = sigma
	k, knote := e.calibratedK(dc.K, sign, sigma, sp.diffs, l)
	src += knote
	sh := shapeOf(e.in.Canary, e.in.Control)
	if sh.ok && sh.seMedian > sigma {
		sigma, src = sh.seMedian, "order-statistic SE"
	}
	d := sign * (math.Log(mc) - math.Log(mk))
	z = d / sigma
	note = fmt.Sprintf("p50 %.4g vs %.4g ms, z=%.2f (k %.2f), σ̂=%.3g (%s)", mc, mk, z, k, sigma, src)
	if sh.ok {
		// A slower release moves the lower quartile as much as the median;
		// extra delay on a few requests moves the median more. The body has
		// moved only when both did. The quartile's difference drifts
		// between healthy arms as the median's does.
		se25 := math.Max(sh.se25, sigmaHist)
		z25 := sign * sh.shift25 / se25
		note += fmt.Sprintf("; p25 %+.1f%%, z=%.2f", 100*(math.Exp(sign*sh.shift25)-1), z25)
		z = math.Min(z, z25)
	}
	return z, math.Exp(d) - 1, k, sigmaHist, note
}

// shape compares the bodies of two latency samples on a log scale.
type shape struct {
	// ok: both arms carry minBodySamples raw samples (median and lower
	// quartile); spreadOK: minShapeSamples (the spread and the body p99).
	ok, spreadOK bool
	// seMedian is the order-statistic SE of ln p50(canary) − ln p50(control).
	seMedian float64
	// shift25 is ln p25(canary) − ln p25(control), se25 its SE.
	shift25, se25 float64
	// spreadC/spreadK are the lower spreads ln(p30/p5) per arm; spread
	// their difference, seSpread its SE and zSpread = spread/seSpread.
	spreadC, spreadK, spread, seSpread, zSpread float64
	// bodyP99 is ln of the body p99 of canary over control: the p99 of a
	// log-normal body fitted to p5 and p30.
	bodyP99 float64
}

// minShapeSamples is the fewest raw samples per arm the spread is read
// from; minBodySamples the fewest the median and lower quartile are.
const (
	minShapeSamples = 100
	minBodySamples  = 30
)

// shapeOf reads the shape of both arms' raw latency samples, when both carry
// at least minBodySamples positive samples.
func shapeOf(c, k ArmInput) shape {
	prep := func(a ArmInput) []float64 {
		if !a.LatencyMS.OK() || len(a.LatencyMS.V) < minBodySamples {
			return nil
		}
		s := append([]float64(nil), a.LatencyMS.V...)
		sort.Float64s(s)
		if s[0] <= 0 {
			return nil
		}
		return s
	}
	sc, sk := prep(c), prep(k)
	if sc == nil || sk == nil {
		return shape{}
	}
	var sh shape
	sh.ok = true
	se50c, se50k := logQuantileSE(sc, 0.5), logQuantileSE(sk, 0.5)
	sh.seMedian = math.Hypot(se50c, se50k)
	sh.shift25 = math.Log(sortedQuantile(sc, 0.25)) - math.Log(sortedQuantile(sk, 0.25))
	sh.se25 = math.Hypot(logQuantileSE(sc, 0.25), logQuantileSE(sk, 0.25))
	if len(sc) < minShapeSamples || len(sk) < minShapeSamples {
		return sh
	}
	sh.spreadOK = true
	// The lower spread ln(p30/p5): extra delay on a share f of the requests
	// (what faults add) moves p30 and p5 by about 0.86·f and 0.49·f
	// standard deviations of the body, so it barely widens this spread
	// (the median moves by 1.25·f), while a wider body widens it in
	// proportion.
	se30c, se30k := logQuantileSE(sc, 0.3), logQuantileSE(sk, 0.3)
	se5c, se5k := logQuantileSE(sc, 0.05), logQuantileSE(sk, 0.05)
	l30c, l30k := math.Log(sortedQuantile(sc, 0.3)), math.Log(sortedQuantile(sk, 0.3))
	sh.spreadC = l30c - math.Log(sortedQuantile(sc, 0.05))
	sh.spreadK = l30k - math.Log(sortedQuantile(sk, 0.05))
	sh.spread = sh.spreadC - sh.spreadK
	// The two quantiles of one arm are positively correlated, so adding
	// their variances overstates the SE of their difference: conservative.
	sh.seSpread = math.Sqrt(se30c*se30c + se5c*se5c + se30k*se30k + se5k*se5k)
	if sh.seSpread > 0 {
		sh.zSpread = sh.spread / sh.seSpread
	}
	// z.99 − z.30 over z.30 − z.05 for a log-normal body.
	ratio := (normalQuantile(0.99) - normalQuantile(0.3)) / (normalQuantile(0.3) - normalQuantile(0.05))
	sh.bodyP99 = (l30c + ratio*sh.spreadC) - (l30k + ratio*sh.spreadK)
	return sh
}
