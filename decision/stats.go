package decision

import (
	"math"
	"sort"
)

// normalQuantile returns Φ⁻¹(p) (Acklam's rational approximation, |ε| < 1.2e-9
// after one Newton step is not needed at the precision the judge uses).
func normalQuantile(p float64) float64 {
	if p <= 0 {
		return math.Inf(-1)
	}
	if p >= 1 {
		return math.Inf(1)
	}
	a := [6]float64{-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00}
	b := [5]float64{-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01}
	c := [6]float64{-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00}
	d := [4]float64{7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00}
	const lo = 0.02425
	switch {
	case p < lo:
		q := math.Sqrt(-2 * math.Log(p))
		return (((((c[0]*q+c[1])*q+c[2])*q+c[3])*q+c[4])*q + c[5]) / ((((d[0]*q+d[1])*q+d[2])*q+d[3])*q + 1)
	case p > 1-lo:
		q := math.Sqrt(-2 * math.Log(1-p))
		return -(((((c[0]*q+c[1])*q+c[2])*q+c[3])*q+c[4])*q + c[5]) / ((((d[0]*q+d[1])*q+d[2])*q+d[3])*q + 1)
	}
	q := p - 0.5
	r := q * q
	return (((((a[0]*r+a[1])*r+a[2])*r+a[3])*r+a[4])*r + a[5]) * q / (((((b[0]*r+b[1])*r+b[2])*r+b[3])*r+b[4])*r + 1)
}

// wilsonLower is the lower Wilson score bound of x successes in n trials at
// one-sided level alpha.
func wilsonLower(x, n, alpha float64) float64 {
	if n <= 0 {
		return 0
	}
	z := normalQuantile(1 - alpha)
	p := x / n
	z2 := z * z
	centre := p + z2/(2*n)
	margin := z * math.Sqrt(p*(1-p)/n+z2/(4*n*n))
	lb := (centre - margin) / (1 + z2/n)
	if lb < 0 {
		return 0
	}
	return lb
}

// wilsonUpper is the upper Wilson score bound of x successes in n trials at
// one-sided level alpha.
func wilsonUpper(x, n, alpha float64) float64 {
	if n <= 0 {
		return 1
	}
	z := normalQuantile(1 - alpha)
	p := x / n
	z2 := z * z
	centre := p + z2/(2*n)
	margin := z * math.Sqrt(p*(1-p)/n+z2/(4*n*n))
	return math.Min(1, (centre+margin)/(1+z2/n))
}

// poissonLower is a lower confidence bound for the mean of a Poisson count k
// at one-sided level alpha (Wilson–Hilferty approximation of the exact
// chi-square bound).
func poissonLower(k, alpha float64) float64 {
	if k <= 0 {
		return 0
	}
	z := normalQuantile(1 - alpha)
	v := 1 - 1/(9*k) - z/(3*math.Sqrt(k))
	if v <= 0 {
		return 0
	}
	return k * v * v * v
}

// lbeta is ln B(a, b).
func lbeta(a, b float64) float64 {
	la, _ := math.Lgamma(a)
	lb, _ := math.Lgamma(b)
	lab, _ := math.Lgamma(a + b)
	return la + lb - lab
}

// mixRatio and mixConcentration shape the Beta mixture of mixtureSPRT.
const (
	mixRatio         = 3.0
	mixConcentration = 8.0
)

// mixtureSPRT is an always-valid test that the canary's event rate is higher
// than the control's. Conditional on the total count n = xc + xk, the canary's
// share xc is Binomial(n, ρ) with ρ0 = ec/(ec+ek) under the null (equal rates
// per unit of exposure). The Beta-mixture likelihood ratio is a martingale
// under the null, so P(sup Λ ≥ 1/α) ≤ α however often it is checked (Ville's
// inequality). phi ≥ 1 is the overdispersion measured in the baseline
// history: the log-likelihood ratio is deflated by it (quasi-likelihood). It returns ln Λ (0 when the canary is not
// worse) and the always-valid p-value min(1, 1/Λ).
func mixtureSPRT(xc, ec, xk, ek, phi float64) (logLR, p float64) {
	if ec <= 0 || ek <= 0 {
		return 0, 1
	}
	n := xc + xk
	if n <= 0 {
		return 0, 1
	}
	rho0 := ec / (ec + ek)
	if xc/n <= rho0 {
		return 0, 1
	}
	// The mixing distribution weighs the effects that matter: a Beta prior
	// on the canary's share centred on three times the control's rate
	// (+0.5 pp on a 0.25% error rate), concentration a = 8 — half its
	// mass between about 2.2× and 3.8×. Any fixed prior keeps Λ a
	// martingale under the null; a diffuse one (a = 2 around a doubling)
	// spends its evidence on effects too small or too large to matter.
	rho1 := mixRatio * rho0 / (mixRatio*rho0 + 1 - rho0)
	a := mixConcentration
	b := a * (1 - rho1) / rho1
	l := lbeta(xc+a, xk+b) - lbeta(a, b) - xc*math.Log(rho0) - xk*math.Log1p(-rho0)
	if phi > 1 {
		l /= phi // quasi-likelihood deflation for overdispersion
	}
	if l <= 0 {
		return 0, 1
	}
	return l, math.Min(1, math.Exp(-l))
}

// median returns the median of v (v is not modified).
func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// robustSigma is 1.4826·MAD of v: a consistent estimator of σ for normal data
// that ignores outliers.
func robustSigma(v []float64) float64 {
	if len(v) < 2 {
		return math.NaN()
	}
	m := median(v)
	dev := make([]float64, len(v))
	for i, x := range v {
		dev[i] = math.Abs(x - m)
	}
	return 1.4826 * median(dev)
}

// quantile returns the q-quantile of v (nearest rank on a sorted copy).
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

// clamp01 bounds x to [0, 1].
func clamp01(x float64) float64 {
	if x < 0 || math.IsNaN(x) {
		return 0
	}
	if x > 1 {
		return 1
	}
	return x
}

// finite returns x, or 0 when x is NaN or infinite (JSON cannot carry them).
func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return x
}

// zMax is the largest z a p-value in float64 can express: −Φ⁻¹ of the
// smallest positive float64 (about 4.9e-324).
const zMax = 38.4

// finiteZ is finite for a z: ±Inf (a p-value that underflowed to 0) is
// ±zMax, not 0, so evidence beyond what a float holds still reads as
// overwhelming; NaN is 0.
func finiteZ(z float64) float64 {
	switch {
	case math.IsNaN(z):
		return 0
	case z > zMax:
		return zMax
	case z < -zMax:
		return -zMax
	}
	return z
}

// normalUpper is P(Z > z) for a standard normal Z.
func normalUpper(z float64) float64 { return 0.5 * math.Erfc(z/math.Sqrt2) }

// lbinom is ln C(n, k).
func lbinom(n, k float64) float64 {
	a, _ := math.Lgamma(n + 1)
	b, _ := math.Lgamma(k + 1)
	c, _ := math.Lgamma(n - k + 1)
	return a - b - c
}

// binomExactVar is the variance n·p·(1−p) up to which binomUpper sums the
// exact terms: about 8.5 standard deviations of them, some 8500 at most.
// Beyond it the normal approximation with continuity correction is within
// about 1e-4 of the exact tail, and summing would take time proportional to
// the standard deviation — unbounded for the counts a windows/v1 file may
// hold.
const binomExactVar = 1e6

// binomUpper is the upper tail P(X ≥ x) of X ~ Binomial(n, p): the p-value
// of the one-sided exact binomial test. Counts are rounded to whole
// numbers. It sums the probability mass in log space from the side of the
// mode that converges, so it stays exact for large n; past binomExactVar it
// is the normal approximation.
func binomUpper(x, n, p float64) float64 {
	x, n = math.Round(x), math.Round(n)
	switch {
	case x <= 0:
		return 1
	case x > n || p <= 0:
		return 0
	case p >= 1:
		return 1
	}
	if v := n * p * (1 - p); v > binomExactVar {
		return normalUpper((x - 0.5 - n*p) / math.Sqrt(v))
	}
	lp, lq := math.Log(p), math.Log1p(-p)
	term := func(k float64) float64 { return math.Exp(lbinom(n, k) + k*lp + (n-k)*lq) }
	return upperTail(x, math.Floor((n+1)*p), n, term)
}

// upperTail is P(X ≥ x) of a discrete distribution on 0..max with the
// given mode and probability mass term(k), summed from the side of the mode
// where the terms fall (so it converges), until they are below 1e-17 of
// the sum.
func upperTail(x, mode, max float64, term func(k float64) float64) float64 {
	if x > mode {
		sum := 0.0
		for k := x; k <= max; k++ {
			t := term(k)
			sum += t
			if t == 0 || t < 1e-17*sum { // the terms only fall from here
				break
			}
		}
		return math.Min(1, sum)
	}
	// 1 − P(X ≤ x−1); terms fall from x−1 downward.
	sum := 0.0
	for k := x - 1; k >= 0; k-- {
		t := term(k)
		sum += t
		if t == 0 || t < 1e-17*sum {
			break
		}
	}
	return clamp01(1 - sum)
}

// spentLevel is the share of alpha a test may spend at look l (1-based) so
// that the false-alarm probability over any number of looks stays at most
// alpha: α/(l(l+1)) sums to α over l = 1, 2, … (union bound), whatever the
// correlation between looks. A window that spans l history intervals is
// look l.
func spentLevel(alpha float64, l int) float64 {
	if l < 1 {
		l = 1
	}
	return alpha / float64(l*(l+1))
}

// logQuantileSE is the distribution-free standard error of ln of the
// q-quantile of the sorted, positive samples s: the width of the
// order-statistic interval whose ranks are n·q ± m·√(n·q·(1−q)) divided by
// 2m — m binomial standard deviations of the count below the quantile,
// m = 2 when that interval lies inside the sample (steadier on small
// samples: it spans more order statistics), else m = 1. It needs no
// bootstrap and no model of the latency distribution.
func logQuantileSE(s []float64, q float64) float64 {
	n := float64(len(s))
	if n < 2 {
		return math.Inf(1)
	}
	h := math.Sqrt(n * q * (1 - q))
	for _, m := range []float64{2, 1} {
		lo := int(math.Floor(n*q-m*h)) - 1
		hi := int(math.Ceil(n*q+m*h)) - 1
		if m > 1 && (lo < 0 || hi > len(s)-1) {
			continue
		}
		lo = max(0, min(lo, len(s)-1))
		hi = max(0, min(hi, len(s)-1))
		if s[lo] <= 0 || s[hi] <= 0 {
			return math.Inf(1)
		}
		return (math.Log(s[hi]) - math.Log(s[lo])) / (2 * m)
	}
	return math.Inf(1)
}

// sortedQuantile is the q-quantile (nearest rank) of sorted samples s.
func sortedQuantile(s []float64, q float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// poissonUpper is the upper tail P(N ≥ x) of N ~ Poisson(mu), x rounded to
// a whole count. It sums the mass in log space from the side of the mode
// where the terms fall.
func poissonUpper(x, mu float64) float64 {
	x = math.Round(x)
	switch {
	case x <= 0:
		return 1
	case mu <= 0:
		return 0
	case mu > binomExactVar:
		return normalUpper((x - 0.5 - mu) / math.Sqrt(mu))
	}
	term := func(k float64) float64 {
		lg, _ := math.Lgamma(k + 1)
		return math.Exp(-mu + k*math.Log(mu) - lg)
	}
	return upperTail(x, math.Floor(mu), math.Inf(1), term)
}
