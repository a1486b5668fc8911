package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/decision/windows"
	"github.com/chaosgate/chaosgate/engine/probe/promql"
	"github.com/chaosgate/chaosgate/internal/freeport"
	"github.com/chaosgate/chaosgate/internal/promtest"
)

var exampleQueries = filepath.Join("..", "..", "deploy", "examples", "prometheus-queries", "queries.yaml")

// TestWindowsBadInputIsUsageError: bad flags, a bad queries file and a
// Prometheus that does not answer exit 2 with a message saying what is
// wrong.
func TestWindowsBadInputIsUsageError(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "q.yaml")
	if err := os.WriteFile(bad, []byte("queries:\n  requests: 'x'\n  erors: 'y'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ports, err := freeport.Ports(1)
	if err != nil {
		t.Fatal(err)
	}
	closed := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	sel := []string{"--canary", `arm="canary"`, "--control", `arm="control"`}
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"no prometheus":  {sel, "--prometheus is required"},
		"no selector":    {[]string{"--prometheus", closed, "--canary", `arm="canary"`}, "--canary and --control are required"},
		"bad address":    {append([]string{"--prometheus", "prometheus:9090"}, sel...), `want an http(s) URL`},
		"bad at":         {append([]string{"--prometheus", closed, "--at", "yesterday"}, sel...), `--at "yesterday": want an RFC 3339 time`},
		"short window":   {append([]string{"--prometheus", closed, "--window", "10ms"}, sel...), "--window 10ms: want at least 1s"},
		"bad history":    {append([]string{"--prometheus", closed, "--history", "-1"}, sel...), "--history -1"},
		"bad queries":    {append([]string{"--prometheus", closed, "--queries", bad}, sel...), `q.yaml:3:3: queries.erors: unknown field (hint: did you mean "errors"?)`},
		"unreachable":    {append([]string{"--prometheus", closed}, sel...), "prometheus does not answer"},
		"unreachable is": {append([]string{"--prometheus", closed}, sel...), "connection refused"},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, msg := execute(t, append([]string{"windows"}, c.args...)...)
			if code != exitUsage || !strings.Contains(msg, c.want) {
				t.Fatalf("exit %d, error %q; want %d and %q", code, msg, exitUsage, c.want)
			}
		})
	}
}

// driver feeds the test target's arms at 1000 requests/s each until
// stopped: 0.05% errors (one every 2 s), latencies spread over 10–20 ms,
// a 0.5 ms GC pause a second, 50 sessions and 1000 dependency calls a
// second, flat memory. The arm named bad fails 3% of its requests once
// its errors are raised.
type driver struct {
	mu     sync.Mutex
	raised bool
	stop   chan struct{}
	done   chan struct{}
}

func drive(tg *promtest.Target, bad string) *driver {
	d := &driver{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-d.stop:
				return
			case <-tick.C:
			}
			d.mu.Lock()
			raised := d.raised
			d.mu.Unlock()
			for name, a := range tg.Arms {
				a.Requests.WithLabelValues("200").Add(100)
				if n%20 == 0 {
					a.Requests.WithLabelValues("500").Inc()
				}
				if name == bad && raised {
					a.Requests.WithLabelValues("500").Add(3)
				}
				for i := 0; i < 100; i++ {
					a.Latency.Observe(0.010 + 0.010*float64((i*37)%100)/100)
				}
				if n%10 == 0 {
					a.GCPauses.Observe(0.0005)
				}
				a.Sessions.Add(5)
				a.DepCalls.Add(100)
			}
		}
	}()
	return d
}

func (d *driver) raise() { d.mu.Lock(); d.raised = true; d.mu.Unlock() }
func (d *driver) halt()  { close(d.stop); <-d.done }

// TestWindowsFromPrometheusGatesACanary is the whole path on a real
// Prometheus 2.42: a real HTTP server exposes three arms (control, a good
// canary, a bad canary) that run the same load for a minute — the A/A history
// — then the bad canary's error counter rises. `chaosgate windows` with 12
// history windows of 3 s (every 5 s, all before the rise) writes windows/v1; fed to the judge it blocks the
// bad canary on error_rate and promotes the good one; the real binary piped
// into `chaosgate decide --input -` exits 1 and 0. With the aggregator's
// default queries the target exports none of the metrics: every field is
// missing (in no_data with its resolved query, named on stderr), never
// zero, and the judge holds.
func TestWindowsFromPrometheusGatesACanary(t *testing.T) {
	tg := promtest.NewTarget(t, "control", "good", "bad")
	prom := promtest.Start(t, tg.ScrapeConfigs())
	src, err := promql.New(prom.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	deadline := time.Now().Add(30 * time.Second)
	for _, arm := range []string{"control", "good", "bad"} {
		for src.Arm(context.Background(), arm, `arm="`+arm+`"`, time.Minute, time.Now()).Arm.CollectedAt.IsZero() {
			if time.Now().After(deadline) {
				t.Fatalf("no scrape of %s:\n%s", arm, prom.Log())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// The judged window [at-window, at] starts 1.5 s after the raise; the
	// history windows end every `every` before at, so the most recent one
	// ends 0.5 s before the raise: no A/A window holds raised errors (one
	// that did would count the defect as the arms' noise).
	const window, every, history = 3 * time.Second, 5 * time.Second, 12
	d := drive(tg, "bad")
	defer d.halt()
	time.Sleep(time.Duration(history)*every + window - (window + 1500*time.Millisecond) + 2*time.Second)
	d.raise()
	time.Sleep(window + 1500*time.Millisecond)
	at := time.Now().UTC().Format(time.RFC3339Nano)

	dir := t.TempDir()
	run := func(canary, queries string) (decision.Input, string, string) {
		t.Helper()
		out := filepath.Join(dir, canary+".json")
		args := []string{"windows", "--prometheus", prom.URL, "--canary", `{arm="` + canary + `"}`, "--control", `arm="control"`,
			"--window", window.String(), "--history", fmt.Sprint(history), "--history-every", every.String(), "--at", at, "-o", out}
		if queries != "" {
			args = append(args, "--queries", queries)
		}
		root := newRootCmd()
		var stdout, stderr bytes.Buffer
		root.SetOut(&stdout)
		root.SetErr(&stderr)
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Fatalf("windows %s: %v\n%s", canary, err, stderr.String())
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		in, err := windows.Decode(data)
		if err != nil {
			t.Fatalf("windows wrote what decide cannot read: %v\n%s", err, data)
		}
		return in, string(data), stderr.String()
	}
	explain := func(v decision.Verdict) string {
		var b strings.Builder
		fmt.Fprintf(&b, "%s: %s\n", v.Decision, v.Reason)
		for _, dim := range v.Dimensions {
			fmt.Fprintf(&b, "  %s %s data=%s z=%.2f conf=%.2f: %s | %s\n", dim.Name, dim.Outcome, dim.Data, dim.Z, dim.Confidence, dim.Reason, dim.Query)
		}
		return b.String()
	}

	good, _, goodErr := run("good", exampleQueries)
	if len(good.History) != history {
		t.Fatalf("%d history windows, want %d", len(good.History), history)
	}
	if v := decision.Evaluate(decision.Default(), good); v.Decision != decision.Promote {
		t.Errorf("good canary: %s\nstderr: %s", explain(v), goodErr)
	} else {
		t.Logf("good canary: %s", v.Reason)
	}
	bad, _, badErr := run("bad", exampleQueries)
	v := decision.Evaluate(decision.Default(), bad)
	if v.Decision != decision.Block {
		t.Errorf("bad canary: %s\nstderr: %s", explain(v), badErr)
	}
	for _, dim := range v.Dimensions {
		if dim.Name == decision.ErrorRate {
			if dim.Outcome != decision.Fail {
				t.Errorf("bad canary: error_rate %s, want fail: %s", dim.Outcome, dim.Reason)
			}
			t.Logf("bad canary: %s; error_rate: %s (%s)", v.Decision, dim.Reason, dim.Query)
		}
	}

	t.Run("a bad selector exits 2", func(t *testing.T) {
		code, _, msg := execute(t, "windows", "--prometheus", prom.URL, "--queries", exampleQueries, "--canary", `arm=="good"`, "--control", `arm="control"`, "--window", "3s")
		if code != exitUsage || !strings.Contains(msg, `--canary "arm==\"good\"": every query fails to parse`) {
			t.Fatalf("exit %d: %s", code, msg)
		}
	})

	t.Run("missing data is missing, never zero", func(t *testing.T) {
		in, data, stderr := run("good", "")
		if r := in.Canary.Requests; r.State != decision.Missing || !strings.HasPrefix(r.Err, "requests: no series (no data); query: ") || regexp.MustCompile(`"requests": [0-9]`).MatchString(data) {
			t.Fatalf("requests %+v in\n%s", in.Canary.Requests, data)
		}
		if !strings.Contains(stderr, `canary: missing requests: no series (no data); query: sum(increase(chaosgate_aggregator_http_requests_total{ arm="good" }[3s]))`) {
			t.Fatalf("stderr does not name the missing field and its query:\n%s", stderr)
		}
		v := decision.Evaluate(decision.Default(), in)
		if v.Decision != decision.Hold {
			t.Fatalf("missing data: %s, want hold", explain(v))
		}
		for _, dim := range v.Dimensions {
			if dim.Name == decision.ErrorRate && dim.Data != decision.DataMissing {
				t.Fatalf("error_rate data %s, want missing: %s", dim.Data, dim.Reason)
			}
		}
	})

	t.Run("piped into the real decide", func(t *testing.T) {
		bin := chaosgateBinary(t)
		for canary, want := range map[string]int{"good": exitPromote, "bad": exitBlock} {
			w := exec.Command(bin, "windows", "--prometheus", prom.URL, "--queries", exampleQueries, "--canary", `arm="`+canary+`"`,
				"--control", `arm="control"`, "--window", "3s", "--history", "12", "--history-every", "5s", "--at", at)
			dec := exec.Command(bin, "decide", "--input", "-")
			pipe, err := w.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			dec.Stdin = pipe
			var out bytes.Buffer
			dec.Stdout, dec.Stderr = &out, &out
			if err := w.Start(); err != nil {
				t.Fatal(err)
			}
			if err := dec.Start(); err != nil {
				t.Fatal(err)
			}
			werr := w.Wait()
			derr := dec.Wait()
			if werr != nil {
				t.Fatalf("windows %s: %v", canary, werr)
			}
			code := 0
			if ee, ok := derr.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if derr != nil {
				t.Fatal(derr)
			}
			if code != want {
				t.Errorf("windows | decide for %s: exit %d, want %d\n%s", canary, code, want, out.String())
			}
		}
	})
}
