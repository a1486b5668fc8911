package notify

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWebhookRequestMatchesContract(t *testing.T) {
	rc := newReceiver(t, nil)
	s := webhook(t, rc.url("/hooks/chaosgate"), Options{Version: "v1.2.3"})
	n := New(sampleRun("block"), "https://chaosgate.example.com/")
	d := s.Deliver(context.Background(), n)
	if d.Err != nil || d.Attempts != 1 || d.Status != 200 || d.String() != "notified webhook (1 attempt)" {
		t.Fatalf("delivery: %+v %q", d, d)
	}
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	if ua := reqs[0].Header.Get("User-Agent"); ua != "chaosgate/v1.2.3" {
		t.Errorf("User-Agent %q", ua)
	}
	if id := reqs[0].Header.Get("X-Chaosgate-Delivery"); id != d.ID {
		t.Errorf("delivery id %q, reported %q", id, d.ID)
	}
	m := checkWebhookRequest(t, reqs[0], testSecret)
	if m["verdict"] != "block" || m["revision"] != "local:defect-slow-path" || m["scenario"] != "default-gameday-quick" ||
		m["run_id"] != "cli-20260101-000000-abcd" || m["reason"] != "latency_p99 fails: canary 61 ms vs control 9 ms" {
		t.Errorf("fields: %v", m)
	}
	if f := m["failing_dimensions"].([]any); len(f) != 1 || f[0] != "latency_p99" {
		t.Errorf("failing_dimensions %v, want [latency_p99] from the deciding step", f)
	}
	if l := m["links"].(map[string]any); l["run"] != "https://chaosgate.example.com/runs/cli-20260101-000000-abcd" {
		t.Errorf("links %v", l)
	}
	if m["time"] != "2026-01-01T00:01:00Z" {
		t.Errorf("time %v", m["time"])
	}
}

func TestNewWithoutDashboardHasNoLinkAndNeverNullDimensions(t *testing.T) {
	r := sampleRun("hold")
	r.Report.Steps = nil
	n := New(r, "")
	body, err := encodeNotification(n)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(body, &m)
	if l := m["links"].(map[string]any); len(l) != 0 {
		t.Errorf("links %v without a dashboard", l)
	}
	if f, ok := m["failing_dimensions"].([]any); !ok || len(f) != 0 {
		t.Errorf("failing_dimensions %#v, want []", m["failing_dimensions"])
	}
	// Given reason and dimensions win over the last step's.
	r = sampleRun("block")
	r.Reason, r.Failing = "aborted: budget", []string{"consistency"}
	if n := New(r, ""); n.Reason != "aborted: budget" || len(n.Failing) != 1 || n.Failing[0] != "consistency" {
		t.Errorf("given reason and failing lost: %+v", n)
	}
	if got := RunURL("http://h:8080/base/", "a b/c"); got != "http://h:8080/base/runs/a%20b%2Fc" {
		t.Errorf("RunURL escapes the id: %s", got)
	}
}

func TestWebhookRetriesTransientFailuresWithStableDeliveryID(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	s := webhook(t, rc.url("/h"), Options{})
	waits := recordSleeps(s)
	d := s.Deliver(context.Background(), New(sampleRun("block"), ""))
	if d.Err != nil || d.Attempts != 3 || d.Status != http.StatusNoContent || d.String() != "notified webhook (3 attempts)" {
		t.Fatalf("delivery: %+v", d)
	}
	reqs := rc.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	for i, r := range reqs {
		checkWebhookRequest(t, r, testSecret)
		if id := r.Header.Get("X-Chaosgate-Delivery"); id != d.ID {
			t.Errorf("attempt %d: delivery id %q, want the same %q in every attempt", i+1, id, d.ID)
		}
		if string(r.Body) != string(reqs[0].Body) {
			t.Errorf("attempt %d: body changed between attempts", i+1)
		}
	}
	// Exponential backoff with jitter: [250ms, 500ms], then [500ms, 1s].
	w := waits()
	if len(w) != 2 || w[0] < 250*time.Millisecond || w[0] > 500*time.Millisecond || w[1] < 500*time.Millisecond || w[1] > time.Second {
		t.Fatalf("waits %v, want one in [250ms,500ms] then one in [500ms,1s]", w)
	}
}

func TestBackoffDoublesAndIsCapped(t *testing.T) {
	p := Policy{}.withDefaults()
	for n, want := range map[int]time.Duration{1: 500 * time.Millisecond, 2: time.Second, 3: 2 * time.Second, 5: 8 * time.Second, 6: 10 * time.Second, 60: 10 * time.Second} {
		lo, hi := p.backoff(n, 0), p.backoff(n, 0.999999)
		if lo != want/2 || hi > want || hi < want*9/10 {
			t.Errorf("retry %d: waits in [%v, %v], want [%v, %v]", n, lo, hi, want/2, want)
		}
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	date := time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name, header string
		status       int
		min, max     time.Duration
	}{
		{"seconds on 429", "2", http.StatusTooManyRequests, 2 * time.Second, 2 * time.Second},
		{"HTTP date on 503", date, http.StatusServiceUnavailable, time.Second, 3 * time.Second},
		{"capped", "3600", http.StatusTooManyRequests, time.Minute, time.Minute},
		{"zero on 408", "0", http.StatusRequestTimeout, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					w.Header().Set("Retry-After", tc.header)
					w.WriteHeader(tc.status)
				}
			})
			s := webhook(t, rc.url("/h"), Options{})
			waits := recordSleeps(s)
			d := s.Deliver(context.Background(), New(sampleRun("block"), ""))
			w := waits()
			if d.Err != nil || d.Attempts != 2 || len(w) != 1 || w[0] < tc.min || w[0] > tc.max {
				t.Fatalf("delivery %+v, waits %v: want one wait in [%v, %v]", d, w, tc.min, tc.max)
			}
		})
	}
}

func TestRetryAfterPastTheDeadlineEndsTheDelivery(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	s := webhook(t, rc.url("/h"), Options{DeadLetters: NewDeadLetters(t.TempDir())})
	waits := recordSleeps(s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := s.Deliver(ctx, New(sampleRun("block"), ""))
	var de *DeliveryError
	if !errors.As(d.Err, &de) || de.Attempts != 1 || len(waits()) != 0 || !strings.Contains(d.Err.Error(), "past the delivery deadline") {
		t.Fatalf("delivery %+v (waits %v): want the delivery ended after 1 attempt", d, waits())
	}
	if de.DeadLetter == "" {
		t.Errorf("not dead-lettered: %v", d.Err)
	}
}

func TestPermanentFailuresAreNotRetried(t *testing.T) {
	for _, tc := range []struct {
		status   int
		attempts int
	}{
		{400, 1}, {401, 1}, {403, 1}, {404, 1}, {410, 1}, {302, 1},
		{408, 4}, {429, 4}, {500, 4}, {502, 4}, {503, 4},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if tc.status == 302 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tc.status)
				fmt.Fprint(w, "invalid_payload\n")
			})
			s := webhook(t, rc.url("/h"), Options{DeadLetters: NewDeadLetters(t.TempDir())})
			recordSleeps(s)
			d := s.Deliver(context.Background(), New(sampleRun("block"), ""))
			var de *DeliveryError
			if !errors.As(d.Err, &de) || d.Attempts != tc.attempts || de.Permanent != (tc.attempts == 1) || d.Status != tc.status {
				t.Fatalf("delivery %+v: want %d attempts", d, tc.attempts)
			}
			if n := len(rc.requests()); n != tc.attempts {
				t.Fatalf("receiver saw %d requests (a redirect must not be followed), want %d", n, tc.attempts)
			}
			msg := d.Err.Error()
			want := fmt.Sprintf("notification to webhook failed after %s; dead-lettered to ", plural(tc.attempts, "attempt"))
			if !strings.HasPrefix(msg, want) || !strings.Contains(msg, fmt.Sprintf("(POST %s: %d ", rc.url("/h"), tc.status)) {
				t.Errorf("error %q, want prefix %q, the endpoint and the status", msg, want)
			}
			if tc.status == 400 && !strings.Contains(msg, "invalid_payload") {
				t.Errorf("error %q does not quote the receiver's answer", msg)
			}
		})
	}
}

func TestDownReceiverIsRetriedThenDeadLettered(t *testing.T) {
	data := t.TempDir()
	url := deadURL(t, "/hooks/chaosgate?token=query-secret-1234")
	s := webhook(t, url, Options{DeadLetters: NewDeadLetters(data), Policy: Policy{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}})
	n := New(sampleRun("block"), "")
	d := s.Deliver(context.Background(), n)
	var de *DeliveryError
	if !errors.As(d.Err, &de) || d.Attempts != 4 || de.Permanent || d.Status != 0 {
		t.Fatalf("delivery %+v: want 4 failed attempts", d)
	}
	path := filepath.Join(data, "notify", "dead-letter.jsonl")
	msg := d.Err.Error()
	public := strings.Split(url, "?")[0] + "?…"
	if !strings.HasPrefix(msg, "notification to webhook failed after 4 attempts; dead-lettered to "+path+" (POST "+public+": ") || !strings.Contains(msg, "connection refused") {
		t.Errorf("error %q", msg)
	}
	for _, secret := range []string{testSecret, "query-secret-1234"} {
		if strings.Contains(msg, secret) {
			t.Errorf("error %q carries a secret", msg)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("dead-letter file mode %04o, want 0600", st.Mode().Perm())
	}
	if dst, _ := os.Stat(filepath.Dir(path)); dst.Mode().Perm() != 0o700 {
		t.Errorf("dead-letter directory mode %04o, want 0700", dst.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	for _, secret := range []string{testSecret, "query-secret-1234"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("dead-letter file carries a secret:\n%s", raw)
		}
	}
	// A second failure appends a second line.
	s.Deliver(context.Background(), n)
	f, _ := os.Open(path)
	defer f.Close()
	var lines []DeadLetter
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var dl DeadLetter
		if err := json.Unmarshal(sc.Bytes(), &dl); err != nil {
			t.Fatalf("dead-letter line is not JSON: %v", err)
		}
		lines = append(lines, dl)
	}
	if len(lines) != 2 {
		t.Fatalf("%d dead letters, want 2", len(lines))
	}
	dl := lines[0]
	if dl.Sink != "webhook" || dl.Attempts != 4 || dl.DeliveryID != d.ID || !strings.Contains(dl.Error, "connection refused") ||
		dl.Endpoint != strings.TrimSuffix(strings.Split(url, "?")[0], "/")+"?…" || dl.Time.IsZero() {
		t.Errorf("dead letter %+v", dl)
	}
	if dl.Notification.Schema != Schema || dl.Notification.Verdict != "block" || dl.Notification.RunID != n.RunID || dl.Notification.Report.RunID != n.RunID {
		t.Errorf("dead letter does not hold the notification: %+v", dl.Notification)
	}
}

func TestDeadLetterFileIsNarrowedTo0600(t *testing.T) {
	data := t.TempDir()
	dl := NewDeadLetters(data)
	os.MkdirAll(filepath.Dir(dl.Path()), 0o700)
	if err := os.WriteFile(dl.Path(), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dl.Path(), 0o644)
	if err := dl.Append(DeadLetter{Sink: "x", Notification: New(sampleRun("hold"), "")}); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dl.Path()); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %04o, want 0600", st.Mode().Perm())
	}
}

func TestAttemptTimeoutAndCancellation(t *testing.T) {
	// A receiver that never answers: each attempt ends at its timeout.
	hang := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	s := webhook(t, hang.url("/h"), Options{Policy: Policy{Attempts: 2, Initial: time.Millisecond, AttemptTimeout: 100 * time.Millisecond}})
	d := s.Deliver(context.Background(), New(sampleRun("block"), ""))
	if d.Err == nil || d.Attempts != 2 || !strings.Contains(d.Err.Error(), "no answer within 100ms") {
		t.Fatalf("delivery %+v", d)
	}
	// Cancelling the context ends a delivery waiting for its next attempt.
	busy := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	s = webhook(t, busy.url("/h"), Options{Policy: Policy{Initial: time.Hour, Max: time.Hour}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Delivery, 1)
	go func() { done <- s.Deliver(ctx, New(sampleRun("block"), "")) }()
	for len(busy.requests()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case d := <-done:
		if d.Err == nil || d.Attempts != 1 || !strings.Contains(d.Err.Error(), "context canceled") {
			t.Fatalf("delivery %+v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling the context did not end the delivery")
	}
}

func TestWebhookNeedsAURLAndASecret(t *testing.T) {
	for _, tc := range []struct{ url, secret, want string }{
		{"ftp://h/x", testSecret, "not an http or https URL"},
		{"http:///x", testSecret, "no host"},
		{"/relative", testSecret, "not an http or https URL"},
		{"http://h/x", "short", "at least 16 bytes"},
	} {
		_, err := NewWebhook("", tc.url, []byte(tc.secret), Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tc.secret) {
			t.Errorf("NewWebhook(%q): %v, want %q", tc.url, err, tc.want)
		}
	}
}

func TestReceiverEchoDoesNotLeakSecrets(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		// A receiver that quotes the request back, query and all.
		http.Error(w, "bad request to "+r.URL.String()+" signed "+r.Header.Get("X-Chaosgate-Signature"), http.StatusBadRequest)
	})
	s := webhook(t, rc.url("/h?token=query-secret-5678"), Options{})
	d := s.Deliver(context.Background(), New(sampleRun("block"), ""))
	if d.Err == nil {
		t.Fatal("delivered")
	}
	msg := d.Err.Error()
	if strings.Contains(msg, "query-secret-5678") || strings.Contains(msg, testSecret) {
		t.Fatalf("error leaks a secret: %s", msg)
	}
	if !strings.Contains(msg, "(POST "+rc.url("/h")+"?…: 400 Bad Request: bad request to /h?…") {
		t.Fatalf("error %s", msg)
	}
}
