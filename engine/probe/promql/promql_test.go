package promql

import (
	"context"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/internal/freeport"
	"github.com/chaosgate/chaosgate/internal/promtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var example = filepath.Join("..", "..", "..", "deploy", "examples", "prometheus-queries", "queries.yaml")

func exampleQueries(t *testing.T) *Queries {
	t.Helper()
	q, err := LoadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func mustParse(t *testing.T, text string) *Queries {
	t.Helper()
	q, err := Parse("test.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// waitFor polls cond until it holds or 30 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// lastScrape is the time of the arm's newest scrape, from the freshness
// query.
func lastScrape(t *testing.T, src *Source, arm string) time.Time {
	t.Helper()
	r := src.Arm(context.Background(), arm, `arm="`+arm+`"`, time.Minute, time.Now())
	return r.Arm.CollectedAt
}

// TestPromqlAgainstPrometheus runs a real Prometheus 2.42 scraping a real
// HTTP server that exposes two arms' client_golang metrics, drives known
// counts into them, and checks what the source reads back.
func TestPromqlAgainstPrometheus(t *testing.T) {
	tg := promtest.NewTarget(t, "canary", "control")
	canary, control := tg.Arms["canary"], tg.Arms["control"]
	canary.SetMemoryGrowth(2) // before the first scrape: one straight line
	prom := promtest.Start(t, tg.ScrapeConfigs())
	src, err := New(prom.URL, exampleQueries(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx := context.Background()
	if err := src.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Every series' first sample must be 0: wait for a scrape of each arm
	// before driving.
	waitFor(t, "a first scrape of both arms", func() bool {
		return !lastScrape(t, src, "canary").IsZero() && !lastScrape(t, src, "control").IsZero()
	})

	canary.Requests.WithLabelValues("200").Add(2000)
	canary.Requests.WithLabelValues("500").Add(10)
	control.Requests.WithLabelValues("200").Add(2000)
	for i := 0; i < 1000; i++ {
		if i < 900 {
			canary.Latency.Observe(0.015)
		} else {
			canary.Latency.Observe(0.080)
		}
		control.Latency.Observe(0.015)
	}
	for i := 0; i < 5; i++ {
		canary.GCPauses.Observe(0.0005)
	}
	canary.GCPauses.Observe(0.03)
	canary.GCPauses.Observe(0.03)
	for i := 0; i < 3; i++ {
		control.GCPauses.Observe(0.0005)
	}
	canary.Sessions.Add(300)
	canary.Interruptions.Add(3)
	control.Sessions.Add(300)
	canary.DepCalls.Add(1000)
	canary.DepFailures.Add(4)
	control.DepCalls.Add(1000)
	driven := time.Now()
	waitFor(t, "a scrape of both arms after the drive", func() bool {
		return lastScrape(t, src, "canary").After(driven.Add(1100*time.Millisecond)) && lastScrape(t, src, "control").After(driven.Add(1100*time.Millisecond))
	})
	window := time.Since(start).Round(time.Second) + 30*time.Second

	t.Run("values agree with what the test drove", func(t *testing.T) {
		// Agreement is exact for counts and quantiles (compared to 1e-9):
		// each arm is queried at its own newest scrape, and every series
		// starts at 0 inside the window, so increase() has nothing to
		// extrapolate; histogram_quantile interpolates linearly inside the
		// bucket, which the expected values do too. The memory slope is
		// deriv's least-squares fit over a gauge exposed with the time it
		// was read: exact but for float rounding, checked within 0.1%.
		type want struct {
			requests, errors, p50, p99, lat, sessions, interruptions, calls, failures, growth float64
			pauses                                                                            []float64
		}
		for arm, w := range map[string]want{
			"canary": {2010, 10, 1000 * (0.01 + 0.015*500/900), 1000 * (0.05 + 0.05*90/100), 1000, 300, 3, 1000, 4, 2,
				[]float64{1, 1, 1, 1, 1, 50, 50}},
			"control": {2000, 0, 1000 * (0.01 + 0.015*500/1000), 1000 * (0.01 + 0.015*990/1000), 1000, 300, 0, 1000, 0, 0,
				[]float64{1, 1, 1}},
		} {
			at := lastScrape(t, src, arm)
			r := src.Arm(ctx, arm, `arm="`+arm+`"`, window, at)
			if len(r.Notes) > 0 {
				t.Errorf("%s: notes: %q", arm, r.Notes)
			}
			a := r.Arm
			for _, c := range []struct {
				name string
				got  decision.Value
				want float64
				tol  float64
			}{
				{"requests", a.Requests, w.requests, 1e-9}, {"errors", a.Errors, w.errors, 1e-9},
				{"p50", a.LatencyP50, w.p50, 1e-9}, {"p99", a.LatencyP99, w.p99, 1e-9}, {"latency_samples", a.LatencySamples, w.lat, 1e-9},
				{"sessions", a.Sessions, w.sessions, 1e-9}, {"interruptions", a.SessionInterruptions, w.interruptions, 1e-9},
				{"dependency_calls", a.DependencyCalls, w.calls, 1e-9}, {"dependency_failures", a.DependencyFailures, w.failures, 1e-9},
				{"window_s", a.WindowS, window.Seconds(), 1e-9},
			} {
				if !c.got.OK() || math.Abs(c.got.V-c.want) > c.tol*math.Max(1, math.Abs(c.want)) {
					t.Errorf("%s %s = %+v, want %v", arm, c.name, c.got, c.want)
				}
			}
			if g := a.MemoryGrowthMBPerMin; !g.OK() || math.Abs(g.V-w.growth) > 0.001*math.Max(w.growth, 1) {
				t.Errorf("%s memory growth = %+v MB/min, want %v within 0.1%%", arm, g, w.growth)
			}
			if !a.GCPausesMS.OK() || !slices.Equal(a.GCPausesMS.V, w.pauses) {
				t.Errorf("%s GC pauses = %+v, want %v (each at its bucket's upper bound, ms)", arm, a.GCPausesMS, w.pauses)
			}
			if !a.CollectedAt.Equal(at) {
				t.Errorf("%s collected_at = %v, want the last scrape %v", arm, a.CollectedAt, at)
			}
			for _, f := range []string{Requests, Errors, GCPauses, CollectedAt} {
				if q := r.Queries[f]; !strings.Contains(q, `arm="`+arm+`"`) || !strings.Contains(q, Duration(window)) && f != CollectedAt {
					t.Errorf("%s %s resolved query %q lacks the selector or the window", arm, f, q)
				}
			}
		}
	})

	// Each data problem is kept apart and names the field and the
	// resolved query.
	t.Run("empty result is missing", func(t *testing.T) {
		s := sourceWith(t, prom.URL, `requests: 'sum(increase(no_such_metric_total{ {{.Selector}} }[{{.Window}}]))'`)
		v := s.Arm(ctx, "canary", `arm="canary"`, window, time.Now()).Arm.Requests
		wantState(t, v, decision.Missing, "requests: no series (no data); query: sum(increase(no_such_metric_total{ arm=\"canary\" }[")
	})
	t.Run("NaN result is nan", func(t *testing.T) {
		// A histogram that was never observed: histogram_quantile of zero
		// counts is NaN.
		s := sourceWith(t, prom.URL, `latency_p99_ms: '1000 * histogram_quantile(0.99, sum by (le)(increase(idle_request_duration_seconds_bucket{ {{.Selector}} }[{{.Window}}])))'`)
		v := s.Arm(ctx, "canary", `arm="canary"`, window, time.Now()).Arm.LatencyP99
		wantState(t, v, decision.NaN, "latency_p99_ms: NaN (NaN); query: 1000 * histogram_quantile(0.99, sum by (le)(increase(idle_request_duration_seconds_bucket{ arm=\"canary\" }[")
	})
	t.Run("PromQL syntax error is query_error", func(t *testing.T) {
		s := sourceWith(t, prom.URL, `errors: 'sum(increase(http_requests_total{ {{.Selector}} }[{{.Window}}])'`)
		v := s.Arm(ctx, "canary", `arm="canary"`, window, time.Now()).Arm.Errors
		wantState(t, v, decision.QueryError, "errors: bad_data: ")
		wantState(t, v, decision.QueryError, "parse error")
		wantState(t, v, decision.QueryError, `; query: sum(increase(http_requests_total{ arm="canary" }[`)
	})
	t.Run("several series where one is expected is query_error", func(t *testing.T) {
		s := sourceWith(t, prom.URL, `requests: 'increase(http_requests_total{ {{.Selector}} }[{{.Window}}])'`)
		v := s.Arm(ctx, "canary", `arm="canary"`, window, time.Now()).Arm.Requests
		wantState(t, v, decision.QueryError, "requests: 2 series where one is expected (")
		wantState(t, v, decision.QueryError, `code="500"`)
		wantState(t, v, decision.QueryError, `; query: increase(http_requests_total{ arm="canary" }[`)
	})
	t.Run("gc_pauses not by le is query_error", func(t *testing.T) {
		s := sourceWith(t, prom.URL, `gc_pauses: 'increase(go_sched_pauses_total_gc_seconds_bucket{ {{.Selector}} }[{{.Window}}])'`)
		g := s.Arm(ctx, "canary", `arm="canary"`, window, time.Now()).Arm.GCPausesMS
		if g.State != decision.QueryError || !strings.Contains(g.Err, "gc_pauses: want a vector by le only") || !strings.Contains(g.Err, "; query: increase(go_sched_pauses_total_gc_seconds_bucket{") {
			t.Fatalf("gc pauses = %+v", g)
		}
	})
	t.Run("unreachable Prometheus is query_error", func(t *testing.T) {
		ports, err := freeport.Ports(1)
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(fmt.Sprintf("http://127.0.0.1:%d", ports[0]), exampleQueries(t))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Ping(ctx); err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("Ping = %v, want connection refused", err)
		}
		r := s.Arm(ctx, "canary", `arm="canary"`, window, time.Now())
		wantState(t, r.Arm.Requests, decision.QueryError, "requests: ")
		wantState(t, r.Arm.Requests, decision.QueryError, "connection refused; query: sum(increase(http_requests_total{ arm=\"canary\" }[")
		if r.Arm.GCPausesMS.State != decision.QueryError || !r.Arm.CollectedAt.IsZero() {
			t.Fatalf("gc %+v collected_at %v: want query_error and no time", r.Arm.GCPausesMS, r.Arm.CollectedAt)
		}
	})
	t.Run("stale data is stale to the judge", func(t *testing.T) {
		// Asked 150 s after the newest scrape, Prometheus answers exactly
		// what it would if it had stopped scraping 150 s ago: the last
		// samples (within its 5 min lookback), with their old timestamps.
		// The window reaches back over the scrapes.
		at := time.Now().Add(150 * time.Second)
		in := decision.Input{At: at,
			Canary:  src.Arm(ctx, "canary", `arm="canary"`, 5*time.Minute, at).Arm,
			Control: src.Arm(ctx, "control", `arm="control"`, 5*time.Minute, at).Arm}
		v := decision.Evaluate(decision.Default(), in)
		if v.Decision == decision.Promote {
			t.Fatalf("stale data promoted: %s", v.Reason)
		}
		stale := 0
		for _, d := range v.Dimensions {
			if d.Data == decision.DataStale {
				stale++
				if !strings.Contains(d.Reason, "collected") {
					t.Errorf("%s: reason %q does not say when the data was collected", d.Name, d.Reason)
				}
			}
		}
		if stale == 0 {
			t.Fatalf("no dimension stale: %+v", v.Dimensions)
		}
	})
	t.Run("history windows by one range query", func(t *testing.T) {
		// Two windows 1 s apart, each reaching back over every scrape, the
		// earlier one too: a loaded host may have scraped only twice by
		// now (a 2 s window, or one ending before the second scrape, would
		// hold a single sample and no increase), so wait for two more.
		after := lastScrape(t, src, "canary").Add(2100 * time.Millisecond)
		waitFor(t, "two more scrapes", func() bool { return lastScrape(t, src, "canary").After(after) })
		at := lastScrape(t, src, "canary")
		rs := src.Arms(ctx, "canary", `arm="canary"`, window, at, time.Second, 2)
		if len(rs) != 2 || !rs[1].At.Equal(at) || !rs[0].At.Equal(at.Add(-time.Second)) {
			t.Fatalf("windows at %v", []time.Time{rs[0].At, rs[len(rs)-1].At})
		}
		// Each window of the range query reads what an instant query at
		// its time reads.
		for _, r := range rs {
			one := src.Arm(ctx, "canary", `arm="canary"`, window, r.At)
			if !r.Arm.Requests.OK() || r.Arm.Requests != one.Arm.Requests || !slices.Equal(r.Arm.GCPausesMS.V, one.Arm.GCPausesMS.V) {
				t.Errorf("window at %v: range %+v, instant %+v", r.At, r.Arm.Requests, one.Arm.Requests)
			}
		}
	})
}

func sourceWith(t *testing.T, url, queries string) *Source {
	t.Helper()
	s, err := New(url, mustParse(t, "queries:\n  "+queries+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func wantState(t *testing.T, v decision.Value, st decision.State, errPart string) {
	t.Helper()
	if v.State != st || !strings.Contains(v.Err, errPart) {
		t.Fatalf("value %+v: want state %s with an error containing %q", v, st, errPart)
	}
}

// TestPromqlQueryTimeout: a server that accepts the connection and never
// answers fails the field with a query error after the file's timeout.
func TestPromqlQueryTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		l.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	s, err := New("http://"+l.Addr().String(), mustParse(t, "timeout: 200ms\nqueries:\n  requests: 'sum(x{ {{.Selector}} })'\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	began := time.Now()
	v := s.Arm(context.Background(), "canary", `arm="canary"`, time.Minute, time.Now()).Arm.Requests
	wantState(t, v, decision.QueryError, "requests: ")
	wantState(t, v, decision.QueryError, `deadline exceeded; query: sum(x{ arm="canary" })`)
	if d := time.Since(began); d > 10*time.Second {
		t.Fatalf("the query took %v: the timeout did not bound it", d)
	}
}

// TestMemoryGrowthLeavesOutProcessesStartedInTheWindow runs the example
// memory query against a real Prometheus scraping three processes of one
// arm: one running since before the window, one replaced inside it under
// a new series (a pod killed and replaced on a new IP: the old series
// ends, a new one begins with its own start time) and one restarted inside
// it under the same series. The two new processes warm up fast; only the
// first one's slope is growth.
func TestMemoryGrowthLeavesOutProcessesStartedInTheWindow(t *testing.T) {
	tg := promtest.NewTarget(t, "settled", "replaced", "restarted")
	hourAgo := time.Now().Add(-time.Hour)
	tg.Arms["settled"].SetStartTime(hourAgo)
	tg.Arms["settled"].SetMemoryGrowth(1)
	tg.Arms["replaced"].SetStartTime(time.Now())
	tg.Arms["replaced"].SetMemoryGrowth(60)
	tg.Arms["restarted"].SetStartTime(hourAgo)
	tg.Arms["restarted"].SetMemoryGrowth(1)
	labels := map[string]map[string]string{}
	for name := range tg.Arms {
		labels[name] = map[string]string{"arm": "canary", "pod": name}
	}
	prom := promtest.Start(t, tg.ScrapeConfigsLabelled(labels))
	src, err := New(prom.URL, exampleQueries(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx := context.Background()
	start := time.Now()
	waitFor(t, "two scrapes of every process", func() bool {
		return lastScrape(t, src, "canary").After(start.Add(2100 * time.Millisecond))
	})
	// The third process restarts: a new start time, a fast warm-up.
	tg.Arms["restarted"].SetStartTime(time.Now())
	tg.Arms["restarted"].SetMemoryGrowth(60)
	restarted := time.Now()
	waitFor(t, "three scrapes after the restart", func() bool {
		return lastScrape(t, src, "canary").After(restarted.Add(3100 * time.Millisecond))
	})
	at := lastScrape(t, src, "canary")
	window := at.Sub(start).Round(time.Second) + 5*time.Second
	r := src.Arm(ctx, "canary", `arm="canary"`, window, at)
	g := r.Arm.MemoryGrowthMBPerMin
	if !g.OK() || math.Abs(g.V-1) > 0.01 {
		t.Fatalf("memory growth = %+v MB/min, want 1 (the settled process alone; the replaced and the restarted ones warm up at 60); query %s; notes %q",
			g, r.Queries[MemoryGrowth], r.Notes)
	}
	if q := r.Queries[MemoryGrowth]; !strings.Contains(q, "time() - "+strconv.FormatFloat(window.Seconds(), 'f', -1, 64)) {
		t.Errorf("resolved query %q lacks the window in seconds", q)
	}
	// Over a window that starts after every process did, all three count.
	late := 2 * time.Second
	r = src.Arm(ctx, "canary", `arm="canary"`, late, at)
	if g := r.Arm.MemoryGrowthMBPerMin; !g.OK() || g.V < 30 {
		t.Fatalf("memory growth over the last %v = %+v, want the three processes' mean ((1+60+60)/3)", late, g)
	}
}

// TestScrapeIntervalFromTheTargetsAPI runs a real Prometheus with two jobs
// scraping every second and every three seconds: each arm's interval is
// its targets', a selector over both gets the longer, and a selector that
// matches nothing says so.
func TestScrapeIntervalFromTheTargetsAPI(t *testing.T) {
	tg := promtest.NewTarget(t, "fast", "slow")
	cfg := fmt.Sprintf("  - job_name: fast\n    static_configs:\n      - targets: [%q]\n        labels: {arm: fast, __metrics_path__: /metrics/fast}\n"+
		"  - job_name: slow\n    scrape_interval: 3s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: [%q]\n        labels: {arm: slow, __metrics_path__: /metrics/slow}\n", tg.Addr, tg.Addr)
	prom := promtest.Start(t, cfg)
	src, err := New(prom.URL, exampleQueries(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx := context.Background()
	waitFor(t, "a first scrape of both jobs", func() bool {
		return !lastScrape(t, src, "fast").IsZero() && !lastScrape(t, src, "slow").IsZero()
	})
	for sel, want := range map[string]time.Duration{`arm="fast"`: time.Second, `arm="slow"`: 3 * time.Second, `arm=~"fast|slow"`: 3 * time.Second} {
		if got, err := src.ScrapeInterval(ctx, sel); err != nil || got != want {
			t.Errorf("ScrapeInterval(%s) = %v, %v; want %v", sel, got, err, want)
		}
	}
	if _, err := src.ScrapeInterval(ctx, `arm="none"`); err == nil || !strings.Contains(err.Error(), `up{ arm="none" }: no series`) {
		t.Errorf("ScrapeInterval of a selector without targets: %v, want no series", err)
	}
}

// TestGCMaxIsTheWindowsOwn runs the shipped aggregator queries against a
// real Prometheus scraping three processes' go_gc_duration_seconds, whose
// quantile 1 is the largest of a process's last 256 pauses: one that
// paused 300 ms long before the window and only 2 ms in it, one whose
// largest pause (200 ms) came in the window, and one that started in the
// window. Only the pauses of the window are the window's.
func TestGCMaxIsTheWindowsOwn(t *testing.T) {
	tg := promtest.NewTarget(t, "stale", "rose", "fresh")
	tg.Arms["stale"].SetGCSummary(100, 0.5, 0.3)
	tg.Arms["rose"].SetGCSummary(100, 0.2, 0.003)
	prom := promtest.Start(t, tg.ScrapeConfigs())
	src, err := New(prom.URL, Default())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// The window starts after two scrapes of the old values.
	var first time.Time
	waitFor(t, "a scrape of every process", func() bool {
		first = lastScrape(t, src, "stale")
		return !first.IsZero() && !lastScrape(t, src, "rose").IsZero()
	})
	waitFor(t, "two more scrapes", func() bool {
		return lastScrape(t, src, "stale").After(first.Add(2100*time.Millisecond)) && lastScrape(t, src, "rose").After(first.Add(2100*time.Millisecond))
	})
	changed := time.Now()
	// In the window: ten 2 ms pauses, quantile 1 still the old 300 ms;
	// nine 1 ms pauses and one of 200 ms; a new process with 5 pauses of
	// 2 ms before its first scrape, then 5 more, the largest 20 ms.
	tg.Arms["stale"].SetGCSummary(110, 0.52, 0.3)
	tg.Arms["rose"].SetGCSummary(110, 0.2+0.009+0.2, 0.2)
	tg.Arms["fresh"].SetGCSummary(5, 0.01, 0.004)
	waitFor(t, "a scrape of the new process", func() bool { return lastScrape(t, src, "fresh").After(changed.Add(100 * time.Millisecond)) })
	tg.Arms["fresh"].SetGCSummary(10, 0.03, 0.02)
	grown := time.Now()
	waitFor(t, "two scrapes after the window's pauses", func() bool {
		return lastScrape(t, src, "fresh").After(grown.Add(2100*time.Millisecond)) && lastScrape(t, src, "stale").After(grown.Add(2100*time.Millisecond))
	})
	at := time.Now()
	window := (at.Sub(changed) + 1500*time.Millisecond).Round(time.Second)
	for _, c := range []struct {
		arm      string
		lo, hi   float64 // the longest pause, ms
		min, max int     // how many pauses
	}{
		// increase() extrapolates a counter to the window's edges, so
		// the counts may be read a few pauses high or low; the longest
		// pause is what this test is about.
		{"stale", 1.5, 2.5, 7, 15},
		{"rose", 150, 250, 7, 15},
		{"fresh", 15, 25, 3, 8},
	} {
		r := src.Arm(context.Background(), c.arm, `arm="`+c.arm+`"`, window, at)
		p := r.Arm.GCPausesMS
		if !p.OK() || len(p.V) < c.min || len(p.V) > c.max {
			t.Fatalf("%s: pauses %+v, want %d to %d; notes %q; max query %s", c.arm, p, c.min, c.max, r.Notes, r.Queries[GCPauseSecondsMax])
		}
		longest := slices.Max(p.V)
		if longest < c.lo || longest > c.hi {
			t.Errorf("%s: longest pause of the window %.3g ms, want %g to %g ms (pauses %v)", c.arm, longest, c.lo, c.hi, p.V)
		}
	}
}
