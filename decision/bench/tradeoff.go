package bench

import (
	"fmt"
	"io"
	"sync"

	"github.com/chaosgate/chaosgate/decision"
)

// TradeoffAlphas are the levels at which the trade-off sweep judges the
// corpus besides the configured one.
var TradeoffAlphas = []float64{0.05, 0.1, 0.3}

// OperatingPoint is the chaosgate judge's figures at one alpha: what
// loosening the statistical tests buys in detection and score, and what
// it costs in false positives.
type OperatingPoint struct {
	Alpha        float64 `json:"alpha"`
	FPR          float64 `json:"false_positive_rate"`
	Detection    float64 `json:"detection_rate"`
	HoldRateGood float64 `json:"hold_rate_good"`
	NAB          float64 `json:"nab_score"`
}

// Tradeoff judges c with the chaosgate judge under cfg with its alpha
// replaced by each of alphas (everything else unchanged), one alpha per
// goroutine, and returns the operating points in the order of alphas.
func Tradeoff(c *Corpus, cfg *decision.Config, alphas []float64) []OperatingPoint {
	out := make([]OperatingPoint, len(alphas))
	var wg sync.WaitGroup
	for i, a := range alphas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cp := *cfg
			cp.Alpha = a
			op := PointOf(a, evaluate(c, NewChaosgate(&cp, c)))
			out[i] = op
		}()
	}
	wg.Wait()
	return out
}

// PointOf is the operating point of a chaosgate judge report at alpha.
func PointOf(alpha float64, jr JudgeReport) OperatingPoint {
	op := OperatingPoint{Alpha: alpha, FPR: jr.FPR, HoldRateGood: jr.HoldRateGood, NAB: jr.NAB}
	blocked, n := 0, 0
	for _, cell := range jr.ByEffect {
		blocked += cell.Blocked
		n += cell.N
	}
	if n > 0 {
		op.Detection = float64(blocked) / float64(n)
	}
	return op
}

// WriteTradeoff prints the operating points and, against the baseline
// judge with the best NAB-style score in rep, the smallest alpha at which
// chaosgate scores higher and at what false-positive rate.
func WriteTradeoff(w io.Writer, rep Report, points []OperatingPoint) {
	if len(points) == 0 {
		return
	}
	fmt.Fprintln(w, "\nchaosgate's trade-off (only alpha changed):")
	fmt.Fprintln(w, "  alpha  false positives  detection  hold rate, good  NAB-style score")
	for _, p := range points {
		fmt.Fprintf(w, "  %-5g  %14.1f%%  %8.1f%%  %14.1f%%  %15.1f\n", p.Alpha, 100*p.FPR, 100*p.Detection, 100*p.HoldRateGood, p.NAB)
	}
	var best *JudgeReport
	for i := range rep.Judges {
		if j := &rep.Judges[i]; j.Name != "chaosgate" && (best == nil || j.NAB > best.NAB) {
			best = j
		}
	}
	if best == nil {
		return
	}
	for _, p := range points {
		if p.NAB > best.NAB {
			fmt.Fprintf(w, "  at alpha %g chaosgate outscores %s (%.1f vs %.1f) at a false-positive rate of %.1f%% against its %.1f%%\n",
				p.Alpha, best.Name, p.NAB, best.NAB, 100*p.FPR, 100*best.FPR)
			return
		}
	}
	fmt.Fprintf(w, "  at none of these alphas does chaosgate outscore %s (%.1f)\n", best.Name, best.NAB)
}
