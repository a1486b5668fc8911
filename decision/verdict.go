package decision

import "time"

// HoldCause says why a verdict is HOLD, so the gate knows whether it may
// escalate: holds caused by data are never escalated to BLOCK.
type HoldCause int

// Hold causes.
const (
	CauseData  HoldCause = 1 + iota // missing, NaN, stale, query errors or low coverage
	CauseScore                      // the score is between the block and promote lines, or a dimension failed
	CauseRule                       // a pair rule forced the hold
	// CauseEvidence: nothing failed, but a count dimension leans worse —
	// the data favour "worse" over "the same" without proving it. More
	// data decides; at the end of the extensions the hold stands (it is
	// never escalated to a block: nothing was shown).
	CauseEvidence
)

// String names the cause.
func (c HoldCause) String() string {
	switch c {
	case CauseData:
		return "data"
	case CauseScore:
		return "score"
	case CauseRule:
		return "rule"
	case CauseEvidence:
		return "evidence"
	}
	return ""
}

// MarshalText encodes the cause by name.
func (c HoldCause) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// Confidence breaks a dimension's confidence into its factors; the
// confidence is their product.
type Confidence struct {
	Samples      float64 `json:"samples"`
	Completeness float64 `json:"completeness"`
	Freshness    float64 `json:"freshness"`
	History      float64 `json:"history"`
}

// DimensionResult is the full explanation of one dimension.
type DimensionResult struct {
	Name     Kind    `json:"name"`
	Outcome  Outcome `json:"outcome"`
	Critical bool    `json:"critical"`
	// Query is the resolved query: the inputs the dimension was computed from.
	Query          string  `json:"query"`
	Canary         float64 `json:"canary"`
	Control        float64 `json:"control"`
	Unit           string  `json:"unit"`
	SamplesCanary  float64 `json:"samples_canary"`
	SamplesControl float64 `json:"samples_control"`
	// Test names the statistical test: "sequential" (a test on counts
	// that keeps its level over every look: mixture SPRT for rates, exact
	// conditional test with the level spent over the looks for GC
	// pauses), "sigma" (adaptive z against history, and for latency the
	// order-statistic tests of the body) or "critical".
	Test        Method  `json:"test"`
	Sigma       float64 `json:"sigma"`
	SigmaSource string  `json:"sigma_source"`
	Z           float64 `json:"z"`
	K           float64 `json:"k"`
	PValue      float64 `json:"p_value"`
	Effect      float64 `json:"effect"`
	MinEffect   float64 `json:"min_effect"`
	HardLimit   float64 `json:"hard_limit,omitempty"`
	// Breach is "canary" when the canary alone clearly breached the hard
	// limit, "system" when both arms did (not held against the canary).
	Breach          Breacher   `json:"breach,omitempty"`
	Data            DataState  `json:"data"`
	Confidence      float64    `json:"confidence"`
	ConfidenceParts Confidence `json:"confidence_parts"`
	Weight          float64    `json:"weight"`
	Score           float64    `json:"score"`
	Contribution    float64    `json:"contribution"`
	Rule            RuleID     `json:"rule"`
	Reason          string     `json:"reason"`
	Diagnosis       []string   `json:"diagnosis,omitempty"`
	// Leaning marks a dimension that passed but leans worse: the canary is
	// worse by a practical margin and the data favour "worse", without
	// proof (see docs/decision.md). Leaning dimensions can hold a step.
	Leaning bool `json:"leaning,omitempty"`

	trend Trend
	// sigmaAssumed marks a σ̂ that rests on the prior more than on
	// measured A/A windows of this context (fewer than
	// baseline.min_windows): its z cannot be decisive.
	sigmaAssumed bool
}

// Trend is the direction the canary moved relative to the control (0 when
// unknown or unchanged).
func (d DimensionResult) Trend() Trend { return d.trend }

// FiredRule records a pair rule that fired.
type FiredRule struct {
	Name      string     `json:"name"`
	Action    RuleAction `json:"action"`
	Diagnosis string     `json:"diagnosis"`
}

// Verdict is the result of one judgement with its full explanation.
type Verdict struct {
	Decision   Decision  `json:"verdict"`
	Score      float64   `json:"score"`
	Coverage   float64   `json:"coverage"`
	ConfigHash string    `json:"config_hash"`
	At         time.Time `json:"at"`
	Reason     string    `json:"reason"`
	// HoldCause is set when Decision is Hold.
	HoldCause HoldCause `json:"hold_cause,omitempty"`
	// Decisive marks a BLOCK resting on failures whose evidence is at
	// least twice what their threshold demands (log-likelihood ratio z²/2
	// ≥ k², z ≥ √2·k): more data will not turn them, so the judge blocks
	// instead of holding for a longer window.
	Decisive bool `json:"decisive,omitempty"`
	// Context names the conditions of the judged window ("steady", the
	// faults and their intensity), when the input gave them: σ̂ came from
	// history windows of the same context.
	Context string `json:"context,omitempty"`
	// TrafficRatio is the canary's traffic share relative to its share in
	// the history; nil when requests are missing.
	TrafficRatio   *float64          `json:"traffic_ratio,omitempty"`
	SystemBreaches []Kind            `json:"system_breaches,omitempty"`
	Rules          []FiredRule       `json:"rules,omitempty"`
	Dimensions     []DimensionResult `json:"dimensions"`
}

// Dimension returns the result of kind, if it was evaluated.
func (v Verdict) Dimension(k Kind) (DimensionResult, bool) {
	for _, d := range v.Dimensions {
		if d.Name == k {
			return d, true
		}
	}
	return DimensionResult{}, false
}

// Escalate applies the hold policy to a verdict seen after extensions
// window extensions; prev is the step's previous verdict (nil for the
// step's first). It returns the decision to act on and whether it is final
// (false: extend the window and judge again). A decisive hold escalates at
// once: extending the window cannot change it; so does a score hold that
// repeats prev's failures (see Repeats) when EscalateRepeated is set.
func (p HoldPolicy) Escalate(v Verdict, extensions int, prev *Verdict) (Decision, bool) {
	if v.Decision != Hold {
		return v.Decision, true
	}
	if p.EscalateTo == Block && v.HoldCause == CauseScore && (v.Decisive || (p.EscalateRepeated && prev != nil && Repeats(*prev, v))) {
		return Block, true
	}
	if extensions < p.MaxExtensions {
		return Hold, false
	}
	if p.EscalateTo == Block && v.HoldCause != CauseData && v.HoldCause != CauseEvidence {
		return Block, true
	}
	return Hold, true
}

// Repeats reports whether v is a score hold whose every failed dimension
// also failed in prev, the verdict on the same step one window earlier,
// with stronger evidence now (a higher z). A failure that is not decisive
// on its own (z between k and √2·k) is extended because a one-off fades as
// the window grows; one whose evidence grows with the window is not a
// one-off. The same evidence again (one
// long pause still inside a growing window) is not growth; evidence
// beyond what a float can hold (p underflowed to 0, z at zMax) twice is.
// A failure in a system breach never counts as repeated.
func Repeats(prev, v Verdict) bool {
	if v.Decision != Hold || v.HoldCause != CauseScore || prev.Decision != Hold || prev.HoldCause != CauseScore {
		return false
	}
	n := 0
	for _, d := range v.Dimensions {
		if d.Outcome != Fail {
			continue
		}
		if d.Breach == "system" {
			// Both arms over the SLO: a fault or a busy host is stressing
			// both, and a repeat says the stress lasts, not that the
			// canary is worse (a good canary of a real game day on 2
			// busy cores paused long 3x as often as its control two
			// windows running).
			return false
		}
		p, ok := prev.Dimension(d.Name)
		if !ok || p.Outcome != Fail || !(d.Z > p.Z || d.Z >= zMax) {
			return false
		}
		n++
	}
	return n > 0
}

// DataState says how usable a dimension's data was.
type DataState string

// Data states of a dimension. Anything but DataOK, DataEmpty and DataFew
// lowers the verdict's coverage.
const (
	DataOK           DataState = "ok"            // judged on what both arms reported
	DataEmpty        DataState = "empty"         // an arm had no events to judge (no requests, no samples)
	DataFew          DataState = "few"           // too few samples for the statistic (p99 below its minimum)
	DataMissing      DataState = "missing"       // a field was not reported
	DataNaN          DataState = "nan"           // a field was NaN
	DataQueryError   DataState = "query_error"   // the source failed to answer
	DataStale        DataState = "stale"         // older than the freshness limit
	DataInvalid      DataState = "invalid"       // a dimension kind the judge does not know
	DataNotCollected DataState = "not_collected" // no source collects it: absent from both arms and all history
)

// Method is the statistical test a dimension was judged by.
type Method string

// Methods.
const (
	MethodSequential Method = "sequential" // counts, level kept over every look
	MethodSigma      Method = "sigma"      // adaptive z against the A/A history
	MethodCritical   Method = "critical"   // any violation fails
)

// Breacher says who breached a dimension's hard limit.
type Breacher string

// Breachers.
const (
	BreachCanary Breacher = "canary" // the canary alone, its control within the limit
	BreachSystem Breacher = "system" // both arms: not held against the canary
)

// RuleID names the rule that decided a dimension's outcome.
type RuleID string

// Rules deciding a dimension.
const (
	RuleNoData            RuleID = "no-data"            // inconclusive: the data could not be judged
	RuleNotCollected      RuleID = "not-collected"      // left out of the coverage
	RuleCriticalViolation RuleID = "critical-violation" // a critical dimension's violation
	RuleNoViolation       RuleID = "no-violation"
	RuleHardLimit         RuleID = "hard-limit"      // the canary alone clearly over the SLO
	RuleSequentialTest    RuleID = "sequential-test" // the count test rejected equality with the control
	RuleAdaptiveSigma     RuleID = "adaptive-sigma"  // beyond k·σ̂ of the A/A history and the effect floor
	RuleBodyShift         RuleID = "body-shift"      // the latency body moved beyond its noise
	RuleEffectFloor       RuleID = "effect-floor"    // significant but smaller than min_effect
	RuleWithinSigma       RuleID = "within-sigma"
	RuleWithinNoise       RuleID = "within-noise"
	RuleWithinDrift       RuleID = "within-drift" // within the lasting drift between healthy arms
)
