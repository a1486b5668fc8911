package promtest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// LatencyBuckets are the request-duration histogram's bounds, in seconds.
var LatencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

// PauseBuckets are the GC pause histogram's bounds, in seconds.
var PauseBuckets = []float64{0.0001, 0.001, 0.01, 0.05, 0.1, 0.5}

// ArmMetrics is one arm's metrics, named as in the example queries file
// (deploy/examples/prometheus-queries/queries.yaml), which the test drives.
type ArmMetrics struct {
	Requests      *prometheus.CounterVec // http_requests_total{code}
	Latency       prometheus.Histogram   // http_request_duration_seconds
	Idle          prometheus.Histogram   // idle_request_duration_seconds, never observed unless driven
	GCPauses      prometheus.Histogram   // go_sched_pauses_total_gc_seconds
	Sessions      prometheus.Counter     // sessions_total
	Interruptions prometheus.Counter     // session_interruptions_total
	DepCalls      prometheus.Counter     // dependency_calls_total
	DepFailures   prometheus.Counter     // dependency_failures_total

	mu       sync.Mutex
	rssBase  float64
	rssSlope float64 // bytes per second
	rssT0    time.Time
	started  time.Time // process_start_time_seconds; not exposed while zero
	// gc is go_gc_duration_seconds as client_golang exposes it (the
	// count and sum of every pause, quantile 1 the largest of the recent
	// ones); not exposed until SetGCSummary is called.
	gc *gcSummary
}

type gcSummary struct{ count, sum, max float64 }

// SetGCSummary makes the arm expose go_gc_duration_seconds with count
// pauses totalling sum seconds, the largest recent one max seconds
// (quantile 1; the other quantiles are not exposed).
func (a *ArmMetrics) SetGCSummary(count uint64, sum, max float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gc = &gcSummary{float64(count), sum, max}
}

// SetStartTime makes the arm expose process_start_time_seconds = at, as a
// process started then would; a later call is a restart under the same
// series.
func (a *ArmMetrics) SetStartTime(at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.started = at
}

// SetMemoryGrowth makes process_resident_memory_bytes grow by mbPerMin
// from now on, as a linear function of the time it is scraped.
func (a *ArmMetrics) SetMemoryGrowth(mbPerMin float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rssBase = a.rss()
	a.rssT0 = time.Now()
	a.rssSlope = mbPerMin * (1 << 20) / 60
}

func (a *ArmMetrics) rss() float64 { return a.rssAt(time.Now()) }

func (a *ArmMetrics) rssAt(t time.Time) float64 {
	return a.rssBase + a.rssSlope*t.Sub(a.rssT0).Seconds()
}

var (
	rssDesc   = prometheus.NewDesc("process_resident_memory_bytes", "Resident memory.", nil, nil)
	startDesc = prometheus.NewDesc("process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds.", nil, nil)
	gcDesc    = prometheus.NewDesc("go_gc_duration_seconds", "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.", nil, nil)
)

// rssCollector exposes the arm's resident memory with the time it was
// read (whole milliseconds), so the slope Prometheus fits does not depend
// on how long a scrape took to reach the collector.
type rssCollector struct{ a *ArmMetrics }

func (c rssCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- rssDesc
	ch <- startDesc
	ch <- gcDesc
}

func (c rssCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now().Truncate(time.Millisecond)
	c.a.mu.Lock()
	v, started, gc := c.a.rssAt(now), c.a.started, c.a.gc
	c.a.mu.Unlock()
	if gc != nil {
		ch <- prometheus.MustNewConstSummary(gcDesc, uint64(gc.count), gc.sum, map[float64]float64{1: gc.max})
	}
	ch <- prometheus.NewMetricWithTimestamp(now, prometheus.MustNewConstMetric(rssDesc, prometheus.GaugeValue, v))
	if !started.IsZero() {
		ch <- prometheus.MustNewConstMetric(startDesc, prometheus.GaugeValue, float64(started.UnixMilli())/1000)
	}
}

// Target is an HTTP server on 127.0.0.1 exposing each arm's own registry at
// /metrics/<arm>, scraped as one target per arm with the label arm=<arm>.
type Target struct {
	Addr string
	Arms map[string]*ArmMetrics
	srv  *http.Server
	done chan struct{}
}

// NewTarget serves arms until the test ends. Every series exists from the
// start at 0 (the codes 200 and 500 included), so a window that covers a
// series' first scrape counts it exactly.
func NewTarget(t testing.TB, arms ...string) *Target {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	tg := &Target{Addr: l.Addr().String(), Arms: map[string]*ArmMetrics{}, done: make(chan struct{})}
	for _, name := range arms {
		reg := prometheus.NewRegistry()
		a := &ArmMetrics{
			Requests:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "HTTP requests by status code."}, []string{"code"}),
			Latency:       prometheus.NewHistogram(prometheus.HistogramOpts{Name: "http_request_duration_seconds", Help: "Request latency.", Buckets: LatencyBuckets}),
			Idle:          prometheus.NewHistogram(prometheus.HistogramOpts{Name: "idle_request_duration_seconds", Help: "A route nobody calls.", Buckets: LatencyBuckets}),
			GCPauses:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "go_sched_pauses_total_gc_seconds", Help: "GC pauses.", Buckets: PauseBuckets}),
			Sessions:      prometheus.NewCounter(prometheus.CounterOpts{Name: "sessions_total", Help: "Sessions."}),
			Interruptions: prometheus.NewCounter(prometheus.CounterOpts{Name: "session_interruptions_total", Help: "Interrupted sessions."}),
			DepCalls:      prometheus.NewCounter(prometheus.CounterOpts{Name: "dependency_calls_total", Help: "Dependency calls."}),
			DepFailures:   prometheus.NewCounter(prometheus.CounterOpts{Name: "dependency_failures_total", Help: "Failed dependency calls."}),
			rssBase:       100 << 20, rssT0: time.Now(),
		}
		a.Requests.WithLabelValues("200")
		a.Requests.WithLabelValues("500")
		reg.MustRegister(a.Requests, a.Latency, a.Idle, a.GCPauses, a.Sessions, a.Interruptions, a.DepCalls, a.DepFailures,
			rssCollector{a})
		tg.Arms[name] = a
		mux.Handle("/metrics/"+name, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
	tg.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(tg.done)
		if err := tg.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("metrics target: %v", err)
		}
	}()
	t.Cleanup(func() { tg.srv.Close(); <-tg.done })
	return tg
}

// ScrapeConfigs returns a scrape_configs list for Start: one job, one
// target per arm, labelled arm=<arm>.
func (tg *Target) ScrapeConfigs() string {
	labels := map[string]map[string]string{}
	for name := range tg.Arms {
		labels[name] = map[string]string{"arm": name}
	}
	return tg.ScrapeConfigsLabelled(labels)
}

// ScrapeConfigsLabelled returns a scrape_configs list for Start: one job,
// one target per arm of labels, with that arm's labels — e.g. several arms
// of the target labelled as the pods of one workload.
func (tg *Target) ScrapeConfigsLabelled(labels map[string]map[string]string) string {
	var b strings.Builder
	b.WriteString("  - job_name: app\n    static_configs:\n")
	for name, ls := range labels {
		fmt.Fprintf(&b, "      - targets: [%q]\n        labels: {__metrics_path__: %q", tg.Addr, "/metrics/"+name)
		for k, v := range ls {
			fmt.Fprintf(&b, ", %s: %q", k, v)
		}
		b.WriteString("}\n")
	}
	return b.String()
}
