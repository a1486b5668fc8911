package web

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// chart is a small SVG line chart of canary vs control, drawn on the
// server from a run's state events (no script needed).
type chart struct {
	Title  string
	Max    string
	Min    string
	Series []series
}

type series struct {
	Name, Class, Points string
}

const chartW, chartH = 600.0, 120.0

// armCharts draws success ratio and p99 of both arms over the run.
func armCharts(events []Event) []chart {
	type pt struct{ x, y float64 }
	pts := map[string]map[string][]pt{"success": {}, "p99": {}}
	maxX, n := 0.0, 0
	var t0 time.Time
	for _, e := range events {
		if e.Kind != "state" || e.State == nil {
			continue
		}
		if t0.IsZero() {
			t0 = e.T
		}
		x := e.T.Sub(t0).Seconds()
		for arm, a := range e.State.Arms {
			if a.Requests == 0 {
				continue
			}
			pts["success"][arm] = append(pts["success"][arm], pt{x, a.SuccessRatio})
			pts["p99"][arm] = append(pts["p99"][arm], pt{x, a.P99MS})
			maxX = math.Max(maxX, x)
			n++
		}
	}
	if n == 0 {
		return nil
	}
	if maxX == 0 {
		maxX = 1
	}
	var out []chart
	for _, m := range []struct{ key, title, unit string }{{"success", "success ratio", ""}, {"p99", "p99 latency", " ms"}} {
		maxY, minY := 0.0, math.Inf(1)
		for _, ps := range pts[m.key] {
			for _, p := range ps {
				maxY, minY = math.Max(maxY, p.y), math.Min(minY, p.y)
			}
		}
		if m.key == "success" {
			// Success ratios live near 1: zoom on the range they span.
			maxY = 1
			minY = math.Min(minY, 0.99)
		} else {
			minY = 0
		}
		if maxY <= minY {
			continue
		}
		c := chart{Title: m.title, Max: fmt.Sprintf("%.4g%s", maxY, m.unit), Min: fmt.Sprintf("%.4g%s", minY, m.unit)}
		for _, arm := range []string{"canary", "control"} {
			var b strings.Builder
			for _, p := range pts[m.key][arm] {
				fmt.Fprintf(&b, "%.1f,%.1f ", p.x/maxX*chartW, chartH-(p.y-minY)/(maxY-minY)*chartH)
			}
			c.Series = append(c.Series, series{Name: arm, Class: "s-" + arm, Points: strings.TrimSpace(b.String())})
		}
		out = append(out, c)
	}
	return out
}
