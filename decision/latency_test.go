package decision_test

import (
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/decision"
)

// lognormal draws n latencies with median med and log-shape sigma; a share
// tail of them gets an extra exponential delay of mean 200 ms, as a
// network-delay fault adds.
func lognormal(r *rand.Rand, n int, med, sigma, tail float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = med * math.Exp(sigma*r.NormFloat64())
		if r.Float64() < tail {
			v[i] += 200 * r.ExpFloat64()
		}
	}
	return v
}

// latencyHistory is n hourly A/A windows whose arms' p50 and p99 agree to
// about 2%, as for two arms of one service with a few thousand samples.
func latencyHistory(r *rand.Rand, n int) []decision.HistoryWindow {
	var h []decision.HistoryWindow
	for i := 1; i <= n; i++ {
		arm := func() decision.ArmInput {
			return decision.ArmInput{Requests: decision.Num(3000), WindowS: decision.Num(60),
				LatencyP50: decision.Num(20 * math.Exp(0.015*r.NormFloat64())),
				LatencyP99: decision.Num(64 * math.Exp(0.04*r.NormFloat64()))}
		}
		h = append(h, decision.HistoryWindow{At: at.Add(-time.Duration(i) * time.Hour), Canary: arm(), Control: arm()})
	}
	return h
}

func latencyOnly() *decision.Config {
	cfg := decision.Default()
	for i := range cfg.Dimensions {
		cfg.Dimensions[i].Enabled = cfg.Dimensions[i].Kind == decision.LatencyP99
	}
	cfg.Hash = cfg.ComputeHash()
	return cfg
}

func judgeLatency(cfg *decision.Config, c, k []float64, hist []decision.HistoryWindow, looks int) decision.DimensionResult {
	in := decision.Input{At: at,
		Canary:  decision.ArmInput{LatencyMS: decision.Series(c), WindowS: decision.Num(float64(60 * looks))},
		Control: decision.ArmInput{LatencyMS: decision.Series(k), WindowS: decision.Num(float64(60 * looks))},
		History: hist}
	d, _ := decision.Evaluate(cfg, in).Dimension(decision.LatencyP99)
	return d
}

// A release that keeps the mean latency but widens its spread by half
// raises the p99 while the median falls: the spread test catches it.
func TestLatencyVarianceRegressionFails(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const s0 = 0.5
	s1 := 1.5 * s0
	med1 := 20 * math.Exp(s0*s0/2-s1*s1/2) // same mean
	d := judgeLatency(latencyOnly(), lognormal(r, 3000, med1, s1, 0), lognormal(r, 3000, 20, s0, 0), latencyHistory(r, 48), 3)
	if d.Outcome != decision.Fail || (d.Rule != "spread" && d.Rule != "adaptive-sigma") {
		t.Fatalf("variance ×1.5 not caught: %s %s: %s", d.Outcome, d.Rule, d.Reason)
	}
}

// faultedLatencyHistory is n hourly A/A windows under a network-delay
// fault: each arm's pods take it unevenly, so a random share of up to
// 2·tail of each arm's requests gets the fault's extra delay and the two
// p99s drift far apart.
func faultedLatencyHistory(r *rand.Rand, n int, tail float64, ctx *decision.Context) []decision.HistoryWindow {
	var h []decision.HistoryWindow
	for i := 1; i <= n; i++ {
		arm := func() decision.ArmInput {
			s := lognormal(r, 3000, 20, 0.5, 2*tail*r.Float64())
			return decision.ArmInput{Requests: decision.Num(3000), WindowS: decision.Num(60),
				LatencyP50: decision.Num(quantileOf(s, 0.5)), LatencyP99: decision.Num(quantileOf(s, 0.99))}
		}
		h = append(h, decision.HistoryWindow{At: at.Add(-time.Duration(i) * time.Hour), Canary: arm(), Control: arm(), Context: ctx})
	}
	return h
}

func withContext(h []decision.HistoryWindow, c *decision.Context) []decision.HistoryWindow {
	for i := range h {
		h[i].Context = c
	}
	return h
}

func quantileOf(v []float64, q float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[int(math.Ceil(q*float64(len(s))))-1]
}

// Extra delay on a few of the canary's requests moves its p99 and hardly
// its body. Under a fault whose A/A windows show each arm's tail moving on
// its own, that is noise the history measured: no failure. Against a
// steady history it is what p99 is there to catch: a tail regression.
func TestLatencyTailRiseIsJudgedAgainstItsContext(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	cfg := latencyOnly()
	ctx := decision.NewContext(0.6, "networkDelay")
	c, k := lognormal(r, 3000, 20, 0.5, 0.05), lognormal(r, 3000, 20, 0.5, 0.01)
	in := decision.Input{At: at, Context: ctx,
		Canary:  decision.ArmInput{LatencyMS: decision.Series(c), WindowS: decision.Num(180)},
		Control: decision.ArmInput{LatencyMS: decision.Series(k), WindowS: decision.Num(180)},
		History: append(faultedLatencyHistory(r, 48, 0.05, ctx), withContext(latencyHistory(r, 48), decision.NewContext(0))...)}
	if d, _ := decision.Evaluate(cfg, in).Dimension(decision.LatencyP99); d.Outcome == decision.Fail {
		t.Fatalf("under a fault whose A/A tails wander, the canary's extra delay failed it: %s: %s (%s)", d.Rule, d.Reason, d.SigmaSource)
	}
	in.Context = decision.NewContext(0)
	if d, _ := decision.Evaluate(cfg, in).Dimension(decision.LatencyP99); d.Outcome != decision.Fail || d.Rule != "adaptive-sigma" {
		t.Fatalf("a tail-only rise against a steady history: %s %s: %s (%s)", d.Outcome, d.Rule, d.Reason, d.SigmaSource)
	}
}

// With a tight A/A history a p99 ×1.25 whose median did not move fails; with
// a history whose tails wander ±30% it does not.
func TestLatencyTailOnlyRegression(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	cfg := latencyOnly()
	mk := func(p50, p99 float64) decision.ArmInput {
		return decision.ArmInput{Requests: decision.Num(20000), WindowS: decision.Num(60), LatencyP50: decision.Num(p50), LatencyP99: decision.Num(p99)}
	}
	hist := func(spread float64) []decision.HistoryWindow {
		var h []decision.HistoryWindow
		for i := 1; i <= 28; i++ {
			h = append(h, decision.HistoryWindow{At: at.Add(-time.Duration(6*i) * time.Hour), Context: decision.NewContext(0),
				Canary:  mk(20*math.Exp(0.01*r.NormFloat64()), 80*math.Exp(spread*r.NormFloat64())),
				Control: mk(20*math.Exp(0.01*r.NormFloat64()), 80*math.Exp(spread*r.NormFloat64()))})
		}
		return h
	}
	in := decision.Input{At: at, Context: decision.NewContext(0), Canary: mk(20, 100), Control: mk(20, 80)}
	in.History = hist(0.03 / math.Sqrt2)
	if d, _ := decision.Evaluate(cfg, in).Dimension(decision.LatencyP99); d.Outcome != decision.Fail {
		t.Fatalf("p99 ×1.25 against a tight history: %s %s: %s (%s)", d.Outcome, d.Rule, d.Reason, d.SigmaSource)
	}
	in.History = hist(0.3)
	if d, _ := decision.Evaluate(cfg, in).Dimension(decision.LatencyP99); d.Outcome == decision.Fail {
		t.Fatalf("p99 ×1.25 where healthy tails wander ±30%%: %s %s: %s (%s)", d.Outcome, d.Rule, d.Reason, d.SigmaSource)
	}
}

// TestLatencyFalseAlarmRate judges A/A canaries at each of five looks on
// cumulative samples, with per-arm fault delay on a random share of
// requests, against A/A history of the same fault: the latency dimension
// must fail at most 1% of them.
func TestLatencyFalseAlarmRate(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	cfg := latencyOnly()
	ctx := decision.NewContext(0.5, "networkDelay")
	share := func() float64 { return r.Float64() * 0.02 }
	var hist []decision.HistoryWindow
	for i := 1; i <= 48; i++ {
		chaos := share()
		arm := func() decision.ArmInput {
			s := lognormal(r, 300, 20, 0.5, chaos*math.Exp(0.5*r.NormFloat64()))
			return decision.ArmInput{Requests: decision.Num(300), WindowS: decision.Num(60),
				LatencyP50: decision.Num(quantileOf(s, 0.5)), LatencyP99: decision.Num(quantileOf(s, 0.99))}
		}
		hist = append(hist, decision.HistoryWindow{At: at.Add(-time.Duration(i) * time.Hour), Context: ctx, Canary: arm(), Control: arm()})
	}
	const runs, looks = 300, 5
	alarms := 0
	for run := 0; run < runs; run++ {
		var c, k []float64
		chaos := share()
		for l := 1; l <= looks; l++ {
			c = append(c, lognormal(r, 300, 20, 0.5, chaos*math.Exp(0.5*r.NormFloat64()))...)
			k = append(k, lognormal(r, 300, 20, 0.5, chaos*math.Exp(0.5*r.NormFloat64()))...)
			in := decision.Input{At: at, Context: ctx,
				Canary:  decision.ArmInput{LatencyMS: decision.Series(c), WindowS: decision.Num(float64(60 * l))},
				Control: decision.ArmInput{LatencyMS: decision.Series(k), WindowS: decision.Num(float64(60 * l))},
				History: hist}
			if d, _ := decision.Evaluate(cfg, in).Dimension(decision.LatencyP99); d.Outcome == decision.Fail {
				alarms++
				break
			}
		}
	}
	t.Logf("A/A latency false alarms: %d of %d", alarms, runs)
	if rate := float64(alarms) / runs; rate > 0.01 {
		t.Fatalf("A/A latency false-alarm rate over %d looks = %.3f, want ≤ 0.01", looks, rate)
	}
}

// gcArm is an arm of minutes minutes with the given GC pauses.
func gcArm(minutes float64, pauses ...float64) decision.ArmInput {
	return decision.ArmInput{GCPausesMS: decision.Series(pauses), WindowS: decision.Num(60 * minutes)}
}

func judgeGC(c, k decision.ArmInput, hist []decision.HistoryWindow) decision.DimensionResult {
	cfg := decision.Default()
	for i := range cfg.Dimensions {
		cfg.Dimensions[i].Enabled = cfg.Dimensions[i].Kind == decision.GCPause
	}
	cfg.Hash = cfg.ComputeHash()
	d, _ := decision.Evaluate(cfg, decision.Input{At: at, Canary: c, Control: k, History: hist}).Dimension(decision.GCPause)
	return d
}

// Five long pauses in three minutes against a quiet control are not
// significant on their own (half the exposure, 1/32), but they are against a
// control whose A/A history of two days never paused long; a control that
// pauses long now (a fault on both arms) is its own reference again.
func TestGCControlShrunkTowardHistory(t *testing.T) {
	var calm []decision.HistoryWindow
	for i := 1; i <= 48; i++ {
		calm = append(calm, decision.HistoryWindow{At: at.Add(-time.Duration(i) * time.Hour), Canary: gcArm(1, 0.5, 1, 2), Control: gcArm(1, 0.4, 0.9)})
	}
	canary := gcArm(3, 11, 12, 13, 15, 18, 1, 1)
	quiet := gcArm(3, 1, 2, 1)
	if d := judgeGC(canary, quiet, nil); d.Outcome == decision.Fail {
		t.Fatalf("5 vs 0 long pauses without history failed: %s", d.Reason)
	}
	if d := judgeGC(canary, quiet, calm); d.Outcome != decision.Fail || d.Rule != "sequential-test" {
		t.Fatalf("5 vs 0 long pauses against a calm history: %s %s: %s", d.Outcome, d.Rule, d.Reason)
	}
	stressed := gcArm(3, 11, 12, 14, 16, 1)
	if d := judgeGC(gcArm(3, 11, 12, 13, 15, 18, 19, 1), stressed, calm); d.Outcome == decision.Fail {
		t.Fatalf("6 vs 4 long pauses with the control stressed now failed: %s", d.Reason)
	}
}

// A failure whose evidence is decisive (z ≥ √2·k) blocks at once: more
// data will not turn it. One between k and √2·k that leaves the score
// between the lines holds, and the gate extends the window.
func TestDecisiveFailureBlocksAtOnce(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	calm := history(r, 48)
	c, k := healthyArm(5000, 0.001, 100), healthyArm(50000, 0.001, 100)
	c.LatencyP99, c.LatencyP50 = decision.Num(300), decision.Num(12.5) // the tail alone, ×3
	v := decision.Evaluate(nil, decision.Input{At: at, Canary: c, Control: k, History: calm})
	if d, _ := v.Dimension(decision.LatencyP99); v.Decision != decision.Block || !v.Decisive || d.Z < math.Sqrt2*d.K {
		t.Fatalf("p99 ×3 against a calm history: %s decisive=%v, z=%.2f k=%.2f: %s", v.Decision, v.Decisive, d.Z, d.K, v.Reason)
	}
	// Memory growth just over k: weight 1 of 16 leaves the score between
	// the lines.
	for i := range calm {
		calm[i].Canary.MemoryGrowthMBPerMin = decision.Num(0.4 * r.NormFloat64())
		calm[i].Control.MemoryGrowthMBPerMin = decision.Num(0.4 * r.NormFloat64())
	}
	c = healthyArm(5000, 0.001, 100)
	d0, _ := decision.Evaluate(nil, decision.Input{At: at, Canary: c, Control: k, History: calm}).Dimension(decision.MemoryGrowth)
	c.MemoryGrowthMBPerMin = decision.Num(k.MemoryGrowthMBPerMin.V + 1.2*d0.K*d0.Sigma)
	v = decision.Evaluate(nil, decision.Input{At: at, Canary: c, Control: k, History: calm})
	if d, _ := v.Dimension(decision.MemoryGrowth); v.Decision != decision.Hold || v.Decisive || d.Outcome != decision.Fail || v.HoldCause != decision.CauseScore {
		t.Fatalf("memory z=%.2f: %s decisive=%v (%s): %s", d.Z, v.Decision, v.Decisive, v.HoldCause, v.Reason)
	}
	if d, final := decision.Default().Hold.Escalate(v, 0, nil); d != decision.Hold || final {
		t.Fatalf("a hold at the threshold escalated at once: %s final=%v", d, final)
	}
}

// Session interruptions fire when they are detectable: +0.2 pp over 20 000
// canary sessions against a control at 0.005%.
func TestSessionInterruptionsDetectable(t *testing.T) {
	c, k := healthyArm(400000, 0.001, 100), healthyArm(4000000, 0.001, 100)
	c.Sessions, c.SessionInterruptions = decision.Num(20000), decision.Num(41)
	k.Sessions, k.SessionInterruptions = decision.Num(200000), decision.Num(10)
	d, _ := decision.Evaluate(nil, decision.Input{At: at, Canary: c, Control: k}).Dimension(decision.SessionInterruption)
	if d.Outcome != decision.Fail {
		t.Fatalf("+0.2pp interruptions over 20000 sessions: %s %s: %s", d.Outcome, d.Rule, d.Reason)
	}
	// Two interruptions in 900 sessions are not evidence.
	c.Sessions, c.SessionInterruptions = decision.Num(900), decision.Num(2)
	if d, _ := decision.Evaluate(nil, decision.Input{At: at, Canary: c, Control: k}).Dimension(decision.SessionInterruption); d.Outcome == decision.Fail {
		t.Fatalf("2 interruptions in 900 sessions failed: %s", d.Reason)
	}
}

// TestGCFalseAlarmRate checks the GC test under the null: canary and
// control pause long at the rate of their A/A history (a Poisson count per
// minute), judged on cumulative windows at each of five looks; the
// dimension may fail at most α = 1% of the A/A canaries.
func TestGCFalseAlarmRate(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	pauses := func(minutes, perMin float64) []float64 {
		var v []float64
		for m := 0; m < int(minutes); m++ {
			v = append(v, 0.5, 0.8)
			n := poisson(r, perMin)
			for i := 0; i < n; i++ {
				v = append(v, 11+10*r.Float64())
			}
		}
		return v
	}
	const rate = 0.5 // long pauses per minute, in the history and now
	var hist []decision.HistoryWindow
	for i := 1; i <= 48; i++ {
		hist = append(hist, decision.HistoryWindow{At: at.Add(-time.Duration(i) * time.Hour),
			Canary: gcArm(1, pauses(1, rate)...), Control: gcArm(1, pauses(1, rate)...)})
	}
	gcFalseAlarms(t, "GC", hist, func() []float64 { return pauses(1, rate) }, func() []float64 { return pauses(1, rate) })
}

// gcFalseAlarms judges 1000 A/A canaries, each on cumulative one-minute
// windows drawn by canary and control at each of five looks, and fails the
// test when more than α = 1% of them fail the GC dimension at any look.
func gcFalseAlarms(t *testing.T, what string, hist []decision.HistoryWindow, canary, control func() []float64) {
	t.Helper()
	const runs, looks = 1000, 5
	alarms := 0
	for run := 0; run < runs; run++ {
		var c, k []float64
		for l := 1; l <= looks; l++ {
			c = append(c, canary()...)
			k = append(k, control()...)
			if d := judgeGC(gcArm(float64(l), c...), gcArm(float64(l), k...), hist); d.Outcome == decision.Fail {
				alarms++
				break
			}
		}
	}
	t.Logf("A/A %s false alarms: %d of %d", what, alarms, runs)
	if f := float64(alarms) / runs; f > 0.01 {
		t.Fatalf("A/A %s false-alarm rate over %d looks = %.3f, want ≤ 0.01", what, looks, f)
	}
}

// poisson draws a Poisson count by inversion (small means).
func poisson(r *rand.Rand, mean float64) int {
	l, k, p := math.Exp(-mean), 0, r.Float64()
	for p > l {
		k++
		p *= r.Float64()
	}
	return k
}

// Below 100 samples there is no p99, but a median: a canary whose body is
// half again as slow fails on 80 samples; A/A canaries of 32–80 samples
// checked at five looks fail at most 1% of the time.
func TestLatencyFewSamplesBodyShift(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	cfg := latencyOnly()
	hist := latencyHistory(r, 48)
	d := judgeLatency(cfg, lognormal(r, 80, 30, 0.5, 0), lognormal(r, 600, 20, 0.5, 0), hist, 1)
	if d.Outcome != decision.Fail || d.Rule != "body-shift" {
		t.Fatalf("×1.5 slower on 80 samples: %s %s: %s", d.Outcome, d.Rule, d.Reason)
	}
	alarms := 0
	const runs = 500
	for run := 0; run < runs; run++ {
		var c, k []float64
		for l := 1; l <= 5; l++ {
			c = append(c, lognormal(r, 16, 20, 0.5, 0.01)...)
			k = append(k, lognormal(r, 160, 20, 0.5, 0.01)...)
			if len(c) < 30 {
				continue
			}
			if d := judgeLatency(cfg, c, k, hist, l); d.Outcome == decision.Fail {
				alarms++
				break
			}
		}
	}
	t.Logf("A/A small-canary latency false alarms: %d of %d", alarms, runs)
	if f := float64(alarms) / runs; f > 0.01 {
		t.Fatalf("A/A false-alarm rate with 32–80 canary samples = %.3f, want ≤ 0.01", f)
	}
}

// TestLatencyLeaningSlowerHolds: a canary whose whole body is slower by
// about 20% on too few samples to prove it (z between leanZ and k) is held
// for more data, never blocked on it; the same canary at the control's
// speed promotes.
func TestLatencyLeaningSlowerHolds(t *testing.T) {
	cfg := latencyOnly()
	r := rand.New(rand.NewPCG(7, 7))
	hist := latencyHistory(r, 48)
	k := lognormal(r, 400, 20, 0.5, 0)
	in := decision.Input{At: at,
		Canary:  decision.ArmInput{LatencyMS: decision.Series(lognormal(r, 130, 22.5, 0.5, 0)), WindowS: decision.Num(60)},
		Control: decision.ArmInput{LatencyMS: decision.Series(k), WindowS: decision.Num(60)},
		History: hist}
	v := decision.Evaluate(cfg, in)
	d, _ := v.Dimension(decision.LatencyP99)
	if d.Outcome != decision.Pass || v.Decision != decision.Hold || v.HoldCause != decision.CauseEvidence || len(d.Diagnosis) == 0 {
		t.Fatalf("slower body: dimension %s (%s) %v, verdict %s cause %s: %s", d.Outcome, d.Reason, d.Diagnosis, v.Decision, v.HoldCause, v.Reason)
	}
	if got, final := cfg.Hold.Escalate(v, cfg.Hold.MaxExtensions, nil); got != decision.Hold || !final {
		t.Fatalf("leaning hold escalated to %s", got)
	}
	in.Canary.LatencyMS = decision.Series(lognormal(r, 250, 20, 0.5, 0))
	if v := decision.Evaluate(cfg, in); v.Decision != decision.Promote {
		t.Fatalf("canary at the control's speed: %s: %s", v.Decision, v.Reason)
	}
}

// shortPauses draws a minute-by-minute Poisson count of sub-millisecond
// GC pauses at perMin a minute (a Go service's stop-the-world phases).
func shortPauses(r *rand.Rand, minutes, perMin float64) []float64 {
	var v []float64
	for m := 0; m < int(minutes); m++ {
		for i := poisson(r, perMin); i > 0; i-- {
			v = append(v, 0.1+0.8*r.Float64())
		}
	}
	return v
}

// A canary that collects far more often — short pauses only, none long —
// fails the GC dimension on the cycle comparison; the history's canary
// slot, which carries a fifth of the traffic and collects at a third of the
// control's rate, sets the ratio a healthy canary shows: a canary at that
// ratio passes, one at 2.5× the control's rate (7.5× the A/A ratio) fails.
func TestGCShortPauseChurnFailsOnTheCycleRate(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	var hist []decision.HistoryWindow
	for i := 1; i <= 48; i++ {
		hist = append(hist, decision.HistoryWindow{At: at.Add(-time.Duration(i) * time.Hour),
			Canary: gcArm(2, shortPauses(r, 2, 10)...), Control: gcArm(2, shortPauses(r, 2, 30)...)})
	}
	good := judgeGC(gcArm(3, shortPauses(r, 3, 10)...), gcArm(3, shortPauses(r, 3, 30)...), hist)
	if good.Outcome != decision.Pass {
		t.Fatalf("healthy canary at the A/A ratio: %s: %s %v", good.Outcome, good.Reason, good.Diagnosis)
	}
	bad := judgeGC(gcArm(3, shortPauses(r, 3, 75)...), gcArm(3, shortPauses(r, 3, 30)...), hist)
	if bad.Outcome != decision.Fail || !strings.Contains(bad.Reason, "GC pauses of any length") {
		t.Fatalf("canary collecting 7.5× as often: %s: %s %v", bad.Outcome, bad.Reason, bad.Diagnosis)
	}
	if bad.Canary < 2*bad.Control || !strings.Contains(bad.Unit, "any length") {
		t.Fatalf("the failure shows the cycle rates: canary %g vs control %g %s", bad.Canary, bad.Control, bad.Unit)
	}
	t.Logf("churn: %s", bad.Reason)
	// Without history the prior spread decides: the same churn against a
	// control at the same rate is still clear, a canary at 1.5× is not.
	if d := judgeGC(gcArm(3, shortPauses(r, 3, 300)...), gcArm(3, shortPauses(r, 3, 30)...), nil); d.Outcome != decision.Fail {
		t.Fatalf("10× the control's GC cycles with no history: %s: %s", d.Outcome, d.Reason)
	}
	if d := judgeGC(gcArm(3, shortPauses(r, 3, 45)...), gcArm(3, shortPauses(r, 3, 30)...), nil); d.Outcome != decision.Pass {
		t.Fatalf("1.5× the control's GC cycles with no history: %s: %s", d.Outcome, d.Reason)
	}
	// The comparison can be turned off.
	cfg := decision.Default()
	for i := range cfg.Dimensions {
		cfg.Dimensions[i].Enabled = cfg.Dimensions[i].Kind == decision.GCPause
		cfg.Dimensions[i].CycleRatio = 0
	}
	cfg.Hash = cfg.ComputeHash()
	off, _ := decision.Evaluate(cfg, decision.Input{At: at, Canary: gcArm(3, shortPauses(r, 3, 300)...), Control: gcArm(3, shortPauses(r, 3, 30)...), History: hist}).Dimension(decision.GCPause)
	if off.Outcome != decision.Pass {
		t.Fatalf("cycle_ratio 0: %s: %s", off.Outcome, off.Reason)
	}
}

// Under the null — canary and control collecting at their A/A history's
// rates (Poisson counts per minute, the canary slot at a third of the
// control's), judged on cumulative windows at five looks — the cycle
// comparison fails at most α = 1% of the A/A canaries.
func TestGCCycleFalseAlarmRate(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	var hist []decision.HistoryWindow
	for i := 1; i <= 28; i++ {
		hist = append(hist, decision.HistoryWindow{At: at.Add(-time.Duration(i) * time.Hour),
			Canary: gcArm(1, shortPauses(r, 1, 8)...), Control: gcArm(1, shortPauses(r, 1, 24)...)})
	}
	gcFalseAlarms(t, "GC cycle", hist, func() []float64 { return shortPauses(r, 1, 8) }, func() []float64 { return shortPauses(r, 1, 24) })
}

// The long-pause SLO reads the canary's count on the quasi-Poisson scale:
// 30 long pauses in 3 minutes (10/min, Poisson lower bound well above the
// 3/min limit) are a clear breach where healthy arms' long-pause counts
// vary as Poisson counts do, and not where they vary five times more
// (A/A windows of 5 and 0 long pauses a minute, φ ≈ 5).
func TestGCLongPauseSLOUsesTheOverdispersion(t *testing.T) {
	long := func(minutes float64, n int) decision.ArmInput {
		p := make([]float64, n)
		for i := range p {
			p[i] = 20 // over long_pause (10 ms), under max_pause (120 ms)
		}
		return gcArm(minutes, p...)
	}
	hist := func(a, b int) []decision.HistoryWindow {
		var h []decision.HistoryWindow
		for i := 1; i <= 48; i++ {
			c, k := a, b
			if i%2 == 0 {
				c, k = b, a
			}
			h = append(h, decision.HistoryWindow{At: at.Add(-time.Duration(i) * time.Hour), Canary: long(1, c), Control: long(1, k)})
		}
		return h
	}
	canary, control := long(3, 30), long(3, 6)
	if d := judgeGC(canary, control, hist(3, 2)); d.Breach != decision.BreachCanary || d.Outcome != decision.Fail {
		t.Fatalf("10 long pauses/min against Poisson-like A/A history: %s breach %q: %s (%s)", d.Outcome, d.Breach, d.Reason, d.SigmaSource)
	}
	d := judgeGC(canary, control, hist(5, 0))
	if d.Breach == decision.BreachCanary {
		t.Fatalf("10 long pauses/min where healthy arms' counts vary five times a Poisson count's: an SLO breach: %s (%s)", d.Reason, d.SigmaSource)
	}
	t.Logf("overdispersed history: %s: %s (%s)", d.Outcome, d.Reason, d.SigmaSource)
}
