package decision_test

import (
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var at = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// healthyArm returns a complete arm for n requests at error rate p and p99.
func healthyArm(n, p, p99 float64) decision.ArmInput {
	return decision.ArmInput{
		Requests:              decision.Num(n),
		Errors:                decision.Num(math.Round(n * p)),
		LatencyP50:            decision.Num(p99 / 8),
		LatencyP99:            decision.Num(p99),
		GCPausesMS:            decision.Series([]float64{0.4, 0.6, 1.1}),
		WindowS:               decision.Num(60),
		Sessions:              decision.Num(math.Round(n / 10)),
		SessionInterruptions:  decision.Num(0),
		DependencyCalls:       decision.Num(n),
		DependencyFailures:    decision.Num(0),
		ConsistencyViolations: decision.Num(0),
		MemoryGrowthMBPerMin:  decision.Num(0.1),
	}
}

// history returns n hourly A/A windows before at with small noise.
func history(r *rand.Rand, n int) []decision.HistoryWindow {
	var h []decision.HistoryWindow
	for i := 1; i <= n; i++ {
		c := healthyArm(5000, 0.001, 100*math.Exp(0.05*r.NormFloat64()))
		k := healthyArm(50000, 0.001, 100*math.Exp(0.05*r.NormFloat64()))
		c.MemoryGrowthMBPerMin = decision.Num(0.2 * r.NormFloat64())
		h = append(h, decision.HistoryWindow{At: at.Add(-time.Duration(i) * time.Hour), Canary: c, Control: k})
	}
	return h
}

// randomInput draws an arbitrary, sometimes incomplete, sometimes bad input.
func randomInput(r *rand.Rand) decision.Input {
	arm := func() decision.ArmInput {
		n := math.Floor(r.Float64() * 20000)
		a := healthyArm(n, r.Float64()*0.02, 20+r.Float64()*400)
		if r.IntN(4) == 0 {
			a.GCPausesMS = decision.Series([]float64{r.Float64() * 200, r.Float64() * 30})
		}
		if r.IntN(6) == 0 {
			a.ConsistencyViolations = decision.Num(float64(r.IntN(3)))
		}
		a.MemoryGrowthMBPerMin = decision.Num(r.NormFloat64() * 2)
		a.SessionInterruptions = decision.Num(math.Floor(r.Float64() * a.Sessions.V * 0.01))
		a.DependencyFailures = decision.Num(math.Floor(r.Float64() * n * 0.005))
		return a
	}
	in := decision.Input{At: at, Canary: arm(), Control: arm()}
	if r.IntN(2) == 0 {
		in.History = history(r, r.IntN(60))
	}
	if r.IntN(5) == 0 {
		dropRandomField(r, &in)
	}
	return in
}

// fields lists setters that make one field of an arm missing, NaN, a query
// error, or stale.
func dropRandomField(r *rand.Rand, in *decision.Input) {
	a := &in.Canary
	if r.IntN(2) == 0 {
		a = &in.Control
	}
	bad := []decision.Value{{}, {State: decision.NaN}, {State: decision.QueryError, Err: "timeout"}}[r.IntN(3)]
	switch r.IntN(9) {
	case 0:
		a.Requests = bad
	case 1:
		a.Errors = bad
	case 2:
		a.LatencyP99 = bad
	case 3:
		a.GCPausesMS = decision.Samples{State: bad.State, Err: bad.Err}
	case 4:
		a.Sessions = bad
	case 5:
		a.DependencyFailures = bad
	case 6:
		a.MemoryGrowthMBPerMin = bad
	case 7:
		a.WindowS = bad
	case 8:
		a.CollectedAt = in.At.Add(-time.Hour) // stale
	}
}

func TestDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cfg := decision.Default()
	for i := 0; i < 500; i++ {
		in := randomInput(r)
		a := decision.Evaluate(cfg, in)
		b := decision.Judge{}.Judge(cfg, in)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("case %d: two judgements of the same input differ:\n%+v\n%+v", i, a, b)
		}
		if a.ConfigHash != cfg.Hash || a.Decision < decision.Promote || a.Decision > decision.Block {
			t.Fatalf("case %d: bad verdict %+v", i, a)
		}
	}
}

func TestFailingCriticalNeverImproves(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	cfg := decision.Default()
	for i := 0; i < 500; i++ {
		in := randomInput(r)
		before := decision.Evaluate(cfg, in)
		in.Canary.ConsistencyViolations = decision.Num(float64(1 + r.IntN(5)))
		after := decision.Evaluate(cfg, in)
		if after.Decision < before.Decision {
			t.Fatalf("case %d: adding a consistency violation improved %s to %s", i, before.Decision, after.Decision)
		}
		if after.Decision != decision.Block {
			t.Fatalf("case %d: a consistency violation gave %s, want block: %s", i, after.Decision, after.Reason)
		}
	}
}

func TestMissingDataNeverPromotes(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	cfg := decision.Default()
	for i := 0; i < 2000; i++ {
		in := randomInput(r)
		dropRandomField(r, &in)
		v := decision.Evaluate(cfg, in)
		if v.Decision == decision.Promote && !strings.Contains(v.Reason, "not collected") {
			// The same field dropped from both arms of an input without
			// history is a dimension no source collects, not missing data.
			t.Fatalf("case %d: promoted with missing data: %s", i, v.Reason)
		}
	}
	// The empty input: everything missing.
	v := decision.Evaluate(cfg, decision.Input{At: at})
	if v.Decision != decision.Hold || v.HoldCause != decision.CauseData {
		t.Fatalf("empty input: %s (%s), want hold for data", v.Decision, v.Reason)
	}
}

func TestImprovementNeverBlocks(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	cfg := decision.Default()
	for i := 0; i < 1000; i++ {
		in := randomInput(r)
		// The canary is the control made better in every dimension.
		k := in.Control
		c := k
		f := r.Float64() // fraction of the control's bad events the canary keeps
		n := math.Floor(k.Requests.V * (0.05 + r.Float64()))
		scale := func(x decision.Value, ratio float64) decision.Value {
			if !x.OK() {
				return x
			}
			return decision.Num(math.Floor(x.V * ratio))
		}
		ratio := 1.0
		if k.Requests.OK() && k.Requests.V > 0 {
			ratio = n / k.Requests.V
		}
		c.Requests = decision.Num(n)
		c.Errors = scale(k.Errors, ratio*f)
		c.Sessions = scale(k.Sessions, ratio)
		c.SessionInterruptions = scale(k.SessionInterruptions, ratio*f)
		c.DependencyCalls = scale(k.DependencyCalls, ratio)
		c.DependencyFailures = scale(k.DependencyFailures, ratio*f)
		c.ConsistencyViolations = decision.Num(0)
		if k.LatencyP99.OK() {
			c.LatencyP99 = decision.Num(k.LatencyP99.V * (0.5 + 0.5*f))
		}
		if k.GCPausesMS.OK() {
			p := make([]float64, len(k.GCPausesMS.V))
			for j, x := range k.GCPausesMS.V {
				p[j] = x * f
			}
			c.GCPausesMS = decision.Series(p)
		}
		if k.MemoryGrowthMBPerMin.OK() {
			c.MemoryGrowthMBPerMin = decision.Num(k.MemoryGrowthMBPerMin.V - math.Abs(r.NormFloat64()))
		}
		in.Canary = c
		v := decision.Evaluate(cfg, in)
		if v.Decision == decision.Block {
			t.Fatalf("case %d: a canary better than its control was blocked: %s", i, v.Reason)
		}
	}
}

func TestRaisingAWeightKeepsAnAgreedVerdict(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for i := 0; i < 300; i++ {
		h := history(r, 48)
		good := decision.Input{At: at, Canary: healthyArm(5000, 0.001, 100), Control: healthyArm(50000, 0.001, 100), History: h}
		bad := decision.Input{At: at, Canary: healthyArm(5000, 0.05, 400), Control: healthyArm(50000, 0.001, 100), History: h}
		bad.Canary.GCPausesMS = decision.Series([]float64{300, 50, 40, 30, 20, 15, 12, 11})
		bad.Canary.SessionInterruptions = decision.Num(100)
		bad.Canary.DependencyFailures = decision.Num(200)
		bad.Canary.ConsistencyViolations = decision.Num(2)
		bad.Canary.MemoryGrowthMBPerMin = decision.Num(20)
		for _, in := range []*decision.Input{&good, &bad} {
			in.Control.LogGuardMatches = decision.Num(0)
			in.Canary.LogGuardMatches = decision.Num(0)
		}
		bad.Canary.LogGuardMatches = decision.Num(100)
		for _, in := range []decision.Input{good, bad} {
			base := decision.Default()
			v0 := decision.Evaluate(base, in)
			agreed := true
			for _, d := range v0.Dimensions {
				if d.Outcome != v0.Dimensions[0].Outcome {
					agreed = false
				}
			}
			if !agreed {
				t.Fatalf("case %d: test input does not agree: %+v", i, v0.Dimensions)
			}
			cfg := decision.Default()
			j := r.IntN(len(cfg.Dimensions))
			cfg.Dimensions[j].Weight *= 1 + 10*r.Float64()
			cfg.Hash = cfg.ComputeHash()
			v1 := decision.Evaluate(cfg, in)
			if v1.Decision != v0.Decision {
				t.Fatalf("case %d: raising %s's weight changed %s to %s", i, cfg.Dimensions[j].Kind, v0.Decision, v1.Decision)
			}
		}
	}
}

// TestSequentialTestKeepsFalseAlarmRate checks the always-valid property:
// A/A error counts checked at every one of 20 intervals reject no more often
// than alpha overall.
func TestSequentialTestKeepsFalseAlarmRate(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	cfg := decision.Default()
	cfg.Dimensions = cfg.Dimensions[:1] // error rate only
	cfg.Dimensions[0].HardLimit = 0
	cfg.Hash = cfg.ComputeHash()
	const runs, looks = 1000, 20
	alarms := 0
	for run := 0; run < runs; run++ {
		var nc, xc, nk, xk float64
		for look := 0; look < looks; look++ {
			c, k := 300.0, 3000.0
			nc += c
			nk += k
			xc += binomial(r, c, 0.01)
			xk += binomial(r, k, 0.01)
			in := decision.Input{At: at,
				Canary:  decision.ArmInput{Requests: decision.Num(nc), Errors: decision.Num(xc)},
				Control: decision.ArmInput{Requests: decision.Num(nk), Errors: decision.Num(xk)}}
			if d, _ := decision.Evaluate(cfg, in).Dimension(decision.ErrorRate); d.Outcome == decision.Fail {
				alarms++
				break
			}
		}
	}
	if rate := float64(alarms) / runs; rate > 2*cfg.Alpha {
		t.Fatalf("false-alarm rate over %d looks = %.3f, want ≤ %.3f", looks, rate, 2*cfg.Alpha)
	}
}

func TestSequentialTestDetects(t *testing.T) {
	cfg := decision.Default()
	in := decision.Input{At: at,
		Canary:  decision.ArmInput{Requests: decision.Num(6000), Errors: decision.Num(6 + 30)},
		Control: decision.ArmInput{Requests: decision.Num(60000), Errors: decision.Num(60)}}
	d, _ := decision.Evaluate(cfg, in).Dimension(decision.ErrorRate)
	if d.Outcome != decision.Fail {
		t.Fatalf("+0.5pp over 6000 requests not detected: %s", d.Reason)
	}
}

func binomial(r *rand.Rand, n, p float64) float64 {
	if n*p > 30 {
		return math.Max(0, math.Round(n*p+math.Sqrt(n*p*(1-p))*r.NormFloat64()))
	}
	// Poisson approximation by inversion.
	l := math.Exp(-n * p)
	k, prod := 0.0, r.Float64()
	for prod > l {
		k++
		prod *= r.Float64()
	}
	return k
}

func TestHardLimitNeedsClearBreach(t *testing.T) {
	cfg := decision.Default()
	// Two errors in 900 requests (0.22% > 0.15%) is not a clear breach.
	in := decision.Input{At: at, Canary: healthyArm(900, 0, 100), Control: healthyArm(9000, 0.001, 100)}
	in.Canary.Errors = decision.Num(2)
	d, _ := decision.Evaluate(cfg, in).Dimension(decision.ErrorRate)
	if d.Outcome == decision.Fail {
		t.Fatalf("2/900 failed the error SLO: %s", d.Reason)
	}
	// Both arms over the SLO: a system breach, not held against the canary.
	in = decision.Input{At: at, Canary: healthyArm(10000, 0.01, 100), Control: healthyArm(100000, 0.01, 100)}
	v := decision.Evaluate(cfg, in)
	d, _ = v.Dimension(decision.ErrorRate)
	if d.Outcome != decision.Pass || d.Breach != "system" || len(v.SystemBreaches) != 1 {
		t.Fatalf("system breach: outcome %s breach %q: %s", d.Outcome, d.Breach, d.Reason)
	}
	// The canary alone clearly over the SLO fails.
	in.Control = healthyArm(100000, 0.0005, 100)
	d, _ = decision.Evaluate(cfg, in).Dimension(decision.ErrorRate)
	if d.Outcome != decision.Fail || d.Rule != "hard-limit" {
		t.Fatalf("canary breach: %s %s: %s", d.Outcome, d.Rule, d.Reason)
	}
}

func TestDataProblemsAreKeptApart(t *testing.T) {
	cfg := decision.Default()
	base := decision.Input{At: at, Canary: healthyArm(5000, 0.001, 100), Control: healthyArm(50000, 0.001, 100)}
	cases := map[string]func(*decision.Input){
		"missing": func(in *decision.Input) { in.Canary.Errors = decision.Value{} },
		"nan":     func(in *decision.Input) { in.Canary.Errors = decision.Num(math.NaN()) },
		"query_error": func(in *decision.Input) {
			in.Canary.Errors = decision.Value{State: decision.QueryError, Err: "timeout"}
		},
		"stale": func(in *decision.Input) { in.Canary.CollectedAt = at.Add(-10 * time.Minute) },
	}
	for want, mut := range cases {
		in := base
		mut(&in)
		v := decision.Evaluate(cfg, in)
		d, _ := v.Dimension(decision.ErrorRate)
		if d.Data != decision.DataState(want) || d.Outcome != decision.Inconclusive || d.Confidence != 0 {
			t.Errorf("%s: data %q outcome %s confidence %g", want, d.Data, d.Outcome, d.Confidence)
		}
		if v.Decision != decision.Hold || v.HoldCause != decision.CauseData {
			t.Errorf("%s: verdict %s cause %s, want hold for data", want, v.Decision, v.HoldCause)
		}
	}
}

func TestPairRules(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	cfg := decision.Default()
	// p99 up 60% while the canary's errors fall: the latency failure stands.
	in := decision.Input{At: at, Canary: healthyArm(5000, 0.0002, 160), Control: healthyArm(50000, 0.001, 100), History: history(r, 48)}
	v := decision.Evaluate(cfg, in)
	if len(v.Rules) != 1 || v.Rules[0].Name != "retries-suspected" {
		t.Fatalf("rules fired: %+v", v.Rules)
	}
	if d, _ := v.Dimension(decision.LatencyP99); d.Outcome != decision.Fail || len(d.Diagnosis) == 0 {
		t.Fatalf("latency: %s %v", d.Outcome, d.Diagnosis)
	}
	if v.Decision != decision.Block {
		t.Fatalf("verdict %s, want block: %s", v.Decision, v.Reason)
	}
	// Canary traffic collapses: hold.
	in = decision.Input{At: at, Canary: healthyArm(500, 0.001, 100), Control: healthyArm(50000, 0.001, 100), History: history(r, 48)}
	v = decision.Evaluate(cfg, in)
	if v.Decision != decision.Hold || v.HoldCause != decision.CauseRule {
		t.Fatalf("traffic collapse: %s (%s) ratio %v", v.Decision, v.Reason, *v.TrafficRatio)
	}
}

// TestTrafficShareOfTimeSplitHistory: A/A windows made by splitting one
// arm's time into two pseudo-arms (the game day's) carry the traffic share
// in their request counts, over windows of different lengths. A canary at
// the same 5% share is no collapse; one at a tenth of it is.
func TestTrafficShareOfTimeSplitHistory(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	cfg := decision.Default()
	var hist []decision.HistoryWindow
	for i := 1; i <= 24; i++ {
		a, b := healthyArm(300, 0.001, 100*math.Exp(0.05*r.NormFloat64())), healthyArm(5700, 0.001, 100*math.Exp(0.05*r.NormFloat64()))
		a.WindowS, b.WindowS = decision.Num(3), decision.Num(57) // 5% and 95% of a minute's chunks
		hist = append(hist, decision.HistoryWindow{At: at.Add(-time.Duration(i) * time.Minute), Canary: a, Control: b})
	}
	for _, c := range []struct {
		canary   float64
		collapse bool
	}{{300, false}, {30, true}} {
		in := decision.Input{At: at, Canary: healthyArm(c.canary, 0.001, 100), Control: healthyArm(5700, 0.001, 100), History: hist}
		v := decision.Evaluate(cfg, in)
		fired := false
		for _, f := range v.Rules {
			fired = fired || f.Name == "canary-traffic-collapse"
		}
		if v.TrafficRatio == nil {
			t.Fatalf("canary %g of %g requests: no traffic ratio", c.canary, c.canary+5700)
		}
		if fired != c.collapse {
			t.Errorf("canary %g of %g requests: collapse rule fired %v, want %v (ratio %.2f, %s: %s)", c.canary, c.canary+5700, fired, c.collapse, *v.TrafficRatio, v.Decision, v.Reason)
		}
	}
}

func TestHoldPolicy(t *testing.T) {
	p := decision.HoldPolicy{MaxExtensions: 2, EscalateTo: decision.Block}
	score := decision.Verdict{Decision: decision.Hold, HoldCause: decision.CauseScore}
	data := decision.Verdict{Decision: decision.Hold, HoldCause: decision.CauseData}
	if d, final := p.Escalate(score, 1, nil); d != decision.Hold || final {
		t.Fatalf("extension 1: %s %v", d, final)
	}
	if d, final := p.Escalate(score, 2, nil); d != decision.Block || !final {
		t.Fatalf("escalation: %s %v", d, final)
	}
	if d, final := p.Escalate(data, 2, nil); d != decision.Hold || !final {
		t.Fatalf("data hold must not escalate to block: %s %v", d, final)
	}
}

// TestHoldPolicyEscalatesRepeatedFailures: a score hold whose every failure
// failed one window earlier with weaker evidence escalates at once; the
// same evidence again, a new failure, a data hold or the setting off
// extends the window as before.
func TestHoldPolicyEscalatesRepeatedFailures(t *testing.T) {
	failing := func(z float64, kinds ...decision.Kind) decision.Verdict {
		v := decision.Verdict{Decision: decision.Hold, HoldCause: decision.CauseScore}
		for _, k := range kinds {
			v.Dimensions = append(v.Dimensions, decision.DimensionResult{Name: k, Outcome: decision.Fail, Z: z})
		}
		v.Dimensions = append(v.Dimensions, decision.DimensionResult{Name: decision.ErrorRate, Outcome: decision.Pass, Z: -1})
		return v
	}
	p := decision.HoldPolicy{MaxExtensions: 2, EscalateTo: decision.Block, EscalateRepeated: true}
	first := failing(3.5, decision.MemoryGrowth)
	cases := []struct {
		name  string
		prev  *decision.Verdict
		v     decision.Verdict
		block bool
	}{
		{"first window of the step", nil, first, false},
		{"evidence grew", &first, failing(4.2, decision.MemoryGrowth), true},
		{"same evidence again", &first, failing(3.5, decision.MemoryGrowth), false},
		{"evidence weakened", &first, failing(3.2, decision.MemoryGrowth), false},
		{"a new failure joined", &first, failing(4.2, decision.MemoryGrowth, decision.GCPause), false},
		{"p underflowed twice", func() *decision.Verdict { v := failing(math.Inf(1), decision.GCPause); return &v }(), failing(math.Inf(1), decision.GCPause), true},
		{"in a system breach", &first, func() decision.Verdict {
			v := failing(4.2, decision.MemoryGrowth)
			v.Dimensions[0].Breach = "system"
			return v
		}(), false},
		{"now a data hold", &first, decision.Verdict{Decision: decision.Hold, HoldCause: decision.CauseData, Dimensions: failing(5, decision.MemoryGrowth).Dimensions}, false},
	}
	for _, c := range cases {
		d, final := p.Escalate(c.v, 0, c.prev)
		if got := d == decision.Block && final; got != c.block {
			t.Errorf("%s: %s final=%v, want block=%v", c.name, d, final, c.block)
		}
		if !c.block && (d != decision.Hold || final) {
			t.Errorf("%s: %s final=%v, want an extension", c.name, d, final)
		}
	}
	off := p
	off.EscalateRepeated = false
	if d, final := off.Escalate(failing(4.2, decision.MemoryGrowth), 0, &first); d != decision.Hold || final {
		t.Errorf("escalate_repeated off: %s final=%v, want an extension", d, final)
	}
	toHold := p
	toHold.EscalateTo = decision.Hold
	if d, final := toHold.Escalate(failing(4.2, decision.MemoryGrowth), 0, &first); d != decision.Hold || final {
		t.Errorf("escalate_to hold: %s final=%v, want an extension", d, final)
	}
}

// BenchmarkEvaluate measures one judgement with a week of hourly history.
func BenchmarkEvaluate(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	in := decision.Input{At: at, Canary: healthyArm(5000, 0.001, 100), Control: healthyArm(50000, 0.001, 100), History: history(r, 168)}
	cfg := decision.Default()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = decision.Evaluate(cfg, in)
	}
}

// gcHistory is n one-minute A/A windows whose arms pause over the 120 ms
// limit once every every minutes per arm (never when every is 0).
func gcHistory(n, every int) []decision.HistoryWindow {
	var h []decision.HistoryWindow
	for i := 1; i <= n; i++ {
		c, k := healthyArm(5000, 0.001, 100), healthyArm(5000, 0.001, 100)
		if every > 0 && i%every == 0 {
			c.GCPausesMS = decision.Series([]float64{0.4, 0.6, 130})
		}
		if every > 0 && (i+every/2)%every == 0 {
			k.GCPausesMS = decision.Series([]float64{0.4, 0.6, 125})
		}
		h = append(h, decision.HistoryWindow{At: at.Add(-time.Duration(i) * time.Hour), Canary: c, Control: k})
	}
	return h
}

// TestGCPauseOverLimitIsClearAgainstTheHealthyRate: "no pause over 120 ms"
// is broken clearly when the canary's pauses over it are improbable under
// the rate at which healthy arms of the service pause that long. After a
// week of A/A windows that never did, one pause over the limit fails the
// canary (its control within the limit: an SLO breach, the release
// blocks); with no history it takes two; where healthy arms pause over the
// limit every few minutes (a busy host), two are noise and six are not.
func TestGCPauseOverLimitIsClearAgainstTheHealthyRate(t *testing.T) {
	cfg := decision.Default()
	gc := func(c []float64, hist []decision.HistoryWindow) (decision.DimensionResult, decision.Verdict) {
		in := decision.Input{At: at, Canary: healthyArm(5000, 0.001, 100), Control: healthyArm(5000, 0.001, 100), History: hist}
		in.Canary.GCPausesMS = decision.Series(c)
		in.Control.GCPausesMS = decision.Series([]float64{0.6, 11, 14})
		v := decision.Evaluate(cfg, in)
		d, _ := v.Dimension(decision.GCPause)
		return d, v
	}
	calm, busy := gcHistory(168, 0), gcHistory(168, 4)
	for _, tc := range []struct {
		name   string
		pauses []float64
		hist   []decision.HistoryWindow
		fail   bool
	}{
		{"one pause over the limit, no history", []float64{0.5, 12, 136}, nil, false},
		{"two pauses over the limit, no history", []float64{0.5, 125, 136}, nil, true},
		{"one pause over the limit after a calm week", []float64{0.5, 12, 136}, calm, true},
		{"two pauses over the limit on a busy host", []float64{0.5, 125, 136}, busy, false},
		{"six pauses of 150-320 ms on a busy host", []float64{0.5, 150, 180, 210, 250, 290, 320}, busy, true},
	} {
		d, v := gc(tc.pauses, tc.hist)
		failed := d.Outcome == decision.Fail && d.Rule == "hard-limit" && d.Breach == "canary"
		if failed != tc.fail {
			t.Errorf("%s: %s %s %q: %s %v", tc.name, d.Outcome, d.Rule, d.Breach, d.Reason, d.Diagnosis)
			continue
		}
		if failed && v.Decision != decision.Block {
			t.Errorf("%s: a GC SLO breach by the canary alone gave %s: %s", tc.name, v.Decision, v.Reason)
		}
	}
}

// TestLeaningWorseHoldsInsteadOfPromoting: a canary whose error rate is
// well above the control's on too little data to prove it (1.3% vs 0.64%,
// both arms over the SLO; always-valid p 0.22) is held for more data, not promoted; the hold
// never escalates to a block.
// The same canary at the control's rate promotes, and so does one whose
// rate is above the control's by less than twice the effect floor.
func TestLeaningWorseHoldsInsteadOfPromoting(t *testing.T) {
	cfg := decision.Default()
	in := decision.Input{At: at, Canary: healthyArm(1000, 0, 150), Control: healthyArm(10000, 0, 150)}
	in.Canary.Errors, in.Control.Errors = decision.Num(13), decision.Num(64)
	v := decision.Evaluate(cfg, in)
	d, _ := v.Dimension(decision.ErrorRate)
	if d.Outcome != decision.Pass || v.Decision != decision.Hold || v.HoldCause != decision.CauseEvidence || len(d.Diagnosis) == 0 {
		t.Fatalf("leaning canary: dimension %s (%s), verdict %s cause %s: %s", d.Outcome, d.Reason, v.Decision, v.HoldCause, v.Reason)
	}
	if got, final := cfg.Hold.Escalate(v, cfg.Hold.MaxExtensions, nil); got != decision.Hold || !final {
		t.Fatalf("leaning hold escalated to %s", got)
	}
	in.Canary.Errors = decision.Num(6)
	if v := decision.Evaluate(cfg, in); v.Decision != decision.Promote {
		t.Fatalf("canary at the control's rate: %s: %s", v.Decision, v.Reason)
	}
	// +0.06 pp on 0.64%: under twice the 0.05 pp floor.
	in.Canary.Requests, in.Canary.Errors = decision.Num(10000), decision.Num(70)
	if v := decision.Evaluate(cfg, in); v.Decision != decision.Promote {
		t.Fatalf("canary +0.06pp: %s: %s", v.Decision, v.Reason)
	}
}

// TestGCSystemBreachIsJudgedByMeasuredNoise: when both arms break the GC
// limits (a starved host), the breach is not held against the canary, and
// the comparison with the control is judged with the dispersion of A/A
// windows of the same context: a canary at 1.6 times its control's long
// pauses fails where two healthy arms under these conditions agree to a
// few percent, and passes where they differ by half.
func TestGCSystemBreachIsJudgedByMeasuredNoise(t *testing.T) {
	cfg := decision.Default()
	ctx := decision.NewContext(1, "podPause")
	pauses := func(long int) decision.Samples {
		v := []float64{150} // over the 120 ms limit: both arms breach
		for i := 0; i < long; i++ {
			v = append(v, 15) // long (> 10 ms)
		}
		for i := 0; i < 200; i++ {
			v = append(v, 0.5)
		}
		return decision.Series(v)
	}
	arm := func(long int) decision.ArmInput {
		a := healthyArm(20000, 0.001, 100)
		a.WindowS, a.GCPausesMS = decision.Num(300), pauses(long)
		return a
	}
	r := rand.New(rand.NewPCG(3, 3))
	aa := func(spread float64) []decision.HistoryWindow {
		var h []decision.HistoryWindow
		for i := 1; i <= 48; i++ {
			c := int(200 * math.Exp(spread*r.NormFloat64()))
			k := int(200 * math.Exp(spread*r.NormFloat64()))
			h = append(h, decision.HistoryWindow{At: at.Add(-time.Duration(i) * time.Hour), Context: ctx, Canary: arm(c), Control: arm(k)})
		}
		return h
	}
	in := decision.Input{At: at, Context: ctx, Canary: arm(320), Control: arm(200)}
	for _, tc := range []struct {
		spread float64
		fail   bool
	}{{0.03, true}, {0.5, false}} {
		in.History = aa(tc.spread)
		v := decision.Evaluate(cfg, in)
		d, _ := v.Dimension(decision.GCPause)
		if d.Breach != "system" || (d.Outcome == decision.Fail) != tc.fail || strings.Contains(v.Reason, "SLO breached") {
			t.Fatalf("1.6x the control's long pauses in a system breach, A/A spread %.2f: %s %q (verdict %s): %s; %s", tc.spread, d.Outcome, d.Breach, v.Decision, d.Reason, d.SigmaSource)
		}
	}
}

// TestErrorRateSystemBreachIsJudgedByMeasuredNoise: both arms over the
// error-rate SLO (a fault stressing both) is a system breach, never an SLO
// block; the comparison uses the overdispersion of the A/A windows of the
// same fault context. A canary at 1.6 times its control's rate fails where
// healthy arms under this fault differ by what counts predict, and passes
// where they differ by half their rate.
func TestErrorRateSystemBreachIsJudgedByMeasuredNoise(t *testing.T) {
	cfg := decision.Default()
	ctx := decision.NewContext(0.8, "networkDelay")
	r := rand.New(rand.NewPCG(4, 4))
	aa := func(spread float64) []decision.HistoryWindow {
		var h []decision.HistoryWindow
		for i := 1; i <= 48; i++ {
			c, k := healthyArm(40000, 0, 100), healthyArm(200000, 0, 100)
			c.Errors = decision.Num(binomial(r, 40000, 0.005*math.Exp(spread*r.NormFloat64())))
			k.Errors = decision.Num(binomial(r, 200000, 0.005*math.Exp(spread*r.NormFloat64())))
			h = append(h, decision.HistoryWindow{At: at.Add(-time.Duration(i) * time.Hour), Context: ctx, Canary: c, Control: k})
		}
		return h
	}
	in := decision.Input{At: at, Context: ctx, Canary: healthyArm(40000, 0, 100), Control: healthyArm(200000, 0, 100)}
	in.Control.Errors = decision.Num(1000) // 0.5%, over the 0.15% SLO
	in.Canary.Errors = decision.Num(320)   // 0.8%: 1.6x
	for _, tc := range []struct {
		spread float64
		fail   bool
	}{{0, true}, {0.5, false}} {
		in.History = aa(tc.spread)
		v := decision.Evaluate(cfg, in)
		d, _ := v.Dimension(decision.ErrorRate)
		// Where healthy arms differ by half their rate, even the canary's
		// own breach is not clear any more: no breach is recorded at all.
		if (tc.fail && d.Breach != "system") || (d.Outcome == decision.Fail) != tc.fail || strings.Contains(v.Reason, "SLO breached") {
			t.Fatalf("1.6x the control in a system breach, A/A spread %.2f: %s %q p=%.2g, verdict %s: %s; %s", tc.spread, d.Outcome, d.Breach, d.PValue, v.Decision, d.Reason, d.SigmaSource)
		}
	}
	// Outside a system breach the effect floor alone applies: 0.14% vs
	// 0.06% (both within the SLO), proven on this much traffic against a
	// history where healthy arms agree, fails.
	in.History = aa(0)
	in.Control.Errors, in.Canary.Errors = decision.Num(120), decision.Num(56)
	if d, _ := decision.Evaluate(cfg, in).Dimension(decision.ErrorRate); d.Outcome != decision.Fail || d.Breach != "" {
		t.Fatalf("0.14%% vs 0.06%%: %s breach %q: %s", d.Outcome, d.Breach, d.Reason)
	}
}

// TestMemoryGrowthIsJudgedOnTheHistorysSpread: memory growth 8 MB/min
// above the control blocks against A/A history whose arms agree to
// 0.2 MB/min (a decisive failure), and passes against history whose healthy
// arms differ by 4 MB/min; one just over k, at low traffic where the other
// dimensions carry little confidence, pulls the score under the block line.
func TestMemoryGrowthIsJudgedOnTheHistorysSpread(t *testing.T) {
	cfg := decision.Default()
	r := rand.New(rand.NewPCG(5, 5))
	hist := func(spread float64) []decision.HistoryWindow {
		h := history(r, 28)
		for i := range h {
			h[i].Canary.MemoryGrowthMBPerMin = decision.Num(10 + spread*r.NormFloat64())
			h[i].Control.MemoryGrowthMBPerMin = decision.Num(10 + spread*r.NormFloat64())
		}
		return h
	}
	in := decision.Input{At: at, Canary: healthyArm(5000, 0.001, 100), Control: healthyArm(50000, 0.001, 100)}
	in.Canary.MemoryGrowthMBPerMin, in.Control.MemoryGrowthMBPerMin = decision.Num(18), decision.Num(10)
	in.History = hist(0.2 / math.Sqrt2)
	v := decision.Evaluate(cfg, in)
	if d, _ := v.Dimension(decision.MemoryGrowth); d.Outcome != decision.Fail || v.Decision != decision.Block || !v.Decisive {
		t.Fatalf("+8 MB/min against a tight history: %s z=%.2f, verdict %s decisive=%v: %s", d.Outcome, d.Z, v.Decision, v.Decisive, v.Reason)
	}
	in.History = hist(4 / math.Sqrt2)
	if d, _ := decision.Evaluate(cfg, in).Dimension(decision.MemoryGrowth); d.Outcome != decision.Pass {
		t.Fatalf("+8 MB/min where healthy arms differ by 4: %s z=%.2f σ̂=%.3g: %s", d.Outcome, d.Z, d.Sigma, d.Reason)
	}
	for i := range cfg.Dimensions {
		if cfg.Dimensions[i].Kind == decision.MemoryGrowth {
			cfg.Dimensions[i].Weight = 3 // a service that weighs memory more
		}
	}
	cfg.Hash = cfg.ComputeHash()
	low := decision.Input{At: at, Canary: healthyArm(10, 0, 100), Control: healthyArm(100, 0, 100)}
	low.Canary.MemoryGrowthMBPerMin = decision.Num(2) // z ≈ 4: over k = 3, under √2·k
	low.History = hist(0.5 / math.Sqrt2)
	for i := range low.History {
		low.History[i].Canary.MemoryGrowthMBPerMin.V -= 10
		low.History[i].Control.MemoryGrowthMBPerMin.V -= 10
	}
	v = decision.Evaluate(cfg, low)
	if d, _ := v.Dimension(decision.MemoryGrowth); d.Outcome != decision.Fail || v.Decisive || v.Decision != decision.Block || v.Score >= cfg.Score.Block {
		t.Fatalf("memory z=%.2f at low traffic: %s, score %.3f, verdict %s: %s", d.Z, d.Outcome, v.Score, v.Decision, v.Reason)
	}
	// Without A/A history the same failure rests on the prior σ̂: the
	// score under the block line holds for more data, and the hold
	// escalates to block once the extensions are spent.
	low.History = nil
	v = decision.Evaluate(cfg, low)
	if d, _ := v.Dimension(decision.MemoryGrowth); d.Outcome != decision.Fail || v.Decision != decision.Hold || v.HoldCause != decision.CauseScore || v.Score >= cfg.Score.Block {
		t.Fatalf("memory z=%.2f at low traffic, no history: %s, score %.3f, verdict %s: %s", d.Z, d.Outcome, v.Score, v.Decision, v.Reason)
	}
	if d, final := cfg.Hold.Escalate(v, cfg.Hold.MaxExtensions, nil); d != decision.Block || !final {
		t.Fatalf("the hold after %d extensions: %s final=%v", cfg.Hold.MaxExtensions, d, final)
	}
}

// faultedArm returns an arm of n requests whose pods took fault exposure a:
// its error and dependency failure rates both rise with a.
func faultedArm(r *rand.Rand, n, a, extraErr float64) decision.ArmInput {
	arm := healthyArm(n, 0, 100)
	arm.Errors = decision.Num(binomial(r, n, 0.001+0.004*a+extraErr))
	arm.DependencyCalls = decision.Num(2 * n)
	arm.DependencyFailures = decision.Num(binomial(r, 2*n, 0.0001+0.001*a))
	return arm
}

// TestFaultExposureExplainsAnErrorDifference: under faults, the canary's
// pods may take more of them than the control's; its error and dependency
// failure rates then rise together. The A/A history shows how much of an
// error difference the dependency failure difference explains, and the
// judge compares what is left. A canary that took twice the exposure is
// not blocked for it; one that adds errors of its own still is.
func TestFaultExposureExplainsAnErrorDifference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	var hist []decision.HistoryWindow
	for i := 1; i <= 168; i++ {
		level := r.Float64() // fault intensity of the hour; each arm's pods take it unevenly
		hist = append(hist, decision.HistoryWindow{At: at.Add(-time.Duration(i) * time.Hour),
			Canary:  faultedArm(r, 20000, level*math.Exp(0.5*r.NormFloat64()), 0),
			Control: faultedArm(r, 100000, level*math.Exp(0.5*r.NormFloat64()), 0)})
	}
	exposed := decision.Input{At: at, History: hist,
		Canary:  faultedArm(r, 60000, 2.0, 0),  // ≈ 0.9% errors, 0.3% dependency failures
		Control: faultedArm(r, 300000, 0.7, 0)} // ≈ 0.38%, 0.08%
	worse := decision.Input{At: at, History: hist,
		Canary:  faultedArm(r, 60000, 0.7, 0.005), // its own +0.5 pp
		Control: faultedArm(r, 300000, 0.7, 0)}

	cfg := decision.Default()
	if d, _ := decision.Evaluate(cfg, exposed).Dimension(decision.ErrorRate); d.Outcome != decision.Pass || !strings.Contains(strings.Join(d.Diagnosis, " "), "fault exposure") {
		t.Fatalf("canary that took more of the faults: %s (%s) %v", d.Outcome, d.Reason, d.Diagnosis)
	}
	if d, _ := decision.Evaluate(cfg, worse).Dimension(decision.ErrorRate); d.Outcome != decision.Fail {
		t.Fatalf("canary with +0.5pp errors of its own: %s (%s) %v", d.Outcome, d.Reason, d.Diagnosis)
	}

	off := decision.Default()
	for i := range off.Dimensions {
		off.Dimensions[i].Exposure = ""
	}
	off.Hash = off.ComputeHash()
	// Without the adjustment the uneven exposure is measured as noise
	// (the drift between healthy arms): the exposed canary passes, but so
	// does the canary with errors of its own — the adjustment is what tells
	// them apart.
	if d, _ := decision.Evaluate(off, exposed).Dimension(decision.ErrorRate); d.Outcome == decision.Fail {
		t.Fatalf("without the exposure adjustment the exposed canary failed: %s (%s)", d.Outcome, d.Reason)
	}
	if d, _ := decision.Evaluate(off, worse).Dimension(decision.ErrorRate); d.Outcome == decision.Fail {
		t.Fatalf("without the adjustment, +0.5pp was told from uneven exposure: %s (%s)", d.Outcome, d.Reason)
	}
}

// TestFaultExposureNeverFailsABetterCanary: a canary less exposed than its
// control is expected below the control's rate, and the adjustment says so;
// but a canary with fewer errors and fewer dependency failures than its
// control is never failed, nor held, for its error rate — even where the
// dependency failures have a high floor of their own, so that the slope
// predicts the canary's errors lower than they can be.
func TestFaultExposureNeverFailsABetterCanary(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	arm := func(n, a, scale float64) decision.ArmInput {
		x := healthyArm(n, 0, 100)
		x.Errors = decision.Num(math.Floor(scale * binomial(r, n, 0.0002+0.004*a)))
		x.DependencyCalls = decision.Num(2 * n)
		x.DependencyFailures = decision.Num(math.Floor(scale * binomial(r, 2*n, 0.002+0.001*a)))
		return x
	}
	var hist []decision.HistoryWindow
	for i := 1; i <= 168; i++ {
		level := r.Float64()
		hist = append(hist, decision.HistoryWindow{At: at.Add(-time.Duration(i) * time.Hour),
			Canary: arm(20000, level*math.Exp(0.5*r.NormFloat64()), 1), Control: arm(100000, level*math.Exp(0.5*r.NormFloat64()), 1)})
	}
	for _, f := range []float64{0.3, 0.5, 0.8} {
		in := decision.Input{At: at, History: hist, Control: arm(300000, 0.7, 1), Canary: arm(60000, 0.7, 1)}
		// The canary: the control's counts at its traffic, every rate times f.
		ratio := 60000.0 / 300000
		in.Canary.Errors = decision.Num(math.Floor(in.Control.Errors.V * ratio * f))
		in.Canary.DependencyFailures = decision.Num(math.Floor(in.Control.DependencyFailures.V * ratio * f))
		v := decision.Evaluate(decision.Default(), in)
		d, _ := v.Dimension(decision.ErrorRate)
		if d.Outcome == decision.Fail || v.Decision != decision.Promote {
			t.Fatalf("canary at %.0f%% of its control's rates: %s, verdict %s (%s) %v", 100*f, d.Outcome, v.Decision, d.Reason, d.Diagnosis)
		}
	}
}

// TestNotCollectedIsNotMissing: a dimension absent from both arms and from
// every history window is not collected: left out of the coverage, said so,
// and the verdict can promote. required: true makes its absence a hold; a
// dimension present in the history or in the other arm but absent now is
// missing: hold.
func TestNotCollectedIsNotMissing(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	hist := history(r, 28)
	noMemory := func(a decision.ArmInput) decision.ArmInput { a.MemoryGrowthMBPerMin = decision.Value{}; return a }
	for i := range hist {
		hist[i].Canary, hist[i].Control = noMemory(hist[i].Canary), noMemory(hist[i].Control)
	}
	in := decision.Input{At: at, Canary: noMemory(healthyArm(5000, 0.001, 100)), Control: noMemory(healthyArm(50000, 0.001, 100)), History: hist}
	cfg := decision.Default()
	v := decision.Evaluate(cfg, in)
	d, _ := v.Dimension(decision.MemoryGrowth)
	if v.Decision != decision.Promote || d.Data != decision.DataNotCollected || v.Coverage < cfg.Score.MinCoverage || !strings.Contains(v.Reason, "not collected") {
		t.Fatalf("memory not collected anywhere: %s coverage %.3f, memory %s: %s", v.Decision, v.Coverage, d.Data, v.Reason)
	}
	req := decision.Default()
	for i := range req.Dimensions {
		if req.Dimensions[i].Kind == decision.MemoryGrowth {
			req.Dimensions[i].Required = true
		}
	}
	req.Hash = req.ComputeHash()
	if v := decision.Evaluate(req, in); v.Decision != decision.Hold || v.HoldCause != decision.CauseData {
		t.Fatalf("required memory not collected: %s (%s): %s", v.Decision, v.HoldCause, v.Reason)
	}
	// Collected in the history, absent now: missing.
	withHist := in
	withHist.History = history(r, 28)
	if v := decision.Evaluate(cfg, withHist); v.Decision != decision.Hold || v.HoldCause != decision.CauseData {
		t.Fatalf("memory in the history, absent now: %s (%s): %s", v.Decision, v.HoldCause, v.Reason)
	}
	// Reported by the control only: missing in the canary.
	oneArm := in
	oneArm.Control.MemoryGrowthMBPerMin = decision.Num(0.1)
	if v := decision.Evaluate(cfg, oneArm); v.Decision != decision.Hold || v.HoldCause != decision.CauseData {
		t.Fatalf("memory from the control only: %s (%s): %s", v.Decision, v.HoldCause, v.Reason)
	}
	// A NaN is a data problem, never "not collected".
	nan := in
	nan.Canary.MemoryGrowthMBPerMin = decision.Value{State: decision.NaN}
	if v := decision.Evaluate(cfg, nan); v.Decision != decision.Hold {
		t.Fatalf("memory NaN: %s: %s", v.Decision, v.Reason)
	}
}

// TestThinHistoryIsNeverDecisive: a memory-growth failure far past √2·k
// blocks at once against 28 tight A/A windows, but against one A/A window
// (σ̂ still mostly the prior) it is weighed by the score instead: the A/A
// windows still to come can show healthy arms differ that much. A Kubernetes
// step after a pod kill measured a good canary's survivors at 7.9 MB/min
// against the control's 1.7 (z 4.54 ≥ 4.24) with one calibration window.
func TestThinHistoryIsNeverDecisive(t *testing.T) {
	cfg := decision.Default()
	r := rand.New(rand.NewPCG(9, 9))
	hist := func(n int) []decision.HistoryWindow {
		h := history(r, n)
		for i := range h {
			h[i].Canary.MemoryGrowthMBPerMin = decision.Num(2 + 0.2*r.NormFloat64())
			h[i].Control.MemoryGrowthMBPerMin = decision.Num(2 + 0.2*r.NormFloat64())
		}
		return h
	}
	in := decision.Input{At: at, Canary: healthyArm(5000, 0.001, 100), Control: healthyArm(50000, 0.001, 100)}
	in.Canary.MemoryGrowthMBPerMin, in.Control.MemoryGrowthMBPerMin = decision.Num(7.9), decision.Num(1.7)
	in.History = hist(28)
	if v := decision.Evaluate(cfg, in); v.Decision != decision.Block || !v.Decisive {
		t.Fatalf("+6.2 MB/min against 28 tight windows: %s decisive=%v: %s", v.Decision, v.Decisive, v.Reason)
	}
	in.History = hist(1)
	v := decision.Evaluate(cfg, in)
	d, _ := v.Dimension(decision.MemoryGrowth)
	if d.Outcome != decision.Fail || d.Z < decision.DecisiveFactor*d.K {
		t.Fatalf("the case needs a failure past √2·k on the prior: %s z=%.2f k=%.2f σ̂ %s", d.Outcome, d.Z, d.K, d.SigmaSource)
	}
	if v.Decisive || v.Decision == decision.Promote {
		t.Fatalf("+6.2 MB/min against one A/A window: %s decisive=%v: %s", v.Decision, v.Decisive, v.Reason)
	}
	if v.Decision == decision.Block && v.Score >= cfg.Score.Block {
		t.Fatalf("blocked without a decisive failure or a low score: %s", v.Reason)
	}
	t.Logf("one A/A window: %s (score %.3f): %s", v.Decision, v.Score, v.Reason)
}
