package decision_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/chaosgate/chaosgate/decision"
)

// contextHistory is a steady A/A history and three fault contexts whose
// arms' p99s drift apart by very different amounts.
func contextHistory(r *rand.Rand) []decision.HistoryWindow {
	h := withContext(latencyHistory(r, 48), decision.NewContext(0))
	h = append(h, faultedLatencyHistory(r, 8, 0.002, decision.NewContext(0.2, "networkDelay"))...)
	h = append(h, faultedLatencyHistory(r, 8, 0.05, decision.NewContext(0.5, "partition"))...)
	h = append(h, faultedLatencyHistory(r, 8, 0.2, decision.NewContext(0.8, "podKill"))...)
	return h
}

func sigmaUncertainty(mode string) *decision.Config {
	cfg := latencyOnly()
	cfg.Baseline.SigmaUncertainty = mode
	cfg.Hash = cfg.ComputeHash()
	return cfg
}

// A fault context the history has never seen borrows its σ̂ from the
// contexts it has seen; with baseline.sigma_uncertainty on, that σ̂ is
// widened by how much those contexts differ, and the explanation says so.
// Off (the default), σ̂ is as estimated. A steady window borrows nothing
// and is not widened by "contexts".
func TestSigmaUncertaintyWidensWhatAContextBorrows(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	hist := contextHistory(r)
	c, k := lognormal(r, 3000, 20, 0.5, 0.01), lognormal(r, 3000, 20, 0.5, 0.01)
	judge := func(mode string, ctx *decision.Context) decision.DimensionResult {
		in := decision.Input{At: at, Context: ctx,
			Canary:  decision.ArmInput{LatencyMS: decision.Series(c), WindowS: decision.Num(180)},
			Control: decision.ArmInput{LatencyMS: decision.Series(k), WindowS: decision.Num(180)},
			History: hist}
		d, _ := decision.Evaluate(sigmaUncertainty(mode), in).Dimension(decision.LatencyP99)
		return d
	}
	unseen := decision.NewContext(0.5, "splitBrain")
	off, on := judge("", unseen), judge(decision.SigmaUncertaintyContexts, unseen)
	if strings.Contains(off.SigmaSource, "widened") {
		t.Fatalf("sigma_uncertainty off widened σ̂: %s", off.SigmaSource)
	}
	if !strings.Contains(on.SigmaSource, "widened") || !strings.Contains(on.SigmaSource, "fault contexts seen differ by τ") {
		t.Fatalf("an unseen fault context's borrowed σ̂ was not widened: %s", on.SigmaSource)
	}
	if !(on.Sigma > 1.2*off.Sigma) {
		t.Fatalf("σ̂ %.4g widened to only %.4g: %s", off.Sigma, on.Sigma, on.SigmaSource)
	}
	t.Logf("unseen context: σ̂ %.4g → %.4g (%s)", off.Sigma, on.Sigma, on.SigmaSource)
	steady := decision.NewContext(0)
	if d := judge(decision.SigmaUncertaintyContexts, steady); strings.Contains(d.SigmaSource, "widened") {
		t.Fatalf("a steady window was widened for what it does not borrow: %s", d.SigmaSource)
	}
	// "full" counts the sampling error of a σ̂ read from 48 steady windows:
	// a small widening, named.
	off, on = judge("", steady), judge(decision.SigmaUncertaintyFull, steady)
	if !strings.Contains(on.SigmaSource, "widened") || !(on.Sigma > off.Sigma) || on.Sigma > 1.3*off.Sigma {
		t.Fatalf("full, steady history of 48 windows: σ̂ %.4g → %.4g (%s)", off.Sigma, on.Sigma, on.SigmaSource)
	}
}

// When the contexts the history has seen all drift alike, a rarely seen
// one is not widened for being rare.
func TestSigmaUncertaintyLeavesAlikeContexts(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	h := withContext(latencyHistory(r, 48), decision.NewContext(0))
	for _, ctx := range []*decision.Context{decision.NewContext(0.2, "networkDelay"), decision.NewContext(0.5, "partition"), decision.NewContext(0.8, "podKill")} {
		h = append(h, withContext(latencyHistory(r, 16), ctx)...)
	}
	c, k := lognormal(r, 3000, 20, 0.5, 0.01), lognormal(r, 3000, 20, 0.5, 0.01)
	in := decision.Input{At: at, Context: decision.NewContext(0.5, "splitBrain"),
		Canary:  decision.ArmInput{LatencyMS: decision.Series(c), WindowS: decision.Num(180)},
		Control: decision.ArmInput{LatencyMS: decision.Series(k), WindowS: decision.Num(180)},
		History: h}
	off, _ := decision.Evaluate(sigmaUncertainty(""), in).Dimension(decision.LatencyP99)
	on, _ := decision.Evaluate(sigmaUncertainty(decision.SigmaUncertaintyContexts), in).Dimension(decision.LatencyP99)
	if on.Sigma > 1.1*off.Sigma {
		t.Fatalf("alike contexts: σ̂ %.4g widened to %.4g (%s)", off.Sigma, on.Sigma, on.SigmaSource)
	}
}
