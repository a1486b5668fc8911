package decision

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func TestBinomUpperKnownValues(t *testing.T) {
	cases := []struct {
		x, n, p, want float64
	}{
		{8, 10, 0.5, 56.0 / 1024},             // exact: C(10,8)+C(10,9)+C(10,10) over 2^10
		{1, 20, 0.05, 1 - math.Pow(0.95, 20)}, // at least one
		{5, 13, 0.1, 0.006460155959500003},    // the canary's share of 13 events when it has 10% of the traffic
		{0, 5, 0.3, 1},
		{6, 5, 0.3, 0},
		{130, 100000, 0.001, 0.002271263866042332}, // large n, upper side of the mode
		{90, 100000, 0.001, 0.8537778207362572},    // below the mode: through the complement
	}
	for _, c := range cases {
		got := binomUpper(c.x, c.n, c.p)
		if math.Abs(got-c.want) > 1e-9*math.Max(1, c.want) && math.Abs(got-c.want)/c.want > 1e-7 {
			t.Errorf("P(X ≥ %g | n=%g, p=%g) = %.12g, want %.12g", c.x, c.n, c.p, got, c.want)
		}
	}
}

// TestBinomUpperHugeCounts: past binomExactVar the tail is the normal
// approximation, close to the exact one (reference values summed at 30
// digits); a tail whose first term underflows ends at once; counts a
// windows/v1 file may hold (1e12 requests) are judged without summing
// millions of terms.
func TestBinomUpperHugeCounts(t *testing.T) {
	approx := []struct{ x, n, p, want float64 }{
		{2003795, 1e7, 0.2, 0.0013535193849383157}, // +3 sd
		{2005000, 1e7, 0.2, 3.8864354064188965e-5}, // +3.95 sd
		{1001000, 1e9, 0.001, 0.15865521347698826}, // +1 sd
	}
	for _, c := range approx {
		if got := binomUpper(c.x, c.n, c.p); math.Abs(got-c.want) > 0.03*c.want {
			t.Errorf("P(X ≥ %g | n=%g, p=%g) = %.6g, want %.6g within 3%%", c.x, c.n, c.p, got, c.want)
		}
	}
	extreme := []struct{ x, n, p, want float64 }{
		{5000, 1e6, 0.0001, 0},  // far above the mode: the first term underflows
		{1e9, 1e12, 0.0015, 1},  // far below the mode
		{2e9, 1e12, 0.0015, 0},  // far above it
		{1e290, 1e300, 1e-5, 1}, // float64-sized counts
		{1.1e295, 1e300, 1e-5, 0},
	}
	for _, c := range extreme {
		if got := binomUpper(c.x, c.n, c.p); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("P(X ≥ %g | n=%g, p=%g) = %g, want %g", c.x, c.n, c.p, got, c.want)
		}
	}
}

func TestSpentLevelSumsToAlpha(t *testing.T) {
	sum := 0.0
	for l := 1; l <= 100000; l++ {
		sum += spentLevel(0.01, l)
	}
	if sum > 0.01 || sum < 0.0099 {
		t.Fatalf("levels over 100000 looks sum to %g, want just under 0.01", sum)
	}
}

// TestLogQuantileSEMatchesTheory compares the order-statistic SE of ln p50
// and ln p10 with the asymptotic SE of a normal quantile, σ·√(q(1−q))/φ(z_q)/√n,
// and with the spread of the estimate over repeated samples.
func TestLogQuantileSEMatchesTheory(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const n, sigma = 4000, 0.5
	draw := func() []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = 20 * math.Exp(sigma*r.NormFloat64())
		}
		sort.Float64s(s)
		return s
	}
	for _, q := range []float64{0.5, 0.25, 0.1, 0.05} {
		zq := normalQuantile(q)
		theory := sigma * math.Sqrt(q*(1-q)) / (math.Exp(-zq*zq/2) / math.Sqrt(2*math.Pi)) / math.Sqrt(n)
		var est, lq []float64
		for i := 0; i < 200; i++ {
			s := draw()
			est = append(est, logQuantileSE(s, q))
			lq = append(lq, math.Log(sortedQuantile(s, q)))
		}
		mean := 0.0
		for _, x := range lq {
			mean += x
		}
		mean /= float64(len(lq))
		v := 0.0
		for _, x := range lq {
			v += (x - mean) * (x - mean)
		}
		emp := math.Sqrt(v / float64(len(lq)-1))
		got := median(est)
		if math.Abs(got/theory-1) > 0.15 || math.Abs(got/emp-1) > 0.25 {
			t.Errorf("q=%g: order-statistic SE %.4g, theory %.4g, empirical %.4g", q, got, theory, emp)
		}
	}
}

func TestPoissonUpperKnownValues(t *testing.T) {
	for _, c := range []struct{ x, mu, want float64 }{
		{0, 2, 1},
		{1, 0.5, 1 - math.Exp(-0.5)},
		{3, 2, 1 - math.Exp(-2)*(1+2+2)},
		{1, 0, 0},
		{10, 2, 4.650e-05},
	} {
		if got := poissonUpper(c.x, c.mu); math.Abs(got-c.want) > 1e-3*math.Max(c.want, 1e-3) {
			t.Errorf("P(N ≥ %g | μ=%g) = %.6g, want %.6g", c.x, c.mu, got, c.want)
		}
	}
	// A mean beyond the exact range is the normal approximation, at once.
	if p := poissonUpper(2e6+3000, 2e6); p <= 0 || p >= 0.05 {
		t.Errorf("P(N ≥ μ+2.1σ) for μ=2e6 = %g", p)
	}
}

// A two-path latency (a fast body and a slow path of ~1 % of requests)
// puts its p99 at the edge of the slow path: the p99 of a window of such
// samples is far less certain than the log-normal formula through p50 and
// p99 says. The window's own order statistics show it, and p99SE takes the
// wider of the two; on a log-normal body the two agree.
func TestP99SEWidensForATwoPathTail(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const n = 3000
	logNormal := make([]float64, n)
	twoPath := make([]float64, n)
	for i := range n {
		logNormal[i] = 20 * math.Exp(0.5*r.NormFloat64())
		twoPath[i] = 20 * math.Exp(0.3*r.NormFloat64())
		if r.Float64() < 0.011 {
			twoPath[i] = 300 * math.Exp(0.4*r.NormFloat64())
		}
	}
	formula := func(v []float64) float64 {
		// The log-normal formula alone: the same arm given as quantiles.
		return p99SE(ArmInput{LatencyP50: Num(quantile(v, 0.5)), LatencyP99: Num(quantile(v, 0.99)), LatencySamples: Num(float64(len(v)))})
	}
	raw := func(v []float64) float64 { return p99SE(ArmInput{LatencyMS: Series(v)}) }
	if f, w := formula(logNormal), raw(logNormal); w < f || w > 1.6*f {
		t.Errorf("log-normal body: raw-sample SE %.4f, formula %.4f: want about the same", w, f)
	}
	f, w := formula(twoPath), raw(twoPath)
	if w < 2*f {
		t.Errorf("two-path tail: raw-sample SE %.4f not well above the formula's %.4f", w, f)
	}
	// The spread of the p99 itself over many such windows says which is right.
	var lp []float64
	for range 200 {
		v := make([]float64, n)
		for i := range v {
			v[i] = 20 * math.Exp(0.3*r.NormFloat64())
			if r.Float64() < 0.011 {
				v[i] = 300 * math.Exp(0.4*r.NormFloat64())
			}
		}
		lp = append(lp, math.Log(quantile(v, 0.99)))
	}
	sd := stddev(lp)
	if math.Abs(w-sd) > math.Abs(f-sd) {
		t.Errorf("two-path tail: the p99's spread over 200 windows is %.4f; raw-sample SE %.4f is further from it than the formula's %.4f", sd, w, f)
	}
	t.Logf("two-path tail, %d samples: p99 spread over windows %.4f, order-statistic SE %.4f, log-normal formula %.4f", n, sd, w, f)
}

func stddev(v []float64) float64 {
	var m float64
	for _, x := range v {
		m += x
	}
	m /= float64(len(v))
	var ss float64
	for _, x := range v {
		ss += (x - m) * (x - m)
	}
	return math.Sqrt(ss / float64(len(v)-1))
}
