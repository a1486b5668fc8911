package decision

import (
	"math"
	"sort"

	"gonum.org/v1/gonum/mathext"
	"gonum.org/v1/gonum/stat/distuv"
)

// The distribution functions of the judge come from gonum: Φ and Φ⁻¹ from
// stat/distuv's UnitNormal (Φ⁻¹ is Wichura's AS 241, exact to about 1e-16),
// the binomial and Poisson tails from mathext's regularized incomplete beta
// and gamma integrals (Cephes), the exact Poisson bound from the inverse of
// the latter, ln B(a, b) from mathext.Lbeta. What no library has stays
// here: the mixture SPRT, the alpha spending, the Wilson score bound and
// the order-statistic helpers.

// normalQuantile returns Φ⁻¹(p): −Inf for p ≤ 0, +Inf for p ≥ 1 (where
// distuv panics), NaN for NaN.
func normalQuantile(p float64) float64 {
	switch {
	case p <= 0:
		return math.Inf(-1)
	case p >= 1:
		return math.Inf(1)
	}
	return distuv.UnitNormal.Quantile(p)
}

// wilsonLower is the lower Wilson score bound of x successes in n trials at
// one-sided level alpha (the inverted score test; no library has it, its z
// is normalQuantile's).
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

// poissonLower is the exact lower confidence bound for the mean of a
// Poisson count k at one-sided level alpha: the μ with P(N ≥ k | μ) = alpha,
// the alpha quantile of Gamma(k, 1) (half the chi-square quantile on 2k
// degrees of freedom). mathext.GammaIncRegInv gives it where it was checked
// to (1 ≤ k ≤ 1e6, alpha ≥ 1e-15: P(N ≥ k | μ) = alpha to 1e-9); elsewhere,
// or should it miss, bisection on mathext.GammaIncReg does: the inverse
// panics or returns NaN for some fractional k and tiny alpha.
func poissonLower(k, alpha float64) float64 {
	switch {
	case k <= 0 || alpha <= 0:
		return 0
	case alpha >= 1 || math.IsInf(k, 1):
		return math.Inf(1)
	case math.IsNaN(k) || math.IsNaN(alpha):
		return math.NaN()
	}
	if k >= 1 && k <= 1e6 && alpha >= 1e-15 {
		if mu, ok := gammaIncRegInv(k, alpha); ok && mu >= 0 && math.Abs(mathext.GammaIncReg(k, mu)-alpha) <= 1e-9*alpha {
			return mu
		}
	}
	// P(N ≥ k | μ) rises with μ from 0 to 1: bisect until the bracket
	// cannot shrink.
	lo, hi := 0.0, k+1
	for mathext.GammaIncReg(k, hi) < alpha && !math.IsInf(hi, 1) {
		lo, hi = hi, 2*hi
	}
	for range 2100 {
		mid := lo + (hi-lo)/2
		if mid <= lo || mid >= hi {
			break
		}
		if mathext.GammaIncReg(k, mid) < alpha {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// gammaIncRegInv is mathext.GammaIncRegInv(a, y), ok false where it
// panics.
func gammaIncRegInv(a, y float64) (x float64, ok bool) {
	defer func() {
		if recover() != nil {
			x, ok = math.NaN(), false
		}
	}()
	x = mathext.GammaIncRegInv(a, y)
	return x, !math.IsNaN(x)
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
	l := mathext.Lbeta(xc+a, xk+b) - mathext.Lbeta(a, b) - xc*math.Log(rho0) - xk*math.Log1p(-rho0)
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

// normalUpper is P(Z > z) for a standard normal Z: distuv's Φ(−z), that is
// ½·erfc(z/√2), exact far into the tail (distuv's Survival, 1 − erf, is 0
// beyond z ≈ 8.3).
func normalUpper(z float64) float64 { return distuv.UnitNormal.CDF(-z) }

// binomExactVar is the variance n·p·(1−p) up to which binomUpper and
// poissonUpper are exact. Beyond it they are the normal approximation with
// continuity correction, within about 1e-4 of the exact tail: the incomplete
// beta and gamma integrals lose digits as the counts grow (the incomplete
// beta's continued fraction stops at 300 terms: 1.8e-3 of the tail near the
// mean at a billion trials, p = 0.001), and the incomplete beta fails (NaN)
// for the float64-sized counts a windows/v1 file may hold.
const binomExactVar = 1e6

// binomUpper is the upper tail P(X ≥ x) of X ~ Binomial(n, p): the p-value
// of the one-sided exact binomial test, I_p(x, n−x+1) (mathext.RegIncBeta;
// distuv.Binomial's Survival is 1 − CDF, 0 below about 1e-16). Counts are
// rounded to whole numbers; past binomExactVar it is the normal
// approximation; NaN anywhere is no evidence (1).
func binomUpper(x, n, p float64) float64 {
	x, n = math.Round(x), math.Round(n)
	switch {
	case math.IsNaN(x) || math.IsNaN(n) || math.IsNaN(p):
		return 1
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
	return mathext.RegIncBeta(x, n-x+1, p)
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
// a whole count: the regularized lower incomplete gamma integral P(x, mu)
// (mathext.GammaIncReg; distuv.Poisson's Survival is 1 − CDF, 0 below
// about 1e-16). Past binomExactVar it is the normal approximation; NaN
// anywhere is no evidence (1).
func poissonUpper(x, mu float64) float64 {
	x = math.Round(x)
	switch {
	case math.IsNaN(x) || math.IsNaN(mu):
		return 1
	case x <= 0:
		return 1
	case mu <= 0:
		return 0
	case mu > binomExactVar:
		return normalUpper((x - 0.5 - mu) / math.Sqrt(mu))
	}
	return mathext.GammaIncReg(x, mu)
}
