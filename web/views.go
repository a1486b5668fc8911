package web

import (
	"fmt"
	"math"
	"strings"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine/report"
)

// chip is one dimension of a judged step at a glance: its state, a
// symbol that says the same without colour, and the number that decided
// it.
type chip struct {
	Name   string
	State  string // pass | lean | hold | fail | off (not collected)
	Symbol string
	Number string
	Reason string
}

// chipOf is the chip of one dimension result.
func chipOf(d decision.DimensionResult) chip {
	c := chip{Name: string(d.Name), Reason: d.Reason, Number: decidingNumber(d)}
	switch {
	case d.Rule == decision.RuleNotCollected:
		c.State, c.Symbol = "off", "–"
	case d.Outcome == decision.Fail:
		c.State, c.Symbol = "fail", "✗"
	case d.Outcome == decision.Inconclusive:
		c.State, c.Symbol = "hold", "?"
	case d.Leaning:
		c.State, c.Symbol = "lean", "≈"
	default:
		c.State, c.Symbol = "pass", "✓"
	}
	return c
}

// decidingNumber is the figure the dimension's rule turned on.
func decidingNumber(d decision.DimensionResult) string {
	unit := d.Unit
	if unit != "" && unit != "%" {
		unit = " " + unit
	}
	switch d.Rule {
	case decision.RuleNotCollected:
		return "not collected"
	case decision.RuleNoData:
		return "no data"
	case decision.RuleHardLimit:
		return fmt.Sprintf("%s%s over limit %s%s", fmtNum(d.Canary), unit, fmtNum(d.HardLimit), unit)
	case decision.RuleAdaptiveSigma, decision.RuleWithinSigma, decision.RuleWithinDrift:
		if finiteNum(d.Z) && finiteNum(d.K) && d.K != 0 {
			return fmt.Sprintf("z %.2f (k %.2f)", d.Z, d.K)
		}
	case decision.RuleSequentialTest:
		if finiteNum(d.PValue) {
			return fmt.Sprintf("p %.2g", d.PValue)
		}
	}
	if finiteNum(d.Canary) && finiteNum(d.Control) {
		return fmt.Sprintf("%s vs %s%s", fmtNum(d.Canary), fmtNum(d.Control), unit)
	}
	return ""
}

func finiteNum(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func fmtNum(f float64) string {
	if !finiteNum(f) {
		return "n/a"
	}
	return fmt.Sprintf("%.4g", f)
}

// stepChips is one row of chips per judged step.
type stepChips struct {
	Weight  int
	Verdict string
	Reason  string
	Chips   []chip
}

// chipsOf gives the chips of every step of a report.
func chipsOf(r *report.Report) []stepChips {
	if r == nil {
		return nil
	}
	out := make([]stepChips, 0, len(r.Steps))
	for _, s := range r.Steps {
		row := stepChips{Weight: s.Weight, Verdict: s.Verdict, Reason: s.Reason}
		for _, d := range s.Dimensions {
			row.Chips = append(row.Chips, chipOf(d))
		}
		out = append(out, row)
	}
	return out
}

// compareRow is one dimension of the last step of two runs side by side.
type compareRow struct {
	Name string
	A, B *chip
}

// compareSteps lines up the dimensions of the last judged step of a and b.
func compareSteps(a, b *report.Report) []compareRow {
	last := func(r *report.Report) []decision.DimensionResult {
		if r == nil || len(r.Steps) == 0 {
			return nil
		}
		return r.Steps[len(r.Steps)-1].Dimensions
	}
	var rows []compareRow
	index := map[string]int{}
	for i, dims := range [][]decision.DimensionResult{last(a), last(b)} {
		for _, d := range dims {
			c := chipOf(d)
			j, ok := index[c.Name]
			if !ok {
				j = len(rows)
				index[c.Name] = j
				rows = append(rows, compareRow{Name: c.Name})
			}
			if i == 0 {
				rows[j].A = &c
			} else {
				rows[j].B = &c
			}
		}
	}
	return rows
}

// triggerLabel is a trigger in words for the run lists.
func triggerLabel(trigger string) string {
	kind, who, _ := strings.Cut(trigger, ":")
	switch kind {
	case "api", "ui", "schedule", "cli", "ci":
		if who == "" {
			return kind
		}
		return kind + " · " + who
	}
	return trigger
}

// recoveryBar is one fault's time to recover, as a bar of the run page's
// resilience chart.
type recoveryBar struct {
	Label       string
	Seconds     string
	WidthPct    float64
	Unrecovered bool
}

// recoveryBars draws the time each measured fault took to recover,
// scaled to the longest.
func recoveryBars(r *report.Report) []recoveryBar {
	if r == nil {
		return nil
	}
	longest := 0.0
	for _, f := range r.Faults {
		if f.Availability != nil && f.Availability.RecoveryS != nil {
			longest = math.Max(longest, *f.Availability.RecoveryS)
		}
	}
	var out []recoveryBar
	for _, f := range r.Faults {
		if f.Availability == nil {
			continue
		}
		b := recoveryBar{Label: f.Kind + " · " + f.Arm + " · " + f.Target}
		switch v := f.Availability.RecoveryS; {
		case v == nil:
			b.Unrecovered, b.Seconds, b.WidthPct = true, "not recovered in the run", 100
		default:
			b.Seconds = fmt.Sprintf("%.1f s", *v)
			if longest > 0 {
				b.WidthPct = math.Round(*v/longest*1000) / 10
			}
		}
		out = append(out, b)
	}
	return out
}
