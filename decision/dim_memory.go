package decision

import (
	"fmt"
	"math"
)

// sigmaOutcome applies z > k and the effect floor.
func sigmaOutcome(r DimensionResult, dc DimensionConfig, what, floor string) DimensionResult {
	switch {
	case r.Z > r.K && r.Effect >= dc.MinEffect:
		r.Outcome, r.Rule = Fail, RuleAdaptiveSigma
		r.Reason = fmt.Sprintf("%s: z=%.2f > k=%.2f and effect above floor %s", what, r.Z, r.K, floor)
	case r.Z > r.K:
		r.Outcome, r.Rule = Pass, RuleEffectFloor
		r.Reason = fmt.Sprintf("%s: z=%.2f > k=%.2f but effect below floor %s", what, r.Z, r.K, floor)
	default:
		r.Outcome, r.Rule = Pass, RuleWithinSigma
		r.Reason = fmt.Sprintf("%s: z=%.2f ≤ k=%.2f", what, r.Z, r.K)
	}
	return r
}

func (e *evaluator) memoryDim(dc DimensionConfig, r DimensionResult) DimensionResult {
	r.Unit = "MB/min"
	r.Test = MethodSigma
	mc, mk := e.in.Canary.MemoryGrowthMBPerMin, e.in.Control.MemoryGrowthMBPerMin
	r.Query = fmt.Sprintf("memory_growth_mb_per_min: canary %s, control %s", fmtV(mc), fmtV(mk))
	if st, d := e.check([]field{{"memory_growth_mb_per_min", mc}}, []field{{"memory_growth_mb_per_min", mk}}, nil, nil, ""); st != DataOK {
		return inconclusive(r, st, d)
	}
	r.Canary, r.Control = mc.V, mk.V
	r.SamplesCanary, r.SamplesControl = 1, 1
	sign := dc.Direction.sign()
	// While the history is thin σ̂ leans on the prior: at least the
	// configured one, and sigma_prior_share of the control's growth.
	prior := math.Max(dc.SigmaPrior, dc.SigmaPriorShare*math.Abs(mk.V))
	sp := e.spreadOf(prior, dc.SigmaFloor, func(h HistoryWindow) (float64, bool) {
		a, b := h.Canary.MemoryGrowthMBPerMin, h.Control.MemoryGrowthMBPerMin
		if !a.OK() || !b.OK() {
			return 0, false
		}
		return a.V - b.V, true
	})
	l := e.intervals()
	// A window spanning l intervals is judged with the history's σ̂ as it
	// is: how far two healthy arms' growth differ lasts (a node on a busier
	// host stays there), and a longer window does not average it away.
	k, note := e.calibratedK(dc.K, sign, sp.sigma, sp.diffs, l)
	sigma := sp.sigma
	r.Sigma, r.SigmaSource, r.K = sigma, sp.source+note, k
	r.sigmaAssumed = sp.thin
	r.Effect = sign * (mc.V - mk.V)
	r.Z = r.Effect / sigma
	r.trend = trendOf(r.Effect)
	setConfidence(&r, 1, sp.histConf)
	return sigmaOutcome(r, dc, fmt.Sprintf("memory growth canary %.3g vs control %.3g MB/min", mc.V, mk.V), fmt.Sprintf("%g MB/min", dc.MinEffect))
}
