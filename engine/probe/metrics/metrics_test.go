package metrics

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/engine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const exposition = `# HELP go_gc_duration_seconds A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2e-05
go_gc_duration_seconds{quantile="1"} %g
go_gc_duration_seconds_sum %g
go_gc_duration_seconds_count %d
# TYPE go_goroutines gauge
go_goroutines 42
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes %d
# TYPE process_start_time_seconds gauge
process_start_time_seconds %d
# TYPE chaosgate_aggregator_forwards_total counter
chaosgate_aggregator_forwards_total %d
# TYPE chaosgate_aggregator_forward_errors_total counter
chaosgate_aggregator_forward_errors_total %d
# TYPE chaosgate_aggregator_http_requests_total counter
chaosgate_aggregator_http_requests_total{code="200",route="messages"} %d
chaosgate_aggregator_http_requests_total{code="503",route="messages"} %d
chaosgate_aggregator_http_requests_total{code="409",route="state_put"} 3
`

func expo(maxPause, sum float64, count, rss, start, fwd, fwdErr, ok, e503 int) string {
	return fmt.Sprintf(exposition, maxPause, sum, count, rss, start, fwd, fwdErr, ok, e503)
}

func TestParseReadsEverySignal(t *testing.T) {
	s, err := Parse(strings.NewReader(expo(0.004, 0.01, 7, 50<<20, 1000, 30, 2, 100, 5)))
	if err != nil {
		t.Fatal(err)
	}
	if s.GCCount != 7 || s.GCSum != 0.01 || s.GCMax != 0.004 || s.Goroutines != 42 || s.RSS != 50<<20 || s.StartTime != 1000 ||
		s.Forwards != 30 || s.ForwardErrs != 2 || s.HTTPTotal != 108 || s.HTTP5xx != 5 {
		t.Fatalf("parsed %+v", s)
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	if _, err := Parse(strings.NewReader("go_goroutines{ 3\n")); err == nil || !strings.Contains(err.Error(), "parse /metrics") {
		t.Fatalf("want a parse error, got %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(expo(0.004, 0.01, 7, 50<<20, 1000, 30, 2, 100, 5))
	f.Add("# TYPE go_gc_pauses_seconds histogram\ngo_gc_pauses_seconds_bucket{le=\"0.001\"} 3\ngo_gc_pauses_seconds_bucket{le=\"+Inf\"} 4\ngo_gc_pauses_seconds_sum 0.1\ngo_gc_pauses_seconds_count 4\n")
	f.Add("")
	f.Add("x 1\nx 2\n")
	f.Fuzz(func(t *testing.T, s string) {
		smp, err := Parse(strings.NewReader(s))
		if err != nil {
			return
		}
		_ = pauses(Sample{}, smp, false)
	})
}

// fakeNode serves a /metrics whose counters the test advances; it is a
// real HTTP server on 127.0.0.1 so the scraper runs as in production.
type fakeNode struct {
	srv   *httptest.Server
	step  atomic.Int64
	start atomic.Int64
}

func newFakeNode(t *testing.T) *fakeNode {
	n := &fakeNode{}
	n.start.Store(1000)
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := int(n.step.Load())
		// Each step: 10 requests (1 of them a 503), 4 forwards (1 failed),
		// one GC pause of 2ms, 1 MiB more resident memory.
		fmt.Fprint(w, expo(0.002, 0.002*float64(k), k, (40+k)<<20, int(n.start.Load()), 4*k, k, 9*k, k))
	}))
	t.Cleanup(n.srv.Close)
	return n
}

func TestWindowDifferencesCountersAndSurvivesRestarts(t *testing.T) {
	a := newFakeNode(t)
	addr := strings.TrimPrefix(a.srv.URL, "http://")
	p, err := New(Config{Arms: []engine.Arm{engine.ArmCanary}, Targets: func(engine.Arm) map[string]string { return map[string]string{"n1": addr} }, Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Now()
	for k := 1; k <= 4; k++ {
		a.step.Store(int64(k))
		p.ScrapeOnce(ctx)
		time.Sleep(5 * time.Millisecond)
	}
	// A restart: the counters start again from zero.
	a.start.Store(2000)
	a.step.Store(1)
	p.ScrapeOnce(ctx)
	w, err := p.Window(engine.ArmCanary, Span{Start: t0, End: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	// Pairs: 1→2, 2→3, 3→4 (3 steps of 10) and the restart pair, which
	// counts the new process from zero (10, plus its three 409s).
	if w.HTTPRequests != 43 || w.HTTP5xx != 4 || w.DependencyCalls != 16 || w.DependencyFailures != 4 {
		t.Fatalf("counters: %+v", w)
	}
	if len(w.GCPausesMS) != 4 {
		t.Fatalf("gc pauses %v", w.GCPausesMS)
	}
	for _, x := range w.GCPausesMS {
		if x < 1.99 || x > 2.01 {
			t.Fatalf("gc pause %g ms, want 2", x)
		}
	}
	if w.MaxGoroutines != 42 || w.Nodes != 1 {
		t.Fatalf("gauges %+v", w)
	}
	o, err := p.Observe(ctx, engine.Window{Start: t0, End: time.Now()})
	if err != nil || o.Arms[engine.ArmCanary]["http_5xx"] != 4 {
		t.Fatalf("observe %+v %v", o, err)
	}
}

func TestWindowWithoutScrapesIsAnError(t *testing.T) {
	p, err := New(Config{Arms: []engine.Arm{engine.ArmControl}, Targets: func(engine.Arm) map[string]string { return map[string]string{"n1": "127.0.0.1:1"} }, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	p.ScrapeOnce(context.Background())
	p.ScrapeOnce(context.Background())
	if _, err := p.Observe(context.Background(), engine.Window{Start: t0, End: time.Now()}); err == nil || engine.KindOf(err) != engine.KindUnavailable {
		t.Fatalf("a probe that could not scrape must fail, got %v", err)
	}
}

func TestMemoryGrowthSlope(t *testing.T) {
	a := newFakeNode(t)
	addr := strings.TrimPrefix(a.srv.URL, "http://")
	p, _ := New(Config{Arms: []engine.Arm{engine.ArmCanary}, Targets: func(engine.Arm) map[string]string { return map[string]string{"n1": addr} }})
	t0 := time.Now()
	for k := 1; k <= 5; k++ {
		a.step.Store(int64(k))
		p.ScrapeOnce(context.Background())
		time.Sleep(20 * time.Millisecond)
	}
	w, err := p.Window(engine.ArmCanary, Span{Start: t0, End: time.Now()})
	if err != nil || !w.HasMemoryGrowth || w.MemoryGrowthMBPerMin <= 0 {
		t.Fatalf("memory growth %+v %v", w, err)
	}
}

// TestMemoryGrowthLeavesOutRestartedNodes: a node restarted inside the
// window warms up fast (5 MiB a scrape against 1 before); it is left out of
// the growth, which is the other node's slope alone, and a window in which
// every node restarted has no growth.
func TestMemoryGrowthLeavesOutRestartedNodes(t *testing.T) {
	settled, restarted := newFakeNode(t), newFakeNode(t)
	nodes := map[string]string{"n1": strings.TrimPrefix(settled.srv.URL, "http://"), "n2": strings.TrimPrefix(restarted.srv.URL, "http://")}
	p, _ := New(Config{Arms: []engine.Arm{engine.ArmCanary}, Targets: func(engine.Arm) map[string]string { return nodes }})
	ctx := context.Background()
	t0 := time.Now()
	for k := 1; k <= 10; k++ {
		settled.step.Store(int64(k))
		if k == 5 {
			restarted.start.Store(2000)
		}
		if k < 5 {
			restarted.step.Store(int64(k))
		} else {
			restarted.step.Store(int64(5 * k))
		}
		p.ScrapeOnce(ctx)
		time.Sleep(20 * time.Millisecond)
	}
	end := time.Now()
	alone, err := p.NodesWindow(engine.ArmCanary, []string{"n1"}, Span{Start: t0, End: end})
	if err != nil || !alone.HasMemoryGrowth {
		t.Fatalf("settled node: %+v %v", alone, err)
	}
	both, err := p.Window(engine.ArmCanary, Span{Start: t0, End: end})
	if err != nil || !both.HasMemoryGrowth {
		t.Fatalf("both nodes: %+v %v", both, err)
	}
	if both.MemoryGrowthMBPerMin != alone.MemoryGrowthMBPerMin {
		t.Fatalf("growth with a restarted node = %g MB/min, want the settled node's %g (the restarted one warms up five times as fast)",
			both.MemoryGrowthMBPerMin, alone.MemoryGrowthMBPerMin)
	}
	if w, err := p.NodesWindow(engine.ArmCanary, []string{"n2"}, Span{Start: t0, End: end}); err != nil || w.HasMemoryGrowth {
		t.Fatalf("only a restarted node: growth %+v (%v), want none", w, err)
	}
}
