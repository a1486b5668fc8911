package decision_test

import (
	"math"
	"math/rand/v2"
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
		arm := func() decision.Arm {
			return decision.Arm{Requests: decision.Num(3000), WindowS: decision.Num(60),
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
		Canary:  decision.Arm{LatencyMS: decision.Series(c), WindowS: decision.Num(float64(60 * looks))},
		Control: decision.Arm{LatencyMS: decision.Series(k), WindowS: decision.Num(float64(60 * looks))},
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
	if d.Outcome != decision.Fail || d.Rule != "spread" {
		t.Fatalf("variance ×1.5 not caught: %s %s: %s", d.Outcome, d.Rule, d.Reason)
	}
}

// Extra delay on a few of the canary's requests (a fault hitting its pods
// harder) moves its p99 and a little of its median, not its body: no failure.
func TestLatencyExtraDelayOnFewRequestsPasses(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	d := judgeLatency(latencyOnly(), lognormal(r, 3000, 20, 0.5, 0.05), lognormal(r, 3000, 20, 0.5, 0.01), latencyHistory(r, 48), 3)
	if d.Outcome == decision.Fail {
		t.Fatalf("a fault's extra delay on 5%% of the canary's requests failed it: %s: %s", d.Rule, d.Reason)
	}
}

// With rich A/A history the σ̂ floor no longer hides a 15% slower release;
// with thin history the floor stands (two healthy clusters may differ by
// that much).
func TestLatencyFloorOnlyWhileHistoryIsThin(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	c, k := lognormal(r, 3000, 23, 0.5, 0), lognormal(r, 3000, 20, 0.5, 0)
	cfg := latencyOnly()
	if d := judgeLatency(cfg, c, k, latencyHistory(r, 48), 3); d.Outcome != decision.Fail || d.Rule != "body-shift" {
		t.Fatalf("15%% slower with 48 A/A windows: %s %s: %s", d.Outcome, d.Rule, d.Reason)
	}
	if d := judgeLatency(cfg, c, k, latencyHistory(r, 3), 3); d.Outcome == decision.Fail {
		t.Fatalf("15%% slower with 3 A/A windows failed despite the floor: %s: %s", d.Rule, d.Reason)
	}
}

// TestLatencyFalseAlarmRate judges A/A canaries at each of five looks on
// cumulative samples, with per-arm fault delay on a random share of
// requests: the latency dimension must fail at most 1% of them.
func TestLatencyFalseAlarmRate(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	cfg := latencyOnly()
	hist := latencyHistory(r, 48)
	const runs, looks = 300, 5
	alarms := 0
	for run := 0; run < runs; run++ {
		var c, k []float64
		chaos := r.Float64() * 0.02
		for l := 1; l <= looks; l++ {
			c = append(c, lognormal(r, 300, 20, 0.5, chaos*math.Exp(0.5*r.NormFloat64()))...)
			k = append(k, lognormal(r, 300, 20, 0.5, chaos*math.Exp(0.5*r.NormFloat64()))...)
			if d := judgeLatency(cfg, c, k, hist, l); d.Outcome == decision.Fail {
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
func gcArm(minutes float64, pauses ...float64) decision.Arm {
	return decision.Arm{GCPausesMS: decision.Series(pauses), WindowS: decision.Num(60 * minutes)}
}

func judgeGC(c, k decision.Arm, hist []decision.HistoryWindow) decision.DimensionResult {
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

// A hold whose failures are decisive (z ≥ √2·k) escalates without extending
// the window when the policy escalates to block; a hold at the limit
// (a single GC pause over it) is extended as before, and so is a GC pause
// failure however strong: a host short of CPU stretches one arm's
// stop-the-world pauses for a while.
func TestDecisiveHoldEscalatesAtOnce(t *testing.T) {
	var calm []decision.HistoryWindow
	for i := 1; i <= 48; i++ {
		calm = append(calm, decision.HistoryWindow{At: at.Add(-time.Duration(i) * time.Hour), Canary: healthyArm(5000, 0.001, 100), Control: healthyArm(50000, 0.001, 100)})
	}
	c, k := healthyArm(5000, 0.001, 100), healthyArm(50000, 0.001, 100)
	c.DependencyFailures = decision.Num(150) // 3% of the calls against none
	v := decision.Evaluate(nil, decision.Input{At: at, Canary: c, Control: k, History: calm})
	if v.Decision != decision.Hold || !v.Decisive {
		t.Fatalf("3%% dependency failures against none: %s decisive=%v: %s", v.Decision, v.Decisive, v.Reason)
	}
	p := decision.Default().Hold
	if d, final := p.Escalate(v, 0, nil); d != decision.Block || !final {
		t.Fatalf("decisive hold: %s final=%v", d, final)
	}
	p.EscalateTo = decision.Hold
	if d, final := p.Escalate(v, 0, nil); d != decision.Hold || final {
		t.Fatalf("decisive hold under escalate_to hold: %s final=%v", d, final)
	}
	c.DependencyFailures = decision.Num(0)
	c.GCPausesMS = decision.Series([]float64{0.4, 150})
	v = decision.Evaluate(nil, decision.Input{At: at, Canary: c, Control: k, History: calm})
	if v.Decision != decision.Hold || v.Decisive {
		t.Fatalf("one pause over the limit: %s decisive=%v: %s", v.Decision, v.Decisive, v.Reason)
	}
	c.GCPausesMS = decision.Series([]float64{11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22})
	v = decision.Evaluate(nil, decision.Input{At: at, Canary: c, Control: k, History: calm})
	if d, _ := v.Dimension(decision.GCPause); v.Decision != decision.Hold || v.Decisive || d.Outcome != decision.Fail || d.Z < math.Sqrt2*d.K {
		t.Fatalf("12 long GC pauses in a minute against a calm history: %s decisive=%v, gc z=%.2f k=%.2f: %s", v.Decision, v.Decisive, d.Z, d.K, v.Reason)
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
	const runs, looks = 1000, 5
	alarms := 0
	for run := 0; run < runs; run++ {
		var c, k []float64
		for l := 1; l <= looks; l++ {
			c = append(c, pauses(1, rate)...)
			k = append(k, pauses(1, rate)...)
			if d := judgeGC(gcArm(float64(l), c...), gcArm(float64(l), k...), hist); d.Outcome == decision.Fail {
				alarms++
				break
			}
		}
	}
	t.Logf("A/A GC false alarms: %d of %d", alarms, runs)
	if f := float64(alarms) / runs; f > 0.01 {
		t.Fatalf("A/A GC false-alarm rate over %d looks = %.3f, want ≤ 0.01", looks, f)
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
		Canary:  decision.Arm{LatencyMS: decision.Series(lognormal(r, 130, 22.5, 0.5, 0)), WindowS: decision.Num(60)},
		Control: decision.Arm{LatencyMS: decision.Series(k), WindowS: decision.Num(60)},
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
