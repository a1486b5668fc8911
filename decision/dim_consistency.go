package decision

import (
	"fmt"
)

func (e *evaluator) consistencyDim(dc DimensionConfig, r DimensionResult) DimensionResult {
	r.Unit = "violations"
	r.Test = MethodCritical
	vc, vk := e.in.Canary.ConsistencyViolations, e.in.Control.ConsistencyViolations
	r.Query = fmt.Sprintf("consistency_violations: canary %s, control %s", fmtV(vc), fmtV(vk))
	// A reported violation is evidence whenever it was collected: it blocks
	// even when the rest of the data is stale.
	if st, d := e.check([]field{{"consistency_violations", vc}}, nil, nil, nil, ""); st != DataOK && !(vc.OK() && vc.V > 0) {
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
		r.Outcome, r.Rule = Fail, RuleCriticalViolation
		r.Reason = fmt.Sprintf("canary has %g consistency violation(s): any violation blocks", vc.V)
		if vk.OK() && vk.V > 0 {
			r.Breach = BreachSystem
			r.Diagnosis = append(r.Diagnosis, fmt.Sprintf("control also has %g violation(s): the system breaks under this fault too", vk.V))
		}
		return r
	}
	r.Outcome, r.Rule = Pass, RuleNoViolation
	r.Reason = "canary has no consistency violations"
	if vk.OK() && vk.V > 0 {
		r.Breach = BreachSystem
		r.Reason += fmt.Sprintf("; control has %g (system breach, not held against the canary)", vk.V)
	} else if !vk.OK() {
		r.Reason += "; control consistency not reported"
	}
	return r
}
