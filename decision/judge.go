package decision

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Judge evaluates a canary against its control. The zero value is ready.
type Judge struct{}

// Judge returns the verdict for in under cfg. It is pure: the same config and
// input always give the same verdict.
func (Judge) Judge(cfg *Config, in Input) Verdict { return Evaluate(cfg, in) }

// Evaluate is Judge as a function. A nil cfg means Default().
func Evaluate(cfg *Config, in Input) Verdict {
	if cfg == nil {
		cfg = Default()
	}
	hash := cfg.Hash
	if hash == "" {
		hash = cfg.ComputeHash()
	}
	e := evaluator{cfg: cfg, in: in, hist: selectHistory(cfg, in)}
	v := Verdict{ConfigHash: hash, At: in.At}
	for _, dc := range cfg.Dimensions {
		if !dc.Enabled {
			continue
		}
		r := e.dimension(dc)
		r.Weight = dc.Weight
		r.Critical = dc.Critical
		r.K = finite(r.K)
		r.Z = finiteZ(r.Z)
		r.Sigma = finite(r.Sigma)
		r.Effect = finite(r.Effect)
		r.Canary = finite(r.Canary)
		r.Control = finite(r.Control)
		r.PValue = finite(r.PValue)
		if r.Breach == "system" {
			v.SystemBreaches = append(v.SystemBreaches, r.Name)
		}
		v.Dimensions = append(v.Dimensions, r)
	}
	tr := e.trafficRatio()
	decide(cfg, &v, tr)
	if !math.IsNaN(tr) {
		v.TrafficRatio = &tr
	}
	return v
}

// decide computes S, C, fires the pair rules and sets the decision.
func decide(cfg *Config, v *Verdict, traffic float64) {
	var sumW, sumWC, sumWCS float64
	incomplete := []string{}
	var failed []string
	var critical []string
	for i := range v.Dimensions {
		d := &v.Dimensions[i]
		switch d.Outcome {
		case Pass:
			d.Score = 1
		default:
			d.Score = 0
		}
		sumW += d.Weight
		sumWC += d.Weight * d.Confidence
		sumWCS += d.Weight * d.Confidence * d.Score
		if d.Data != "ok" && d.Data != "empty" && d.Data != "few" {
			incomplete = append(incomplete, fmt.Sprintf("%s (%s)", d.Name, d.Data))
		}
		if d.Outcome == Fail {
			failed = append(failed, string(d.Name))
			if d.Critical && d.Confidence >= cfg.Score.CriticalMinConfidence {
				critical = append(critical, string(d.Name))
			}
		}
	}
	if sumWC > 0 {
		v.Score = sumWCS / sumWC
		for i := range v.Dimensions {
			d := &v.Dimensions[i]
			d.Contribution = d.Weight * d.Confidence * d.Score / sumWC
		}
	}
	if sumW > 0 {
		v.Coverage = sumWC / sumW
	}
	// Pair rules.
	ruleAction := RuleAction(0)
	for _, r := range cfg.Rules {
		if !ruleHolds(r, v, traffic) {
			continue
		}
		v.Rules = append(v.Rules, FiredRule{Name: r.Name, Action: r.Action, Diagnosis: r.Diagnosis})
		if r.Action > ruleAction {
			ruleAction = r.Action
		}
		for _, c := range r.When {
			for i := range v.Dimensions {
				if c.Dimension != "" && v.Dimensions[i].Name == c.Dimension {
					v.Dimensions[i].Diagnosis = append(v.Dimensions[i].Diagnosis, r.Name+": "+r.Diagnosis)
				}
			}
		}
	}
	firedNames := func(a RuleAction) string {
		var n []string
		for _, f := range v.Rules {
			if f.Action == a {
				n = append(n, f.Name)
			}
		}
		return strings.Join(n, ", ")
	}
	lean := leaning(v.Dimensions)
	switch {
	case len(critical) > 0:
		v.Decision, v.Reason = Block, "critical dimension failed: "+strings.Join(critical, ", ")
	case ruleAction == ForceBlock:
		v.Decision, v.Reason = Block, "rule forced block: "+firedNames(ForceBlock)
	case sumWC == 0:
		v.Decision, v.HoldCause, v.Reason = Hold, CauseData, "no usable data in any dimension"
	case v.Score < cfg.Score.Block && provisionalOnly(v.Dimensions):
		// The score is under the block line only because of failures one
		// window cannot make decisive (see decisive): at low traffic the
		// other dimensions carry little confidence, so one memory-growth
		// reading would otherwise block on its own. Hold; the gate blocks
		// when the next window repeats it with more evidence.
		v.Decision, v.HoldCause, v.Reason = Hold, CauseScore, fmt.Sprintf("score %.3f below the block line %.3f, but only on failures one window cannot decide (failed: %s): extend the window", v.Score, cfg.Score.Block, strings.Join(failed, ", "))
	case v.Score < cfg.Score.Block:
		v.Decision, v.Reason = Block, fmt.Sprintf("score %.3f below the block line %.3f (failed: %s)", v.Score, cfg.Score.Block, strings.Join(failed, ", "))
	case ruleAction == ForceHold:
		v.Decision, v.HoldCause, v.Reason = Hold, CauseRule, "rule forced hold: "+firedNames(ForceHold)
	case len(failed) > 0:
		v.Decision, v.HoldCause, v.Reason = Hold, CauseScore, fmt.Sprintf("score %.3f between the lines; failed: %s", v.Score, strings.Join(failed, ", "))
	case len(incomplete) > 0:
		v.Decision, v.HoldCause, v.Reason = Hold, CauseData, "data incomplete, never promote on missing data: "+strings.Join(incomplete, ", ")
	case len(lean) > 0:
		v.Decision, v.HoldCause, v.Reason = Hold, CauseEvidence, "leans worse without proof, hold for more data: "+strings.Join(lean, ", ")
	case v.Coverage < cfg.Score.MinCoverage:
		v.Decision, v.HoldCause, v.Reason = Hold, CauseData, fmt.Sprintf("coverage %.3f below %.3f: not enough samples yet", v.Coverage, cfg.Score.MinCoverage)
	case v.Score < cfg.Score.Promote:
		v.Decision, v.HoldCause, v.Reason = Hold, CauseScore, fmt.Sprintf("score %.3f below the promote line %.3f", v.Score, cfg.Score.Promote)
	default:
		v.Decision, v.Reason = Promote, fmt.Sprintf("score %.3f and coverage %.3f clear their lines", v.Score, v.Coverage)
	}
	if v.Decision == Hold && v.HoldCause == CauseScore && decisive(v.Dimensions) {
		v.Decisive = true
		v.Reason += "; every failure is decisive (z ≥ √2·k): more data will not turn it"
	}
	if len(v.SystemBreaches) > 0 {
		v.Reason += fmt.Sprintf("; system breach (both arms over the SLO, not held against the canary): %s", kindsString(v.SystemBreaches))
	}
}

// decisive reports whether dims has a failure and every failed dimension's
// evidence is at least twice what its threshold demands: a log-likelihood
// ratio z²/2 of at least twice k²/2, that is z ≥ √2·k. A failure at the
// limit (one long GC pause just over it) is not: a window extension may
// show it was a one-off. Nor is a failure resting on one measurement per
// arm (memory growth over the window): a live process's heap moves with
// collector timing, and a longer window is what tells a leak from that.
// Nor a GC pause failure: a stop-the-world pause is wall-clock time, and a
// host short of CPU stretches one arm's pauses for a while (a good canary
// in a real run on a busy 2-core machine was blocked at once that way); a
// regression in the collector shows again in the next window.
// leaning names the dimensions that passed but lean worse.
func leaning(dims []DimensionResult) []string {
	var out []string
	for _, d := range dims {
		if d.leaning {
			out = append(out, string(d.Name))
		}
	}
	return out
}

// provisional reports whether a failure of d is never decisive on one
// window, whatever its z: memory growth and GC pauses (see decisive).
func provisional(d DimensionResult) bool {
	return d.Name == MemoryGrowth || d.Name == GCPause
}

// provisionalOnly reports whether dims has failures, all of them
// provisional, and one with evidence under twice what its threshold
// demands (z < √2·k).
func provisionalOnly(dims []DimensionResult) bool {
	weak := false
	for _, d := range dims {
		if d.Outcome != Fail {
			continue
		}
		if !provisional(d) {
			return false
		}
		if d.K <= 0 || d.Z < math.Sqrt2*d.K {
			weak = true
		}
	}
	return weak
}

func decisive(dims []DimensionResult) bool {
	n := 0
	for _, d := range dims {
		if d.Outcome != Fail {
			continue
		}
		if d.K <= 0 || d.Z < math.Sqrt2*d.K || provisional(d) {
			return false
		}
		n++
	}
	return n > 0
}

func kindsString(ks []Kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// ruleHolds reports whether every condition of r holds on v.
func ruleHolds(r Rule, v *Verdict, traffic float64) bool {
	if len(r.When) == 0 {
		return false
	}
	for _, c := range r.When {
		switch {
		case c.Signal == TrafficRatio:
			if math.IsNaN(traffic) || !(traffic < c.Below) {
				return false
			}
		case c.Dimension != "":
			d, ok := v.Dimension(c.Dimension)
			if !ok {
				return false
			}
			if c.Outcome != 0 && d.Outcome != c.Outcome {
				return false
			}
			if c.Trend != 0 && d.trend != c.Trend {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// evaluator holds one judgement's state.
type evaluator struct {
	cfg  *Config
	in   Input
	hist []HistoryWindow // history inside the baseline window, before At
}

func selectHistory(cfg *Config, in Input) []HistoryWindow {
	var out []HistoryWindow
	for _, h := range in.History {
		if h.At.After(in.At) {
			continue
		}
		if cfg.Baseline.Window > 0 && in.At.Sub(h.At) > cfg.Baseline.Window {
			continue
		}
		out = append(out, h)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// stale reports whether an arm's data is older than the freshness limit.
func (e *evaluator) stale(a Arm) bool {
	if a.CollectedAt.IsZero() || e.cfg.Freshness <= 0 {
		return false
	}
	return e.in.At.Sub(a.CollectedAt) > e.cfg.Freshness
}

// dataState returns "ok" or the worst problem among the values of both arms,
// naming the arm and field.
type field struct {
	name string
	v    Value
}

func (e *evaluator) check(canary, control []field, cs, ks *Samples, sname string) (state, detail string) {
	worst := func(arm string, fs []field, s *Samples) (string, string) {
		rank := map[State]int{QueryError: 4, NaN: 3, Missing: 2}
		best, bd := "", ""
		r0 := 0
		consider := func(name string, st State, err string) {
			if st == Present {
				return
			}
			if rank[st] > r0 {
				r0 = rank[st]
				best = st.String()
				bd = arm + "." + name + " " + st.String()
				if err != "" {
					bd += ": " + err
				}
			}
		}
		for _, f := range fs {
			consider(f.name, f.v.State, f.v.Err)
		}
		if s != nil {
			consider(sname, s.State, s.Err)
		}
		return best, bd
	}
	if s, d := worst("canary", canary, cs); s != "" {
		return s, d
	}
	if s, d := worst("control", control, ks); s != "" {
		return s, d
	}
	if e.stale(e.in.Canary) {
		return "stale", fmt.Sprintf("canary data collected %s before the judgement (limit %s)", e.in.At.Sub(e.in.Canary.CollectedAt), e.cfg.Freshness)
	}
	if e.stale(e.in.Control) {
		return "stale", fmt.Sprintf("control data collected %s before the judgement (limit %s)", e.in.At.Sub(e.in.Control.CollectedAt), e.cfg.Freshness)
	}
	return "ok", ""
}

// inconclusive fills r for a dimension that could not be judged.
func inconclusive(r DimensionResult, data, reason string) DimensionResult {
	r.Outcome = Inconclusive
	r.Data = data
	r.Confidence = 0
	r.Rule = "no-data"
	r.Reason = reason + ": confidence 0, never a silent pass or fail"
	return r
}

func (e *evaluator) dimension(dc DimensionConfig) DimensionResult {
	r := DimensionResult{Name: dc.Kind, MinEffect: dc.MinEffect, HardLimit: dc.HardLimit}
	switch dc.Kind {
	case ErrorRate:
		return e.countDim(dc, r, "errors", "requests", errorRate)
	case SessionInterruption:
		return e.countDim(dc, r, "session_interruptions", "sessions", sessionRate)
	case DependencySLA:
		return e.countDim(dc, r, "dependency_failures", "dependency_calls", dependencyRate)
	case LatencyP99:
		return e.latencyDim(dc, r)
	case GCPause:
		return e.gcDim(dc, r)
	case MemoryGrowth:
		return e.memoryDim(dc, r)
	case Consistency:
		return e.consistencyDim(dc, r)
	}
	return inconclusive(r, "invalid", "unknown dimension kind")
}

// freshness returns the freshness confidence factor.
func (e *evaluator) freshness() float64 {
	if e.stale(e.in.Canary) || e.stale(e.in.Control) {
		return 0
	}
	return 1
}

func setConfidence(r *DimensionResult, samples, history float64) {
	r.ConfidenceParts = Confidence{Samples: clamp01(samples), Completeness: 1, Freshness: 1, History: clamp01(history)}
	r.Confidence = r.ConfidenceParts.Samples * r.ConfidenceParts.Completeness * r.ConfidenceParts.Freshness * r.ConfidenceParts.History
	r.Data = "ok"
}

// sigmaFromHistory estimates σ̂ of f(canary) − f(control) over the A/A
// history: 1.4826·MAD in the time-of-day bucket of At, shrunk toward the
// global σ when the bucket is thin, floored. It also returns the history
// confidence factor.
func (e *evaluator) sigmaFromHistory(prior, floor float64, f func(HistoryWindow) (float64, bool)) (sigma float64, source string, histConf float64) {
	sigma, source, histConf, _ = e.sigmaAndDiffs(e.hist, prior, floor, f)
	return sigma, source, histConf
}

// intervals is how many baseline-length windows the current window spans:
// callers that judge at every interval pass cumulative windows, and their
// statistic is less noisy than one history window.
func (e *evaluator) intervals() int {
	cur := e.in.Control.WindowS
	if !cur.OK() || cur.V <= 0 {
		return 1
	}
	var hw []float64
	for _, h := range e.hist {
		if h.Control.WindowS.OK() && h.Control.WindowS.V > 0 {
			hw = append(hw, h.Control.WindowS.V)
		}
	}
	if len(hw) == 0 {
		return 1
	}
	l := int(math.Floor(cur.V/median(hw) + 1e-9))
	return max(1, min(l, 32))
}

// calibratedK returns the threshold for z. With enough history it is the
// upper quantile of the A/A history's own z for a window of l intervals
// (the mean of l history differences, drawn by a fixed-seed bootstrap, so
// the judgement stays deterministic), never below k. Heavy-tailed
// differences, which the robust σ̂ ignores on purpose, so raise the
// threshold instead of causing false alarms. The level is spent over the
// looks: α/(l(l+1)) at look l sums to α over any number of looks.
func (e *evaluator) calibratedK(k, sign, sigma float64, diffs []float64, l, look int) (float64, string) {
	if len(diffs) < 20 || sigma <= 0 {
		return k, ""
	}
	level := e.cfg.Alpha / float64(look*(look+1))
	z := make([]float64, 0, bootstrapDraws)
	if l == 1 {
		for _, d := range diffs {
			z = append(z, sign*d/sigma)
		}
	} else {
		rng := uint64(0x9e3779b97f4a7c15)
		sl := sigma / math.Sqrt(float64(l))
		for b := 0; b < bootstrapDraws; b++ {
			sum := 0.0
			for i := 0; i < l; i++ {
				rng ^= rng << 13
				rng ^= rng >> 7
				rng ^= rng << 17
				sum += diffs[rng%uint64(len(diffs))]
			}
			z = append(z, sign*sum/float64(l)/sl)
		}
	}
	q := quantile(z, 1-level)
	if n := float64(len(z)); level*n < 1 && len(z) >= 2 {
		// Beyond the largest value: extend the tail exponentially from the
		// two largest order statistics.
		sorted := append([]float64(nil), z...)
		sort.Float64s(sorted)
		top, second := sorted[len(sorted)-1], sorted[len(sorted)-2]
		q = top + (top-second)*math.Log(1/(level*n))
	}
	if q > k {
		return q, fmt.Sprintf("; k raised from %.2f to the A/A history's %.3g%% z quantile %.2f (look %d)", k, 100*(1-level), q, look)
	}
	return k, ""
}

// bootstrapDraws is the size of the bootstrap for merged intervals.
const bootstrapDraws = 4000

func (e *evaluator) sigmaAndDiffs(hist []HistoryWindow, prior, floor float64, f func(HistoryWindow) (float64, bool)) (sigma float64, source string, histConf float64, all []float64) {
	var bucket []float64
	for _, h := range hist {
		d, ok := f(h)
		if !ok || math.IsNaN(d) || math.IsInf(d, 0) {
			continue
		}
		all = append(all, d)
		if e.cfg.Baseline.Bucket > 0 && todDistance(h.At, e.in.At) <= e.cfg.Baseline.Bucket/2 {
			bucket = append(bucket, d)
		}
	}
	shrink := e.cfg.Baseline.Shrink
	global, gsrc := prior, "prior"
	if len(all) >= 3 {
		sa := robustSigma(all)
		global = (float64(len(all))*sa + shrink*prior) / (float64(len(all)) + shrink)
		gsrc = fmt.Sprintf("global n=%d", len(all))
	}
	sigma, source = global, gsrc
	if len(bucket) >= 3 {
		sb := robustSigma(bucket)
		nb := float64(len(bucket))
		sigma = (nb*sb + shrink*global) / (nb + shrink)
		source = fmt.Sprintf("bucket n=%d shrunk toward %s", len(bucket), gsrc)
	}
	if sigma < floor || math.IsNaN(sigma) {
		sigma = floor
		source += ", floored"
	}
	mw := float64(e.cfg.Baseline.MinWindows)
	histConf = 1
	if mw > 0 {
		histConf = 0.5 + 0.5*clamp01(float64(len(all))/mw)
	}
	return sigma, source, histConf, all
}

func spanNote(l int) string {
	if l <= 1 {
		return ""
	}
	return fmt.Sprintf("; window spans %d history intervals: σ̂/√%d", l, l)
}

// dispersion is the Pearson overdispersion φ = mean(u²) of the A/A
// history's standardised canary−control differences u (1 = the binomial or
// Poisson model is right; under faults the arms differ more). Unlike the
// MAD it keeps the heavy tail that faults put into the differences, which is
// what a count test must not mistake for a regression. Shrunk toward 1 by
// the baseline shrink pseudo-count; never below 1.
func (e *evaluator) dispersion(f func(HistoryWindow) (float64, bool)) (float64, string) {
	var sum float64
	n := 0
	for _, h := range e.hist {
		u, ok := f(h)
		if !ok || math.IsNaN(u) || math.IsInf(u, 0) {
			continue
		}
		sum += u * u
		n++
	}
	if n == 0 {
		return 1, "no history: φ=1"
	}
	phi := (sum + e.cfg.Baseline.Shrink) / (float64(n) + e.cfg.Baseline.Shrink)
	return math.Max(1, phi), fmt.Sprintf("Pearson φ over %d A/A windows", n)
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

func trendOf(effect float64) Trend {
	switch {
	case effect > 0:
		return Worse
	case effect < 0:
		return Better
	}
	return 0
}

func pct(x float64) string { return fmt.Sprintf("%.4g%%", 100*x) }

// countDim judges a rate x/n: hard limit with a Wilson lower bound, then a
// mixture SPRT on the counts, with an effect floor.
func (e *evaluator) countDim(dc DimensionConfig, r DimensionResult, xName, nName string, get func(Arm) (Value, Value)) DimensionResult {
	xc, nc := get(e.in.Canary)
	xk, nk := get(e.in.Control)
	r.Unit = "ratio"
	r.Test = "sequential"
	r.Query = fmt.Sprintf("%s/%s: canary %s/%s, control %s/%s", xName, nName, fmtV(xc), fmtV(nc), fmtV(xk), fmtV(nk))
	if st, d := e.check([]field{{xName, xc}, {nName, nc}}, []field{{xName, xk}, {nName, nk}}, nil, nil, ""); st != "ok" {
		return inconclusive(r, st, d)
	}
	for _, p := range [][2]Value{{xc, nc}, {xk, nk}} {
		if p[0].V < 0 || p[1].V < 0 || p[0].V > p[1].V {
			return inconclusive(r, "invalid", fmt.Sprintf("inconsistent counts %s=%g > %s=%g or negative", xName, p[0].V, nName, p[1].V))
		}
	}
	r.SamplesCanary, r.SamplesControl = nc.V, nk.V
	if nc.V == 0 {
		return inconclusive(r, "empty", "canary has no "+nName)
	}
	if nk.V == 0 {
		return inconclusive(r, "empty", "control has no "+nName)
	}
	rc, rk := xc.V/nc.V, xk.V/nk.V
	r.Canary, r.Control = rc, rk
	sign := dc.Direction.sign()
	r.Effect = sign * (rc - rk)
	r.trend = trendOf(r.Effect)
	// Overdispersion of the A/A difference relative to the binomial.
	phi, src := e.dispersion(func(h HistoryWindow) (float64, bool) {
		d, v, ok := rateDiff(get, h.Canary, h.Control)
		if !ok || v <= 0 {
			return 0, false
		}
		return d / math.Sqrt(v), true
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
	adjusted := false
	if fit, ok := e.exposureAdjust(dc, get, binomVar); ok && sign > 0 && fit.phiEff < phi {
		adjusted, phiTest = true, fit.phiEff
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
	// Static hard limit (SLO), for rates where higher is worse.
	if dc.HardLimit > 0 && sign > 0 {
		// One-sample exact binomial test of the canary's rate against the
		// SLO, on the quasi-binomial scale (counts divided by φ: under
		// faults an arm varies more than the binomial says), at the level
		// spent at this look. Exact, because an SLO of 0.02% means
		// fractions of an expected event, where normal-theory bounds
		// (Wilson) call two interruptions in 900 sessions a clear breach.
		l := e.intervals()
		level := spentLevel(e.cfg.Alpha, l)
		pSLO := binomUpper(xc.V/phi, nc.V/phi, dc.HardLimit)
		canaryBreach := pSLO < level && rc > dc.HardLimit
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
			r.Outcome, r.Breach, r.Rule = Fail, "canary", "hard-limit"
			r.Reason = fmt.Sprintf("canary %s is clearly above the SLO %s (exact p=%.2g < α=%g spent at look %d, lower bound %s) while control is within it at %s", pct(rc), pct(dc.HardLimit), pSLO, e.cfg.Alpha, l, pct(lb), pct(rk))
			return r
		case canaryBreach && controlBreach:
			r.Breach = "system"
			r.Diagnosis = append(r.Diagnosis, fmt.Sprintf("system breach: both arms above the SLO %s (canary %s, control %s), judged relative to control", pct(dc.HardLimit), pct(rc), pct(rk)))
		}
	}
	// In a system breach both arms are over the SLO: a fault is stressing
	// both, and how hard it hits each arm's pods differs from window to
	// window, so two healthy arms' rates then differ by more than counts
	// say (in the bench, most false alarms were such windows, a healthy
	// canary at 2–3× its control under full fault intensity). As for GC
	// pauses, the canary then fails the comparison only at twice the
	// control's rate or more; below that it can still lean worse (held).
	// Adjusted for fault exposure, the uneven hit is what the adjustment
	// takes out, and the effect floor alone applies.
	//
	// worseByMargin: the canary's rate is above the control's by twice the
	// effect floor and by 30% of the control's rate — the margin at which
	// a canary not proven worse still leans worse. Adjusted or not, the
	// canary's own rate must also be above the control's by the floor to
	// fail, and above it at all to lean worse: a canary that took less of
	// the faults is expected below its control, but one whose rate is
	// below its control's is not worse.
	plainEffect := sign * (rc - rk)
	worseByMargin := r.Effect >= 2*dc.MinEffect && r.Effect >= 0.3*rk && plainEffect > 0
	minEffect, floorWhy := dc.MinEffect, "floor"
	if r.Breach == "system" && rk > minEffect && !adjusted {
		minEffect, floorWhy = rk, "floor in a system breach (the control's rate: twice the control)"
	}
	switch {
	case r.PValue < e.cfg.Alpha && r.Effect >= minEffect && plainEffect >= dc.MinEffect:
		r.Outcome, r.Rule = Fail, "sequential-test"
		r.Reason = fmt.Sprintf("canary %s vs control %s: always-valid p=%.2g < α=%g and effect %s ≥ %s %s", pct(rc), pct(rk), r.PValue, e.cfg.Alpha, pct(r.Effect), floorWhy, pct(minEffect))
	case r.PValue < e.cfg.Alpha && adjusted && plainEffect < dc.MinEffect:
		r.Outcome, r.Rule = Pass, "effect-floor"
		r.Reason = fmt.Sprintf("canary %s vs control %s: worse than its lower fault exposure predicts (p=%.2g), but its own rate is not above the control's by the floor %s", pct(rc), pct(rk), r.PValue, pct(dc.MinEffect))
	case r.PValue < e.cfg.Alpha:
		r.Outcome, r.Rule = Pass, "effect-floor"
		r.Reason = fmt.Sprintf("canary %s vs control %s: significant (p=%.2g) but effect %s below %s %s", pct(rc), pct(rk), r.PValue, pct(r.Effect), floorWhy, pct(minEffect))
		if worseByMargin {
			// Proven worse, but not by twice the control in a system
			// breach: it leans worse (held, never blocked on it).
			r.leaning = true
			r.Diagnosis = append(r.Diagnosis, fmt.Sprintf("leans worse: canary %s vs control %s in a system breach, significant but under twice the control: not promoted on this until more data decides", pct(rc), pct(rk)))
		}
	default:
		r.Outcome, r.Rule = Pass, "within-noise"
		r.Reason = fmt.Sprintf("canary %s vs control %s: no evidence of a worse rate (always-valid p=%.2g)", pct(rc), pct(rk), r.PValue)
		// Not proven worse, but leaning worse: the always-valid likelihood
		// ratio favours "worse" at least 2:1 (p < 0.5) and the canary's
		// rate is above the control's by twice the effect floor and by
		// 30% of the control's rate. Passing it would promote a canary
		// that looks materially worse on too little data to tell; the
		// verdict holds for more data instead (never a block on it).
		if r.PValue < leanP && worseByMargin {
			r.leaning = true
			r.Diagnosis = append(r.Diagnosis, fmt.Sprintf("leans worse: canary %s vs control %s (effect %s ≥ 2× floor, likelihood ratio %.1f:1 for worse): not promoted on this until more data decides",
				pct(rc), pct(rk), pct(r.Effect), 1/r.PValue))
		}
	}
	return r
}

// rateDiff returns the difference of the rate f between two arms (canary
// minus control) and its binomial variance under a pooled rate; ok is false
// when a count is missing, negative or has no exposure.
func rateDiff(f func(Arm) (Value, Value), c, k Arm) (d, v float64, ok bool) {
	xc, nc := f(c)
	xk, nk := f(k)
	if !xc.OK() || !nc.OK() || !xk.OK() || !nk.OK() || nc.V <= 0 || nk.V <= 0 || xc.V < 0 || xk.V < 0 {
		return 0, 0, false
	}
	p := (xc.V + xk.V) / (nc.V + nk.V)
	return xc.V/nc.V - xk.V/nk.V, p * (1 - p) * (1/nc.V + 1/nk.V), true
}

func errorRate(a Arm) (Value, Value)      { return a.Errors, a.Requests }
func sessionRate(a Arm) (Value, Value)    { return a.SessionInterruptions, a.Sessions }
func dependencyRate(a Arm) (Value, Value) { return a.DependencyFailures, a.DependencyCalls }

// rateOf returns the counts of a rate dimension, or nil for other kinds.
func rateOf(k Kind) func(Arm) (Value, Value) {
	switch k {
	case ErrorRate:
		return errorRate
	case SessionInterruption:
		return sessionRate
	case DependencySLA:
		return dependencyRate
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
func (e *evaluator) exposureAdjust(dc DimensionConfig, get func(Arm) (Value, Value), vy float64) (exposureFit, bool) {
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

func fmtV(v Value) string {
	if v.State == Present {
		return fmt.Sprintf("%g", v.V)
	}
	return v.State.String()
}

// p99Of returns an arm's p99 and its sample count.
func p99Of(a Arm) (p99, n float64, ok bool) {
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
func latencyField(a Arm) (Samples, []field) {
	if a.LatencyMS.State != Missing {
		return a.LatencyMS, nil
	}
	return Samples{State: Present}, []field{{"latency_quantiles.p99", a.LatencyP99}}
}

func (e *evaluator) latencyDim(dc DimensionConfig, r DimensionResult) DimensionResult {
	r.Unit = "ms"
	r.Test = "sigma"
	cs, cf := latencyField(e.in.Canary)
	ks, kf := latencyField(e.in.Control)
	if st, d := e.check(cf, nil, &cs, nil, "latency_ms"); st != "ok" {
		return inconclusive(r, st, d)
	}
	if st, d := e.check(nil, kf, nil, &ks, "latency_ms"); st != "ok" {
		return inconclusive(r, st, d)
	}
	pc, nc, okc := p99Of(e.in.Canary)
	pk, nk, okk := p99Of(e.in.Control)
	r.Query = fmt.Sprintf("p99(latency_ms): canary %.4g ms over %g samples, control %.4g ms over %g samples", pc, nc, pk, nk)
	if !okc || !okk {
		return inconclusive(r, "empty", "no latency samples")
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
			zBody, bodyEffect, bodyNote := e.bodyShift(dc, sign, l)
			if zBody > dc.K && bodyEffect >= dc.MinEffect {
				_, _, hc, _ := e.sigmaAndDiffs(e.hist, dc.SigmaPrior, 0, p50Diff)
				r.Effect, r.Z, r.K = bodyEffect, zBody, dc.K
				r.trend = trendOf(r.Effect)
				setConfidence(&r, math.Min(nc, nk)/math.Max(dc.MinSamples, 1), hc)
				r.Outcome, r.Rule = Fail, "body-shift"
				r.Reason = fmt.Sprintf("too few samples for a p99 (canary %g, control %g), but the whole distribution moved by more than the floor %.1f%%: %s, median %+.1f%%", nc, nk, 100*dc.MinEffect, bodyNote, 100*bodyEffect)
				return r
			}
			body = fmt.Sprintf("; the body did not clearly move by the floor (%s, median %+.1f%%)", bodyNote, 100*bodyEffect)
		}
		r = inconclusive(r, "few", fmt.Sprintf("p99 needs at least %d samples per arm (canary %g, control %g): below that it is only the maximum%s", minP99Samples, nc, nk, body))
		return r
	}
	sigma, src, hc, diffs := e.sigmaAndDiffs(e.hist, dc.SigmaPrior, dc.SigmaFloor, func(h HistoryWindow) (float64, bool) {
		a, _, ok1 := p99Of(h.Canary)
		b, _, ok2 := p99Of(h.Control)
		if !ok1 || !ok2 || a <= 0 || b <= 0 {
			return 0, false
		}
		return math.Log(a) - math.Log(b), true
	})
	// The tail-calibrated threshold, spent over the looks (one history
	// window per look: a merged window's p99 is not an average of p99s). A
	// p99 rise alone is judged against it; under faults each arm's tail
	// moves on its own, so a tail-only rise below it is noise, and one above
	// it still needs the body to move before it fails the canary (in the
	// bench, failing on the tail alone doubled false positives for almost
	// no detection).
	l := e.intervals()
	kTail, note := e.calibratedK(dc.K, sign, sigma, diffs, 1, l)
	r.Sigma, r.SigmaSource, r.K = sigma, src+" (log scale)"+note, kTail
	d := math.Log(pc) - math.Log(pk)
	r.Z = sign * d / sigma
	r.Effect = math.Exp(sign*d) - 1
	r.trend = trendOf(r.Effect)
	setConfidence(&r, math.Min(nc, nk)/math.Max(dc.MinSamples, 1), hc)
	what := fmt.Sprintf("p99 canary %.4g ms vs control %.4g ms (%+.1f%%)", pc, pk, 100*r.Effect)
	floor := fmt.Sprintf("%.1f%%", 100*dc.MinEffect)
	// Body corroboration: under faults each arm's tail moves on its own, so
	// a p99 rise that clears only the nominal k must be matched by the body
	// (p50) of the canary moving up too — a slower release moves both.
	// A window spanning l history intervals is judged with σ̂/√l here: the
	// body corroboration guards this nominal test against tail noise.
	zBody, bodyEffect, bodyNote := e.bodyShift(dc, sign, l)
	sh := shapeOf(e.in.Canary, e.in.Control)
	// The p99 of the body: where the release itself puts the tail, read from
	// the median and the lower spread (faults only add delay, so they barely
	// touch the lower half). A wider or slower body raises it.
	bodyP99Effect := math.Exp(sign*sh.bodyP99) - 1
	tailEffect := r.Effect
	if sh.spreadOK {
		tailEffect = math.Max(tailEffect, bodyP99Effect)
	}
	zl := r.Z * math.Sqrt(float64(l))
	switch {
	case zBody > dc.K && (bodyEffect >= dc.MinEffect || (bodyEffect >= dc.MinEffect/2 && tailEffect >= dc.MinEffect)):
		// The whole distribution moved: the median is clearly and
		// practically slower, by the floor itself or by half of it with the
		// p99 (measured or of the body) up by more than the floor.
		r.Outcome, r.Rule, r.K, r.Z, r.Sigma = Fail, "body-shift", dc.K, zl, sigma/math.Sqrt(float64(l))
		body := ""
		if sh.spreadOK {
			body = fmt.Sprintf(", body p99 %+.1f%%", 100*bodyP99Effect)
		}
		r.Reason = fmt.Sprintf("%s%s, floor %s: the whole distribution moved: %s, median %+.1f%%", what, body, floor, bodyNote, 100*bodyEffect)
		r.SigmaSource += spanNote(l)
	case sh.spreadOK && sign*sh.zSpread > dc.K && sign*sh.spread >= math.Log1p(dc.MinEffect) && bodyP99Effect >= dc.MinEffect:
		// Same centre, wider body: a variance regression. The lower spread
		// ln(p30/p5) is compared with its order-statistic standard error.
		r.Outcome, r.Rule, r.K, r.Z = Fail, "spread", dc.K, sign*sh.zSpread
		r.Reason = fmt.Sprintf("%s: the body widened: ln(p30/p5) canary %.3f vs control %.3f (%+.1f%%, z=%.2f > k=%.2f, order-statistic SE %.3g), body p99 %+.1f%% above floor %s", what, sh.spreadC, sh.spreadK, 100*(math.Exp(sign*sh.spread)-1), sign*sh.zSpread, dc.K, sh.seSpread, 100*bodyP99Effect, floor)
	case zl > dc.K && r.Effect >= dc.MinEffect && zBody > dc.K:
		r.Outcome, r.Rule, r.K, r.Z, r.Sigma = Fail, "adaptive-sigma+body", dc.K, zl, sigma/math.Sqrt(float64(l))
		r.Reason = fmt.Sprintf("%s: z=%.2f > k=%.2f%s, effect above floor %s, and the body moved too (%s)", what, zl, dc.K, spanNote(l), floor, bodyNote)
		r.SigmaSource += spanNote(l)
	case zl > dc.K && r.Effect >= dc.MinEffect:
		r.Outcome, r.Rule = Pass, "tail-only"
		r.Reason = fmt.Sprintf("%s: z=%.2f > nominal k=%.2f%s, single-window z=%.2f vs tail-calibrated k=%.2f, but the body did not move (%s): the tail moves per arm under faults", what, zl, dc.K, spanNote(l), r.Z, kTail, bodyNote)
	case r.Z > dc.K:
		r.Outcome, r.Rule = Pass, "effect-floor"
		r.Reason = fmt.Sprintf("%s: z=%.2f > k=%.2f but effect below floor %s", what, r.Z, dc.K, floor)
	default:
		r.Outcome, r.Rule = Pass, "within-sigma"
		r.Reason = fmt.Sprintf("%s: z=%.2f ≤ k=%.2f", what, r.Z, dc.K)
	}
	// Not proven slower, but leaning slower: the body (median and lower
	// quartile) is slower with z > leanZ and by a practical margin (the
	// floor, for the median or for the p99), or the body is wider with
	// z > leanZ and its p99 up by the floor. A release that is slower
	// moves its body; passing it would promote a canary that looks
	// materially slower on too little data to tell, so the verdict holds
	// for more data instead (never a block on it). Per-arm fault delay
	// moves the tail, not the body, so healthy canaries rarely lean.
	if r.Outcome == Pass {
		bodySlower := zBody > leanZ && (bodyEffect >= dc.MinEffect || tailEffect >= dc.MinEffect)
		bodyWider := sh.spreadOK && sign*sh.zSpread > leanZ && bodyP99Effect >= dc.MinEffect
		if bodySlower || bodyWider {
			r.leaning = true
			r.Diagnosis = append(r.Diagnosis, fmt.Sprintf("leans slower: body %s; body p99 %+.1f%% (floor %s): not promoted on this until more data decides",
				bodyNote, 100*bodyP99Effect, floor))
		}
	}
	return r
}

// leanZ is the z above which a latency body that passed still leans slower.
const leanZ = 2

// minP99Samples is the fewest samples a p99 is judged on.
const minP99Samples = 100

// p50Of returns an arm's median latency.
func p50Of(a Arm) (float64, bool) {
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

// bodyShift is the z of the canary's median against the control's. σ̂ is
// the A/A history's spread of the same difference (σ̂/√l for a window of l
// intervals), never below the order-statistic standard error of this
// window's medians when raw samples are present. The σ̂ floor stands only
// while the history is thin (fewer than baseline.min_windows windows):
// with enough A/A history, the history itself says how far two healthy
// arms of this service drift apart.
func (e *evaluator) bodyShift(dc DimensionConfig, sign float64, l int) (z, effect float64, note string) {
	mc, ok1 := p50Of(e.in.Canary)
	mk, ok2 := p50Of(e.in.Control)
	if !ok1 || !ok2 || mc <= 0 || mk <= 0 {
		return 0, 0, "no p50"
	}
	floor := dc.SigmaFloor / 2
	sigma, _, _, all := e.sigmaAndDiffs(e.hist, dc.SigmaPrior, 0, p50Diff)
	src := "history"
	if len(all) < e.cfg.Baseline.MinWindows && sigma < floor {
		sigma, src = floor, "floor (thin history)"
	}
	// Faults slow some requests of one arm more than the other's, which
	// shifts its median now and then: the A/A history's own tail of
	// l-interval median differences, at the level spent at this look,
	// widens σ̂ when it is heavier than the normal.
	if kh, _ := e.calibratedK(dc.K, sign, sigma, all, l, l); kh > dc.K && dc.K > 0 {
		sigma *= kh / dc.K
		src += fmt.Sprintf(", widened ×%.2f to the history's tail", kh/dc.K)
	}
	sigma /= math.Sqrt(float64(l))
	sh := shapeOf(e.in.Canary, e.in.Control)
	if sh.ok && sh.seMedian > sigma {
		sigma, src = sh.seMedian, "order-statistic SE"
	}
	d := sign * (math.Log(mc) - math.Log(mk))
	z = d / sigma
	note = fmt.Sprintf("p50 %.4g vs %.4g ms, z=%.2f, σ̂=%.3g (%s)", mc, mk, z, sigma, src)
	if sh.ok {
		// A slower release moves the lower quartile as much as the median;
		// extra delay on a few requests moves the median more. The body has
		// moved only when both did.
		z25 := sign * sh.shift25 / sh.se25
		note += fmt.Sprintf("; p25 %+.1f%%, z=%.2f", 100*(math.Exp(sign*sh.shift25)-1), z25)
		z = math.Min(z, z25)
	}
	return z, math.Exp(d) - 1, note
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
func shapeOf(c, k Arm) shape {
	prep := func(a Arm) []float64 {
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

// sigmaOutcome applies z > k and the effect floor.
func sigmaOutcome(r DimensionResult, dc DimensionConfig, what, floor string) DimensionResult {
	switch {
	case r.Z > r.K && r.Effect >= dc.MinEffect:
		r.Outcome, r.Rule = Fail, "adaptive-sigma"
		r.Reason = fmt.Sprintf("%s: z=%.2f > k=%.2f and effect above floor %s", what, r.Z, r.K, floor)
	case r.Z > r.K:
		r.Outcome, r.Rule = Pass, "effect-floor"
		r.Reason = fmt.Sprintf("%s: z=%.2f > k=%.2f but effect below floor %s", what, r.Z, r.K, floor)
	default:
		r.Outcome, r.Rule = Pass, "within-sigma"
		r.Reason = fmt.Sprintf("%s: z=%.2f ≤ k=%.2f", what, r.Z, r.K)
	}
	return r
}

func (e *evaluator) memoryDim(dc DimensionConfig, r DimensionResult) DimensionResult {
	r.Unit = "MB/min"
	r.Test = "sigma"
	mc, mk := e.in.Canary.MemoryGrowthMBPerMin, e.in.Control.MemoryGrowthMBPerMin
	r.Query = fmt.Sprintf("memory_growth_mb_per_min: canary %s, control %s", fmtV(mc), fmtV(mk))
	if st, d := e.check([]field{{"memory_growth_mb_per_min", mc}}, []field{{"memory_growth_mb_per_min", mk}}, nil, nil, ""); st != "ok" {
		return inconclusive(r, st, d)
	}
	r.Canary, r.Control = mc.V, mk.V
	r.SamplesCanary, r.SamplesControl = 1, 1
	sign := dc.Direction.sign()
	sigma, src, hc, diffs := e.sigmaAndDiffs(e.hist, dc.SigmaPrior, dc.SigmaFloor, func(h HistoryWindow) (float64, bool) {
		a, b := h.Canary.MemoryGrowthMBPerMin, h.Control.MemoryGrowthMBPerMin
		if !a.OK() || !b.OK() {
			return 0, false
		}
		return a.V - b.V, true
	})
	l := e.intervals()
	// The growth of a window spanning l intervals is the mean of their
	// growths: σ̂/√l, with k from a bootstrap of l-interval means.
	k, note := e.calibratedK(dc.K, sign, sigma, diffs, l, l)
	sigma /= math.Sqrt(float64(l))
	r.Sigma, r.SigmaSource, r.K = sigma, src+spanNote(l)+note, k
	r.Effect = sign * (mc.V - mk.V)
	r.Z = r.Effect / sigma
	r.trend = trendOf(r.Effect)
	setConfidence(&r, 1, hc)
	return sigmaOutcome(r, dc, fmt.Sprintf("memory growth canary %.3g vs control %.3g MB/min", mc.V, mk.V), fmt.Sprintf("%g MB/min", dc.MinEffect))
}

func (e *evaluator) gcDim(dc DimensionConfig, r DimensionResult) DimensionResult {
	r.Unit = "long pauses/min"
	r.Test = "sequential"
	c, k := e.in.Canary, e.in.Control
	if st, d := e.check([]field{{"window_s", c.WindowS}}, []field{{"window_s", k.WindowS}}, &c.GCPausesMS, &k.GCPausesMS, "gc_pauses_ms"); st != "ok" {
		return inconclusive(r, st, d)
	}
	if c.WindowS.V <= 0 || k.WindowS.V <= 0 {
		return inconclusive(r, "invalid", "window_s must be positive")
	}
	stats := func(a Arm) (maxP, long, minutes float64) {
		for _, p := range a.GCPausesMS.V {
			maxP = math.Max(maxP, p)
			if p > dc.LongPauseMS {
				long++
			}
		}
		return maxP, long, a.WindowS.V / 60
	}
	maxC, longC, minC := stats(c)
	maxK, longK, minK := stats(k)
	r.Query = fmt.Sprintf("gc_pauses_ms over window_s: canary %d pauses, %g > %g ms, max %.4g ms in %.3g min; control %d pauses, %g > %g ms, max %.4g ms in %.3g min",
		len(c.GCPausesMS.V), longC, dc.LongPauseMS, maxC, minC, len(k.GCPausesMS.V), longK, dc.LongPauseMS, maxK, minK)
	r.Canary, r.Control = longC/minC, longK/minK
	r.SamplesCanary, r.SamplesControl = minC, minK
	r.Effect = r.Canary - r.Control
	r.trend = trendOf(r.Effect)
	r.HardLimit = dc.MaxLongPerMinute
	phi, src := e.dispersion(func(h HistoryWindow) (float64, bool) {
		if !h.Canary.GCPausesMS.OK() || !h.Control.GCPausesMS.OK() || !h.Canary.WindowS.OK() || !h.Control.WindowS.OK() || h.Canary.WindowS.V <= 0 || h.Control.WindowS.V <= 0 {
			return 0, false
		}
		_, lc, mc := stats(h.Canary)
		_, lk, mk := stats(h.Control)
		lam := (lc + lk) / (mc + mk)
		v := lam * (1/mc + 1/mk)
		if v <= 0 {
			return 0, false
		}
		return (lc/mc - lk/mk) / math.Sqrt(v), true
	})
	lam := (longC + longK) / (minC + minK)
	r.Sigma = math.Sqrt(phi * lam * (1/minC + 1/minK))
	r.SigmaSource = fmt.Sprintf("poisson × overdispersion φ=%.2f (%s)", phi, src)
	// The control's rate of long pauses: its own count now, shrunk toward
	// the A/A history's rate (both arms) with baseline.shrink pseudo-windows,
	// so a quiet control over a few minutes is read against what healthy
	// arms of this service do — unless the control now pauses clearly more
	// than its history (exact conditional test at 5%), when a fault is
	// stressing both arms and the control alone is the reference.
	var hLong, hMin float64
	var hWin []float64
	for _, h := range e.hist {
		for _, a := range []Arm{h.Canary, h.Control} {
			if !a.GCPausesMS.OK() || !a.WindowS.OK() || a.WindowS.V <= 0 {
				continue
			}
			_, lg, m := stats(a)
			hLong += lg
			hMin += m
			hWin = append(hWin, m)
		}
	}
	refLong, refMin := longK, minK
	switch {
	case hMin <= 0:
	case binomUpper(longK, longK+hLong, minK/(minK+hMin)) < 0.05:
		// The control pauses more now than in its history (a fault is
		// stressing both arms): it speaks for itself.
		r.SigmaSource += fmt.Sprintf("; control above the A/A history's %.3g/min: not shrunk", hLong/hMin)
	default:
		pseudo := e.cfg.Baseline.Shrink * median(hWin)
		refLong += pseudo * hLong / hMin
		refMin += pseudo
		r.SigmaSource += fmt.Sprintf("; control rate shrunk toward the A/A history's %.3g/min with %.3g pseudo-minutes", hLong/hMin, pseudo)
	}
	l := e.intervals()
	level := spentLevel(e.cfg.Alpha, l)
	// Exact conditional test: the canary's share of the long pauses given
	// the exposures, on the quasi-Poisson scale (counts divided by φ).
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
	longLB := poissonLower(longC, e.cfg.Alpha) / minC
	// One pause just over the limit is not a clear breach on its own: a
	// starved host stretches single pauses of a healthy build. The max-pause
	// SLO fails the canary when it is broken twice, once by more than
	// double, or once while the canary also pauses long more often than
	// its control (by the dimension's minimum effect).
	overC := 0
	for _, p := range c.GCPausesMS.V {
		if p > dc.MaxPauseMS {
			overC++
		}
	}
	maxClear := dc.MaxPauseMS > 0 && (overC >= 2 || maxC > 2*dc.MaxPauseMS || (overC == 1 && r.Effect >= dc.MinEffect))
	canaryBreach := maxClear || (dc.MaxLongPerMinute > 0 && longLB > dc.MaxLongPerMinute)
	controlBreach := (dc.MaxPauseMS > 0 && maxK > dc.MaxPauseMS) || (dc.MaxLongPerMinute > 0 && longK/minK > dc.MaxLongPerMinute)
	switch {
	case canaryBreach && !controlBreach:
		r.Outcome, r.Breach, r.Rule = Fail, "canary", "hard-limit"
		r.Reason = fmt.Sprintf("canary GC: max pause %.4g ms (limit %g ms), %.3g long pauses/min (lower bound %.3g, limit %g/min) while control is within limits", maxC, dc.MaxPauseMS, r.Canary, longLB, dc.MaxLongPerMinute)
		return r
	case canaryBreach && controlBreach:
		r.Breach = "system"
		r.Diagnosis = append(r.Diagnosis, "system breach: both arms over the GC pause limits, judged relative to control: the canary fails only at twice the control's rate of long pauses")
	case dc.MaxPauseMS > 0 && maxC > dc.MaxPauseMS:
		r.Diagnosis = append(r.Diagnosis, fmt.Sprintf("one canary pause of %.4g ms over the %g ms limit: not a clear breach (needs two, one over %g ms, or more long pauses than control)", maxC, dc.MaxPauseMS, 2*dc.MaxPauseMS))
	}
	// When both arms break the limits the host is short of CPU: a pause is
	// wall-clock time, so how long one arm's pauses last depends on how the
	// scheduler treats its processes, not only on its build (a good canary
	// in CI, both arms on 2 busy cores, failed this comparison three
	// windows in a row and was rolled back). Then the canary fails the
	// comparison only when it pauses long at least twice as often as the
	// control.
	minEffect := dc.MinEffect
	if r.Breach == "system" {
		minEffect = math.Max(minEffect, r.Control)
	}
	switch {
	case p < level && r.Effect >= minEffect:
		r.Outcome, r.Rule = Fail, "sequential-test"
		r.Reason = fmt.Sprintf("canary %.3g vs control %.3g long GC pauses/min: exact p=%.2g < α=%g spent at look %d (%.2g), effect ≥ %.3g/min", r.Canary, r.Control, p, e.cfg.Alpha, l, level, minEffect)
	default:
		r.Outcome, r.Rule = Pass, "within-noise"
		r.Reason = fmt.Sprintf("canary %.3g vs control %.3g long GC pauses/min, max pause %.4g vs %.4g ms: within limits and noise (exact p=%.2g, level %.2g at look %d)", r.Canary, r.Control, maxC, maxK, p, level, l)
	}
	return r
}

func (e *evaluator) consistencyDim(dc DimensionConfig, r DimensionResult) DimensionResult {
	r.Unit = "violations"
	r.Test = "critical"
	vc, vk := e.in.Canary.ConsistencyViolations, e.in.Control.ConsistencyViolations
	r.Query = fmt.Sprintf("consistency_violations: canary %s, control %s", fmtV(vc), fmtV(vk))
	// A reported violation is evidence whenever it was collected: it blocks
	// even when the rest of the data is stale.
	if st, d := e.check([]field{{"consistency_violations", vc}}, nil, nil, nil, ""); st != "ok" && !(vc.OK() && vc.V > 0) {
		return inconclusive(r, st, d)
	}
	r.Canary = vc.V
	r.SamplesCanary = 1
	if vk.OK() {
		r.Control = vk.V
		r.SamplesControl = 1
	}
	r.Effect = vc.V - r.Control
	r.trend = trendOf(r.Effect)
	setConfidence(&r, 1, 1)
	if vc.V > 0 {
		r.Outcome, r.Rule = Fail, "critical-violation"
		r.Reason = fmt.Sprintf("canary has %g consistency violation(s): any violation blocks", vc.V)
		if vk.OK() && vk.V > 0 {
			r.Breach = "system"
			r.Diagnosis = append(r.Diagnosis, fmt.Sprintf("control also has %g violation(s): the system breaks under this fault too", vk.V))
		}
		return r
	}
	r.Outcome, r.Rule = Pass, "no-violation"
	r.Reason = "canary has no consistency violations"
	if vk.OK() && vk.V > 0 {
		r.Breach = "system"
		r.Reason += fmt.Sprintf("; control has %g (system breach, not held against the canary)", vk.V)
	} else if !vk.OK() {
		r.Reason += "; control consistency not reported"
	}
	return r
}

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
	share := func(a, b Arm) (float64, bool) {
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
