// Package metrics is the embedded metrics probe: it scrapes every node's
// Prometheus /metrics (text format) at a fixed interval and answers, per arm
// and window, the judge's process signals: GC pauses (go_gc_pauses_seconds or
// go_sched_pauses_total_gc_seconds histograms when exposed, else
// go_gc_duration_seconds), goroutines, resident memory and its growth,
// dependency calls (request forwarding between nodes) and their failures,
// and HTTP errors.
//
// Counters are differenced between successive scrapes of one process; a
// restart (a new process start time, or a counter going down) starts the
// series again from zero, so a killed node never produces negative deltas.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/chaosgate/chaosgate/engine"
)

// Name is the probe's name.
const Name = "metrics"

// Targets returns, per arm, node id → the HTTP address serving /metrics.
type Targets func(arm engine.Arm) map[string]string

// Config wires the scraper.
type Config struct {
	Arms     []engine.Arm
	Targets  Targets
	Interval time.Duration // default 1s
	Timeout  time.Duration // per scrape, default 2s
	Client   *http.Client
}

// Sample is one scrape of one node.
type Sample struct {
	At        time.Time
	StartTime float64 // process_start_time_seconds (0 when absent)
	GCCount   float64
	GCSum     float64 // seconds
	GCMax     float64 // seconds, quantile 1 of go_gc_duration_seconds
	// PauseBuckets are the cumulative counts of a GC pause histogram, by
	// upper bound in seconds (nil when the node exposes none).
	PauseBuckets map[float64]float64
	Goroutines   float64
	RSS          float64
	Forwards     float64
	ForwardErrs  float64
	HTTPTotal    float64
	HTTP5xx      float64
	// HTTP503 counts the explicit "unavailable" answers (no leader during
	// an election) among HTTP5xx.
	HTTP503 float64
	// Route5xx and RouteTotal break the HTTP counters down by route.
	Route5xx, RouteTotal map[string]float64
}

type series struct {
	samples []Sample
	errors  int
	lastErr string
}

// Probe scrapes and summarises.
type Probe struct {
	cfg Config

	mu   sync.Mutex
	data map[engine.Arm]map[string]*series

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a scraper; Start begins scraping.
func New(cfg Config) (*Probe, error) {
	if cfg.Targets == nil || len(cfg.Arms) == 0 {
		return nil, engine.E(engine.KindInvalid, "metrics probe", errors.New("no targets"))
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	return &Probe{cfg: cfg, data: map[engine.Arm]map[string]*series{}}, nil
}

// Name is the probe's name.
func (p *Probe) Name() string { return Name }

// Start scrapes every node every interval until Stop.
func (p *Probe) Start(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(p.cfg.Interval)
		defer t.Stop()
		for {
			p.ScrapeOnce(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Stop ends scraping.
func (p *Probe) Stop() {
	if p.cancel != nil {
		p.cancel()
		p.wg.Wait()
		p.cancel = nil
	}
}

// ScrapeOnce scrapes every node of every arm concurrently.
func (p *Probe) ScrapeOnce(ctx context.Context) {
	var wg sync.WaitGroup
	for _, arm := range p.cfg.Arms {
		for node, addr := range p.cfg.Targets(arm) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := p.scrape(ctx, addr)
				p.mu.Lock()
				defer p.mu.Unlock()
				m := p.data[arm]
				if m == nil {
					m = map[string]*series{}
					p.data[arm] = m
				}
				sr := m[node]
				if sr == nil {
					sr = &series{}
					m[node] = sr
				}
				if err != nil {
					sr.errors++
					sr.lastErr = err.Error()
					return
				}
				sr.samples = append(sr.samples, s)
			}()
		}
	}
	wg.Wait()
}

func (p *Probe) scrape(ctx context.Context, addr string) (Sample, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return Sample{}, err
	}
	resp, err := p.cfg.Client.Do(req)
	if err != nil {
		return Sample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return Sample{}, fmt.Errorf("GET /metrics on %s: %s", addr, resp.Status)
	}
	s, err := Parse(resp.Body)
	s.At = time.Now()
	return s, err
}

// Parse reads one Prometheus text exposition into a sample (At unset).
func Parse(r io.Reader) (Sample, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return Sample{}, fmt.Errorf("parse /metrics: %w", err)
	}
	var s Sample
	first := func(name string) float64 {
		f := fams[name]
		if f == nil || len(f.Metric) == 0 {
			return 0
		}
		return value(f.Metric[0])
	}
	sum := func(name string, keep func(*dto.Metric) bool) float64 {
		f := fams[name]
		if f == nil {
			return 0
		}
		var t float64
		for _, m := range f.Metric {
			if keep == nil || keep(m) {
				t += value(m)
			}
		}
		return t
	}
	s.StartTime = first("process_start_time_seconds")
	s.Goroutines = first("go_goroutines")
	s.RSS = first("process_resident_memory_bytes")
	s.Forwards = first("chaosgate_aggregator_forwards_total")
	s.ForwardErrs = first("chaosgate_aggregator_forward_errors_total")
	s.Route5xx, s.RouteTotal = map[string]float64{}, map[string]float64{}
	if f := fams["chaosgate_aggregator_http_requests_total"]; f != nil {
		for _, m := range f.Metric {
			var route, code string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "route":
					route = l.GetValue()
				case "code":
					code = l.GetValue()
				}
			}
			s.RouteTotal[route] += value(m)
			if strings.HasPrefix(code, "5") {
				s.Route5xx[route] += value(m)
			}
		}
	}
	s.HTTPTotal = sum("chaosgate_aggregator_http_requests_total", nil)
	s.HTTP503 = sum("chaosgate_aggregator_http_requests_total", func(m *dto.Metric) bool {
		for _, l := range m.GetLabel() {
			if l.GetName() == "code" && l.GetValue() == "503" {
				return true
			}
		}
		return false
	})
	s.HTTP5xx = sum("chaosgate_aggregator_http_requests_total", func(m *dto.Metric) bool {
		for _, l := range m.GetLabel() {
			if l.GetName() == "code" && strings.HasPrefix(l.GetValue(), "5") {
				return true
			}
		}
		return false
	})
	if f := fams["go_gc_duration_seconds"]; f != nil && len(f.Metric) > 0 && f.Metric[0].GetSummary() != nil {
		sm := f.Metric[0].GetSummary()
		s.GCCount, s.GCSum = float64(sm.GetSampleCount()), sm.GetSampleSum()
		for _, q := range sm.GetQuantile() {
			if q.GetQuantile() == 1 {
				s.GCMax = q.GetValue()
			}
		}
	}
	for _, name := range []string{"go_gc_pauses_seconds", "go_sched_pauses_total_gc_seconds"} {
		f := fams[name]
		if f == nil || len(f.Metric) == 0 || f.Metric[0].GetHistogram() == nil {
			continue
		}
		s.PauseBuckets = map[float64]float64{}
		for _, b := range f.Metric[0].GetHistogram().GetBucket() {
			s.PauseBuckets[b.GetUpperBound()] = float64(b.GetCumulativeCount())
		}
		break
	}
	return s, nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// Span is a time interval.
type Span struct{ Start, End time.Time }

// ArmWindow is one arm's process signals over a set of spans.
type ArmWindow struct {
	// GCPausesMS are the GC pauses that ended in the spans, in ms.
	GCPausesMS []float64
	// WindowS is the total length of the spans.
	WindowS            float64
	DependencyCalls    float64
	DependencyFailures float64
	HTTPRequests       float64
	HTTP5xx            float64
	HTTP503            float64
	// Route5xx and RouteRequests break the HTTP counts down by route.
	Route5xx, RouteRequests map[string]float64
	// Goroutines and RSSBytes are the largest per-node values seen, summed
	// over nodes (MaxGoroutines, MaxRSSBytes).
	MaxGoroutines float64
	MaxRSSBytes   float64
	// MemoryGrowthMBPerMin is the mean over nodes of each node's resident
	// memory slope (least squares over its samples): the arm's growth per
	// node. A node restarted inside the window is left out (its new process
	// warms up, which is not growth); with every node restarted there is no
	// growth (HasMemoryGrowth false).
	MemoryGrowthMBPerMin float64
	HasMemoryGrowth      bool
	// Scrapes counts the sample pairs used; ScrapeErrors the failed scrapes.
	Scrapes, ScrapeErrors int
	Nodes                 int
}

func sameProcess(a, b Sample) bool { return a.StartTime == b.StartTime }

func delta(a, b float64, same bool) float64 {
	if !same || b < a {
		return b
	}
	return b - a
}

func inSpans(t time.Time, spans []Span) bool {
	for _, s := range spans {
		if t.After(s.Start) && !t.After(s.End) {
			return true
		}
	}
	return false
}

// Window summarises arm over spans. It fails when no node of the arm had
// two successive scrapes inside the spans.
func (p *Probe) Window(arm engine.Arm, spans ...Span) (ArmWindow, error) {
	return p.NodesWindow(arm, nil, spans...)
}

// NodesWindow is Window restricted to some nodes of the arm (nil: all).
func (p *Probe) NodesWindow(arm engine.Arm, nodes []string, spans ...Span) (ArmWindow, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := ArmWindow{Route5xx: map[string]float64{}, RouteRequests: map[string]float64{}}
	keep := func(n string) bool {
		if nodes == nil {
			return true
		}
		for _, x := range nodes {
			if x == n {
				return true
			}
		}
		return false
	}
	for _, s := range spans {
		w.WindowS += s.End.Sub(s.Start).Seconds()
	}
	var slopes []float64
	for node, sr := range p.data[arm] {
		if !keep(node) {
			continue
		}
		w.ScrapeErrors += sr.errors
		used := false
		var maxG, maxR float64
		var xs, ys []float64
		restarted := false
		for i := 1; i < len(sr.samples); i++ {
			a, b := sr.samples[i-1], sr.samples[i]
			if !inSpans(b.At, spans) {
				continue
			}
			if b.At.Sub(a.At) > 2*p.cfg.Interval+p.cfg.Timeout {
				// A gap (failed scrapes): its deltas would smear what
				// happened outside the window into it.
				continue
			}
			used = true
			w.Scrapes++
			same := sameProcess(a, b)
			w.DependencyCalls += delta(a.Forwards, b.Forwards, same)
			w.DependencyFailures += delta(a.ForwardErrs, b.ForwardErrs, same)
			w.HTTPRequests += delta(a.HTTPTotal, b.HTTPTotal, same)
			w.HTTP5xx += delta(a.HTTP5xx, b.HTTP5xx, same)
			w.HTTP503 += delta(a.HTTP503, b.HTTP503, same)
			for r, v := range b.RouteTotal {
				w.RouteRequests[r] += delta(a.RouteTotal[r], v, same)
			}
			for r, v := range b.Route5xx {
				w.Route5xx[r] += delta(a.Route5xx[r], v, same)
			}
			w.GCPausesMS = append(w.GCPausesMS, pauses(a, b, same)...)
			maxG, maxR = math.Max(maxG, b.Goroutines), math.Max(maxR, b.RSS)
			// A node restarted inside the window (killed and restarted, a
			// pod replaced) is left out of the growth: its new process warms
			// up, and the slope would measure the restart, not growth; the
			// PromQL source's memory query leaves it out likewise.
			restarted = restarted || !same
			if !restarted {
				xs = append(xs, b.At.Sub(spans[0].Start).Minutes())
				ys = append(ys, b.RSS/(1<<20))
			}
		}
		if used {
			w.Nodes++
			w.MaxGoroutines += maxG
			w.MaxRSSBytes += maxR
			if len(xs) >= 3 && !restarted {
				slopes = append(slopes, slope(xs, ys))
			}
		}
	}
	if w.Nodes == 0 {
		return w, engine.E(engine.KindUnavailable, "metrics", fmt.Errorf("no two successive scrapes of any %s node in the window (%d scrape errors)", arm, w.ScrapeErrors))
	}
	if len(slopes) > 0 {
		var sum float64
		for _, x := range slopes {
			sum += x
		}
		w.MemoryGrowthMBPerMin = sum / float64(len(slopes))
		w.HasMemoryGrowth = true
	}
	return w, nil
}

// pauses returns the GC pauses between two scrapes of one node, in ms:
// from the pause histogram when exposed (each pause at its bucket's upper
// bound), else from go_gc_duration_seconds (the count and sum delta, with
// the largest recent pause, when it rose, bounded by the sum delta).
func pauses(a, b Sample, same bool) []float64 {
	if b.PauseBuckets != nil {
		bounds := make([]float64, 0, len(b.PauseBuckets))
		for ub := range b.PauseBuckets {
			bounds = append(bounds, ub)
		}
		sort.Float64s(bounds)
		var out []float64
		prev := 0.0
		for _, ub := range bounds {
			cum := delta(a.PauseBuckets[ub], b.PauseBuckets[ub], same && a.PauseBuckets != nil)
			n := cum - prev
			prev = cum
			v := ub
			if math.IsInf(ub, 1) {
				v = bounds[max(0, len(bounds)-2)]
			}
			for i := 0; i < int(n) && i < 100000; i++ {
				out = append(out, v*1000)
			}
		}
		return out
	}
	n := int(delta(a.GCCount, b.GCCount, same))
	if n <= 0 {
		return nil
	}
	total := delta(a.GCSum, b.GCSum, same)
	if n == 1 {
		return []float64{total * 1000}
	}
	// go_gc_duration_seconds' quantile 1 is the largest of the recent
	// pauses, not of this interval: it is this interval's only when it
	// rose (or the process is new); otherwise the pauses share the sum. A
	// fall is an old pause leaving the recent ones.
	top := total / float64(n)
	if !same || b.GCMax > a.GCMax {
		top = math.Min(b.GCMax, total)
	}
	rest := (total - top) / float64(n-1)
	out := make([]float64, 0, n)
	out = append(out, top*1000)
	for i := 1; i < n; i++ {
		out = append(out, rest*1000)
	}
	return out
}

func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// Metrics names the window's values for observations and reports.
func (w ArmWindow) Metrics() engine.Metrics {
	m := engine.Metrics{"gc_pauses": float64(len(w.GCPausesMS)), "dependency_calls": w.DependencyCalls, "dependency_failures": w.DependencyFailures,
		"http_requests": w.HTTPRequests, "http_5xx": w.HTTP5xx, "http_503": w.HTTP503, "goroutines_max": w.MaxGoroutines, "rss_bytes_max": w.MaxRSSBytes,
		"scrape_errors": float64(w.ScrapeErrors), "window_s": w.WindowS}
	for r, v := range w.RouteRequests {
		m["http_requests_"+r] = v
		m["http_5xx_"+r] = w.Route5xx[r]
	}
	var mx float64
	for _, p := range w.GCPausesMS {
		mx = math.Max(mx, p)
	}
	m["gc_pause_max_ms"] = mx
	if w.HasMemoryGrowth {
		m["memory_growth_mb_per_min"] = w.MemoryGrowthMBPerMin
	}
	return m
}

// Observe summarises every arm over w (engine.Probe). An arm that could not
// be scraped makes the observation an error.
func (p *Probe) Observe(_ context.Context, w engine.Window) (engine.Observation, error) {
	o := engine.Observation{Probe: Name, Window: w, Arms: map[engine.Arm]engine.Metrics{}}
	var errs []error
	for _, arm := range p.cfg.Arms {
		aw, err := p.Window(arm, Span{w.Start, w.End})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		o.Arms[arm] = aw.Metrics()
	}
	if len(errs) > 0 {
		return o, errors.Join(errs...)
	}
	return o, nil
}

// Samples returns a copy of every scrape of arm so far: node id → samples
// in scrape order (the raw values behind the arm's windows).
func (p *Probe) Samples(arm engine.Arm) map[string][]Sample {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string][]Sample{}
	for node, s := range p.data[arm] {
		out[node] = append([]Sample(nil), s.samples...)
	}
	return out
}
