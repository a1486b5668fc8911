package web

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"math/rand"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/engine/report"
)

// svgElem is one element of a rendered chart, for the assertions.
type svgElem struct {
	name string
	attr map[string]string
	text string
}

func (e svgElem) hasClass(c string) bool { return slices.Contains(strings.Fields(e.attr["class"]), c) }

func (e svgElem) num(t *testing.T, a string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(e.attr[a], 64)
	if err != nil {
		t.Fatalf("<%s> %s=%q: %v", e.name, a, e.attr[a], err)
	}
	return f
}

// parseSVG parses s strictly as XML (failing the test when it is not
// well-formed) and returns its elements in document order.
func parseSVG(t *testing.T, s string) []svgElem {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	var out []svgElem
	var open []int
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, s)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			e := svgElem{name: tok.Name.Local, attr: map[string]string{}}
			for _, a := range tok.Attr {
				e.attr[a.Name.Local] = a.Value
			}
			out = append(out, e)
			open = append(open, len(out)-1)
		case xml.EndElement:
			open = open[:len(open)-1]
		case xml.CharData:
			if len(open) > 0 {
				out[open[len(open)-1]].text += string(tok)
			}
		}
	}
	if len(open) != 0 {
		t.Fatalf("unclosed elements in\n%s", s)
	}
	return out
}

func byClass(es []svgElem, c string) []svgElem {
	var out []svgElem
	for _, e := range es {
		if e.hasClass(c) {
			out = append(out, e)
		}
	}
	return out
}

func elemTexts(es []svgElem) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.text)
	}
	return out
}

var chartT0 = time.Date(2025, 3, 1, 15, 2, 1, 0, time.UTC)

func chartAt(s float64) time.Time { return chartT0.Add(time.Duration(s * float64(time.Second))) }

// synthRun is a run of n one-second state events with both arms (and a
// calibration arm, which is not drawn): a partition from 40 s to 70 s
// and a network delay on the canary from 100 s to 130 s, steps at 10 %
// (from 5 s) and 50 % (from 90 s), a promote at 85 s and a block at
// n-5 s. The events come out of order.
func synthRun(n int) []LiveEvent {
	var evs []LiveEvent
	for i := 0; i < n; i++ {
		s := float64(i)
		st := &LiveState{Phase: "steady", ElapsedS: s, Arms: map[string]ArmLive{
			"canary":      {SuccessRatio: 0.999, P99MS: 120 + float64(i%7), Requests: 100},
			"control":     {SuccessRatio: 1, P99MS: 100 + float64(i%5), Requests: 100},
			"calibration": {SuccessRatio: 0.2, P99MS: 9000, Requests: 100},
		}}
		if i >= 40 && i < 70 {
			st.ActiveFaults = append(st.ActiveFaults, "partition (f1)")
			c := st.Arms["canary"]
			c.SuccessRatio, c.P99MS = 0.97, 240
			st.Arms["canary"] = c
		}
		if i >= 100 && i < 130 {
			st.ActiveFaults = append(st.ActiveFaults, "networkDelay on canary/n2 (f2)")
		}
		evs = append(evs, LiveEvent{Seq: i, T: chartAt(s), Kind: "state", State: st})
	}
	evs = append(evs,
		LiveEvent{T: chartAt(5), Kind: "phase", Phase: "steady-before", Weight: 10},
		LiveEvent{T: chartAt(20), Kind: "phase", Phase: "inject", Weight: 10},
		LiveEvent{T: chartAt(30), Kind: "info", Msg: "fault applied"},
		LiveEvent{T: chartAt(85), Kind: "verdict", Weight: 10, Msg: "step 10%: promote (score 0.990, coverage 1.000) — within bounds"},
		LiveEvent{T: chartAt(90), Kind: "phase", Phase: "steady-before", Weight: 50},
		LiveEvent{T: chartAt(95), Kind: "phase", Phase: "recover"},
		LiveEvent{T: chartAt(100), Kind: "phase", Phase: "inject", Weight: 50},
		LiveEvent{T: chartAt(float64(n - 5)), Kind: "verdict", Weight: 50, Msg: "step 50%: block (score 0.400, coverage 1.000) failed: error-rate — would not promote"},
	)
	// Out of order: the sort must restore time order.
	r := rand.New(rand.NewSource(1))
	r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	return evs
}

// checkChart runs the checks every chart must pass and returns its
// elements.
func checkChart(t *testing.T, c timeChart, unit string, from, to time.Time) []svgElem {
	t.Helper()
	s := string(c.SVG)
	for _, bad := range []string{"NaN", "Inf", "<script"} {
		if strings.Contains(s, bad) {
			t.Fatalf("%s chart contains %q", c.ID, bad)
		}
	}
	es := parseSVG(t, s)
	root := es[0]
	if root.name != "svg" || root.attr["role"] != "img" || root.attr["preserveAspectRatio"] != "xMidYMid meet" || root.attr["viewBox"] != "0 0 720 240" {
		t.Fatalf("%s root %+v", c.ID, root)
	}
	if !strings.Contains(root.attr["aria-label"], "of canary and control from ") || es[1].name != "title" || es[1].text != root.attr["aria-label"] {
		t.Fatalf("%s aria-label %q, title %+v", c.ID, root.attr["aria-label"], es[1])
	}
	xt := byClass(es, "x-tick")
	if len(xt) < 4 || len(xt) > 8 {
		t.Fatalf("%s: %d x ticks %q", c.ID, len(xt), elemTexts(xt))
	}
	var prev time.Time
	for i, e := range xt {
		tt, err := time.Parse("15:04:05", e.text)
		if err != nil {
			t.Fatalf("%s x tick %q: %v", c.ID, e.text, err)
		}
		tt = time.Date(from.Year(), from.Month(), from.Day(), tt.Hour(), tt.Minute(), tt.Second(), 0, time.UTC)
		if i > 0 && !tt.After(prev) || i > 0 && e.num(t, "x") <= xt[i-1].num(t, "x") {
			t.Fatalf("%s x ticks not increasing: %q", c.ID, elemTexts(xt))
		}
		if tt.Before(from.Add(-time.Minute)) || tt.After(to.Add(time.Minute)) {
			t.Fatalf("%s x tick %s outside the run %s–%s", c.ID, e.text, from, to)
		}
		prev = tt
	}
	if titles := elemTexts(byClass(es, "axis-title")); !slices.Contains(titles, "time (UTC)") || !slices.ContainsFunc(titles, func(s string) bool { return strings.Contains(s, "("+unit+")") }) {
		t.Fatalf("%s axis titles %q", c.ID, titles)
	}
	yt := byClass(es, "y-tick")
	if len(yt) < 3 || len(yt) > 6 {
		t.Fatalf("%s: %d y ticks %q", c.ID, len(yt), elemTexts(yt))
	}
	for i, e := range yt {
		v, ok := strings.CutSuffix(e.text, " "+unit)
		if !ok {
			t.Fatalf("%s y tick %q without the unit %q", c.ID, e.text, unit)
		}
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			t.Fatalf("%s y tick %q: %v", c.ID, e.text, err)
		}
		if i > 0 && e.num(t, "y") >= yt[i-1].num(t, "y") {
			t.Fatalf("%s y ticks not going up: %q", c.ID, elemTexts(yt))
		}
	}
	return es
}

func yTickValues(t *testing.T, es []svgElem, unit string) []float64 {
	var out []float64
	for _, e := range byClass(es, "y-tick") {
		v, _ := strconv.ParseFloat(strings.TrimSuffix(e.text, " "+unit), 64)
		out = append(out, v)
	}
	return out
}

func polylinePoints(t *testing.T, es []svgElem, class string) [][2]float64 {
	t.Helper()
	ps := byClass(es, class)
	var line *svgElem
	for i := range ps {
		if ps[i].name == "polyline" {
			if line != nil {
				t.Fatalf("two polylines %s", class)
			}
			line = &ps[i]
		}
	}
	if line == nil {
		t.Fatalf("no polyline %s", class)
	}
	var out [][2]float64
	for _, p := range strings.Fields(line.attr["points"]) {
		x, y, ok := strings.Cut(p, ",")
		fx, err1 := strconv.ParseFloat(x, 64)
		fy, err2 := strconv.ParseFloat(y, 64)
		if !ok || err1 != nil || err2 != nil {
			t.Fatalf("point %q of %s", p, class)
		}
		out = append(out, [2]float64{fx, fy})
	}
	return out
}

func TestRunChartsLiveFaultsStepsVerdicts(t *testing.T) {
	cs := runCharts(synthRun(180), nil)
	if len(cs) != 2 || cs[0].ID != "success" || cs[0].Title != "Success ratio" || cs[0].Unit != "%" ||
		cs[1].ID != "p99" || cs[1].Title != "p99 latency" || cs[1].Unit != "ms" {
		t.Fatalf("charts %+v", cs)
	}
	for _, c := range cs {
		es := checkChart(t, c, c.Unit, chartAt(0), chartAt(179))
		if got := es[0].attr["aria-label"]; !strings.Contains(got, "from 15:02:01 to 15:05:00, 2 fault windows") {
			t.Fatalf("%s aria-label %q", c.ID, got)
		}
		// One band per fault window, named, in time order and placed on
		// the time axis (40–70 s and 100–130 s of a 179 s axis).
		bands, labels := byClass(es, "fault-band"), byClass(es, "fault-label")
		if len(bands) != 2 || !slices.Equal(elemTexts(labels), []string{"partition", "networkDelay on canary/n2"}) {
			t.Fatalf("%s bands %d, labels %q", c.ID, len(bands), elemTexts(labels))
		}
		xOf := func(s float64) float64 { return tcLeft + s/179*tcPlotW }
		for i, w := range [][2]float64{{40, 70}, {100, 130}} {
			x, width := bands[i].num(t, "x"), bands[i].num(t, "width")
			if math.Abs(x-xOf(w[0])) > 0.2 || math.Abs(x+width-xOf(w[1])) > 0.3 {
				t.Fatalf("%s band %d at x %v width %v, want %v–%v", c.ID, i, x, width, xOf(w[0]), xOf(w[1]))
			}
		}
		// Step marks where the weight changes to 10 and to 50 only (the
		// repeated 10, the 0 of recover and the 50 after it are no steps).
		marks, steps := byClass(es, "step-mark"), byClass(es, "step-label")
		if len(marks) != 2 || !slices.Equal(elemTexts(steps), []string{"10%", "50%"}) {
			t.Fatalf("%s step marks %d %q", c.ID, len(marks), elemTexts(steps))
		}
		if math.Abs(marks[0].num(t, "x1")-xOf(5)) > 0.2 || math.Abs(marks[1].num(t, "x1")-xOf(90)) > 0.2 || marks[0].attr["stroke-dasharray"] == "" {
			t.Fatalf("%s step marks %+v", c.ID, marks)
		}
		vs := byClass(es, "verdict-mark")
		if !slices.Equal(elemTexts(vs), []string{"10%: promote", "50%: block"}) || !vs[0].hasClass("v-promote") || !vs[1].hasClass("v-block") {
			t.Fatalf("%s verdict marks %+v", c.ID, vs)
		}
		// Both arms, every sample, distinguishable without colour.
		canary, control := polylinePoints(t, es, "s-canary"), polylinePoints(t, es, "s-control")
		if len(canary) != 180 || len(control) != 180 {
			t.Fatalf("%s points %d %d", c.ID, len(canary), len(control))
		}
		for i := 1; i < len(canary); i++ {
			if canary[i][0] <= canary[i-1][0] {
				t.Fatalf("%s canary points not in time order at %d", c.ID, i)
			}
		}
		lines := map[string]string{}
		for _, e := range es {
			if e.name == "polyline" {
				lines[e.attr["class"]] = e.attr["stroke-dasharray"]
			}
		}
		if lines["s-canary"] == lines["s-control"] {
			t.Fatalf("%s same dash for both arms: %v", c.ID, lines)
		}
		shapes := map[string]bool{}
		for _, e := range es {
			shapes[e.name] = true
		}
		if !shapes["circle"] || !shapes["rect"] || len(elemTexts(byClass(es, "legend-label"))) != 2 {
			t.Fatalf("%s markers or legend missing", c.ID)
		}
		if strings.Contains(string(c.SVG), "9000") {
			t.Fatalf("%s draws the calibration arm", c.ID)
		}
	}
	// Success is in percent, zoomed to the dip (97 %) up to 100 %; p99
	// starts at 0 and reaches the 240 ms of the partition.
	succ := yTickValues(t, parseSVG(t, string(cs[0].SVG)), "%")
	if succ[0] > 97 || succ[0] < 90 || succ[len(succ)-1] != 100 {
		t.Fatalf("success ticks %v", succ)
	}
	p99 := yTickValues(t, parseSVG(t, string(cs[1].SVG)), "ms")
	if p99[0] != 0 || p99[len(p99)-1] < 240 || p99[len(p99)-1] > 500 {
		t.Fatalf("p99 ticks %v", p99)
	}
}

func TestRunChartsReportBandsMergeArms(t *testing.T) {
	ptr := func(s float64) *time.Time { t := chartAt(s); return &t }
	rep := &report.Report{
		Faults: []report.Fault{
			{Kind: "networkDelay", Arm: "control", AppliedAt: chartAt(50), RecoveredAt: ptr(80)},
			{Kind: "networkDelay", Arm: "canary", AppliedAt: chartAt(40), RecoveredAt: ptr(70)},
			{Kind: "partition", Arm: "canary", AppliedAt: chartAt(100)},                            // still open: to the last sample
			{Kind: "networkDelay", Arm: "control", AppliedAt: chartAt(150), RecoveredAt: ptr(160)}, // no overlap: its own band
			{Kind: "podKill", Arm: "canary", AppliedAt: chartAt(-30), RecoveredAt: ptr(10)},        // starts before the samples: the axis starts with it
			{Kind: "podPause", Arm: "canary", AppliedAt: chartAt(300), RecoveredAt: ptr(310)},      // after the samples: the axis goes on to it
		},
		Steps: []report.Step{{Weight: 10, Verdict: "promote"}, {Weight: 50, Verdict: "hold"}},
	}
	evs := synthRun(180)
	// A verdict without its word in the message takes it from the report.
	for i := range evs {
		if evs[i].Kind == "verdict" && evs[i].Weight == 50 {
			evs[i].Msg = ""
		}
	}
	cs := runCharts(evs, rep)
	if len(cs) != 2 {
		t.Fatalf("%d charts", len(cs))
	}
	xOf := func(s float64) float64 { return tcLeft + (s+30)/340*tcPlotW }
	for _, c := range cs {
		es := checkChart(t, c, c.Unit, chartAt(-30), chartAt(310))
		labels := elemTexts(byClass(es, "fault-label"))
		want := []string{"podKill · canary", "networkDelay · canary+control", "partition · canary", "networkDelay · control", "podPause · canary"}
		if !slices.Equal(labels, want) {
			t.Fatalf("%s fault labels %q, want %q", c.ID, labels, want)
		}
		bands := byClass(es, "fault-band")
		if len(bands) != 5 {
			t.Fatalf("%s %d bands", c.ID, len(bands))
		}
		for i, w := range [][2]float64{{-30, 10}, {40, 80}, {100, 179}, {150, 160}, {300, 310}} {
			x, width := bands[i].num(t, "x"), bands[i].num(t, "width")
			if math.Abs(x-xOf(w[0])) > 0.2 || math.Abs(x+width-xOf(w[1])) > 0.3 {
				t.Fatalf("%s band %q at x %v width %v, want %v–%v", c.ID, want[i], x, width, xOf(w[0]), xOf(w[1]))
			}
		}
		if !strings.Contains(es[0].attr["aria-label"], "5 fault windows") {
			t.Fatalf("%s aria-label %q", c.ID, es[0].attr["aria-label"])
		}
		vs := byClass(es, "verdict-mark")
		if !slices.Equal(elemTexts(vs), []string{"10%: promote", "50%: hold"}) || !vs[1].hasClass("v-hold") {
			t.Fatalf("%s verdict marks %+v", c.ID, vs)
		}
	}
}

func TestRunChartsDownsampleKeepsExtremes(t *testing.T) {
	const n = 5000
	var evs []LiveEvent
	for i := 0; i < n; i++ {
		canary := ArmLive{SuccessRatio: 1, P99MS: 100, Requests: 50}
		switch i {
		case 2345:
			canary.P99MS = 5000
		case 3456:
			canary.SuccessRatio = 0.5
		}
		evs = append(evs, LiveEvent{T: chartAt(float64(i)), Kind: "state", State: &LiveState{Arms: map[string]ArmLive{
			"canary": canary, "control": {SuccessRatio: 1, P99MS: 90, Requests: 50}}}})
	}
	cs := runCharts(evs, nil)
	if len(cs) != 2 {
		t.Fatalf("%d charts", len(cs))
	}
	for _, c := range cs {
		es := checkChart(t, c, c.Unit, chartAt(0), chartAt(n-1))
		for _, arm := range []string{"s-canary", "s-control"} {
			if ps := polylinePoints(t, es, arm); len(ps) > tcMaxPoints || len(ps) < 100 {
				t.Fatalf("%s %s: %d points", c.ID, arm, len(ps))
			}
		}
		// The one-sample spike (p99) and dip (success) survive.
		ys := yTickValues(t, es, c.Unit)
		lo, hi := ys[0], ys[len(ys)-1]
		extreme := map[string]float64{"success": 50, "p99": 5000}[c.ID]
		wantY := tcTop + tcPlotH*(1-(extreme-lo)/(hi-lo))
		found := false
		for _, p := range polylinePoints(t, es, "s-canary") {
			found = found || math.Abs(p[1]-wantY) < 0.2
		}
		if !found {
			t.Fatalf("%s: the extreme %v (y %v) was lost in downsampling (ticks %v)", c.ID, extreme, wantY, ys)
		}
	}
}

func TestRunChartsRobustInputs(t *testing.T) {
	state := func(s float64, arms map[string]ArmLive) LiveEvent {
		return LiveEvent{T: chartAt(s), Kind: "state", State: &LiveState{Arms: arms}}
	}
	ok := ArmLive{SuccessRatio: 1, P99MS: 10, Requests: 5}
	for name, evs := range map[string][]LiveEvent{
		"nil":                nil,
		"no state":           {{T: chartAt(0), Kind: "info"}, {T: chartAt(1), Kind: "phase", Weight: 10}},
		"state without arms": {{T: chartAt(0), Kind: "state", State: &LiveState{}}, {T: chartAt(1), Kind: "state"}},
		"no requests":        {state(0, map[string]ArmLive{"canary": {SuccessRatio: 1, P99MS: 3}, "control": {}})},
		"calibration only":   {state(0, map[string]ArmLive{"calibration": ok})},
		"no time":            {{Kind: "state", State: &LiveState{Arms: map[string]ArmLive{"canary": ok}}}},
		"only NaN":           {state(0, map[string]ArmLive{"canary": {SuccessRatio: math.NaN(), P99MS: math.Inf(1), Requests: 3}})},
	} {
		if cs := runCharts(evs, nil); cs != nil {
			t.Errorf("%s: charts %+v", name, cs)
		}
	}

	for name, evs := range map[string][]LiveEvent{
		"one sample":  {state(0, map[string]ArmLive{"canary": ok, "control": ok})},
		"same time":   {state(0, map[string]ArmLive{"canary": ok}), state(0, map[string]ArmLive{"control": ok})},
		"one arm":     {state(0, map[string]ArmLive{"control": ok}), state(3, map[string]ArmLive{"control": ok})},
		"zero values": {state(0, map[string]ArmLive{"canary": {Requests: 1}}), state(1, map[string]ArmLive{"canary": {Requests: 1}})},
		"NaN and Inf mixed": {
			state(0, map[string]ArmLive{"canary": {SuccessRatio: math.NaN(), P99MS: math.Inf(1), Requests: 3}, "control": ok}),
			state(1, map[string]ArmLive{"canary": {SuccessRatio: math.Inf(-1), P99MS: math.NaN(), Requests: 3}, "control": ok}),
			state(2, map[string]ArmLive{"canary": ok, "control": {SuccessRatio: 2, P99MS: -1, Requests: 3}}),
		},
		"open live fault and marks outside": {
			{T: chartAt(-10), Kind: "phase", Weight: 10},
			{T: chartAt(-5), Kind: "state", State: &LiveState{ActiveFaults: []string{"podKill"}}},
			state(0, map[string]ArmLive{"canary": ok}),
			{T: chartAt(50), Kind: "verdict", Weight: 10, Msg: "no word here"},
		},
	} {
		cs := runCharts(evs, &report.Report{})
		if name == "open live fault and marks outside" {
			cs = runCharts(evs, nil)
		}
		if len(cs) != 2 {
			t.Fatalf("%s: %d charts", name, len(cs))
		}
		for _, c := range cs {
			es := checkChart(t, c, c.Unit, chartAt(-60), chartAt(60))
			if ys := yTickValues(t, es, c.Unit); name == "one sample" && c.ID == "success" && (ys[0] != 99 || ys[len(ys)-1] != 100) {
				// All at 100 %: the axis still shows 99–100 %.
				t.Fatalf("%s: success ticks %v", name, ys)
			}
			if name == "open live fault and marks outside" {
				// The axis covers the band that began before the first
				// sample and the marks outside the samples: all are drawn,
				// inside the plot.
				b := byClass(es, "fault-band")
				if len(b) != 1 || b[0].num(t, "x") < tcLeft || b[0].num(t, "x")+b[0].num(t, "width") > tcLeft+tcPlotW+0.01 ||
					len(byClass(es, "step-mark")) != 1 || len(byClass(es, "verdict-mark")) != 1 {
					t.Fatalf("%s: %s", name, c.SVG)
				}
			}
		}
	}
}

func TestRunChartsEscapeLabels(t *testing.T) {
	evs := synthRun(30)
	rep := &report.Report{Faults: []report.Fault{{Kind: `<script>alert("x")</script>&'` + "\x01\xff", Arm: `a"><b>`, AppliedAt: chartAt(3), RecoveredAt: nil}}}
	for _, c := range runCharts(evs, rep) {
		es := checkChart(t, c, c.Unit, chartAt(0), chartAt(29))
		got := elemTexts(byClass(es, "fault-label"))
		if len(got) != 1 || !strings.HasPrefix(got[0], `<script>alert("x")</script>&'`) || !strings.Contains(got[0], `a"><b>`) {
			t.Fatalf("%s fault label %q", c.ID, got)
		}
	}
}

func TestChartsTemplate(t *testing.T) {
	cs := runCharts(synthRun(60), nil)
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, "charts", cs); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	es := parseSVG(t, "<root>"+out+"</root>")
	var ids, svgs []string
	for _, e := range es {
		if e.name == "figure" && e.hasClass("chart") {
			ids = append(ids, e.attr["id"])
		}
		if e.name == "svg" {
			svgs = append(svgs, e.attr["role"])
		}
	}
	if len(byClass(es, "charts")) != 1 || !slices.Equal(ids, []string{"chart-success", "chart-p99"}) || !slices.Equal(svgs, []string{"img", "img"}) {
		t.Fatalf("charts %q svgs %q in\n%s", ids, svgs, out)
	}
	caps := 0
	for _, e := range es {
		if e.name == "figcaption" {
			caps++
		}
	}
	for _, want := range []string{"Success ratio", "p99 latency", "(%)", "(ms)", "canary, solid line", "control, dashed line"} {
		if !strings.Contains(out, want) {
			t.Fatalf("no %q in\n%s", want, out)
		}
	}
	if caps != 2 || len(byClass(es, "x-tick")) < 8 {
		t.Fatalf("figcaptions %d, x ticks %d", caps, len(byClass(es, "x-tick")))
	}
	buf.Reset()
	if err := pages.ExecuteTemplate(&buf, "charts", runCharts(nil, nil)); err != nil || strings.TrimSpace(buf.String()) != "" {
		t.Fatalf("no charts: %q %v", buf.String(), err)
	}
}

// isNiceTimeStep reports whether s (seconds) is one of the tick intervals.
func isNiceTimeStep(s float64) bool {
	if slices.Contains(timeStepCandidates, s) {
		return true
	}
	d := s / 86400
	m := math.Pow(10, math.Floor(math.Log10(d)))
	r := d / m
	return math.Abs(r-1) < 1e-9 || math.Abs(r-2) < 1e-9 || math.Abs(r-5) < 1e-9
}

func TestNiceTicksTime(t *testing.T) {
	base := unixSeconds(chartT0)
	check := func(first, last float64) (float64, []float64) {
		t.Helper()
		x0, x1, ticks, step := niceTimeTicks(first, last)
		if len(ticks) < tcMinXTicks || len(ticks) > tcMaxXTicks {
			t.Fatalf("%v..%v (%v s): %d ticks %v", first, last, last-first, len(ticks), ticks)
		}
		if x0 > first || x1 < last || x1-x0 < tcMinSpan-1e-9 {
			t.Fatalf("%v..%v: shown %v..%v", first, last, x0, x1)
		}
		if !isNiceTimeStep(step) {
			t.Fatalf("%v s: step %v", last-first, step)
		}
		for i, tk := range ticks {
			if tk < x0 || tk > x1 || math.Mod(tk, step) != 0 || i > 0 && tk-ticks[i-1] != step {
				t.Fatalf("%v s: ticks %v step %v in %v..%v", last-first, ticks, step, x0, x1)
			}
		}
		return step, ticks
	}
	// The 3-minute run of the tests: every 30 s from 15:02:30.
	step, ticks := check(base, base+179)
	if step != 30 || timeLabel(ticks[0], step) != "15:02:30" || timeLabel(ticks[len(ticks)-1], step) != "15:05:00" {
		t.Fatalf("3 min: step %v ticks %v", step, ticks)
	}
	for _, c := range []struct {
		span float64
		step float64
	}{{0, 1}, {0.3, 1}, {5, 1}, {59, 10}, {600, 120}, {3600, 600}, {5 * 3600, 3600}, {26 * 3600, 10800}} {
		if step, _ := check(base+0.25, base+0.25+c.span); step != c.step {
			t.Errorf("span %v s: step %v, want %v", c.span, step, c.step)
		}
	}
	// Every span from a second to decades gets 4 to 8 ticks.
	r := rand.New(rand.NewSource(7))
	for i := 0; i < 20000; i++ {
		span := math.Pow(10, r.Float64()*9)
		start := base + r.Float64()*86400
		check(start, start+span)
	}
	// Reversed or non-finite input is not a panic.
	check(base+10, base)
	if _, _, ticks, _ := niceTimeTicks(math.NaN(), math.Inf(1)); len(ticks) < 2 {
		t.Fatalf("NaN input: %v", ticks)
	}
	if got := timeLabel(base+86400*3, 86400); got != "2025-03-04" {
		t.Fatalf("day label %q", got)
	}
}

func TestNiceTicksValues(t *testing.T) {
	for _, c := range []struct {
		lo, hi float64
		want   []float64
		labels string
		unit   string
	}{
		{99, 100, []float64{99, 99.2, 99.4, 99.6, 99.8, 100}, "99.0 %,99.2 %,99.4 %,99.6 %,99.8 %,100.0 %", "%"},
		{97, 100, []float64{97, 98, 99, 100}, "97 %,98 %,99 %,100 %", "%"},
		{0, 100, []float64{0, 20, 40, 60, 80, 100}, "0 %,20 %,40 %,60 %,80 %,100 %", "%"},
		{0, 240, []float64{0, 50, 100, 150, 200, 250}, "0 ms,50 ms,100 ms,150 ms,200 ms,250 ms", "ms"},
		{0, 0, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}, "0.0 ms,0.2 ms,0.4 ms,0.6 ms,0.8 ms,1.0 ms", "ms"},
		{0, 0.03, []float64{0, 0.01, 0.02, 0.03}, "0.00 ms,0.01 ms,0.02 ms,0.03 ms", "ms"},
		{99.95, 100, []float64{99.95, 99.96, 99.97, 99.98, 99.99, 100}, "99.95 %,99.96 %,99.97 %,99.98 %,99.99 %,100.00 %", "%"},
	} {
		_, _, ticks, step := niceValueTicks(c.lo, c.hi, tcMinYTicks, tcMaxYTicks)
		var labels []string
		for i, v := range ticks {
			if math.Abs(v-c.want[min(i, len(c.want)-1)]) > 1e-9 {
				t.Fatalf("%v..%v: ticks %v, want %v", c.lo, c.hi, ticks, c.want)
			}
			labels = append(labels, valueLabel(v, step, c.unit))
		}
		if len(ticks) != len(c.want) || strings.Join(labels, ",") != c.labels {
			t.Fatalf("%v..%v: ticks %v labels %q, want %v %q", c.lo, c.hi, ticks, labels, c.want, c.labels)
		}
	}
	r := rand.New(rand.NewSource(3))
	for i := 0; i < 20000; i++ {
		lo := (r.Float64() - 0.3) * math.Pow(10, r.Float64()*8-3)
		hi := lo + r.Float64()*math.Pow(10, r.Float64()*8-3)
		y0, y1, ticks, step := niceValueTicks(lo, hi, tcMinYTicks, tcMaxYTicks)
		if len(ticks) < tcMinYTicks || len(ticks) > tcMaxYTicks || y0 > lo || y1 < hi || ticks[0] != y0 || ticks[len(ticks)-1] != y1 {
			t.Fatalf("%v..%v: %v..%v ticks %v", lo, hi, y0, y1, ticks)
		}
		m := step / math.Pow(10, math.Floor(math.Log10(step)+1e-12))
		if math.Abs(m-1) > 1e-6 && math.Abs(m-2) > 1e-6 && math.Abs(m-5) > 1e-6 {
			t.Fatalf("%v..%v: step %v", lo, hi, step)
		}
		if s := fmt.Sprint(labelsOf(ticks, step)); strings.Contains(s, "NaN") || strings.Contains(s, "-0 ") {
			t.Fatalf("labels %s", s)
		}
	}
	for _, bad := range [][2]float64{{math.NaN(), 1}, {0, math.Inf(1)}, {5, 5}, {-3, -3}, {10, 2}} {
		_, _, ticks, _ := niceValueTicks(bad[0], bad[1], tcMinYTicks, tcMaxYTicks)
		if len(ticks) < tcMinYTicks || len(ticks) > tcMaxYTicks {
			t.Fatalf("%v: ticks %v", bad, ticks)
		}
	}
}

func labelsOf(ticks []float64, step float64) []string {
	var out []string
	for _, v := range ticks {
		out = append(out, valueLabel(v, step, "x"))
	}
	return out
}
