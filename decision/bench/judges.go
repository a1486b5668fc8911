package bench

import (
	"math"
	"sort"
	"time"

	"github.com/chaosgate/chaosgate/decision"
)

// Ruling is a judge's final word on one release.
type Ruling struct {
	Outcome decision.Decision
	Look    int // the interval at which the judge decided
}

// Judge is one judge of the bench.
type Judge interface {
	Name() string
	Run(rel *Release) Ruling
}

// mask says what is wrong with the canary's data at one look.
type mask struct {
	latency, errors, gc, all missingKind
	stale                    bool
}

type missingKind int

const (
	present missingKind = iota
	absent
	nan
)

func (rel *Release) mask(l int) mask {
	var m mask
	f := rel.fault
	if f == nil {
		return m
	}
	hit := false
	for _, x := range f.looks {
		if x == l {
			hit = true
		}
	}
	if !hit {
		return m
	}
	switch f.kind {
	case "gap":
		switch rel.ID % 3 {
		case 0:
			m.latency = absent
		case 1:
			m.errors = absent
		default:
			m.gc = absent
		}
	case "nan":
		m.latency = nan
	case "stale":
		m.stale = true
	case "empty":
		m.all = absent
	}
	return m
}

// ---- chaosgate ----------------------------------------------------------

// Chaosgate is the decision package's judge under a config.
type Chaosgate struct {
	Config *decision.Config
	hist   map[int][]decision.HistoryWindow
}

// NewChaosgate returns the chaosgate judge for the corpus.
func NewChaosgate(cfg *decision.Config, c *Corpus) *Chaosgate {
	j := &Chaosgate{Config: cfg, hist: map[int][]decision.HistoryWindow{}}
	for _, s := range c.services {
		var h []decision.HistoryWindow
		for _, w := range s.history {
			h = append(h, decision.HistoryWindow{At: w.at, Canary: s.toArm(w.canary, false), Control: s.toArm(w.control, false), Context: w.ctx})
		}
		j.hist[s.id] = h
	}
	return j
}

// Name implements Judge.
func (*Chaosgate) Name() string { return "chaosgate" }

// toArm is what the service's sources report of one arm's window: raw
// latency samples for the judged windows (unless the source gives
// quantiles only), quantiles for history, and nothing of the dimensions
// the service does not collect.
func (s *service) toArm(w armWindow, samples bool) decision.ArmInput {
	a := decision.ArmInput{
		Requests: decision.Num(w.requests), Errors: decision.Num(w.errors),
		GCPausesMS: decision.Series(w.gc), WindowS: decision.Num(Interval.Seconds()),
		Sessions: decision.Num(w.sessions), SessionInterruptions: decision.Num(w.interrupts),
		DependencyCalls: decision.Num(w.depCalls), DependencyFailures: decision.Num(w.depFails),
		ConsistencyViolations: decision.Num(w.violations), MemoryGrowthMBPerMin: decision.Num(w.memGrowth),
	}
	if samples && !s.quantilesOnly {
		a.LatencyMS = decision.Series(w.latency)
	} else if !math.IsNaN(w.p99) {
		a.LatencyP50, a.LatencyP99 = decision.Num(w.p50), decision.Num(w.p99)
		if w.latN > 0 {
			a.LatencySamples = decision.Num(w.latN)
		}
	}
	if s.omit["memory"] {
		a.MemoryGrowthMBPerMin = decision.Value{}
	}
	if s.omit["gc"] {
		a.GCPausesMS = decision.Samples{}
	}
	if s.omit["sessions"] {
		a.Sessions, a.SessionInterruptions = decision.Value{}, decision.Value{}
	}
	if s.omit["dependency"] {
		a.DependencyCalls, a.DependencyFailures = decision.Value{}, decision.Value{}
	}
	return a
}

// Input builds the judge input of release rel at look l (1-based).
func (j *Chaosgate) Input(rel *Release, l int) decision.Input {
	lk := rel.looks[l-1]
	at := rel.At.Add(time.Duration(l) * Interval)
	c := rel.svc.toArm(lk.canary, true)
	c.WindowS = decision.Num(float64(l) * Interval.Seconds())
	k := rel.svc.toArm(lk.control, true)
	k.WindowS = c.WindowS
	m := rel.mask(l)
	switch m.latency {
	case absent:
		c.LatencyMS = decision.Samples{}
	case nan:
		c.LatencyMS = decision.Samples{State: decision.NaN}
	}
	if m.errors == absent {
		c.Errors = decision.Value{}
	}
	if m.latency == absent && rel.svc.quantilesOnly {
		c.LatencyP50, c.LatencyP99 = decision.Value{}, decision.Value{}
	}
	if m.latency == nan && rel.svc.quantilesOnly {
		c.LatencyP99 = decision.Value{State: decision.NaN}
	}
	if m.gc == absent {
		c.GCPausesMS = decision.Samples{}
	}
	if m.all == absent {
		c = decision.ArmInput{}
	}
	if m.stale {
		c.CollectedAt = at.Add(-5 * time.Minute)
	}
	return decision.Input{At: at, Canary: c, Control: k, History: j.hist[rel.Service], Context: rel.Context}
}

// Failures implements failureExplainer: the dimensions that fail in the
// verdict on rel at look l.
func (j *Chaosgate) Failures(rel *Release, l int) []decision.DimensionResult {
	var out []decision.DimensionResult
	for _, d := range decision.Evaluate(j.Config, j.Input(rel, l)).Dimensions {
		if d.Outcome == decision.Fail {
			out = append(out, d)
		}
	}
	return out
}

// Run implements Judge: judge at every interval; block at once (a block, or
// a hold the hold policy escalates at once); promote at the end of the step
// window; extend a hold, then escalate per config.
func (j *Chaosgate) Run(rel *Release) Ruling {
	var prev *decision.Verdict
	for l := 1; l <= MaxLooks; l++ {
		v := decision.Evaluate(j.Config, j.Input(rel, l))
		if v.Decision == decision.Block {
			return Ruling{decision.Block, l}
		}
		if l < StepLooks {
			// The gate applies the hold policy to every verdict: a hold
			// it makes final as a block (a decisive one, or one repeating
			// the previous look's failures) blocks at once.
			if d, final := j.Config.Hold.Escalate(v, 0, prev); final && d == decision.Block {
				return Ruling{decision.Block, l}
			}
			prev = &v
			continue
		}
		if v.Decision == decision.Promote {
			if l >= rel.promoteFrom {
				return Ruling{decision.Promote, l}
			}
			prev = &v
			continue
		}
		if d, final := j.Config.Hold.Escalate(v, l-StepLooks, prev); final || l == MaxLooks {
			return Ruling{d, l}
		}
		prev = &v
	}
	return Ruling{decision.Hold, MaxLooks}
}

// ---- Flagger-style -----------------------------------------------------

// Flagger checks the canary's last interval against static thresholds; a
// failed check (or "no values found") increments a counter, and the canary
// is rolled back when the counter reaches the threshold; it is promoted
// after Iterations passing checks.
type Flagger struct {
	Threshold, Iterations int
	MaxErrorRate          float64 // request-success-rate ≥ 99%
	MaxP99                float64 // request-duration ≤ 500 ms
	MaxPause, MaxLong     float64
	MaxSession, MaxDep    float64
	MaxMem                float64
}

// NewFlagger returns Flagger's documented defaults plus chaosgate's default
// SLOs (docs/decision.md).
func NewFlagger() *Flagger {
	return &Flagger{Threshold: 2, Iterations: StepLooks, MaxErrorRate: 0.01, MaxP99: 500, MaxPause: 120, MaxLong: 3, MaxSession: 0.0002, MaxDep: 0.0005, MaxMem: 2}
}

// Name implements Judge.
func (*Flagger) Name() string { return "flagger-style" }

// lastInterval returns the canary's data for the interval ending at look l,
// as a metrics query over that interval sees it (stale: the interval before).
func lastInterval(rel *Release, l int) (armWindow, armWindow, mask) {
	m := rel.mask(l)
	lk := rel.looks[l-1]
	c, k := lk.lastCanary, lk.lastControl
	if m.stale && l > 1 {
		c = rel.looks[l-2].lastCanary
	}
	return c, k, m
}

// Run implements Judge.
func (f *Flagger) Run(rel *Release) Ruling {
	failed, passed := 0, 0
	for l := 1; l <= MaxLooks; l++ {
		c, _, m := lastInterval(rel, l)
		ok := m.all == present
		if ok {
			ok = m.errors == present && c.requests > 0 && c.errors/c.requests <= f.MaxErrorRate
			ok = ok && m.latency == present && len(c.latency) > 0 && c.p99 <= f.MaxP99
			long := 0.0
			maxP := 0.0
			for _, g := range c.gc {
				maxP = math.Max(maxP, g)
				if g > 10 {
					long++
				}
			}
			// A metric the service does not collect is not configured.
			omit := rel.svc.omit
			ok = ok && (omit["gc"] || m.gc == present && maxP <= f.MaxPause && long <= f.MaxLong)
			ok = ok && (omit["sessions"] || c.sessions > 0 && c.interrupts/c.sessions <= f.MaxSession)
			ok = ok && (omit["dependency"] || c.depCalls > 0 && c.depFails/c.depCalls <= f.MaxDep)
			ok = ok && c.violations == 0 && (omit["memory"] || c.memGrowth <= f.MaxMem)
		}
		if !ok {
			failed++
			if failed >= f.Threshold {
				return Ruling{decision.Block, l}
			}
			continue
		}
		passed++
		if passed >= f.Iterations && l >= rel.promoteFrom {
			return Ruling{decision.Promote, l}
		}
	}
	return Ruling{decision.Hold, MaxLooks}
}

// ---- Argo-style ---------------------------------------------------------

// Argo takes one measurement per interval and metric comparing canary with
// stable; a metric fails the analysis when its failures exceed its
// failureLimit, and the analysis errors (rollback) when consecutive
// measurement errors exceed consecutiveErrorLimit. It succeeds after Count
// measurements.
type Argo struct {
	Count, FailureLimit, ConsecutiveErrorLimit int
}

// NewArgo returns Argo Rollouts' defaults (consecutiveErrorLimit 4) with
// failureLimit 1.
func NewArgo() *Argo { return &Argo{Count: StepLooks, FailureLimit: 1, ConsecutiveErrorLimit: 4} }

// Name implements Judge.
func (*Argo) Name() string { return "argo-style" }

// Run implements Judge.
func (a *Argo) Run(rel *Release) Ruling {
	const metrics = 7
	var failures, consecErr [metrics]int
	measured := 0
	for l := 1; l <= MaxLooks; l++ {
		c, k, m := lastInterval(rel, l)
		type meas struct {
			err, fail bool
			limit     int
		}
		ms := [metrics]meas{}
		rate := func(x, n float64) float64 {
			if n <= 0 {
				return math.NaN()
			}
			return x / n
		}
		chk := func(i int, v float64, okCond bool, missing bool, limit int) {
			if missing || math.IsNaN(v) {
				ms[i] = meas{err: true, limit: limit}
				return
			}
			ms[i] = meas{fail: !okCond, limit: limit}
		}
		all := m.all != present
		ed := rate(c.errors, c.requests) - rate(k.errors, k.requests)
		chk(0, ed, ed <= 0.002, all || m.errors != present, a.FailureLimit)
		pr := c.p99 / k.p99
		chk(1, pr, pr <= 1.2, all || m.latency != present || len(c.latency) == 0, a.FailureLimit)
		long, maxP := 0.0, 0.0
		for _, g := range c.gc {
			maxP = math.Max(maxP, g)
			if g > 10 {
				long++
			}
		}
		// A metric the service does not collect is not in the template.
		omit := rel.svc.omit
		if !omit["gc"] {
			chk(2, long, long <= 3 && maxP <= 120, all || m.gc != present, a.FailureLimit)
		}
		if !omit["sessions"] {
			sd := rate(c.interrupts, c.sessions) - rate(k.interrupts, k.sessions)
			chk(3, sd, sd <= 0.0005, all, a.FailureLimit)
		}
		if !omit["dependency"] {
			dd := rate(c.depFails, c.depCalls) - rate(k.depFails, k.depCalls)
			chk(4, dd, dd <= 0.0005, all, a.FailureLimit)
		}
		chk(5, c.violations, c.violations == 0, all, 0)
		if !omit["memory"] {
			md := c.memGrowth - k.memGrowth
			chk(6, md, md <= 1, all, a.FailureLimit)
		}
		anyErr := false
		for i, x := range ms {
			if x.err {
				consecErr[i]++
				anyErr = true
				if consecErr[i] > a.ConsecutiveErrorLimit {
					return Ruling{decision.Block, l}
				}
				continue
			}
			consecErr[i] = 0
			if x.fail {
				failures[i]++
				if failures[i] > x.limit {
					return Ruling{decision.Block, l}
				}
			}
		}
		if !anyErr {
			measured++
		}
		if measured >= a.Count && l >= rel.promoteFrom {
			return Ruling{decision.Promote, l}
		}
	}
	return Ruling{decision.Hold, MaxLooks}
}

// ---- Kayenta-style ------------------------------------------------------

// Kayenta compares canary and control time series (10 s points) per metric
// with a Mann-Whitney U test plus an effect-size ratio, scores each group
// as the share of passing metrics, and weights the groups. A metric with no
// data is left out and a group with no data scores 100, as in Kayenta.
type Kayenta struct {
	Pass, Marginal float64
	Alpha          float64 // MWU level (98% confidence)
	Effect         float64 // allowed increase ratio
}

// NewKayenta returns Kayenta's usual thresholds: pass 95, marginal 75.
func NewKayenta() *Kayenta { return &Kayenta{Pass: 95, Marginal: 75, Alpha: 0.02, Effect: 1.1} }

// Name implements Judge.
func (*Kayenta) Name() string { return "kayenta-style" }

type series struct {
	group    string
	weight   float64
	critical bool
	c, k     []float64
}

func (kj *Kayenta) seriesAt(rel *Release, l int) []series {
	var cErr, kErr, cP99, kP99, cGC, kGC, cSess, kSess, cDep, kDep, cViol, kViol, cMem, kMem []float64
	for i := 1; i <= l; i++ {
		lk := rel.looks[i-1]
		c, k := lk.lastCanary, lk.lastControl
		m := rel.mask(i)
		if m.stale && i > 1 {
			c = rel.looks[i-2].lastCanary
		}
		if m.all == present {
			if m.errors == present {
				cErr = append(cErr, c.chunkErr...)
			}
			if m.latency == present {
				cP99 = append(cP99, c.chunkP99...)
			}
			if m.gc == present {
				cGC = append(cGC, c.chunkGCLong...)
			}
			cSess = append(cSess, c.chunkSess...)
			cDep = append(cDep, ratio(c.depFails, c.depCalls))
			cViol = append(cViol, c.violations)
			cMem = append(cMem, c.memGrowth)
		}
		kErr = append(kErr, k.chunkErr...)
		kP99 = append(kP99, k.chunkP99...)
		kGC = append(kGC, k.chunkGCLong...)
		kSess = append(kSess, k.chunkSess...)
		kDep = append(kDep, ratio(k.depFails, k.depCalls))
		kViol = append(kViol, k.violations)
		kMem = append(kMem, k.memGrowth)
	}
	all := []series{
		{"errors", 3, false, cErr, kErr}, {"latency", 3, false, cP99, kP99}, {"gc", 1, false, cGC, kGC},
		{"sessions", 2, false, cSess, kSess}, {"dependency", 1, false, cDep, kDep},
		{"consistency", 5, true, cViol, kViol}, {"memory", 1, false, cMem, kMem},
	}
	// A metric the service does not collect is not in the canary config.
	out := all[:0]
	for _, s := range all {
		if !rel.svc.omit[s.group] {
			out = append(out, s)
		}
	}
	return out
}

func ratio(x, n float64) float64 {
	if n <= 0 {
		return math.NaN()
	}
	return x / n
}

// score returns the canary score (0–100) and whether a critical metric failed.
func (kj *Kayenta) score(ss []series) (float64, bool) {
	var sumW, sum float64
	for _, s := range ss {
		c, k := clean(s.c), clean(s.k)
		groupScore := 100.0
		if len(c) > 0 && len(k) > 0 {
			high := false
			if s.group == "consistency" {
				high = sumOf(c) > 0 // any violation is high
			} else {
				p := mannWhitneyP(c, k)
				mc, mk := mean(c), mean(k)
				eff := 0.0
				switch {
				case mk > 0:
					eff = mc / mk
				case mc > 0:
					eff = math.Inf(1)
				}
				high = p < kj.Alpha && eff > kj.Effect
			}
			if high {
				groupScore = 0
				if s.critical {
					return 0, true
				}
			}
		}
		sumW += s.weight
		sum += s.weight * groupScore
	}
	return sum / sumW, false
}

// Run implements Judge.
func (kj *Kayenta) Run(rel *Release) Ruling {
	for l := 1; l <= MaxLooks; l++ {
		s, critical := kj.score(kj.seriesAt(rel, l))
		if critical || s < kj.Marginal {
			return Ruling{decision.Block, l}
		}
		if l >= StepLooks && l >= rel.promoteFrom && s >= kj.Pass {
			return Ruling{decision.Promote, l}
		}
	}
	return Ruling{decision.Hold, MaxLooks}
}

func clean(v []float64) []float64 {
	out := make([]float64, 0, len(v))
	for _, x := range v {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			out = append(out, x)
		}
	}
	return out
}

func sumOf(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s
}

func mean(v []float64) float64 { return sumOf(v) / float64(len(v)) }

// sampleSD is the sample standard deviation of v (at least two values).
func sampleSD(v []float64) float64 {
	m := mean(v)
	var ss float64
	for _, x := range v {
		ss += (x - m) * (x - m)
	}
	return math.Sqrt(ss / float64(len(v)-1))
}

// mannWhitneyP is the two-sided p-value of the Mann-Whitney U test (normal
// approximation with tie correction).
func mannWhitneyP(a, b []float64) float64 {
	type obs struct {
		v float64
		a bool
	}
	all := make([]obs, 0, len(a)+len(b))
	for _, x := range a {
		all = append(all, obs{x, true})
	}
	for _, x := range b {
		all = append(all, obs{x, false})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v < all[j].v })
	n := float64(len(all))
	ra, tie := 0.0, 0.0
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		rank := float64(i+j+1) / 2
		t := float64(j - i)
		tie += t*t*t - t
		for k := i; k < j; k++ {
			if all[k].a {
				ra += rank
			}
		}
		i = j
	}
	n1, n2 := float64(len(a)), float64(len(b))
	u := ra - n1*(n1+1)/2
	mu := n1 * n2 / 2
	sigma := math.Sqrt(n1 * n2 / 12 * ((n + 1) - tie/(n*(n-1))))
	if sigma == 0 || math.IsNaN(sigma) {
		return 1
	}
	z := (math.Abs(u-mu) - 0.5) / sigma
	if z < 0 {
		z = 0
	}
	return math.Erfc(z / math.Sqrt2)
}
