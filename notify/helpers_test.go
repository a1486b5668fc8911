package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine/report"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testSecret = "0123456789abcdef-test-secret"

// sampleRun is a blocked run: latency_p99 failed at the 50% step.
func sampleRun(verdict string) Run {
	d, _ := decision.ParseDecision(verdict)
	rep := report.New("cli-20260101-000000-abcd", "local:defect-slow-path", d)
	rep.Steps = []report.Step{
		{Weight: 10, Verdict: "promote", Score: 0.95, Coverage: 1, Dimensions: []decision.DimensionResult{{Name: "latency_p99", Outcome: decision.Pass}}},
		{Weight: 50, Verdict: verdict, Score: 0.2, Coverage: 1, Reason: "latency_p99 fails: canary 61 ms vs control 9 ms",
			Dimensions: []decision.DimensionResult{{Name: "latency_p99", Outcome: decision.Fail, Reason: "z=9.1"}, {Name: "error_rate", Outcome: decision.Pass}}},
	}
	rep.DurationS = 42.5
	return Run{Report: rep, Scenario: "default-gameday-quick", Time: time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)}
}

// request is one request a receiver got, with what checking it found.
type request struct {
	Header http.Header
	Body   []byte
	At     time.Time
}

// receiver is a local HTTP server standing for a webhook or Slack
// endpoint. respond answers the n-th request (1-based); nil: 200.
type receiver struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []request
	respond func(n int, w http.ResponseWriter, r *http.Request)
}

func newReceiver(t *testing.T, respond func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{t: t, respond: respond}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("receiver: reading the body: %v", err)
		}
		if r.Method != http.MethodPost {
			t.Errorf("receiver: method %s, want POST", r.Method)
		}
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, request{Header: r.Header.Clone(), Body: body, At: time.Now()})
		n := len(rc.reqs)
		rc.mu.Unlock()
		if rc.respond != nil {
			rc.respond(n, w, r)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) url(path string) string { return rc.srv.URL + path }

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.reqs...)
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// checkWebhookRequest checks one request against docs/notification-v1.md:
// headers, the signature over timestamp "." body with secret, and the
// JSON fields of chaosgate.notification/v1. It returns the decoded body.
func checkWebhookRequest(t *testing.T, r request, secret string) map[string]any {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if ua := r.Header.Get("User-Agent"); !strings.HasPrefix(ua, "chaosgate/") || len(ua) <= len("chaosgate/") {
		t.Errorf("User-Agent %q", ua)
	}
	if id := r.Header.Get("X-Chaosgate-Delivery"); !hexID.MatchString(id) {
		t.Errorf("X-Chaosgate-Delivery %q", id)
	}
	ts := r.Header.Get("X-Chaosgate-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		t.Errorf("X-Chaosgate-Timestamp %q: not the current Unix time", ts)
	}
	// The receiver's side of the scheme, written from the documentation.
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(r.Body)))
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if got := r.Header.Get("X-Chaosgate-Signature"); !hmac.Equal([]byte(got), []byte(want)) {
		t.Errorf("X-Chaosgate-Signature %q does not verify (want %q)", got, want)
	}
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, r.Body)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if got, want := strings.Join(keys, ","), "failing_dimensions,links,reason,report,revision,run_id,scenario,schema,time,verdict"; got != want {
		t.Errorf("fields %s, want %s", got, want)
	}
	if m["schema"] != Schema {
		t.Errorf("schema %v", m["schema"])
	}
	for _, k := range []string{"run_id", "scenario", "revision", "verdict", "reason", "time"} {
		if _, ok := m[k].(string); !ok {
			t.Errorf("%s is %T, want a string", k, m[k])
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["time"])); err != nil {
		t.Errorf("time %v: %v", m["time"], err)
	}
	if _, ok := m["failing_dimensions"].([]any); !ok {
		t.Errorf("failing_dimensions is %T, want an array", m["failing_dimensions"])
	}
	if _, ok := m["links"].(map[string]any); !ok {
		t.Errorf("links is %T, want an object", m["links"])
	}
	rep, ok := m["report"].(map[string]any)
	if !ok || rep["schema"] != report.Schema || rep["run_id"] != m["run_id"] || rep["verdict"] != m["verdict"] {
		t.Errorf("report is not the run's report/v1: %v", m["report"])
	}
	return m
}

// recordSleeps makes s record its waits instead of sleeping.
func recordSleeps(s *HTTPSink) func() []time.Duration {
	var mu sync.Mutex
	var waits []time.Duration
	s.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		return ctx.Err()
	}
	return func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Duration(nil), waits...)
	}
}

// deadURL is the URL of a port nothing listens on.
func deadURL(t *testing.T, path string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + path
}

func webhook(t *testing.T, url string, o Options) *HTTPSink {
	t.Helper()
	s, err := NewWebhook("", url, []byte(testSecret), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
