// Package promql is a metrics source that fills the judge's input for one
// arm (canary or control) from a user's Prometheus, so chaosgate can gate a
// service it did not start.
//
// A queries file (queries/v1, see Parse and docs/queries-v1.md) holds one
// PromQL template per arm field: requests, errors, latency p50/p99 and the
// latency sample count, GC pauses, sessions and their interruptions,
// dependency calls and failures, memory growth, and a freshness query. A
// template sees {{.Selector}} (the arm's label matchers, without braces),
// {{.Window}} (a PromQL duration such as 5m or 90s), {{.WindowSeconds}}
// (the same window in seconds, e.g. 90, for arithmetic with time()) and
// {{.Arm}}; any other
// name is an error when the file is parsed. A field without a query is not
// collected: it stays absent from the window, which the judge reads as
// "not collected" when no window has it.
//
// Every field's result is kept apart, with its resolved query:
//
//   - no series → decision.Missing (the judge holds);
//   - NaN or ±Inf → decision.NaN;
//   - an HTTP error, a PromQL error, an unreachable server, or several
//     series where one is expected → decision.QueryError, with an error
//     naming the field and the resolved query.
//
// Never a silent zero. Counts are rounded to whole numbers (increase()
// extrapolates to the window's edges and returns fractions).
//
// GC pauses come either from a pause histogram — the gc_pauses query
// returns the window's pause counts per bucket as a vector by le (seconds),
// e.g. sum by (le)(increase(go_gc_pauses_seconds_bucket{...}[w])) — each
// counted pause placed at its bucket's upper bound (the +Inf bucket's at
// the largest finite bound), at most MaxPauses per window, the longest
// kept; or from the go_gc_duration_seconds summary (gc_pause_count,
// gc_pause_seconds_sum, gc_pause_seconds_max): the largest pause bounded
// by the total, the others sharing the rest, as the embedded scraper does.
//
// The freshness query (collected_at) answers a Unix time in seconds —
// by default the newest sample of the arm's up series — which becomes
// decision.ArmInput.CollectedAt, so the judge marks data older than its
// freshness limit stale.
package promql

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/chaosgate/chaosgate/decision"
)

// MaxPauses caps the GC pauses read from a histogram for one window; above
// it the shortest pauses are dropped (the longest, which the judge counts
// and bounds, are kept).
const MaxPauses = 100000

// Source queries one Prometheus.
type Source struct {
	api       v1.API
	client    api.Client
	queries   *Queries
	transport *http.Transport
}

// New returns a source for the Prometheus at address (http or https URL)
// with queries (nil: Default, the reference aggregator's).
func New(address string, queries *Queries) (*Source, error) {
	u, err := url.Parse(address)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("prometheus address %q: want an http(s) URL such as http://prometheus:9090", address)
	}
	if queries == nil {
		queries = Default()
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	c, err := api.NewClient(api.Config{Address: address, RoundTripper: tr})
	if err != nil {
		return nil, fmt.Errorf("prometheus address %q: %w", address, err)
	}
	return &Source{api: v1.NewAPI(c), client: c, queries: queries, transport: tr}, nil
}

// Close releases the source's idle connections.
func (s *Source) Close() { s.transport.CloseIdleConnections() }

// Ping checks that the server answers a trivial query.
func (s *Source) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.queries.Timeout)
	defer cancel()
	if _, _, _, err := s.api.Query(ctx, "vector(1)", time.Now(), v1.WithTimeout(s.queries.Timeout)); err != nil {
		return fmt.Errorf("prometheus does not answer: %w", err)
	}
	return nil
}

// ArmWindow is what PromQL answered for one arm over one window.
type ArmWindow struct {
	At  time.Time
	Arm decision.ArmInput
	// Queries maps each queried field to its resolved query.
	Queries map[string]string
	// Notes name every field that is not present (missing, NaN, query
	// error) or a freshness problem, each with its resolved query.
	Notes []string
	// gc holds the summary fields until all three are read.
	gc map[string]decision.Value
}

// Arm collects arm (selector: its label matchers, e.g. arm="canary") over
// the window ending at at.
func (s *Source) Arm(ctx context.Context, arm, selector string, window time.Duration, at time.Time) ArmWindow {
	return s.Arms(ctx, arm, selector, window, at, 0, 1)[0]
}

// Arms collects arm over n windows ending at end-(n-1)·step, …, end-step,
// end (oldest first) with one range query per field (an instant query when
// n is 1).
func (s *Source) Arms(ctx context.Context, arm, selector string, window time.Duration, end time.Time, step time.Duration, n int) []ArmWindow {
	if n < 1 {
		n = 1
	}
	if n > 1 && step <= 0 {
		step = window
	}
	start := end.Add(-time.Duration(n-1) * step)
	out := make([]ArmWindow, n)
	for i := range out {
		out[i] = ArmWindow{At: start.Add(time.Duration(i) * step), Queries: map[string]string{}}
		out[i].Arm.WindowS = decision.Num(window.Seconds())
	}
	for _, field := range Fields {
		q, ok, err := s.queries.Render(field, arm, selector, window)
		if !ok {
			continue
		}
		var pts [][]point
		var warns v1.Warnings
		if err == nil {
			pts, warns, err = s.query(ctx, q, start, step, n)
		}
		for i := range out {
			out[i].Queries[field] = q
			for _, w := range warns {
				out[i].Notes = append(out[i].Notes, fail("warning "+field, w, q))
			}
			var p []point
			if err == nil {
				p = pts[i]
			}
			set(&out[i], field, q, p, err)
		}
	}
	for i := range out {
		gcFromSummary(&out[i])
	}
	return out
}

// point is one sample of a query's result at one evaluation time.
type point struct {
	metric model.Metric
	v      float64
}

// query runs q at n evaluation times and groups the samples by time.
// Prometheus' warnings (partial data from a remote read, say) come back
// with the samples: the values are still its answer.
func (s *Source) query(ctx context.Context, q string, start time.Time, step time.Duration, n int) ([][]point, v1.Warnings, error) {
	ctx, cancel := context.WithTimeout(ctx, s.queries.Timeout+time.Second)
	defer cancel()
	var val model.Value
	var warns v1.Warnings
	var err error
	if n == 1 {
		val, warns, _, err = s.api.Query(ctx, q, start, v1.WithTimeout(s.queries.Timeout))
	} else {
		val, warns, _, err = s.api.QueryRange(ctx, q, v1.Range{Start: start, End: start.Add(time.Duration(n-1) * step), Step: step}, v1.WithTimeout(s.queries.Timeout))
	}
	if err != nil {
		return nil, warns, err
	}
	out := make([][]point, n)
	switch v := val.(type) {
	case model.Vector:
		for _, smp := range v {
			if smp.Histogram != nil {
				return nil, warns, errors.New("native histogram in the result: query classic _bucket series or wrap it in a function that returns floats")
			}
			out[0] = append(out[0], point{smp.Metric, float64(smp.Value)})
		}
	case *model.Scalar:
		out[0] = append(out[0], point{nil, float64(v.Value)})
	case model.Matrix:
		for _, ss := range v {
			if len(ss.Histograms) > 0 {
				return nil, warns, errors.New("native histogram in the result: query classic _bucket series or wrap it in a function that returns floats")
			}
			for _, sp := range ss.Values {
				i := int(math.Round(float64(sp.Timestamp.Time().Sub(start)) / float64(max(step, time.Millisecond))))
				if n == 1 {
					i = 0
				}
				if i >= 0 && i < n {
					out[i] = append(out[i], point{ss.Metric, float64(sp.Value)})
				}
			}
		}
	default:
		return nil, warns, fmt.Errorf("unexpected %s result", val.Type())
	}
	return out, warns, nil
}

// fail formats a field's problem with its resolved query.
func fail(field, what, q string) string { return fmt.Sprintf("%s: %s; query: %s", field, what, q) }

// set stores one field's result in r.
func set(r *ArmWindow, field, q string, pts []point, err error) {
	a := &r.Arm
	note := func(state decision.State, msg string) {
		r.Notes = append(r.Notes, fmt.Sprintf("%s %s", state, msg))
	}
	if err != nil {
		msg := fail(field, err.Error(), q)
		note(decision.QueryError, msg)
		switch field {
		case GCPauses:
			a.GCPausesMS = decision.Samples{State: decision.QueryError, Err: msg}
		case CollectedAt:
		default:
			if dst := scalar(a, field); dst != nil {
				*dst = decision.Value{State: decision.QueryError, Err: msg}
			} else {
				a.GCPausesMS = decision.Samples{State: decision.QueryError, Err: msg}
			}
		}
		return
	}
	if field == GCPauses {
		a.GCPausesMS = pauses(q, pts)
		if a.GCPausesMS.State != decision.Present {
			note(a.GCPausesMS.State, a.GCPausesMS.Err)
		}
		return
	}
	v := one(field, q, pts)
	if v.State == decision.Present && slices.Contains(counts, field) {
		v.V = math.Max(0, math.Round(v.V))
	}
	if v.State != decision.Present {
		note(v.State, v.Err)
	}
	switch field {
	case CollectedAt:
		if v.State == decision.Present {
			sec, frac := math.Modf(v.V)
			a.CollectedAt = time.Unix(int64(sec), int64(frac*1e9)).UTC()
		}
	case GCPauseCount, GCPauseSecondsSum, GCPauseSecondsMax:
		if r.gc == nil {
			r.gc = map[string]decision.Value{}
		}
		r.gc[field] = v
	default:
		*scalar(a, field) = v
	}
}

// one reads a result that must be a single number.
func one(field, q string, pts []point) decision.Value {
	switch {
	case len(pts) == 0:
		return decision.Value{State: decision.Missing, Err: fail(field, "no series (no data)", q)}
	case len(pts) > 1:
		ls := make([]string, 0, 3)
		for _, p := range pts[:min(3, len(pts))] {
			ls = append(ls, p.metric.String())
		}
		if len(pts) > 3 {
			ls = append(ls, "…")
		}
		return decision.Value{State: decision.QueryError, Err: fail(field, fmt.Sprintf("%d series where one is expected (%s); aggregate with sum(...) or narrow the selector", len(pts), strings.Join(ls, ", ")), q)}
	}
	if math.IsNaN(pts[0].v) || math.IsInf(pts[0].v, 0) {
		return decision.Value{State: decision.NaN, Err: fail(field, "NaN ("+strconv.FormatFloat(pts[0].v, 'g', -1, 64)+")", q)}
	}
	return decision.Num(pts[0].v)
}

// scalar returns the arm's value a field fills (nil for the GC fields).
func scalar(a *decision.ArmInput, field string) *decision.Value {
	switch field {
	case Requests:
		return &a.Requests
	case Errors:
		return &a.Errors
	case LatencyP50:
		return &a.LatencyP50
	case LatencyP99:
		return &a.LatencyP99
	case LatencySamples:
		return &a.LatencySamples
	case Sessions:
		return &a.Sessions
	case SessionInterruptions:
		return &a.SessionInterruptions
	case DependencyCalls:
		return &a.DependencyCalls
	case DependencyFailures:
		return &a.DependencyFailures
	case ConsistencyViolations:
		return &a.ConsistencyViolations
	case MemoryGrowth:
		return &a.MemoryGrowthMBPerMin
	}
	return nil
}

// pauses turns a vector by le of pause counts into pauses in ms.
func pauses(q string, pts []point) decision.Samples {
	if len(pts) == 0 {
		return decision.Samples{State: decision.Missing, Err: fail(GCPauses, "no series (no data)", q)}
	}
	type bucket struct{ le, cum float64 }
	bs := make([]bucket, 0, len(pts))
	seen := map[float64]bool{}
	for _, p := range pts {
		s, ok := p.metric["le"]
		if !ok || len(p.metric) != 1 {
			return decision.Samples{State: decision.QueryError, Err: fail(GCPauses, fmt.Sprintf("want a vector by le only, got %s; aggregate with sum by (le)(...)", p.metric), q)}
		}
		le, err := strconv.ParseFloat(string(s), 64)
		if err != nil || seen[le] {
			return decision.Samples{State: decision.QueryError, Err: fail(GCPauses, fmt.Sprintf("bad or repeated bucket le=%q", s), q)}
		}
		seen[le] = true
		if math.IsNaN(p.v) || math.IsInf(p.v, 0) {
			return decision.Samples{State: decision.NaN, Err: fail(GCPauses, fmt.Sprintf("NaN count in bucket le=%q", s), q)}
		}
		bs = append(bs, bucket{le, p.v})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	largest := 0.0
	for _, b := range bs {
		if !math.IsInf(b.le, 1) {
			largest = b.le
		}
	}
	// Per-bucket counts, longest first, so the cap drops the shortest.
	out := []float64{}
	for i := len(bs) - 1; i >= 0; i-- {
		prev := 0.0
		if i > 0 {
			prev = bs[i-1].cum
		}
		n := int(math.Max(0, math.Round(bs[i].cum-prev)))
		v := bs[i].le
		if math.IsInf(v, 1) {
			v = largest
		}
		for k := 0; k < n && len(out) < MaxPauses; k++ {
			out = append(out, v*1000)
		}
	}
	sort.Float64s(out)
	return decision.Series(out)
}

// gcFromSummary builds the pause list from the summary fields: the
// largest pause (bounded by the total), the others sharing the rest.
func gcFromSummary(r *ArmWindow) {
	if r.gc == nil || r.Arm.GCPausesMS.State == decision.QueryError {
		return
	}
	for _, f := range []string{GCPauseCount, GCPauseSecondsSum, GCPauseSecondsMax} {
		v, asked := r.gc[f]
		if asked && v.State != decision.Present {
			r.Arm.GCPausesMS = decision.Samples{State: v.State, Err: v.Err}
			return
		}
	}
	cnt, total := r.gc[GCPauseCount].V, r.gc[GCPauseSecondsSum].V
	n := int(math.Min(cnt, MaxPauses))
	if n <= 0 {
		r.Arm.GCPausesMS = decision.Series([]float64{})
		return
	}
	top := total / cnt
	if mx, ok := r.gc[GCPauseSecondsMax]; ok {
		top = math.Min(math.Max(mx.V, top), total)
	}
	rest := 0.0
	if cnt > 1 {
		rest = (total - top) / (cnt - 1)
	}
	out := make([]float64, 0, n)
	for i := 1; i < n; i++ {
		out = append(out, rest*1000)
	}
	r.Arm.GCPausesMS = decision.Series(append(out, top*1000))
}
