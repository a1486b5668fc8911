package decision

import (
	"fmt"
	"math"
	"strings"
)

// The GC pause dimension has two SLOs and one comparison:
//
//   - no pause over max_pause: the canary breaks it clearly when its count
//     of pauses over the limit is improbable under the rate at which healthy
//     arms of this service pause that long — the A/A history of the same
//     context (both arms) and the control now, with a pseudo-observation of
//     half such a pause in gcPriorMinutes minutes. With a week of clean
//     history one pause over the limit is clear; on a fresh service, or one
//     whose healthy arms do pause that long now and then, it takes more;
//   - at most max_long_per_minute pauses longer than long_pause: the
//     quasi-Poisson lower bound of the canary's rate (at the level spent at
//     this look, the count divided by the A/A overdispersion φ) is above
//     the limit;
//   - the comparison: an exact conditional test of the canary's share of the
//     long pauses given the minutes each arm was observed, on the
//     quasi-Poisson scale (counts divided by the A/A overdispersion φ);
//   - the cycle comparison: how often each arm pauses at all (a Go
//     service's stop-the-world pauses stay short while a regression makes
//     it collect far more often), the log ratio of the per-minute rates
//     against the A/A windows' ratio and spread (gcCycles).
//
// A canary breach with the control within both limits fails the release
// (SLO). When both arms break them it is a system breach: shown, not held
// against the canary, and only the comparison counts.

// gcPriorMinutes and gcPriorPauses are the pseudo-observation of the
// healthy rate of pauses over max_pause: half a pause in ten minutes. It
// keeps a single pause from being a clear breach on a service with no
// history, and fades once the history holds more minutes than that.
const (
	gcPriorMinutes = 10.0
	gcPriorPauses  = 0.5
)

// gcStats is one arm's GC pauses in a window against the dimension's limits.
type gcStats struct {
	max, long, over, minutes float64
	pauses                   int
}

func gcStatsOf(dc DimensionConfig, a ArmInput) gcStats {
	s := gcStats{minutes: a.WindowS.V / 60, pauses: len(a.GCPausesMS.V)}
	for _, p := range a.GCPausesMS.V {
		s.max = math.Max(s.max, p)
		if p > dc.LongPauseMS {
			s.long++
		}
		if dc.MaxPauseMS > 0 && p > dc.MaxPauseMS {
			s.over++
		}
	}
	return s
}

// gcUsable reports whether an arm of a history window carries GC pauses
// over a positive window.
func gcUsable(a ArmInput) bool {
	return a.GCPausesMS.OK() && a.WindowS.OK() && a.WindowS.V > 0
}

func (e *evaluator) gcDim(dc DimensionConfig, r DimensionResult) DimensionResult {
	r.Unit = "long pauses/min"
	r.Test = MethodSequential
	c, k := e.in.Canary, e.in.Control
	if st, d := e.check([]field{{"window_s", c.WindowS}}, []field{{"window_s", k.WindowS}}, &c.GCPausesMS, &k.GCPausesMS, "gc_pauses_ms"); st != DataOK {
		return inconclusive(r, st, d)
	}
	if c.WindowS.V <= 0 || k.WindowS.V <= 0 {
		return inconclusive(r, "invalid", "window_s must be positive")
	}
	sc, sk := gcStatsOf(dc, c), gcStatsOf(dc, k)
	longC, minC, longK, minK := sc.long, sc.minutes, sk.long, sk.minutes
	r.Query = fmt.Sprintf("gc_pauses_ms over window_s: canary %d pauses, %g > %g ms, %g > %g ms, max %.4g ms in %.3g min; control %d pauses, %g > %g ms, %g > %g ms, max %.4g ms in %.3g min",
		sc.pauses, sc.long, dc.LongPauseMS, sc.over, dc.MaxPauseMS, sc.max, minC, sk.pauses, sk.long, dc.LongPauseMS, sk.over, dc.MaxPauseMS, sk.max, minK)
	r.Canary, r.Control = longC/minC, longK/minK
	r.SamplesCanary, r.SamplesControl = minC, minK
	r.Effect = r.Canary - r.Control
	r.trend = trendOf(r.Effect)
	r.HardLimit = dc.MaxLongPerMinute
	phi, src := e.dispersion(func(h HistoryWindow) (float64, float64, bool) {
		if !gcUsable(h.Canary) || !gcUsable(h.Control) {
			return 0, 0, false
		}
		hc, hk := gcStatsOf(dc, h.Canary), gcStatsOf(dc, h.Control)
		lam := (hc.long + hk.long) / (hc.minutes + hk.minutes)
		return hc.long/hc.minutes - hk.long/hk.minutes, lam * (1/hc.minutes + 1/hk.minutes), true
	})
	lam := (longC + longK) / (minC + minK)
	r.Sigma = math.Sqrt(phi * lam * (1/minC + 1/minK))
	r.SigmaSource = fmt.Sprintf("poisson × overdispersion φ=%.2f (%s)", phi, src)
	// What healthy arms of this service do in this context: both arms of
	// every A/A window of the judged window's context.
	same := e.pools().same
	var hLong, hOver, hMin float64
	var hWin []float64
	for _, h := range same {
		for _, a := range []ArmInput{h.Canary, h.Control} {
			if !gcUsable(a) {
				continue
			}
			hs := gcStatsOf(dc, a)
			hLong += hs.long
			hOver += hs.over
			hMin += hs.minutes
			hWin = append(hWin, hs.minutes)
		}
	}
	// The control's rate of long pauses: its own count now, shrunk toward
	// the A/A history's rate with baseline.shrink pseudo-windows, so a
	// quiet control over a few minutes is read against what healthy arms
	// of this service do — unless the control now pauses clearly more than
	// its history (exact conditional test at 5%), when a fault is stressing
	// both arms and the control alone is the reference.
	refLong, refMin, pseudo, shrunk, above := e.shrinkControl(longK, minK, hLong, hMin, hWin)
	switch {
	case above:
		r.SigmaSource += fmt.Sprintf("; control above the A/A history's %.3g/min: not shrunk", hLong/hMin)
	case shrunk:
		r.SigmaSource += fmt.Sprintf("; control rate shrunk toward the A/A history's %.3g/min with %.3g pseudo-minutes", hLong/hMin, pseudo)
	}
	l := e.intervals()
	level := spentLevel(e.cfg.Alpha, l)
	p := binomUpper(longC/phi, (longC+refLong)/phi, minC/(minC+refMin))
	if r.Effect <= 0 {
		p = 1
	}
	r.PValue = p
	r.K = normalQuantile(1 - level)
	switch {
	case p < 1 && p > 0:
		// −Φ⁻¹(p), not Φ⁻¹(1−p): 1−p rounds to 1 for tiny p, which
		// would cap z near 8 and hide evidence that keeps growing.
		r.Z = -normalQuantile(p)
	case p == 0:
		r.Z = math.Inf(1)
	case r.Sigma > 0:
		r.Z = math.Min(0, r.Effect/r.Sigma)
	}
	setConfidence(&r, minC/math.Max(dc.MinSamples, 1e-9), 1)

	// The SLOs. Pauses over max_pause, against the healthy rate.
	healthyOver := (sk.over + hOver + gcPriorPauses) / (minK + hMin + gcPriorMinutes)
	pOver := poissonUpper(sc.over, healthyOver*minC)
	overClear := dc.MaxPauseMS > 0 && sc.over > 0 && pOver < level
	// On the quasi-Poisson scale, as the comparison: where healthy arms'
	// long-pause counts vary φ times more than a Poisson count, the
	// canary's count carries φ times the variance, and its rate's lower
	// bound is that of longC/φ events scaled back by φ.
	longLB := phi * poissonLower(longC/phi, level) / minC
	longClear := dc.MaxLongPerMinute > 0 && longLB > dc.MaxLongPerMinute
	canaryBreach := overClear || longClear
	controlBreach := (dc.MaxPauseMS > 0 && sk.over > 0) || (dc.MaxLongPerMinute > 0 && longK/minK > dc.MaxLongPerMinute)
	var why []string
	if overClear {
		why = append(why, fmt.Sprintf("%g pause(s) over %g ms (max %.4g ms) where healthy arms pause that long %.3g times a minute (Poisson p=%.2g < %.2g)", sc.over, dc.MaxPauseMS, sc.max, healthyOver, pOver, level))
	}
	if longClear {
		why = append(why, fmt.Sprintf("%.3g long pauses/min, lower bound %.3g (overdispersion φ=%.2f) above the limit %g/min", r.Canary, longLB, phi, dc.MaxLongPerMinute))
	}
	switch {
	case canaryBreach && !controlBreach:
		r.Outcome, r.Breach, r.Rule = Fail, BreachCanary, RuleHardLimit
		r.Reason = fmt.Sprintf("canary GC: %s, while the control is within the limits (max pause %.4g ms, %.3g long pauses/min)", strings.Join(why, "; "), sk.max, r.Control)
		return r
	case canaryBreach && controlBreach:
		r.Breach = BreachSystem
		r.Diagnosis = append(r.Diagnosis, fmt.Sprintf("system breach: both arms over the GC pause limits (control max %.4g ms, %.3g long pauses/min), not held against the canary: judged relative to the control", sk.max, r.Control))
	case sc.over > 0:
		r.Diagnosis = append(r.Diagnosis, fmt.Sprintf("%g canary pause(s) over the %g ms limit (max %.4g ms): not a clear breach where healthy arms pause that long %.3g times a minute (Poisson p=%.2g, level %.2g)", sc.over, dc.MaxPauseMS, sc.max, healthyOver, pOver, level))
	}
	// The cycle comparison is a z-test on the log scale: its threshold is
	// the dimension's k or the spent level's quantile, whichever is
	// higher (the exact tests above need no such floor).
	cyc := e.gcCycles(dc, sc, sk, math.Max(dc.K, r.K))
	switch {
	case p < level && r.Effect >= dc.MinEffect:
		r.Outcome, r.Rule = Fail, RuleSequentialTest
		r.Reason = fmt.Sprintf("canary %.3g vs control %.3g long GC pauses/min: exact p=%.2g < α=%g spent at look %d (%.2g), effect ≥ %.3g/min", r.Canary, r.Control, p, e.cfg.Alpha, l, level, dc.MinEffect)
	case cyc.fail:
		// Many short pauses: a GC regression the long-pause count does
		// not see (a Go service's stop-the-world phases stay short while
		// it collects far more often). Its z is the cycle comparison's.
		r.Outcome, r.Rule = Fail, RuleSequentialTest
		r.Z, r.PValue = cyc.z, normalUpper(cyc.z)
		r.Unit, r.Canary, r.Control, r.Effect = "GC pauses/min (any length)", cyc.canary, cyc.control, cyc.canary-cyc.control
		r.HardLimit = 0
		r.Reason = "canary " + cyc.text
	default:
		if cyc.text != "" {
			r.Diagnosis = append(r.Diagnosis, cyc.text)
		}
		r.Outcome, r.Rule = Pass, RuleWithinNoise
		r.Reason = fmt.Sprintf("canary %.3g vs control %.3g long GC pauses/min, max pause %.4g vs %.4g ms: within limits and noise (exact p=%.2g, level %.2g at look %d)", r.Canary, r.Control, sc.max, sk.max, p, level, l)
	}
	return r
}

// shrinkControl is the control's reference count and minutes for a GC
// comparison: its own count n over minutes, shrunk toward the A/A history's
// rate hCount/hMin with baseline.shrink pseudo-windows of the history's
// median window (shrunk) — unless there is no history, or the control now
// counts clearly more than its history (exact conditional test at 5%:
// above, a fault stressing both arms), when the control is its own
// reference.
func (e *evaluator) shrinkControl(n, minutes, hCount, hMin float64, hWin []float64) (refN, refMin, pseudo float64, shrunk, above bool) {
	switch {
	case hMin <= 0:
		return n, minutes, 0, false, false
	case binomUpper(n, n+hCount, minutes/(minutes+hMin)) < 0.05:
		return n, minutes, 0, false, true
	}
	pseudo = e.cfg.Baseline.Shrink * median(hWin)
	return n + pseudo*hCount/hMin, minutes + pseudo, pseudo, true, false
}

// gcCyclePriorSigma is the spread (natural log) of the ratio of two healthy
// arms' GC pause rates taken beyond their counts' Poisson noise while the
// judged context has fewer than baseline.min_windows A/A windows: a factor
// of 1.4 at one σ. A rich history measures it instead.
const gcCyclePriorSigma = 0.35

// gcCycleMinPauses is the fewest canary pauses the cycle comparison judges.
const gcCycleMinPauses = 10

// gcCycleResult is the comparison of the arms' rates of GC pauses of any
// length.
type gcCycleResult struct {
	fail            bool
	z               float64
	canary, control float64 // pauses per minute (the control's as shrunk)
	text            string
}

// gcCycles compares how often the arms pause for GC at all, per minute:
// x = ln(canary rate / control rate), centred on the mean x of A/A windows
// of the judged context (healthy arms of this service with the same
// traffic split and faults: a canary with less traffic collects less
// often), with σ the larger of those windows' spread and the counts' own
// Poisson noise; the control's rate is shrunk toward its A/A rate as the
// long-pause comparison's is. It fails when x is beyond k σ and at least
// CycleRatio.
func (e *evaluator) gcCycles(dc DimensionConfig, sc, sk gcStats, k float64) gcCycleResult {
	if dc.CycleRatio <= 0 || sc.minutes <= 0 || sk.minutes <= 0 {
		return gcCycleResult{}
	}
	logRatio := func(c, k gcStats) float64 {
		return math.Log((float64(c.pauses)+0.5)/c.minutes) - math.Log((float64(k.pauses)+0.5)/k.minutes)
	}
	var hist, hWin []float64
	var hK, hMin float64
	for _, h := range e.pools().same {
		if gcUsable(h.Canary) && gcUsable(h.Control) {
			hc, hk := gcStatsOf(dc, h.Canary), gcStatsOf(dc, h.Control)
			hist = append(hist, logRatio(hc, hk))
			hK += float64(hk.pauses)
			hMin += hk.minutes
			hWin = append(hWin, hk.minutes)
		}
	}
	// The control's rate: its own count shrunk toward its slot's rate in
	// the A/A history (baseline.shrink pseudo-windows), as for long pauses
	// — a control that happened to collect rarely in a short window would
	// otherwise make a healthy canary look churning — unless the control
	// now collects clearly more often than its history (a fault on both
	// arms), when it is its own reference.
	ref := sk
	shrunk := ""
	if n, mins, pseudo, ok, _ := e.shrinkControl(float64(sk.pauses), sk.minutes, hK, hMin, hWin); ok {
		ref.pauses, ref.minutes = int(math.Round(n)), mins
		shrunk = fmt.Sprintf(", control shrunk to %.3g/min toward its A/A rate %.3g/min with %.3g pseudo-minutes", float64(ref.pauses)/ref.minutes, hK/hMin, pseudo)
	}
	x := logRatio(sc, ref)
	poisson := 1/(float64(sc.pauses)+0.5) + 1/(float64(ref.pauses)+0.5)
	var centre, sigma float64
	var src string
	if m := len(hist); m >= max(e.cfg.Baseline.MinWindows, 2) {
		centre = meanOf(hist)
		var ss float64
		for _, v := range hist {
			ss += (v - centre) * (v - centre)
		}
		spread := ss / float64(m-1)
		sigma = math.Sqrt(math.Max(spread, poisson) + spread/float64(m))
		src = fmt.Sprintf("%d A/A windows: ratio %.3g, σ %.3g", m, math.Exp(centre), math.Sqrt(spread))
	} else {
		sigma = math.Sqrt(poisson + gcCyclePriorSigma*gcCyclePriorSigma)
		src = fmt.Sprintf("%d A/A windows (< %d): prior σ %.3g beyond the counts", m, e.cfg.Baseline.MinWindows, gcCyclePriorSigma)
	}
	z := (x - centre) / sigma
	ratio := math.Exp(x - centre)
	res := gcCycleResult{z: z, canary: float64(sc.pauses) / sc.minutes, control: float64(ref.pauses) / ref.minutes}
	res.fail = sc.pauses >= gcCycleMinPauses && ratio >= dc.CycleRatio && z > k
	if res.fail || ratio >= dc.CycleRatio {
		verb := "within noise"
		if res.fail {
			verb = "beyond noise"
		}
		res.text = fmt.Sprintf("GC pauses of any length %.3g/min vs control %.3g/min: %.3g× the A/A ratio (limit %g×), z %.2f vs k %.2f (%s%s): %s",
			float64(sc.pauses)/sc.minutes, float64(sk.pauses)/sk.minutes, ratio, dc.CycleRatio, z, k, src, shrunk, verb)
	}
	return res
}
