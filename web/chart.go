package web

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/chaosgate/chaosgate/engine/report"
)

// timeChart is one rendered chart of a run: canary vs control over time.
type timeChart struct {
	ID    string        // "success" | "p99" (stable, used as DOM id suffix "chart-<ID>")
	Title string        // "Success ratio", "p99 latency"
	Unit  string        // "%", "ms"
	SVG   template.HTML // the whole <svg>…</svg>, built safely (escape every text you put in)
}

// Geometry of a time chart, in viewBox units. The margins hold the tick
// labels (left, bottom), the axis titles, and a top band for the legend
// and the step labels.
const (
	tcW, tcH                 = 720.0, 240.0
	tcLeft, tcRight          = 70.0, 30.0
	tcTop, tcBottom          = 32.0, 40.0
	tcPlotW                  = tcW - tcLeft - tcRight
	tcPlotH                  = tcH - tcTop - tcBottom
	tcMaxPoints              = 600 // per series
	tcMaxMarkers             = 16  // point markers per series
	tcLineH                  = 13.0
	tcCharW                  = 6.3 // estimated advance of one 11px character
	tcMinSpan                = 6.0 // seconds shown at least (single sample, short runs)
	tcMinXTicks, tcMaxXTicks = 4, 8
	tcMinYTicks, tcMaxYTicks = 3, 6
)

// chartArms are the arms drawn, in legend order (calibration is not).
var chartArms = []string{"canary", "control"}

// chartPoint is one sample: t in Unix seconds, v in the chart's unit.
type chartPoint struct{ t, v float64 }

// chartBand is one fault window, [from, to] in Unix seconds.
type chartBand struct {
	from, to float64
	label    string
}

// chartMark is a time marker: a step boundary or a verdict.
type chartMark struct {
	t       float64
	label   string
	verdict string // promote|hold|block for verdict marks, "" when unknown
}

// chartMetric describes one chart of runCharts.
type chartMetric struct {
	id, title, unit string
	value           func(ArmLive) (float64, bool)
	worst           func(a, b float64) bool // a is worse than b (kept when downsampling)
}

var chartMetrics = []chartMetric{
	{id: "success", title: "Success ratio", unit: "%",
		value: func(a ArmLive) (float64, bool) {
			v := a.SuccessRatio
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return 0, false
			}
			return math.Min(math.Max(v, 0), 1) * 100, true
		},
		worst: func(a, b float64) bool { return a < b }},
	{id: "p99", title: "p99 latency", unit: "ms",
		value: func(a ArmLive) (float64, bool) {
			v := a.P99MS
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				return 0, false
			}
			return v, true
		},
		worst: func(a, b float64) bool { return a > b }},
}

// unixSeconds is t as fractional Unix seconds.
func unixSeconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

// runCharts draws the success ratio and p99 latency of the canary and the control over the run.
func runCharts(events []LiveEvent, rep *report.Report) []timeChart {
	evs := make([]LiveEvent, 0, len(events))
	for _, e := range events {
		if !e.T.IsZero() {
			evs = append(evs, e)
		}
	}
	sort.SliceStable(evs, func(i, j int) bool {
		if !evs[i].T.Equal(evs[j].T) {
			return evs[i].T.Before(evs[j].T)
		}
		return evs[i].Seq < evs[j].Seq
	})

	// Samples per metric and arm, and the time range they cover.
	pts := make([]map[string][]chartPoint, len(chartMetrics))
	for i := range pts {
		pts[i] = map[string][]chartPoint{}
	}
	first, last, n := 0.0, 0.0, 0
	for _, e := range evs {
		if e.Kind != "state" || e.State == nil {
			continue
		}
		t := unixSeconds(e.T)
		for _, arm := range chartArms {
			a, ok := e.State.Arms[arm]
			if !ok || a.Requests <= 0 {
				continue
			}
			for i, m := range chartMetrics {
				if v, ok := m.value(a); ok {
					pts[i][arm] = append(pts[i][arm], chartPoint{t, v})
					if n == 0 {
						first = t
					}
					last = t
					n++
				}
			}
		}
	}
	if n == 0 {
		return nil
	}
	// The time axis covers the samples and every fault window, step and
	// verdict of the run, so a fault before the first sample (or after the
	// last) still shows where it happened.
	allBands := faultBands(evs, rep, last)
	steps, verdicts := chartMarks(evs, rep)
	from, to := first, last
	for _, b := range allBands {
		from, to = math.Min(from, b.from), math.Max(to, b.to)
	}
	for _, m := range append(append([]chartMark(nil), steps...), verdicts...) {
		from, to = math.Min(from, m.t), math.Max(to, m.t)
	}
	x0, x1, xticks, xstep := niceTimeTicks(from, to)
	bands := clipBands(allBands, x0, x1)

	var out []timeChart
	for i, m := range chartMetrics {
		series := pts[i]
		if len(series["canary"])+len(series["control"]) == 0 {
			continue
		}
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, arm := range chartArms {
			for _, p := range series[arm] {
				lo, hi = math.Min(lo, p.v), math.Max(hi, p.v)
			}
			series[arm] = downsample(series[arm], tcMaxPoints, m.worst)
		}
		if m.id == "success" {
			// Success ratios live near 100 %: zoom on the range they span.
			lo, hi = math.Min(lo, 99), 100
		} else {
			lo = 0
		}
		y0, y1, yticks, ystep := niceValueTicks(lo, hi, tcMinYTicks, tcMaxYTicks)
		c := chartCanvas{x0: x0, x1: x1, y0: y0, y1: y1}
		svg := c.render(m, series, bands, steps, verdicts, xticks, xstep, yticks, ystep, first, last)
		out = append(out, timeChart{ID: m.id, Title: m.title, Unit: m.unit, SVG: template.HTML(svg)})
	}
	return out
}

// downsample keeps at most max points: the worst point of each run of
// consecutive samples (lowest success ratio, highest p99), so that dips
// and spikes survive.
func downsample(ps []chartPoint, max int, worst func(a, b float64) bool) []chartPoint {
	if len(ps) <= max {
		return ps
	}
	k := (len(ps) + max - 1) / max
	out := make([]chartPoint, 0, (len(ps)+k-1)/k)
	for i := 0; i < len(ps); i += k {
		best := ps[i]
		for _, p := range ps[i:min(i+k, len(ps))] {
			if worst(p.v, best.v) {
				best = p
			}
		}
		out = append(out, best)
	}
	return out
}

// faultBands returns the fault windows of the run: from the report when
// there is one (same-kind faults overlapping in time, on any arms, make
// one band), else from the live states' active faults. A fault still
// active ends at end.
func faultBands(evs []LiveEvent, rep *report.Report, end float64) []chartBand {
	if rep != nil {
		return reportBands(rep.Faults, end)
	}
	var bands []chartBand
	open := map[string]float64{}
	var order []string // open faults by first appearance, for a stable output
	lastState := end
	for _, e := range evs {
		if e.Kind != "state" || e.State == nil {
			continue
		}
		t := unixSeconds(e.T)
		lastState = math.Max(lastState, t)
		now := map[string]bool{}
		for _, f := range e.State.ActiveFaults {
			now[f] = true
			if _, ok := open[f]; !ok {
				open[f] = t
				order = append(order, f)
			}
		}
		kept := order[:0]
		for _, f := range order {
			if now[f] {
				kept = append(kept, f)
				continue
			}
			bands = append(bands, chartBand{from: open[f], to: t, label: liveFaultLabel(f)})
			delete(open, f)
		}
		order = kept
	}
	for _, f := range order {
		bands = append(bands, chartBand{from: open[f], to: lastState, label: liveFaultLabel(f)})
	}
	sort.SliceStable(bands, func(i, j int) bool { return bands[i].from < bands[j].from })
	return bands
}

// liveFaultLabel drops the fault id the runner appends to an active
// fault ("partition on canary/n2 (f1)" → "partition on canary/n2").
func liveFaultLabel(f string) string {
	if strings.HasSuffix(f, ")") {
		if i := strings.LastIndex(f, " ("); i > 0 {
			return f[:i]
		}
	}
	return f
}

func reportBands(faults []report.Fault, end float64) []chartBand {
	type win struct {
		kind     string
		from, to float64
		arms     map[string]bool
	}
	var ws []win
	for _, f := range faults {
		if f.AppliedAt.IsZero() {
			continue
		}
		from, to := unixSeconds(f.AppliedAt), end
		if f.RecoveredAt != nil && !f.RecoveredAt.IsZero() {
			to = unixSeconds(*f.RecoveredAt)
		}
		to = math.Max(to, from)
		ws = append(ws, win{kind: f.Kind, from: from, to: to, arms: map[string]bool{f.Arm: true}})
	}
	sort.SliceStable(ws, func(i, j int) bool {
		if ws[i].kind != ws[j].kind {
			return ws[i].kind < ws[j].kind
		}
		return ws[i].from < ws[j].from
	})
	var merged []win
	for _, w := range ws {
		if k := len(merged) - 1; k >= 0 && merged[k].kind == w.kind && w.from <= merged[k].to {
			merged[k].to = math.Max(merged[k].to, w.to)
			for a := range w.arms {
				merged[k].arms[a] = true
			}
			continue
		}
		merged = append(merged, w)
	}
	bands := make([]chartBand, 0, len(merged))
	for _, w := range merged {
		label := w.kind
		if arms := armList(w.arms); arms != "" {
			label += " · " + arms
		}
		bands = append(bands, chartBand{from: w.from, to: w.to, label: label})
	}
	sort.SliceStable(bands, func(i, j int) bool { return bands[i].from < bands[j].from })
	return bands
}

// armList names a set of arms: canary, control and calibration first, in
// that order, then any other arm alphabetically, joined with "+".
func armList(set map[string]bool) string {
	var known, other []string
	for _, a := range []string{"canary", "control", "calibration"} {
		if set[a] {
			known = append(known, a)
		}
	}
	for a := range set {
		if a != "" && a != "canary" && a != "control" && a != "calibration" {
			other = append(other, a)
		}
	}
	sort.Strings(other)
	return strings.Join(append(known, other...), "+")
}

// clipBands keeps the part of each band inside [x0, x1].
func clipBands(bands []chartBand, x0, x1 float64) []chartBand {
	var out []chartBand
	for _, b := range bands {
		if b.to < x0 || b.from > x1 {
			continue
		}
		b.from, b.to = math.Max(b.from, x0), math.Min(b.to, x1)
		out = append(out, b)
	}
	return out
}

// chartMarks returns the step boundaries (a phase event's weight changing
// to a new non-zero value) and the verdicts of the run.
func chartMarks(evs []LiveEvent, rep *report.Report) (steps, verdicts []chartMark) {
	weight := 0
	for _, e := range evs {
		t := unixSeconds(e.T)
		switch e.Kind {
		case "phase":
			if e.Weight != 0 && e.Weight != weight {
				weight = e.Weight
				steps = append(steps, chartMark{t: t, label: strconv.Itoa(e.Weight) + "%"})
			}
		case "verdict":
			v := verdictWord(e.Msg)
			if v == "" && rep != nil {
				for _, s := range rep.Steps {
					if s.Weight == e.Weight && validVerdictWord(s.Verdict) {
						v = s.Verdict
					}
				}
			}
			label := strconv.Itoa(e.Weight) + "%: "
			if v != "" {
				label += v
			} else {
				label += "verdict"
			}
			verdicts = append(verdicts, chartMark{t: t, label: label, verdict: v})
		}
	}
	return steps, verdicts
}

func validVerdictWord(v string) bool { return v == "promote" || v == "hold" || v == "block" }

// verdictWord reads the decision from a verdict message such as
// "step 10%: promote (score 0.98, coverage 1.000) — reason": the first
// word after the first ": ", else the first verdict word in the message.
func verdictWord(msg string) string {
	if i := strings.Index(msg, ": "); i >= 0 {
		if f := strings.Fields(msg[i+2:]); len(f) > 0 {
			if w := strings.Trim(f[0], ".,;:()—-"); validVerdictWord(w) {
				return w
			}
		}
	}
	for _, f := range strings.FieldsFunc(msg, func(r rune) bool { return !unicode.IsLetter(r) }) {
		if validVerdictWord(f) {
			return f
		}
	}
	return ""
}

// timeStepCandidates are the nice tick intervals in seconds up to a day;
// longer intervals are 1-2-5 multiples of days.
var timeStepCandidates = []float64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400}

func timeStep(i int) float64 {
	if i < len(timeStepCandidates) {
		return timeStepCandidates[i]
	}
	j := i - len(timeStepCandidates) + 1 // 1 → 2 days, 2 → 5 days, 3 → 10 days…
	return 86400 * []float64{1, 2, 5}[j%3] * math.Pow(10, float64(j/3))
}

// niceTimeTicks picks the time axis of samples from first to last (Unix
// seconds): the shown range [x0, x1], 4 to 8 ticks at multiples of a
// nice interval (step, seconds) and the ticks themselves. Spans shorter
// than a few seconds are widened around their middle; when no interval
// fits the range, it is widened to whole intervals.
func niceTimeTicks(first, last float64) (x0, x1 float64, ticks []float64, step float64) {
	if math.IsNaN(first) || math.IsInf(first, 0) || math.IsNaN(last) || math.IsInf(last, 0) {
		first, last = 0, 0
	}
	if last < first {
		first, last = last, first
	}
	x0, x1 = first, last
	if x1-x0 < tcMinSpan {
		mid := x0 + (x1-x0)/2
		x0, x1 = mid-tcMinSpan/2, mid+tcMinSpan/2
	}
	count := func(a, b, s float64) int { return int(math.Floor(b/s) - math.Ceil(a/s) + 1) }
	for i := 0; i < 64; i++ {
		step = timeStep(i)
		n := count(x0, x1, step)
		if n > tcMaxXTicks {
			continue
		}
		if n < tcMinXTicks {
			x0, x1 = math.Floor(x0/step)*step, math.Ceil(x1/step)*step
		}
		for k := math.Ceil(x0 / step); k*step <= x1; k++ {
			ticks = append(ticks, k*step)
		}
		return x0, x1, ticks, step
	}
	return x0, x1, []float64{x0, x1}, x1 - x0
}

// niceValueTicks picks a value axis covering [lo, hi]: the range widened
// to whole multiples of a 1-2-5 step, with minN to maxN ticks (evenly
// spread over [lo, hi] in the rare case no step gives enough).
func niceValueTicks(lo, hi float64, minN, maxN int) (y0, y1 float64, ticks []float64, step float64) {
	if math.IsNaN(lo) || math.IsInf(lo, 0) || math.IsNaN(hi) || math.IsInf(hi, 0) {
		lo, hi = 0, 1
	}
	if hi < lo {
		lo, hi = hi, lo
	}
	if hi == lo {
		if lo == 0 {
			hi = 1
		} else {
			d := math.Abs(lo) / 10
			lo, hi = lo-d, hi+d
		}
	}
	span := hi - lo
	if !(span > 0) || math.IsInf(span, 0) || minN < 2 {
		return lo, hi, []float64{lo, hi}, span
	}
	const eps = 1e-9
	mag := math.Pow(10, math.Floor(math.Log10(span))-1)
	for i := 0; i < 30; i++ {
		step = []float64{1, 2, 5}[i%3] * mag * math.Pow(10, float64(i/3))
		a, b := math.Floor(lo/step+eps), math.Ceil(hi/step-eps)
		n := int(b - a + 1)
		if n > maxN {
			continue
		}
		if n < minN {
			break
		}
		for k := a; k <= b; k++ {
			ticks = append(ticks, k*step)
		}
		return a * step, b * step, ticks, step
	}
	step = span / float64(minN-1)
	for k := 0; k < minN; k++ {
		ticks = append(ticks, lo+step*float64(k))
	}
	return lo, hi, ticks, step
}

// valueLabel formats a tick value with as many decimals as its step needs.
func valueLabel(v, step float64, unit string) string {
	dec := 0
	if step > 0 && step < 1 {
		dec = int(math.Ceil(-math.Log10(step) - 1e-9))
		if math.Abs(step*math.Pow(10, float64(dec))-math.Round(step*math.Pow(10, float64(dec)))) > 1e-6 {
			dec++
		}
	}
	if math.Abs(v) < step/1e6 {
		v = 0 // no "-0"
	}
	return strconv.FormatFloat(v, 'f', dec, 64) + " " + unit
}

// timeLabel formats a tick time in UTC.
func timeLabel(t, step float64) string {
	tt := time.Unix(int64(math.Floor(t)), 0).UTC()
	if step >= 86400 {
		return tt.Format("2006-01-02")
	}
	return tt.Format("15:04:05")
}

// chartCanvas maps run time and values to viewBox coordinates.
type chartCanvas struct{ x0, x1, y0, y1 float64 }

func (c chartCanvas) x(t float64) float64 {
	if c.x1 <= c.x0 {
		return tcLeft + tcPlotW/2
	}
	f := (t - c.x0) / (c.x1 - c.x0)
	return tcLeft + math.Min(math.Max(f, 0), 1)*tcPlotW
}

func (c chartCanvas) y(v float64) float64 {
	if c.y1 <= c.y0 {
		return tcTop + tcPlotH/2
	}
	f := (v - c.y0) / (c.y1 - c.y0)
	return tcTop + tcPlotH - math.Min(math.Max(f, 0), 1)*tcPlotH
}

// num formats a coordinate (never NaN: the canvas clamps).
func num(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		f = 0
	}
	return strconv.FormatFloat(math.Round(f*10)/10, 'f', -1, 64)
}

// svgText escapes s for XML text and attribute values, dropping the
// characters XML cannot carry and shortening very long labels.
func svgText(s string, maxRunes int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	n := 0
	for _, r := range s {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF || r >= 0xD800 && r < 0xE000 {
			continue
		}
		if maxRunes > 0 && n == maxRunes {
			b.WriteRune('…')
			break
		}
		b.WriteRune(r)
		n++
	}
	return template.HTMLEscapeString(b.String())
}

// chartLanes places labels on rows so that they do not overlap: each
// label takes the first row whose previous label ended before it starts.
type chartLanes struct {
	ends []float64
	max  int
}

func (l *chartLanes) place(from, to float64) int {
	for i, e := range l.ends {
		if from >= e {
			l.ends[i] = to
			return i
		}
	}
	if len(l.ends) < l.max {
		l.ends = append(l.ends, to)
		return len(l.ends) - 1
	}
	// Out of rows: reuse the one that frees first.
	best := 0
	for i, e := range l.ends {
		if e < l.ends[best] {
			best = i
		}
	}
	l.ends[best] = math.Max(l.ends[best], to)
	return best
}

func textWidth(s string) float64 { return float64(utf8.RuneCountInString(s))*tcCharW + 4 }

// textAnchor places a label of width w at x, within the viewBox.
func textAnchor(x, w float64, pref string) (float64, string) {
	switch pref {
	case "end":
		if x-w < 2 {
			return math.Max(x, 2), "start"
		}
	case "start":
		if x+w > tcW-2 {
			return math.Min(x, tcW-2), "end"
		}
	default: // middle
		if x-w/2 < 2 {
			return math.Max(x-w/2, 2), "start"
		}
		if x+w/2 > tcW-2 {
			return math.Min(x+w/2, tcW-2), "end"
		}
	}
	return x, pref
}

func (c chartCanvas) render(m chartMetric, series map[string][]chartPoint, bands []chartBand, steps, verdicts []chartMark,
	xticks []float64, xstep float64, yticks []float64, ystep float64, first, last float64) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	yTitle := m.title + " (" + m.unit + ")"
	windows := "fault windows"
	if len(bands) == 1 {
		windows = "fault window"
	}
	summary := fmt.Sprintf("%s of canary and control from %s to %s, %d %s", m.title,
		timeLabel(first, 1), timeLabel(last, 1), len(bands), windows)
	if len(steps) > 0 {
		var ws []string
		for _, s := range steps {
			ws = append(ws, s.label)
		}
		summary += ", steps " + strings.Join(ws, ", ")
	}
	if len(verdicts) > 0 {
		var vs []string
		for _, v := range verdicts {
			vs = append(vs, v.label)
		}
		summary += ", verdicts " + strings.Join(vs, ", ")
	}
	p(`<svg xmlns="http://www.w3.org/2000/svg" class="time-chart" viewBox="0 0 %s %s" preserveAspectRatio="xMidYMid meet" role="img" aria-label="%s" font-size="11" font-family="system-ui, sans-serif">`,
		num(tcW), num(tcH), svgText(summary, 600))
	p(`<title>%s</title>`, svgText(summary, 600))
	p(`<rect class="plot-bg" x="%s" y="%s" width="%s" height="%s" fill="none"/>`, num(tcLeft), num(tcTop), num(tcPlotW), num(tcPlotH))

	// Fault windows under everything else.
	p(`<g class="fault-bands">`)
	for _, f := range bands {
		x0, x1 := c.x(f.from), c.x(f.to)
		w := math.Max(x1-x0, 2)
		x0 = math.Min(x0, tcLeft+tcPlotW-w)
		p(`<rect class="fault-band" x="%s" y="%s" width="%s" height="%s" fill="#d4a72c" fill-opacity="0.18"><title>%s</title></rect>`,
			num(x0), num(tcTop), num(w), num(tcPlotH), svgText(f.label+": "+timeLabel(f.from, 1)+"–"+timeLabel(f.to, 1), 200))
	}
	p(`</g>`)

	// Grid and axes.
	p(`<g class="axis y-axis">`)
	for _, v := range yticks {
		y := c.y(v)
		p(`<line class="grid" x1="%s" x2="%s" y1="%s" y2="%s" stroke="#d0d7de" stroke-width="0.5"/>`, num(tcLeft), num(tcLeft+tcPlotW), num(y), num(y))
		p(`<line class="tick" x1="%s" x2="%s" y1="%s" y2="%s" stroke="#57606a"/>`, num(tcLeft-4), num(tcLeft), num(y), num(y))
		p(`<text class="y-tick" x="%s" y="%s" text-anchor="end" dominant-baseline="middle">%s</text>`, num(tcLeft-6), num(y), svgText(valueLabel(v, ystep, m.unit), 0))
	}
	p(`<line class="axis-line" x1="%s" x2="%s" y1="%s" y2="%s" stroke="#57606a"/>`, num(tcLeft), num(tcLeft), num(tcTop), num(tcTop+tcPlotH))
	ym := tcTop + tcPlotH/2
	p(`<text class="axis-title" x="14" y="%s" text-anchor="middle" transform="rotate(-90 14 %s)">%s</text>`, num(ym), num(ym), svgText(yTitle, 0))
	p(`</g><g class="axis x-axis">`)
	for _, t := range xticks {
		x := c.x(t)
		p(`<line class="tick" x1="%s" x2="%s" y1="%s" y2="%s" stroke="#57606a"/>`, num(x), num(x), num(tcTop+tcPlotH), num(tcTop+tcPlotH+4))
		p(`<text class="x-tick" x="%s" y="%s" text-anchor="middle">%s</text>`, num(x), num(tcTop+tcPlotH+16), svgText(timeLabel(t, xstep), 0))
	}
	p(`<line class="axis-line" x1="%s" x2="%s" y1="%s" y2="%s" stroke="#57606a"/>`, num(tcLeft), num(tcLeft+tcPlotW), num(tcTop+tcPlotH), num(tcTop+tcPlotH))
	p(`<text class="axis-title" x="%s" y="%s" text-anchor="middle">time (UTC)</text>`, num(tcLeft+tcPlotW/2), num(tcH-6))
	p(`</g>`)

	// Step boundaries, labelled in the top margin.
	p(`<g class="steps">`)
	for _, s := range steps {
		if s.t < c.x0 || s.t > c.x1 {
			continue
		}
		x := c.x(s.t)
		p(`<line class="step-mark" x1="%s" x2="%s" y1="%s" y2="%s" stroke="#57606a" stroke-dasharray="4 3"/>`, num(x), num(x), num(tcTop-4), num(tcTop+tcPlotH))
		lx, anchor := textAnchor(x, textWidth(s.label), "middle")
		p(`<text class="step-label" x="%s" y="%s" text-anchor="%s">%s</text>`, num(lx), num(tcTop-7), anchor, svgText(s.label, 0))
	}
	p(`</g>`)

	// Series: the canary solid with round markers, the control dashed
	// with square markers.
	for ai, arm := range chartArms {
		ps := series[arm]
		if len(ps) == 0 {
			continue
		}
		dash, colour := "none", "#bc4c00"
		if arm == "control" {
			dash, colour = "6 3", "#0969da"
		}
		var pts strings.Builder
		for i, q := range ps {
			if i > 0 {
				pts.WriteByte(' ')
			}
			pts.WriteString(num(c.x(q.t)) + "," + num(c.y(q.v)))
		}
		p(`<polyline class="s-%s" points="%s" fill="none" stroke="%s" stroke-width="1.6" stroke-dasharray="%s" stroke-linejoin="round"/>`, arm, pts.String(), colour, dash)
		p(`<g class="m-%s" fill="%s">`, arm, colour)
		nm := min(len(ps), tcMaxMarkers)
		for j := 0; j < nm; j++ {
			// Markers spread over the series, the control's offset by half
			// a spacing so that equal values stay distinguishable.
			f := (float64(j) + 0.5*float64(ai)) / float64(nm)
			if nm == 1 {
				f = 0
			}
			q := ps[min(int(f*float64(len(ps))), len(ps)-1)]
			writeMarker(&b, arm, c.x(q.t), c.y(q.v))
		}
		p(`</g>`)
	}

	// Fault labels at the top of the plot, verdicts at the bottom.
	lanes := chartLanes{max: 4}
	for _, f := range bands {
		x := c.x(f.from) + 3
		label := svgText(f.label, 60)
		w := textWidth(html.UnescapeString(label))
		lx, anchor := textAnchor(x, w, "start")
		from := lx
		if anchor == "end" {
			from = lx - w
		}
		lane := lanes.place(from, from+w)
		p(`<text class="fault-label" x="%s" y="%s" text-anchor="%s">%s</text>`, num(lx), num(tcTop+12+float64(lane)*tcLineH), anchor, label)
	}
	vlanes := chartLanes{max: 3}
	for _, v := range verdicts {
		if v.t < c.x0 || v.t > c.x1 {
			continue
		}
		x := c.x(v.t)
		class := "verdict-mark"
		if v.verdict != "" {
			class += " v-" + v.verdict
		}
		p(`<line class="verdict-tick" x1="%s" x2="%s" y1="%s" y2="%s" stroke="#57606a" stroke-width="2"/>`, num(x), num(x), num(tcTop+tcPlotH-8), num(tcTop+tcPlotH))
		w := textWidth(v.label)
		lx, anchor := textAnchor(x-3, w, "end")
		from := lx - w
		if anchor == "start" {
			from = lx
		}
		lane := vlanes.place(from, from+w)
		p(`<text class="%s" x="%s" y="%s" text-anchor="%s">%s</text>`, class, num(lx), num(tcTop+tcPlotH-11-float64(lane)*tcLineH), anchor, svgText(v.label, 0))
	}

	// Legend, top right, naming the arms in text beside their line style.
	p(`<g class="legend">`)
	x := tcW - tcRight
	for i := len(chartArms) - 1; i >= 0; i-- {
		arm := chartArms[i]
		x -= textWidth(arm)
		p(`<text class="legend-label" x="%s" y="13">%s</text>`, num(x), arm)
		x -= 26
		dash, colour := "none", "#bc4c00"
		if arm == "control" {
			dash, colour = "6 3", "#0969da"
		}
		p(`<line class="s-%s legend-line" x1="%s" x2="%s" y1="9" y2="9" stroke="%s" stroke-width="1.6" stroke-dasharray="%s"/>`, arm, num(x), num(x+22), colour, dash)
		p(`<g class="m-%s" fill="%s">`, arm, colour)
		writeMarker(&b, arm, x+11, 9)
		p(`</g>`)
		x -= 12
	}
	p(`</g></svg>`)
	return b.String()
}

// writeMarker draws one point marker: a circle for the canary, a square
// for the control.
func writeMarker(b *strings.Builder, arm string, x, y float64) {
	if arm == "control" {
		fmt.Fprintf(b, `<rect x="%s" y="%s" width="5" height="5"/>`, num(x-2.5), num(y-2.5))
		return
	}
	fmt.Fprintf(b, `<circle cx="%s" cy="%s" r="2.8"/>`, num(x), num(y))
}
