package decision

import (
	"math"
	"math/rand/v2"
	"testing"
)

// widening keeps a one-sided test at k at its level when σ̂'s log is off by
// U ~ N(0, v): P(Z > k/f) equals the mixture's tail, checked against a
// Monte Carlo draw of U; no uncertainty, no widening; more, more.
func TestWideningKeepsTheLevel(t *testing.T) {
	if f := widening(0, 3); f != 1 {
		t.Fatalf("widening(0) = %v", f)
	}
	r := rand.New(rand.NewPCG(1, 2))
	prev := 1.0
	for _, v := range []float64{0.01, 0.05, 0.1, 0.3} {
		f := widening(v, 3)
		if !(f > prev) {
			t.Fatalf("widening(%v) = %v, not above %v", v, f, prev)
		}
		prev = f
		const n = 400000
		var tail float64
		for range n {
			tail += normalUpper(3 * math.Exp(-math.Sqrt(v)*r.NormFloat64()))
		}
		tail /= n
		if got := normalUpper(3 / f); math.Abs(got-tail) > 0.03*tail {
			t.Fatalf("v=%v: f=%.4f gives P(Z > k/f)=%.5g, the mixture's tail is %.5g", v, f, got, tail)
		}
	}
}

// betweenContexts measures no spread for contexts that differ only by
// their sampling, and needs enough contexts to measure any.
func TestBetweenContextsNeedsContexts(t *testing.T) {
	mk := func(ctx *Context, n int) []HistoryWindow {
		h := make([]HistoryWindow, n)
		for i := range h {
			h[i].Context = ctx
		}
		return h
	}
	scale := func(s map[string]float64) func([]HistoryWindow) (float64, int) {
		return func(p []HistoryWindow) (float64, int) { return s[p[0].Context.String()], len(p) }
	}
	a, b, c := NewContext(0.2, "networkDelay"), NewContext(0.5, "partition"), NewContext(0.9, "podKill")
	pool := append(append(mk(a, 6), mk(b, 6)...), mk(c, 6)...)
	if _, _, ok := betweenContexts(append(mk(a, 6), mk(b, 6)...), 0.25, logMADVar, scale(nil)); ok {
		t.Fatal("two contexts measured a between-context spread")
	}
	tau2, n, ok := betweenContexts(pool, 0.25, logMADVar, scale(map[string]float64{a.String(): 1, b.String(): 1.05, c.String(): 0.97}))
	if !ok || n != 3 || tau2 != 0 {
		t.Fatalf("alike contexts: τ²=%v over %d (ok %v)", tau2, n, ok)
	}
	tau2, _, _ = betweenContexts(pool, 0.25, logMADVar, scale(map[string]float64{a.String(): 1, b.String(): 3, c.String(): 9}))
	if tau2 < 0.8 {
		t.Fatalf("contexts 3× apart: τ²=%v", tau2)
	}
}
