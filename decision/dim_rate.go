package decision

import (
	"fmt"
	"math"
)

// countDim judges a rate x/n: hard limit with a Wilson lower bound, then a
// mixture SPRT on the counts, with an effect floor.
func (e *evaluator) countDim(dc DimensionConfig, r DimensionResult, xName, nName string, get func(ArmInput) (Value, Value)) DimensionResult {
	xc, nc := get(e.in.Canary)
	xk, nk := get(e.in.Control)
	r.Unit = "ratio"
	r.Test = MethodSequential
	r.Query = fmt.Sprintf("%s/%s: canary %s/%s, control %s/%s", xName, nName, fmtV(xc), fmtV(nc), fmtV(xk), fmtV(nk))
	if st, d := e.check([]field{{xName, xc}, {nName, nc}}, []field{{xName, xk}, {nName, nk}}, nil, nil, ""); st != DataOK {
		return inconclusive(r, st, d)
	}
	for _, p := range [][2]Value{{xc, nc}, {xk, nk}} {
		if p[0].V < 0 || p[1].V < 0 || p[0].V > p[1].V {
			return inconclusive(r, "invalid", fmt.Sprintf("inconsistent counts %s=%g > %s=%g or negative", xName, p[0].V, nName, p[1].V))
		}
	}
	r.SamplesCanary, r.SamplesControl = nc.V, nk.V
	if nc.V == 0 {
		return inconclusive(r, DataEmpty, "canary has no "+nName)
	}
	if nk.V == 0 {
		return inconclusive(r, DataEmpty, "control has no "+nName)
	}
	rc, rk := xc.V/nc.V, xk.V/nk.V
	r.Canary, r.Control = rc, rk
	sign := dc.Direction.sign()
	r.Effect = sign * (rc - rk)
	r.trend = trendOf(r.Effect)
	// Overdispersion of the A/A difference relative to the binomial.
	phi, src := e.dispersion(func(h HistoryWindow) (float64, float64, bool) {
		return rateDiff(get, h.Canary, h.Control)
	})
	hc := 1.0 // the binomial model needs no history; history only widens it
	_, binomVar, _ := rateDiff(get, e.in.Canary, e.in.Control)
	se := math.Sqrt(phi * binomVar)
	r.Sigma = se
	r.SigmaSource = fmt.Sprintf("binomial × overdispersion φ=%.2f (%s)", phi, src)
	// Fault exposure: under injected faults one arm's pods may take more
	// of them than the other's, and every fault-driven rate of that arm
	// rises together. The A/A history shows how much of the rate
	// difference the exposure dimension's difference explains (β); the
	// test then judges the rest, with the residual's dispersion, when
	// that is tighter than the plain comparison.
	xcTest, phiTest := xc.V, phi
	adjusted, beta := false, 0.0
	if fit, ok := e.exposureAdjust(dc, get, binomVar); ok && sign > 0 && fit.phiEff < phi {
		adjusted, phiTest, beta = true, fit.phiEff, fit.beta
		xcTest = math.Max(0, nc.V*(rc-fit.explained))
		r.Effect = xcTest/nc.V - rk
		r.trend = trendOf(r.Effect)
		r.Diagnosis = append(r.Diagnosis, fmt.Sprintf("fault exposure: %s canary %s vs control %s explains %s of the difference (β=%.3g over %d A/A windows); the rest is judged, with φ=%.2f instead of %.2f",
			dc.Exposure, pct(fit.canary), pct(fit.control), pct(fit.explained), fit.beta, fit.n, fit.phiEff, phi))
	}
	var logLR float64
	if sign > 0 {
		logLR, r.PValue = mixtureSPRT(xcTest, nc.V, xk.V, nk.V, phiTest)
	} else {
		logLR, r.PValue = mixtureSPRT(nc.V-xc.V, nc.V, nk.V-xk.V, nk.V, phi)
	}
	r.K = math.Sqrt(2 * math.Log(1/e.cfg.Alpha))
	if logLR > 0 {
		r.Z = math.Sqrt(2 * logLR)
	} else if se > 0 {
		r.Z = math.Min(0, r.Effect/se)
	}
	setConfidence(&r, nc.V/math.Max(dc.MinSamples, 1), hc)
	// How far two healthy arms' rates drift apart lasts (a pod on a busier
	// host stays there) and is multiplicative: a rate that drifts by a
	// fifth drifts by a fifth at any traffic. So besides the count test,
	// the log ratio of the canary's rate to the control's must clear the
	// A/A history's spread of the same log ratio (the same context, the
	// drift prior while it is thin), less the sampling noise of the
	// history's counts, plus this window's.
	l := e.intervals()
	dt := e.rateDriftTest(dc, get, sign, xcTest, nc.V, xk.V, nk.V, beta, l)
	kCount := r.K
	if dt.k > 0 {
		r.Z = math.Min(r.Z, dt.z*kCount/dt.k)
	}
	r.SigmaSource += "; " + dt.note
	driftClear := dt.z > dt.k
	// Static hard limit (SLO), for rates where higher is worse.
	if dc.HardLimit > 0 && sign > 0 {
		// One-sample exact binomial test of the canary's rate against the
		// SLO, on the quasi-binomial scale (counts divided by φ: under
		// faults an arm varies more than the binomial says), at the level
		// spent at this look. Exact, because an SLO of 0.02% means
		// fractions of an expected event, where normal-theory bounds
		// (Wilson) call two interruptions in 900 sessions a clear breach.
		level := spentLevel(e.cfg.Alpha, l)
		pSLO := binomUpper(xc.V/phi, nc.V/phi, dc.HardLimit)
		// Clear: the canary's own counts put it over the SLO, and its rate
		// is above the control's by more than healthy arms drift apart —
		// else a healthy arm on a worse host could be over it too.
		canaryOver := pSLO < level && rc > dc.HardLimit
		canaryBreach := canaryOver && driftClear
		lb := wilsonLower(xc.V/phi, nc.V/phi, level)
		// The breach is the canary's alone when the control's own rate is
		// within the SLO; when the control is over it too, both arms are
		// over it together (a system breach) and only the comparison with
		// the control counts. Demanding that the control be clearly within
		// the SLO (an upper bound below it) would disarm the limit for
		// every SLO below a few events per control window — 0.02% of
		// sessions needs tens of thousands of them — while the canary's
		// own breach is already held to the level spent at this look.
		controlBreach := rk > dc.HardLimit
		switch {
		case canaryBreach && !controlBreach:
			r.Outcome, r.Breach, r.Rule = Fail, BreachCanary, RuleHardLimit
			r.Reason = fmt.Sprintf("canary %s is clearly above the SLO %s (exact p=%.2g < α=%g spent at look %d, lower bound %s) while control is within it at %s", pct(rc), pct(dc.HardLimit), pSLO, e.cfg.Alpha, l, pct(lb), pct(rk))
			return r
		case canaryOver && controlBreach:
			r.Breach = BreachSystem
			r.Diagnosis = append(r.Diagnosis, fmt.Sprintf("system breach: both arms above the SLO %s (canary %s, control %s), judged relative to control", pct(dc.HardLimit), pct(rc), pct(rk)))
		case canaryOver:
			r.Diagnosis = append(r.Diagnosis, fmt.Sprintf("canary %s over the SLO %s, but not clearly its own: its rate is within how far healthy arms' rates drift apart from the control's %s (drift z=%.2f ≤ k=%.2f)", pct(rc), pct(dc.HardLimit), pct(rk), dt.z, dt.k))
		}
	}
	// worseByMargin: the canary's rate is above the control's by twice the
	// effect floor and by 30% of the control's rate — the margin at which
	// a canary not proven worse still leans worse. Adjusted or not, the
	// canary's own rate must also be above the control's by the floor to
	// fail, and above it at all to lean worse: a canary that took less of
	// the faults is expected below its control, but one whose rate is
	// below its control's is not worse. In a system breach (both arms over
	// the SLO) the comparison is the same test: how much two healthy arms
	// differ under faults is measured by φ over the A/A windows of the same
	// context, and by the exposure adjustment.
	plainEffect := sign * (rc - rk)
	worseByMargin := r.Effect >= 2*dc.MinEffect && r.Effect >= 0.3*rk && plainEffect > 0 && dt.z > 1
	switch {
	case r.PValue < e.cfg.Alpha && r.Effect >= dc.MinEffect && plainEffect >= dc.MinEffect && !driftClear:
		r.Outcome, r.Rule = Pass, RuleWithinDrift
		r.Reason = fmt.Sprintf("canary %s vs control %s: beyond its counts (always-valid p=%.2g), but within how far healthy arms' rates drift apart (drift z=%.2f ≤ k=%.2f)", pct(rc), pct(rk), r.PValue, dt.z, dt.k)
	case r.PValue < e.cfg.Alpha && r.Effect >= dc.MinEffect && plainEffect >= dc.MinEffect:
		r.Outcome, r.Rule = Fail, RuleSequentialTest
		r.Reason = fmt.Sprintf("canary %s vs control %s: always-valid p=%.2g < α=%g, effect %s ≥ floor %s, and beyond the drift between healthy arms (drift z=%.2f > k=%.2f)", pct(rc), pct(rk), r.PValue, e.cfg.Alpha, pct(r.Effect), pct(dc.MinEffect), dt.z, dt.k)
	case r.PValue < e.cfg.Alpha && adjusted && plainEffect < dc.MinEffect:
		r.Outcome, r.Rule = Pass, RuleEffectFloor
		r.Reason = fmt.Sprintf("canary %s vs control %s: worse than its lower fault exposure predicts (p=%.2g), but its own rate is not above the control's by the floor %s", pct(rc), pct(rk), r.PValue, pct(dc.MinEffect))
	case r.PValue < e.cfg.Alpha:
		r.Outcome, r.Rule = Pass, RuleEffectFloor
		r.Reason = fmt.Sprintf("canary %s vs control %s: significant (p=%.2g) but effect %s below the floor %s", pct(rc), pct(rk), r.PValue, pct(r.Effect), pct(dc.MinEffect))
	default:
		r.Outcome, r.Rule = Pass, RuleWithinNoise
		r.Reason = fmt.Sprintf("canary %s vs control %s: no evidence of a worse rate (always-valid p=%.2g)", pct(rc), pct(rk), r.PValue)
		// Not proven worse, but leaning worse: the always-valid likelihood
		// ratio favours "worse" at least 2:1 (p < 0.5) and the canary's
		// rate is above the control's by twice the effect floor and by
		// 30% of the control's rate. Passing it would promote a canary
		// that looks materially worse on too little data to tell; the
		// verdict holds for more data instead (never a block on it).
		if r.PValue < leanP && worseByMargin {
			r.Leaning = true
			r.Diagnosis = append(r.Diagnosis, fmt.Sprintf("leans worse: canary %s vs control %s (effect %s ≥ 2× floor, likelihood ratio %.1f:1 for worse): not promoted on this until more data decides",
				pct(rc), pct(rk), pct(r.Effect), 1/r.PValue))
		}
	}
	return r
}

// rateDiff returns the difference of the rate f between two arms (canary
// minus control) and its binomial variance under a pooled rate; ok is false
// when a count is missing, negative or has no exposure.
func rateDiff(f func(ArmInput) (Value, Value), c, k ArmInput) (d, v float64, ok bool) {
	xc, nc := f(c)
	xk, nk := f(k)
	if !xc.OK() || !nc.OK() || !xk.OK() || !nk.OK() || nc.V <= 0 || nk.V <= 0 || xc.V < 0 || xk.V < 0 {
		return 0, 0, false
	}
	p := (xc.V + xk.V) / (nc.V + nk.V)
	return xc.V/nc.V - xk.V/nk.V, p * (1 - p) * (1/nc.V + 1/nk.V), true
}

func errorRate(a ArmInput) (Value, Value)      { return a.Errors, a.Requests }
func sessionRate(a ArmInput) (Value, Value)    { return a.SessionInterruptions, a.Sessions }
func dependencyRate(a ArmInput) (Value, Value) { return a.DependencyFailures, a.DependencyCalls }

// logGuardRate is the share of requests that logged a guarded line. A
// request may log several: the count is capped at the requests, so the
// rate stays a share (at most 1).
func logGuardRate(a ArmInput) (Value, Value) {
	x, n := a.LogGuardMatches, a.Requests
	if x.OK() && n.OK() && x.V > n.V {
		x.V = n.V
	}
	return x, n
}

// rateOf returns the counts of a rate dimension, or nil for other kinds.
func rateOf(k Kind) func(ArmInput) (Value, Value) {
	switch k {
	case ErrorRate:
		return errorRate
	case SessionInterruption:
		return sessionRate
	case DependencySLA:
		return dependencyRate
	case LogGuards:
		return logGuardRate
	}
	return nil
}

// exposureFit is a count dimension's comparison adjusted for fault
// exposure: the least-squares slope β of the A/A history's rate
// difference on the exposure dimension's rate difference (through the
// origin: two arms equally exposed differ by nothing on average), the
// share of the current difference it explains, and the dispersion φ of
// what is left relative to the binomial variance of the current counts.
type exposureFit struct {
	beta, explained, phiEff float64
	canary, control         float64 // the exposure dimension's rates now
	n                       int
}

// exposureAdjust fits the exposure adjustment of dc, if dc names an
// exposure dimension, there are at least Baseline.MinWindows usable A/A
// windows and the exposure explains a positive share of the differences.
// vy is the binomial variance of dc's current rate difference.
func (e *evaluator) exposureAdjust(dc DimensionConfig, get func(ArmInput) (Value, Value), vy float64) (exposureFit, bool) {
	cov := rateOf(dc.Exposure)
	if cov == nil || dc.Exposure == dc.Kind {
		return exposureFit{}, false
	}
	type row struct{ dy, vy, dx, vx float64 }
	var rows []row
	var sxy, sxx float64
	for _, h := range e.hist {
		hdy, hvy, ok1 := rateDiff(get, h.Canary, h.Control)
		hdx, hvx, ok2 := rateDiff(cov, h.Canary, h.Control)
		if !ok1 || !ok2 || hvy <= 0 {
			continue
		}
		rows = append(rows, row{hdy, hvy, hdx, hvx})
		sxy += hdy * hdx
		sxx += hdx * hdx
	}
	dx, vx, ok := rateDiff(cov, e.in.Canary, e.in.Control)
	if !ok || vy <= 0 || len(rows) < e.cfg.Baseline.MinWindows || sxx <= 0 || sxy <= 0 {
		return exposureFit{}, false
	}
	f := exposureFit{beta: sxy / sxx, n: len(rows)}
	var s float64
	for _, w := range rows {
		res := w.dy - f.beta*w.dx
		s += res * res / (w.vy + f.beta*f.beta*w.vx)
	}
	phi := math.Max(1, (s+e.cfg.Baseline.Shrink)/(float64(len(rows))+e.cfg.Baseline.Shrink))

	// A canary less exposed than its control is expected below the
	// control's rate, so the adjustment raises its effect; countDim still
	// fails a canary only when its own rate is above the control's by the
	// floor, so one better than its control in every rate is never failed.
	f.explained = f.beta * dx
	f.phiEff = math.Max(1, phi*(vy+f.beta*f.beta*vx)/vy)
	xc, mc := cov(e.in.Canary)
	xk, mk := cov(e.in.Control)
	f.canary, f.control = xc.V/mc.V, xk.V/mk.V
	return f, true
}

// leanP is the always-valid p-value below which a count dimension that
// passed still leans worse (likelihood ratio 2:1).
const leanP = 0.5

// driftTest is the drift test of a rate dimension: whether the canary's
// events are beyond what a healthy arm could show against the control once
// the lasting drift between healthy arms is allowed for.
type driftTest struct {
	z, k float64
	note string
}

// minDriftEvents is the fewest events per arm a history window needs for
// its log rate ratio to say how far healthy arms drift apart: with fewer,
// the ratio is Poisson noise.
const minDriftEvents = 5

// driftP is the p-value of the canary's share of the events, xc of xc+xk,
// when its rate may differ from the control's by a lasting factor e^η,
// η ~ N(0, σ²): the exact conditional binomial tail averaged over η (a
// 61-point grid over ±6σ). It is exact for rare events, where a normal
// approximation of a log ratio is not.
func driftP(xc, nc, xk, nk, sigma float64) float64 {
	n := xc + xk
	if n <= 0 || nc <= 0 || nk <= 0 {
		return 1
	}
	share := func(eta float64) float64 {
		a := nc * math.Exp(eta)
		return a / (a + nk)
	}
	if sigma <= 0 {
		return binomUpper(xc, n, share(0))
	}
	const points = 61
	var sum, wsum float64
	for i := 0; i < points; i++ {
		u := -6 + 12*float64(i)/(points-1)
		w := math.Exp(-u * u / 2)
		sum += w * binomUpper(xc, n, share(sigma*u))
		wsum += w
	}
	return clamp01(sum / wsum)
}

// rateDriftTest judges the canary's events against the control's with the
// lasting drift between healthy arms allowed for. The drift σ_η is the A/A
// history's robust spread of ln(canary rate / control rate) (windows with
// at least minDriftEvents events per arm, through the nested pools, the
// drift prior while the judged context is thin) less the sampling variance
// of those windows' counts. With an exposure adjustment (beta > 0), the
// history's canary rates are adjusted as the judged one is.
func (e *evaluator) rateDriftTest(dc DimensionConfig, get func(ArmInput) (Value, Value), sign, xc, nc, xk, nk, beta float64, look int) driftTest {
	cov := rateOf(dc.Exposure)
	lr := func(h HistoryWindow) (L, v float64, ok bool) {
		hxc, hnc := get(h.Canary)
		hxk, hnk := get(h.Control)
		if !hxc.OK() || !hnc.OK() || !hxk.OK() || !hnk.OK() || hnc.V <= 0 || hnk.V <= 0 {
			return 0, 0, false
		}
		x := hxc.V
		if beta > 0 && cov != nil {
			dx, _, ok := rateDiff(cov, h.Canary, h.Control)
			if !ok {
				return 0, 0, false
			}
			x = math.Max(0, hnc.V*(hxc.V/hnc.V-beta*dx))
		}
		if x < minDriftEvents || hxk.V < minDriftEvents {
			return 0, 0, false
		}
		return math.Log(x/hnc.V) - math.Log(hxk.V/hnk.V), math.Max(0, 1/x-1/hnc.V) + math.Max(0, 1/hxk.V-1/hnk.V), true
	}
	// Each pool's spread less the median sampling variance of its own
	// windows' counts is the drift that pool shows; those drifts, not the
	// raw spreads, are shrunk toward the drift prior (itself a drift).
	lessCounts := func(pool []HistoryWindow, sigma float64) float64 {
		var vs []float64
		for _, h := range pool {
			if _, v, ok := lr(h); ok {
				vs = append(vs, v)
			}
		}
		if len(vs) == 0 {
			return sigma
		}
		return math.Sqrt(math.Max(0, sigma*sigma-median(vs)))
	}
	ne := e.nested(func(h HistoryWindow) (float64, bool) {
		L, _, ok := lr(h)
		return L, ok
	}, zeroSigma, dc.DriftPrior, "drift prior", true, false, lessCounts)
	// The innermost pool of the judged window's class with any windows to
	// read: its counts' sampling noise for the explanation, its z-values
	// for the threshold.
	ps := e.pools()
	var sampling []float64
	var zsPool []HistoryWindow
	for _, pool := range [][]HistoryWindow{ps.same, ps.class} {
		sampling = sampling[:0]
		for _, h := range pool {
			if _, v, ok := lr(h); ok {
				sampling = append(sampling, v)
			}
		}
		if len(sampling) > 0 {
			zsPool = pool
			break
		}
	}
	seHist := 0.0
	if len(sampling) > 0 {
		seHist = median(sampling)
	}
	drift := ne.value
	// The history's own z-values, each window against the drift plus its
	// own counts' sampling noise, calibrate k.
	var zs []float64
	for _, h := range zsPool {
		if L, v, ok := lr(h); ok && drift*drift+v > 0 {
			zs = append(zs, L/math.Sqrt(drift*drift+v))
		}
	}
	if sign < 0 {
		xc, xk = nc-xc, nk-xk
	}
	p := driftP(xc, nc, xk, nk, drift)
	dt := driftTest{}
	switch {
	case p <= 0:
		dt.z = math.Inf(1)
	case p < 1:
		dt.z = -normalQuantile(p)
	}
	var knote string
	dt.k, knote = e.calibratedK(dc.K, sign, 1, zs, look)
	dt.note = fmt.Sprintf("lasting drift between healthy arms' rates σ=%.3g of the log rate (%s; each pool's spread less its windows' count noise, here %.3g): drift p=%.2g, z=%.2f, k=%.2f%s",
		drift, ne.source, math.Sqrt(seHist), p, dt.z, dt.k, knote)
	return dt
}
