package decision

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// How sure the judge is of a σ̂ (baseline.sigma_uncertainty; off by
// default). A σ̂ read from the A/A history is itself an estimate: the
// median absolute difference of 13 windows is off by a fifth or more about
// half the time, and a fault
// context the history has seen twice (or never) borrows its σ̂ from other
// contexts, which may be quieter or rougher than it. Taken as exact, a σ̂
// that is too small turns its error into false alarms for the windows the
// history knows least.
//
// With the setting on, the judge measures that error and widens σ̂ by it:
//
//   - between contexts ("contexts" and "full"): how far apart the fault
//     contexts the history has seen are in log σ̂ (τ², their spread less
//     what their own sampling explains), weighed by how much the judged
//     context's σ̂ was borrowed from the others (the shrinkage's weight on
//     its parent). When the contexts all look alike, τ² is 0 and a rarely
//     seen context is not widened for being rare; when too few contexts
//     have windows to tell, nothing is widened.
//   - sampling ("full"): the variance of log σ̂ from n windows (about
//     1.36/n for the median absolute difference) of the σ-adaptive and
//     drift σ̂; the overdispersion of the sequential test keeps only the
//     between-context part. A history shorter than baseline.min_windows is
//     already shrunk toward the dimension's prior and floored; "full" still
//     counts the sampling error of its n windows whole, so on such a
//     history it widens more than the shrunk σ̂ needs.
//
// With V the variance of log σ̂ so measured, σ̂ is widened by the factor f
// that keeps a one-sided test at the nominal k at its level: P(Z > k/f) =
// E[P(Z > k·e^(−U))], U ~ N(0, V). A rich, tight history gives V ≈ 0 and
// f ≈ 1.
//
// It is off by default because on bench judge's corpora it trades
// detection for fewer false alarms rather than gaining both (figures in
// docs/decision.md); a team whose histories are short and whose false
// alarms cost more than a late catch can turn it on.

// nominalK is the k at which the widening keeps the level: the default k of
// every σ-adaptive dimension.
const nominalK = 3

// Variance of log σ̂ per window, divided by the number of windows.
const (
	// logMADVar: the median absolute difference (zeroSigma) of normal
	// differences, var(log σ̂) ≈ 1.36/n.
	logMADVar = 1.36
	// logRatioVar: the square root of a ratio of sums of squares (the
	// overdispersion φ as a scale), var(log √φ̂) ≈ 1/(2n).
	logRatioVar = 0.5
)

// minContextWindows is the fewest windows a fault context needs for its
// σ̂ to count in the between-context spread τ², and minContexts the fewest
// such contexts for τ² to be measured at all.
const (
	minContextWindows = 3
	minContexts       = 3
)

// contextBand groups windows for the between-context model: the same faults
// and an intensity band as wide as two intensity tolerances.
func contextBand(c *Context, tolerance float64) string {
	if c == nil {
		return ""
	}
	if c.Steady() {
		return "steady"
	}
	band := 0
	if tolerance > 0 {
		band = int(math.Floor(c.Intensity / (2 * tolerance)))
	}
	return strings.Join(c.Faults, "+") + "#" + strconv.Itoa(band)
}

// betweenContexts measures τ², the spread in log scale of the fault contexts
// the class pool has seen, less what their own sampling explains. scale
// gives a pool's scale estimate (σ̂, √φ̂); perWindow is the sampling
// variance of its log for one window. ok is false when fewer than
// minContexts contexts have minContextWindows windows.
func betweenContexts(pool []HistoryWindow, tolerance, perWindow float64, scale func([]HistoryWindow) (float64, int)) (tau2 float64, contexts int, ok bool) {
	groups := map[string][]HistoryWindow{}
	var order []string
	for _, h := range pool {
		k := contextBand(h.Context, tolerance)
		if k == "" {
			continue
		}
		if _, seen := groups[k]; !seen {
			order = append(order, k)
		}
		groups[k] = append(groups[k], h)
	}
	var logs []float64
	var sampling float64
	for _, k := range order {
		v, n := scale(groups[k])
		if n < minContextWindows || !(v > 0) || math.IsInf(v, 0) {
			continue
		}
		logs = append(logs, math.Log(v))
		sampling += perWindow / float64(n)
	}
	if len(logs) < minContexts {
		return 0, len(logs), false
	}
	m := meanOf(logs)
	var ss float64
	for _, l := range logs {
		ss += (l - m) * (l - m)
	}
	tau2 = ss/float64(len(logs)-1) - sampling/float64(len(logs))
	return math.Max(0, tau2), len(logs), true
}

// widening is the factor f by which a scale whose log is uncertain with
// variance v is widened to keep a one-sided test at k at its level (see the
// top of this file). 1 for v ≤ 0.
func widening(v, k float64) float64 {
	if !(v > 0) || math.IsInf(v, 0) {
		return 1
	}
	sd := math.Sqrt(v)
	// E[P(Z > k·e^(−U))] by Simpson's rule over ±6 sd of U.
	const steps = 240
	h := 12 * sd / steps
	var t float64
	for i := 0; i <= steps; i++ {
		u := -6*sd + float64(i)*h
		w := 2.0
		switch {
		case i == 0 || i == steps:
			w = 1
		case i%2 == 1:
			w = 4
		}
		dens := math.Exp(-u*u/(2*v)) / (sd * math.Sqrt(2*math.Pi))
		t += w * dens * normalUpper(k*math.Exp(-u))
	}
	t *= h / 3
	if !(t > 0) || t >= 0.5 {
		return 1
	}
	return math.Max(1, k/normalQuantile(1-t))
}

// scaleUncertainty is the variance of log of a scale estimated through the
// nested pools: own windows of the judged context, shrunk with s
// pseudo-windows toward a parent of parent windows that mixes fault
// contexts whose log scales spread with variance tau2 (counted when
// between). With sampling, the sampling error of both parts is added.
func scaleUncertainty(own, parent int, s, perWindow, tau2 float64, between, sampling bool) float64 {
	if own > 0 && own >= parent {
		// The context is its own parent (e.g. a steady window among
		// steady history): plain sampling.
		if sampling {
			return perWindow / float64(own)
		}
		return 0
	}
	w := 0.0
	if own > 0 {
		w = float64(own) / (float64(own) + s)
	}
	v := 0.0
	if sampling && own > 0 {
		v += w * w * perWindow / float64(own)
	}
	if sampling && parent > 0 {
		v += (1 - w) * (1 - w) * perWindow / float64(parent)
	}
	if between {
		v += (1 - w) * (1 - w) * tau2
	}
	return v
}

// widen applies the uncertainty of a scale estimate (see the top of this
// file) to v, a scale read through the nested pools, as
// baseline.sigma_uncertainty asks: own is the judged context's number of
// windows, parent the pool it was shrunk toward, class the pool the
// between-context spread is measured over, sampling whether this scale's
// sampling error counts under "full". It returns the widened scale and a
// note for the explanation ("" when not widened).
func (e *evaluator) widen(v float64, own, parent int, class []HistoryWindow, perWindow float64, sampling bool, scale func([]HistoryWindow) (float64, int)) (float64, string) {
	mode := e.cfg.Baseline.SigmaUncertainty
	if mode == "" || !(v > 0) || math.IsInf(v, 0) {
		return v, ""
	}
	sampling = sampling && mode == SigmaUncertaintyFull
	var tau2 float64
	var contexts int
	between := false
	if e.in.Context != nil && !e.in.Context.Steady() && own < parent {
		tau2, contexts, between = betweenContexts(class, e.cfg.Baseline.IntensityTolerance, perWindow, scale)
	}
	u := scaleUncertainty(own, parent, e.cfg.Baseline.Shrink, perWindow, tau2, between, sampling)
	f := widening(u, nominalK)
	if f <= 1.0005 {
		return v, ""
	}
	note := fmt.Sprintf(", widened ×%.3f for its uncertainty (sd of log σ̂ %.2f; %d windows of this context", f, math.Sqrt(u), own)
	if between {
		note += fmt.Sprintf("; the %d fault contexts seen differ by τ %.2f", contexts, math.Sqrt(tau2))
	}
	return v * f, note + ")"
}
