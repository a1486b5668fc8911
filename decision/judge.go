package decision

import (
	"fmt"
	"math"
	"sort"
	"strings"
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
	if in.Context != nil {
		v.Context = in.Context.String()
	}
	for _, dc := range cfg.Dimensions {
		if !dc.Enabled {
			continue
		}
		var r DimensionResult
		if !dc.Required && notCollected(dc.Kind, in) {
			r = DimensionResult{Name: dc.Kind, MinEffect: dc.MinEffect, HardLimit: dc.HardLimit, Outcome: Inconclusive,
				Data: DataNotCollected, Rule: RuleNotCollected,
				Reason: "no source collects this dimension (absent from both arms and from every history window): left out of the coverage; required: true would hold instead"}
		} else {
			r = e.dimension(dc)
		}
		r.Weight = dc.Weight
		r.Critical = dc.Critical
		r.K = finite(r.K)
		r.Z = finiteZ(r.Z)
		r.Sigma = finite(r.Sigma)
		r.Effect = finite(r.Effect)
		r.Canary = finite(r.Canary)
		r.Control = finite(r.Control)
		r.PValue = finite(r.PValue)
		if r.Breach == BreachSystem {
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

// ownFields returns the data a dimension alone is measured by, per arm:
// requests, window_s and the like are shared with other dimensions and do
// not make a dimension collected.
func ownFields(k Kind, a ArmInput) (vals []Value, series []Samples) {
	switch k {
	case ErrorRate:
		return []Value{a.Errors}, nil
	case LatencyP99:
		return []Value{a.LatencyP50, a.LatencyP99}, []Samples{a.LatencyMS}
	case GCPause:
		return nil, []Samples{a.GCPausesMS}
	case SessionInterruption:
		return []Value{a.Sessions, a.SessionInterruptions}, nil
	case DependencySLA:
		return []Value{a.DependencyCalls, a.DependencyFailures}, nil
	case Consistency:
		return []Value{a.ConsistencyViolations}, nil
	case MemoryGrowth:
		return []Value{a.MemoryGrowthMBPerMin}, nil
	case LogGuards:
		return []Value{a.LogGuardMatches}, nil
	}
	return nil, nil
}

// notCollected reports whether dimension k is absent — every one of its own
// fields missing, none NaN or failed — from both arms and from every
// history window. A source that does not measure memory is not a data
// problem; a field present in the history or in the other arm but absent
// now is, and so is a field a source queried and got no data for (missing
// with a reason in Err).
func notCollected(k Kind, in Input) bool {
	absent := func(a ArmInput) bool {
		vals, series := ownFields(k, a)
		for _, v := range vals {
			if v.State != Missing || v.Err != "" {
				return false
			}
		}
		for _, s := range series {
			if s.State != Missing || s.Err != "" {
				return false
			}
		}
		return len(vals)+len(series) > 0
	}
	if !absent(in.Canary) || !absent(in.Control) {
		return false
	}
	for _, h := range in.History {
		if !absent(h.Canary) || !absent(h.Control) {
			return false
		}
	}
	return true
}

// DecisiveFactor is how far past its threshold a failure's evidence must be to be
// decisive (z ≥ DecisiveFactor·k): a log-likelihood ratio z²/2 of at least twice k²/2, z ≥ √2·k.
// More data will not turn such a failure, so it blocks at once; a failure
// between k and √2·k is weighed by the score, and a HOLD extends the window.
// A z measured against a σ̂ that is still mostly the prior (fewer than
// baseline.min_windows A/A windows of this context) is never decisive: the
// A/A windows still to come can show healthy arms differ that much, so it
// too is weighed by the score.
const DecisiveFactor = math.Sqrt2

// decide computes S, C, fires the pair rules and sets the decision.
func decide(cfg *Config, v *Verdict, traffic float64) {
	var sumW, sumWC, sumWCS float64
	var incomplete, failed, critical, slo, decisive []string
	// measured counts the failures whose evidence does not rest on a σ̂
	// that is still mostly the prior.
	measured := 0
	for i := range v.Dimensions {
		d := &v.Dimensions[i]
		if d.Data == DataNotCollected {
			continue // outside the coverage: no source measures it
		}
		switch d.Outcome {
		case Pass:
			d.Score = 1
		default:
			d.Score = 0
		}
		sumW += d.Weight
		sumWC += d.Weight * d.Confidence
		sumWCS += d.Weight * d.Confidence * d.Score
		if d.Data != DataOK && d.Data != DataEmpty && d.Data != DataFew {
			incomplete = append(incomplete, fmt.Sprintf("%s (%s)", d.Name, d.Data))
		}
		if d.Outcome != Fail {
			continue
		}
		failed = append(failed, string(d.Name))
		if !d.sigmaAssumed {
			measured++
		}
		switch {
		case d.Critical && d.Confidence >= cfg.Score.CriticalMinConfidence:
			critical = append(critical, string(d.Name))
		case d.Breach == BreachCanary:
			slo = append(slo, string(d.Name))
		case d.K > 0 && d.Z >= DecisiveFactor*d.K && d.Confidence > 0 && !d.sigmaAssumed:
			decisive = append(decisive, fmt.Sprintf("%s (z %.2f ≥ %.2f)", d.Name, d.Z, DecisiveFactor*d.K))
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
	case len(slo) > 0:
		// Every dimension must meet its SLO: a clear breach by the canary
		// while its control is within the limit freezes the release,
		// whatever the dimension's weight.
		v.Decision, v.Reason = Block, "SLO breached by the canary alone (its control within the limit): "+strings.Join(slo, ", ")
	case ruleAction == ForceBlock:
		v.Decision, v.Reason = Block, "rule forced block: "+firedNames(ForceBlock)
	case sumWC == 0:
		v.Decision, v.HoldCause, v.Reason = Hold, CauseData, "no usable data in any dimension"
	case len(decisive) > 0:
		v.Decision, v.Decisive = Block, true
		v.Reason = "decisive failure, more data will not turn it: " + strings.Join(decisive, ", ")
	case v.Score < cfg.Score.Block && measured > 0:
		v.Decision, v.Reason = Block, fmt.Sprintf("score %.3f below the block line %.3f (failed: %s)", v.Score, cfg.Score.Block, strings.Join(failed, ", "))
	case v.Score < cfg.Score.Block:
		// Every failure is measured against a σ̂ that is still mostly the
		// prior: the A/A windows to come can show healthy arms differ that
		// much. Hold and extend; a failure that repeats with growing
		// evidence, or outlasts the extensions, escalates to block.
		v.Decision, v.HoldCause = Hold, CauseScore
		v.Reason = fmt.Sprintf("score %.3f below the block line %.3f, but every failure (%s) rests on a σ̂ from fewer than %d A/A windows of this context: hold for more data",
			v.Score, cfg.Score.Block, strings.Join(failed, ", "), cfg.Baseline.MinWindows)
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
	if nc := notCollectedNames(v.Dimensions); nc != "" {
		v.Reason += "; not collected (left out of the coverage): " + nc
	}
	if len(v.SystemBreaches) > 0 {
		v.Reason += fmt.Sprintf("; system breach (both arms over the SLO, not held against the canary): %s", kindsString(v.SystemBreaches))
	}
}

// notCollectedNames lists the dimensions no source collects.
func notCollectedNames(dims []DimensionResult) string {
	var out []string
	for _, d := range dims {
		if d.Data == DataNotCollected {
			out = append(out, string(d.Name))
		}
	}
	return strings.Join(out, ", ")
}

// leaning names the dimensions that passed but lean worse.
func leaning(dims []DimensionResult) []string {
	var out []string
	for _, d := range dims {
		if d.Leaning {
			out = append(out, string(d.Name))
		}
	}
	return out
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
func (e *evaluator) stale(a ArmInput) bool {
	if a.CollectedAt.IsZero() || e.cfg.Freshness <= 0 {
		return false
	}
	return e.in.At.Sub(a.CollectedAt) > e.cfg.Freshness
}

// field is one named value of an arm, for check.
type field struct {
	name string
	v    Value
}

// check returns DataOK or the worst problem among the values of both arms,
// naming the arm and field.
func (e *evaluator) check(canary, control []field, cs, ks *Samples, sname string) (state DataState, detail string) {
	worst := func(arm string, fs []field, s *Samples) (DataState, string) {
		rank := map[State]int{QueryError: 4, NaN: 3, Missing: 2}
		var best DataState
		bd := ""
		r0 := 0
		consider := func(name string, st State, err string) {
			if st == Present {
				return
			}
			if rank[st] > r0 {
				r0 = rank[st]
				best = DataState(st.String())
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
		return DataStale, fmt.Sprintf("canary data collected %s before the judgement (limit %s)", e.in.At.Sub(e.in.Canary.CollectedAt), e.cfg.Freshness)
	}
	if e.stale(e.in.Control) {
		return DataStale, fmt.Sprintf("control data collected %s before the judgement (limit %s)", e.in.At.Sub(e.in.Control.CollectedAt), e.cfg.Freshness)
	}
	return DataOK, ""
}

// inconclusive fills r for a dimension that could not be judged.
func inconclusive(r DimensionResult, data DataState, reason string) DimensionResult {
	r.Outcome = Inconclusive
	r.Data = data
	r.Confidence = 0
	r.Rule = RuleNoData
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
	case LogGuards:
		return e.countDim(dc, r, "log_guard_matches", "requests", logGuardRate)
	case LatencyP99:
		return e.latencyDim(dc, r)
	case GCPause:
		return e.gcDim(dc, r)
	case MemoryGrowth:
		return e.memoryDim(dc, r)
	case Consistency:
		return e.consistencyDim(dc, r)
	}
	return inconclusive(r, DataInvalid, "unknown dimension kind")
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
	r.Data = DataOK
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

// calibratedK returns the threshold for z at look l (a judged window that
// spans l history intervals is look l): the config's k, raised to
// Φ⁻¹(1 − α/(l(l+1))) — the level spent at this look, which sums to α over
// any number of looks — and, with enough history whose tail is heavier
// than the normal's, to the upper quantile of the A/A history's own z (both
// signs) at that level. Heavy-tailed differences, which the robust σ̂
// ignores on purpose, so raise the threshold instead of causing false
// alarms.
func (e *evaluator) calibratedK(k, sign, sigma float64, diffs []float64, look int) (float64, string) {
	level := spentLevel(e.cfg.Alpha, look)
	note := ""
	if kl := normalQuantile(1 - level); kl > k {
		k, note = kl, fmt.Sprintf("; k %.2f at look %d (α spent over the looks)", kl, look)
	}
	if len(diffs) < minCalibration || sigma <= 0 {
		return k, note
	}
	// Only a history measurably heavier-tailed than the normal raises k:
	// more of its differences beyond 2σ̂ than the normal's 4.55% allows
	// (one-sided binomial test at 5%). A tail read from a few dozen
	// normal differences is noisy, and raising k on that noise alone
	// would blind the dimension.
	beyond := 0
	for _, d := range diffs {
		if math.Abs(d/sigma) > 2 {
			beyond++
		}
	}
	if binomUpper(float64(beyond), float64(len(diffs)), 2*normalUpper(2)) >= 0.05 {
		return k, note
	}
	// An A/A difference has no direction: both signs of every z are
	// equally likely, which doubles what the tail is read from.
	z := make([]float64, 0, 2*len(diffs))
	for _, d := range diffs {
		z = append(z, sign*d/sigma, -sign*d/sigma)
	}
	q := quantile(z, 1-level)
	if n := float64(len(z)); level*n < 1 && len(z) >= 4 {
		// Beyond the largest value: an exponential tail fitted over the
		// top tenth of the values (at least three) — peaks over a
		// threshold, whose scale is the mean excess — steadier than the
		// gap between the two largest values.
		sorted := append([]float64(nil), z...)
		sort.Float64s(sorted)
		m := max(3, len(sorted)/10)
		u := sorted[len(sorted)-1-m]
		var excess float64
		for _, x := range sorted[len(sorted)-m:] {
			excess += x - u
		}
		q = u + excess/float64(m)*math.Log(float64(m)/(level*n))
	}
	if q > k {
		return q, fmt.Sprintf("; k raised from %.2f to the A/A history's %.3g%% z quantile %.2f (look %d, the history heavier-tailed than the normal)", k, 100*(1-level), q, look)
	}
	return k, note
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

func fmtV(v Value) string {
	if v.State == Present {
		return fmt.Sprintf("%g", v.V)
	}
	return v.State.String()
}
