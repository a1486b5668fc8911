package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/chaosgate/chaosgate/decision"
)

// NAB-style costs: a false positive (good release blocked) costs 0.11, a
// false negative (bad release promoted) costs 1.0; a true detection earns up
// to 1.0, less the later it comes; a hold costs half of the error it avoids.
const (
	costFP = 0.11
	costFN = 1.0
)

// Cell is a detection rate over a slice of the bad releases.
type Cell struct {
	Slice    string  `json:"slice"`
	N        int     `json:"n"`
	Blocked  int     `json:"blocked"`
	Within3  int     `json:"blocked_within_3"`
	Held     int     `json:"held"`
	Promoted int     `json:"promoted"`
	Rate     float64 `json:"detection_rate"`
}

// JudgeReport is one judge's figures on the corpus.
type JudgeReport struct {
	Name string `json:"name"`
	// FPR is the share of good releases (no data fault) that were blocked.
	FPR       float64 `json:"false_positive_rate"`
	GoodN     int     `json:"good"`
	GoodBlock int     `json:"good_blocked"`
	// FaultBlocked counts good releases with a data fault that were blocked.
	FaultN       int `json:"data_fault_releases"`
	FaultBlocked int `json:"data_fault_blocked"`
	// FaultCaused counts those blocked because of the data fault: the same
	// release without the fault, judged for as many intervals, is not
	// blocked.
	FaultCaused int `json:"data_fault_caused_block"`
	// FaultDelayed counts the blocked ones whose twin, judged for as many
	// intervals, is blocked too, but promoted when judged as usual: the
	// data hold kept the release in the window until a failure both show.
	FaultDelayed  int     `json:"data_fault_delayed_into_block"`
	FaultPromoted int     `json:"data_fault_promoted"`
	HoldRateGood  float64 `json:"hold_rate_good"`
	HoldRateBad   float64 `json:"hold_rate_bad"`
	ByEffect      []Cell  `json:"detection_by_effect"`
	ByTraffic     []Cell  `json:"detection_by_canary_rps"`
	ByTotal       []Cell  `json:"detection_by_total_rps"`
	// MeanLooks is the mean number of intervals to a correct verdict
	// (good promoted, bad blocked).
	MeanLooks float64 `json:"mean_intervals_to_correct_verdict"`
	NAB       float64 `json:"nab_score"`
	// Goal is detection of the corpus's goal regressions (practical size,
	// the canary's alone) at ≥ 100 canary rps; GoalTotal the same at ≥ 100
	// total rps. Rate counts releases blocked by the last interval;
	// Within3 those blocked within the step window.
	Goal      Cell `json:"goal_detection_canary_100rps"`
	GoalTotal Cell `json:"goal_detection_total_100rps"`
	// GoalByClass is Goal per regression class.
	GoalByClass []Cell `json:"goal_detection_by_class"`
	// Detectable is Goal restricted to the regressions that stand out of
	// their service's own A/A noise (Release.SNR ≥ DetectableSNR, or not
	// modelled); DetectableByClass per class. A regression inside the
	// noise cannot be blocked without blocking good releases of that
	// service as often: Goal counts it, Detectable does not.
	Detectable        Cell   `json:"goal_detection_detectable"`
	DetectableByClass []Cell `json:"goal_detection_detectable_by_class,omitempty"`
	// TailBySpread is Goal for tail regressions by how far the service's
	// healthy arms' p99s drift apart, and by the latency source: what a
	// tail regression of a given size can be told from.
	TailBySpread      []Cell `json:"tail_detection_by_spread,omitempty"`
	ConsistencyN      int    `json:"consistency_releases"`
	ConsistencyBlocks int    `json:"consistency_blocked"`
	// GoodEnough counts good releases (no data fault) with at least 10
	// canary rps — enough data for a verdict — and how many were promoted.
	GoodEnoughN        int     `json:"good_enough_data"`
	GoodEnoughPromoted int     `json:"good_enough_data_promoted"`
	GoodEnoughRate     float64 `json:"good_enough_data_promote_rate"`
	// PersistentFaultN counts good releases whose data fault lasts every
	// interval; PersistentFaultPromoted those a judge promoted anyway.
	PersistentFaultN        int `json:"persistent_data_fault"`
	PersistentFaultPromoted int `json:"persistent_data_fault_promoted"`
	// FalsePositiveCauses counts, over the good releases (no data fault)
	// the judge blocked, the dimensions that failed in the blocking verdict
	// and the rule each failed by, most frequent first — for a judge that
	// can say (the chaosgate judge). A release can fail on several.
	FalsePositiveCauses []FailureCount `json:"false_positive_causes,omitempty"`
}

// FailureCount is how often a dimension failed by one rule.
type FailureCount struct {
	Dimension string `json:"dimension"`
	Rule      string `json:"rule"`
	N         int    `json:"n"`
}

// enoughCanaryRPS is the canary traffic from which a good release has
// enough data for a verdict: 600 requests an interval.
const enoughCanaryRPS = 10

// Report is the bench result.
type Report struct {
	// Corpus names the generator: "tuning" or "independent".
	Corpus   string        `json:"corpus"`
	Seed     uint64        `json:"seed"`
	Releases int           `json:"releases"`
	Good     int           `json:"good"`
	Bad      int           `json:"bad"`
	Faults   int           `json:"data_faults"`
	Judges   []JudgeReport `json:"judges"`
	// NABBlockAll is the NAB-style score of a judge that blocks every
	// release at its first interval: the reference that shows how much the
	// score rewards blocking on this corpus's share of bad releases.
	NABBlockAll float64 `json:"nab_block_all_reference"`
}

// Run judges every release of c with every judge.
func Run(c *Corpus, judges []Judge) Report {
	rep := Report{Corpus: c.Name, Seed: c.Seed, Releases: len(c.Releases)}
	for _, r := range c.Releases {
		switch {
		case r.Bad:
			rep.Bad++
		case r.Fault != "":
			rep.Faults++
		default:
			rep.Good++
		}
	}
	for _, j := range judges {
		rep.Judges = append(rep.Judges, evaluate(c, j))
	}
	if rep.Bad > 0 {
		// raw = bad·1 − good·costFP, null = −bad·costFN, perfect = bad.
		raw := float64(rep.Bad) - costFP*float64(rep.Good+rep.Faults)
		null := -costFN * float64(rep.Bad)
		rep.NABBlockAll = 100 * (raw - null) / (float64(rep.Bad) - null)
	}
	return rep
}

func bucket(rps float64) string {
	switch {
	case rps < 10:
		return "<10 rps"
	case rps < 100:
		return "10-100 rps"
	}
	return ">=100 rps"
}

func evaluate(c *Corpus, j Judge) JudgeReport {
	jr := JudgeReport{Name: j.Name()}
	effect := map[string]*Cell{}
	traffic := map[string]*Cell{}
	total := map[string]*Cell{}
	var order []string
	var raw, null, perfect float64
	var looks, correct float64
	var goodHold, bad, badHold int
	jr.Goal.Slice = "goal regressions, canary >= 100 rps"
	jr.GoalTotal.Slice = "goal regressions, total >= 100 rps"
	byClass := map[string]*Cell{}
	detByClass := map[string]*Cell{}
	var classes []string
	jr.Detectable.Slice = fmt.Sprintf("goal regressions with SNR >= %d, canary >= 100 rps", DetectableSNR)
	tailSpread := map[string]*Cell{}
	fpCauses := map[FailureCount]int{}
	for _, rel := range c.Releases {
		res := j.Run(rel)
		if !rel.Bad {
			if rel.Fault == "" && rel.CanaryRPS >= enoughCanaryRPS {
				jr.GoodEnoughN++
				if res.Outcome == decision.Promote {
					jr.GoodEnoughPromoted++
				}
			}
			if rel.Fault != "" && rel.Persist {
				jr.PersistentFaultN++
				if res.Outcome == decision.Promote {
					jr.PersistentFaultPromoted++
				}
			}
			if rel.Fault != "" {
				jr.FaultN++
				switch res.Outcome {
				case decision.Block:
					jr.FaultBlocked++
					// Blocked because of the fault only if the same release
					// without the fault, judged for as many intervals, is
					// not blocked. A data hold extends the window past the
					// step; a failure the judge sees in the extension that
					// the twin shows at that interval too is not caused by
					// the fault — but the twin, promoted at the step's end,
					// escaped it: counted apart, as delayed.
					clean := *rel
					clean.fault = nil
					clean.promoteFrom = res.Look
					if j.Run(&clean).Outcome != decision.Block {
						jr.FaultCaused++
					} else if clean.promoteFrom = 0; j.Run(&clean).Outcome != decision.Block {
						jr.FaultDelayed++
					}
				case decision.Promote:
					jr.FaultPromoted++
				}
			} else {
				jr.GoodN++
				if res.Outcome == decision.Block {
					jr.GoodBlock++
					if ex, ok := j.(failureExplainer); ok {
						for _, d := range ex.Failures(rel, res.Look) {
							fpCauses[FailureCount{Dimension: string(d.Name), Rule: string(d.Rule)}]++
						}
					}
				}
			}
			switch res.Outcome {
			case decision.Block:
				raw -= costFP
			case decision.Hold:
				goodHold++
				raw -= costFP / 2
			case decision.Promote:
				looks += float64(res.Look)
				correct++
			}
			continue
		}
		bad++
		null -= costFN
		perfect++
		switch res.Outcome {
		case decision.Block:
			raw += 1 - 0.1*float64(res.Look-1)
			looks += float64(res.Look)
			correct++
		case decision.Hold:
			badHold++
			raw -= costFN / 2
		case decision.Promote:
			raw -= costFN
		}
		add := func(m map[string]*Cell, key string, ordered bool) {
			cell, ok := m[key]
			if !ok {
				cell = &Cell{Slice: key}
				m[key] = cell
				if ordered {
					order = append(order, key)
				}
			}
			count(cell, res)
		}
		add(effect, rel.Label, true)
		add(traffic, bucket(rel.CanaryRPS), false)
		add(total, bucket(rel.TotalRPS), false)
		if rel.Goal && rel.CanaryRPS >= 100 {
			count(&jr.Goal, res)
			cell, ok := byClass[rel.Class]
			if !ok {
				cell = &Cell{Slice: rel.Class}
				byClass[rel.Class] = cell
				classes = append(classes, rel.Class)
			}
			count(cell, res)
			if rel.SNR == 0 || rel.SNR >= DetectableSNR {
				count(&jr.Detectable, res)
				dc, ok := detByClass[rel.Class]
				if !ok {
					dc = &Cell{Slice: rel.Class}
					detByClass[rel.Class] = dc
				}
				count(dc, res)
			}
		}
		if rel.Goal && rel.TotalRPS >= 100 {
			count(&jr.GoalTotal, res)
		}
		if rel.Goal && rel.CanaryRPS >= 100 && rel.Class == "p99-tail" && rel.TailSpread > 0 {
			src := "raw samples"
			if rel.svc.quantilesOnly {
				src = "quantiles"
			}
			key := fmt.Sprintf("tail spread %s, %s", spreadBucket(rel.TailSpread), src)
			cell, ok := tailSpread[key]
			if !ok {
				cell = &Cell{Slice: key}
				tailSpread[key] = cell
			}
			count(cell, res)
		}
		if rel.Defect == "consistency" {
			jr.ConsistencyN++
			if res.Outcome == decision.Block {
				jr.ConsistencyBlocks++
			}
		}
	}
	if jr.GoodN > 0 {
		jr.FPR = float64(jr.GoodBlock) / float64(jr.GoodN)
	}
	if n := jr.GoodN + jr.FaultN; n > 0 {
		jr.HoldRateGood = float64(goodHold) / float64(n)
	}
	if bad > 0 {
		jr.HoldRateBad = float64(badHold) / float64(bad)
	}
	if correct > 0 {
		jr.MeanLooks = looks / correct
	}
	if perfect != null {
		jr.NAB = 100 * (raw - null) / (perfect - null)
	}
	for _, k := range order {
		jr.ByEffect = append(jr.ByEffect, finish(effect[k]))
	}
	for _, k := range []string{"<10 rps", "10-100 rps", ">=100 rps"} {
		if c, ok := traffic[k]; ok {
			jr.ByTraffic = append(jr.ByTraffic, finish(c))
		}
		if c, ok := total[k]; ok {
			jr.ByTotal = append(jr.ByTotal, finish(c))
		}
	}
	jr.Goal, jr.GoalTotal = finish(&jr.Goal), finish(&jr.GoalTotal)
	jr.Detectable = finish(&jr.Detectable)
	for _, k := range classes {
		jr.GoalByClass = append(jr.GoalByClass, finish(byClass[k]))
		dc, ok := detByClass[k]
		if !ok {
			dc = &Cell{Slice: k}
		}
		jr.DetectableByClass = append(jr.DetectableByClass, finish(dc))
	}
	for _, b := range []string{"< 5%", "5-15%", ">= 15%"} {
		for _, src := range []string{"quantiles", "raw samples"} {
			if c, ok := tailSpread[fmt.Sprintf("tail spread %s, %s", b, src)]; ok {
				jr.TailBySpread = append(jr.TailBySpread, finish(c))
			}
		}
	}
	if jr.GoodEnoughN > 0 {
		jr.GoodEnoughRate = float64(jr.GoodEnoughPromoted) / float64(jr.GoodEnoughN)
	}
	for k, n := range fpCauses {
		k.N = n
		jr.FalsePositiveCauses = append(jr.FalsePositiveCauses, k)
	}
	sort.Slice(jr.FalsePositiveCauses, func(a, b int) bool {
		x, y := jr.FalsePositiveCauses[a], jr.FalsePositiveCauses[b]
		if x.N != y.N {
			return x.N > y.N
		}
		if x.Dimension != y.Dimension {
			return x.Dimension < y.Dimension
		}
		return x.Rule < y.Rule
	})
	return jr
}

// failureExplainer is a judge that can say which dimensions failed in the
// verdict it gave on a release at a look.
type failureExplainer interface {
	Failures(rel *Release, look int) []decision.DimensionResult
}

// spreadBucket names the bucket of a service's p99 drift σ.
func spreadBucket(s float64) string {
	switch {
	case s < 0.05:
		return "< 5%"
	case s < 0.15:
		return "5-15%"
	}
	return ">= 15%"
}

func count(c *Cell, res Ruling) {
	c.N++
	switch res.Outcome {
	case decision.Block:
		c.Blocked++
		if res.Look <= 3 {
			c.Within3++
		}
	case decision.Hold:
		c.Held++
	case decision.Promote:
		c.Promoted++
	}
}

func finish(c *Cell) Cell {
	if c.N > 0 {
		c.Rate = float64(c.Blocked) / float64(c.N)
	}
	return *c
}

// WriteTable prints the report side by side for a terminal.
func WriteTable(w io.Writer, rep Report) {
	fmt.Fprintf(w, "chaosgate bench judge — %s corpus, seed %d: %d releases (%d good, %d bad, %d good with data faults); %d intervals of %s max, step window %d\n\n",
		rep.Corpus, rep.Seed, rep.Releases, rep.Good, rep.Bad, rep.Faults, MaxLooks, Interval, StepLooks)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "metric\t"
	for _, j := range rep.Judges {
		head += j.Name + "\t"
	}
	fmt.Fprintln(tw, head)
	row := func(name string, f func(JudgeReport) string) {
		s := name + "\t"
		for _, j := range rep.Judges {
			s += f(j) + "\t"
		}
		fmt.Fprintln(tw, s)
	}
	pc := func(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }
	row("false-positive rate (good blocked)", func(j JudgeReport) string { return fmt.Sprintf("%s (%d/%d)", pc(j.FPR), j.GoodBlock, j.GoodN) })
	row("good w/ data fault blocked (any cause)", func(j JudgeReport) string { return fmt.Sprintf("%d/%d", j.FaultBlocked, j.FaultN) })
	row("good blocked because of missing data", func(j JudgeReport) string { return fmt.Sprintf("%d/%d", j.FaultCaused, j.FaultN) })
	row("  held by missing data into a later block", func(j JudgeReport) string { return fmt.Sprintf("%d/%d", j.FaultDelayed, j.FaultN) })
	row("good w/ data fault promoted", func(j JudgeReport) string { return fmt.Sprintf("%d/%d", j.FaultPromoted, j.FaultN) })
	row("hold rate, good", func(j JudgeReport) string { return pc(j.HoldRateGood) })
	row("hold rate, bad", func(j JudgeReport) string { return pc(j.HoldRateBad) })
	row("mean intervals to correct verdict", func(j JudgeReport) string { return fmt.Sprintf("%.2f", j.MeanLooks) })
	row("NAB-style score (FP 0.11, FN 1.0)", func(j JudgeReport) string { return fmt.Sprintf("%.1f", j.NAB) })
	row("consistency violations blocked", func(j JudgeReport) string { return fmt.Sprintf("%d/%d", j.ConsistencyBlocks, j.ConsistencyN) })
	row("goal regressions blocked, canary>=100rps", func(j JudgeReport) string {
		return fmt.Sprintf("%s (%d/%d, %d within %d iv)", pc(j.Goal.Rate), j.Goal.Blocked, j.Goal.N, j.Goal.Within3, StepLooks)
	})
	row("same, total>=100rps", func(j JudgeReport) string {
		return fmt.Sprintf("%s (%d/%d)", pc(j.GoalTotal.Rate), j.GoalTotal.Blocked, j.GoalTotal.N)
	})
	if len(rep.Judges) > 0 {
		for i := range rep.Judges[0].GoalByClass {
			name := rep.Judges[0].GoalByClass[i].Slice
			row("  goal class "+name, func(j JudgeReport) string {
				if i >= len(j.GoalByClass) {
					return "-"
				}
				c := j.GoalByClass[i]
				return fmt.Sprintf("%s (%d/%d)", pc(c.Rate), c.Blocked, c.N)
			})
		}
	}
	row(fmt.Sprintf("goal regressions SNR>=%d, canary>=100rps", DetectableSNR), func(j JudgeReport) string {
		return fmt.Sprintf("%s (%d/%d, %d within %d iv)", pc(j.Detectable.Rate), j.Detectable.Blocked, j.Detectable.N, j.Detectable.Within3, StepLooks)
	})
	if len(rep.Judges) > 0 {
		for i := range rep.Judges[0].DetectableByClass {
			name := rep.Judges[0].DetectableByClass[i].Slice
			row(fmt.Sprintf("  SNR>=%d class %s", DetectableSNR, name), func(j JudgeReport) string {
				if i >= len(j.DetectableByClass) {
					return "-"
				}
				c := j.DetectableByClass[i]
				return fmt.Sprintf("%s (%d/%d)", pc(c.Rate), c.Blocked, c.N)
			})
		}
	}
	if len(rep.Judges) > 0 {
		for i := range rep.Judges[0].TailBySpread {
			name := rep.Judges[0].TailBySpread[i].Slice
			row("    p99-tail, "+name, func(j JudgeReport) string {
				if i >= len(j.TailBySpread) {
					return "-"
				}
				c := j.TailBySpread[i]
				return fmt.Sprintf("%s (%d/%d)", pc(c.Rate), c.Blocked, c.N)
			})
		}
	}
	row("good with enough data promoted", func(j JudgeReport) string {
		return fmt.Sprintf("%s (%d/%d)", pc(j.GoodEnoughRate), j.GoodEnoughPromoted, j.GoodEnoughN)
	})
	row("persistent data fault promoted", func(j JudgeReport) string {
		return fmt.Sprintf("%d/%d", j.PersistentFaultPromoted, j.PersistentFaultN)
	})
	fmt.Fprintln(tw, "\t")
	fmt.Fprintln(tw, "detection rate by effect (blocked/n)\t")
	if len(rep.Judges) > 0 {
		for i := range rep.Judges[0].ByEffect {
			name := rep.Judges[0].ByEffect[i].Slice
			row("  "+name, func(j JudgeReport) string {
				c := j.ByEffect[i]
				return fmt.Sprintf("%s (%d/%d)", pc(c.Rate), c.Blocked, c.N)
			})
		}
		fmt.Fprintln(tw, "detection rate by canary traffic\t")
		for i := range rep.Judges[0].ByTraffic {
			name := rep.Judges[0].ByTraffic[i].Slice
			row("  canary "+name, func(j JudgeReport) string {
				c := j.ByTraffic[i]
				return fmt.Sprintf("%s (%d/%d)", pc(c.Rate), c.Blocked, c.N)
			})
		}
		fmt.Fprintln(tw, "detection rate by total traffic\t")
		for i := range rep.Judges[0].ByTotal {
			name := rep.Judges[0].ByTotal[i].Slice
			row("  total "+name, func(j JudgeReport) string {
				c := j.ByTotal[i]
				return fmt.Sprintf("%s (%d/%d)", pc(c.Rate), c.Blocked, c.N)
			})
		}
	}
	tw.Flush()
	best := ""
	bestNAB := -1e9
	for _, j := range rep.Judges {
		if j.NAB > bestNAB {
			best, bestNAB = j.Name, j.NAB
		}
	}
	fmt.Fprintf(w, "\nbest NAB-style score: %s (%.1f)\n", best, bestNAB)
	best, bestNAB = "", -1e9
	for _, j := range rep.Judges {
		if j.FPR <= 0.01 && j.NAB > bestNAB {
			best, bestNAB = j.Name, j.NAB
		}
	}
	if best != "" {
		fmt.Fprintf(w, "best NAB-style score at a false-positive rate <= 1%%: %s (%.1f)\n", best, bestNAB)
	}
	fmt.Fprintf(w, "reference: a judge that blocks every release at its first interval scores %.1f (false-positive rate 100%%); with %d of %d releases bad, the score rewards blocking, so read it beside the false-positive rate\n",
		rep.NABBlockAll, rep.Bad, rep.Releases)
	for _, j := range rep.Judges {
		if len(j.FalsePositiveCauses) == 0 {
			continue
		}
		var parts []string
		for _, c := range j.FalsePositiveCauses {
			parts = append(parts, fmt.Sprintf("%s by %s %d", c.Dimension, c.Rule, c.N))
		}
		fmt.Fprintf(w, "%s's %d false positives, by what failed in the blocking verdict: %s\n", j.Name, j.GoodBlock, strings.Join(parts, ", "))
	}
}

// Goal is one target the chaosgate judge must meet on the corpus.
type Goal struct {
	Name string `json:"name"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

// Goals checks the targets for the judge named "chaosgate" in rep.
func Goals(rep Report) []Goal {
	var cg *JudgeReport
	bestOther := -1e9
	for i := range rep.Judges {
		if rep.Judges[i].Name == "chaosgate" {
			cg = &rep.Judges[i]
		} else if rep.Judges[i].NAB > bestOther {
			bestOther = rep.Judges[i].NAB
		}
	}
	if cg == nil {
		return nil
	}
	classesOK, worst := len(cg.DetectableByClass) > 0, ""
	for _, c := range cg.DetectableByClass {
		if c.N == 0 {
			continue
		}
		if c.Rate < 0.9 {
			classesOK = false
		}
		if c.Rate < 0.9 {
			worst += fmt.Sprintf("%s %.1f%% (%d/%d), ", c.Slice, 100*c.Rate, c.Blocked, c.N)
		}
	}
	if classesOK {
		worst = "every class"
	}
	return []Goal{
		{"false-positive rate <= 1% per good release", fmt.Sprintf("%.2f%% (%d/%d)", 100*cg.FPR, cg.GoodBlock, cg.GoodN), cg.FPR <= 0.01},
		{fmt.Sprintf("detection >= 95%% of goal regressions at >= 100 canary rps that stand out of their service's A/A noise (SNR >= %d)", DetectableSNR),
			fmt.Sprintf("%.1f%% (%d/%d; %d within %d intervals); every goal regression, inside the noise too: %.1f%% (%d/%d)", 100*cg.Detectable.Rate, cg.Detectable.Blocked, cg.Detectable.N, cg.Detectable.Within3, StepLooks, 100*cg.Goal.Rate, cg.Goal.Blocked, cg.Goal.N),
			cg.Detectable.N > 0 && cg.Detectable.Rate >= 0.95},
		{fmt.Sprintf("each goal class >= 90%% at >= 100 canary rps (SNR >= %d)", DetectableSNR), strings.TrimSuffix(worst, ", "), classesOK},
		{"every consistency violation blocked", fmt.Sprintf("%d/%d", cg.ConsistencyBlocks, cg.ConsistencyN), cg.ConsistencyN > 0 && cg.ConsistencyBlocks == cg.ConsistencyN},
		{"no good release blocked for missing data", fmt.Sprintf("%d/%d blocked because of the data fault (%d blocked for other reasons, %d of them after a data hold kept them in the window)", cg.FaultCaused, cg.FaultN, cg.FaultBlocked-cg.FaultCaused, cg.FaultDelayed), cg.FaultCaused == 0},
		{"missing data holds: no release with a persistent data fault promoted", fmt.Sprintf("%d/%d promoted", cg.PersistentFaultPromoted, cg.PersistentFaultN), cg.PersistentFaultPromoted == 0},
		{"good releases with enough data (>= 10 canary rps) promoted >= 80%", fmt.Sprintf("%.1f%% (%d/%d)", 100*cg.GoodEnoughRate, cg.GoodEnoughPromoted, cg.GoodEnoughN), cg.GoodEnoughRate >= 0.8},
		{"best NAB-style score of the four judges", fmt.Sprintf("%.1f vs best other %.1f", cg.NAB, bestOther), cg.NAB > bestOther},
	}
}

// WriteGoals prints the goal checks.
func WriteGoals(w io.Writer, goals []Goal) {
	fmt.Fprintln(w, "\ngoals (chaosgate judge):")
	for _, g := range goals {
		mark := "MET   "
		if !g.Met {
			mark = "NOT MET"
		}
		fmt.Fprintf(w, "  %s %s: %s\n", mark, g.Name, g.Got)
	}
}
