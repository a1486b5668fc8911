package load

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/engine/history"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestJumpHashRangeAndConsistency(t *testing.T) {
	moved := 0
	for k := uint64(0); k < 10000; k++ {
		key := k * 0x9E3779B97F4A7C15
		a, b := JumpHash(key, 16), JumpHash(key, 17)
		if a < 0 || a >= 16 || b < 0 || b >= 17 {
			t.Fatalf("out of range: %d %d", a, b)
		}
		if a != b {
			if b != 16 {
				t.Fatalf("key moved between old buckets %d→%d", a, b)
			}
			moved++
		}
	}
	// about 1/17 of the keys move to the new bucket
	if moved < 400 || moved > 800 {
		t.Fatalf("%d of 10000 keys moved", moved)
	}
	if JumpHash(0, 1) != 0 {
		t.Fatal("one bucket must be bucket 0")
	}
}

func TestPartitionIsStable(t *testing.T) {
	for i := 0; i < 100; i++ {
		k := fmt.Sprintf("k%d", i)
		if p := Partition(k, 16); p != Partition(k, 16) || p < 0 || p >= 16 {
			t.Fatalf("partition of %s: %d", k, p)
		}
	}
}

func TestIDGenStrictlyIncreasingUnderConcurrency(t *testing.T) {
	g, err := NewIDGen(7)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := int64(0)
			for i := 0; i < 5000; i++ {
				id := g.Next()
				n, err := strconv.ParseInt(id, 10, 64)
				if err != nil || n <= last {
					t.Errorf("id %s not increasing after %d", id, last)
					return
				}
				last = n
				mu.Lock()
				if seen[id] {
					t.Errorf("id %s twice", id)
				}
				seen[id] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// a clock stepped back must not repeat ids
	g.last = 1 << 62
	if n, _ := strconv.ParseInt(g.Next(), 10, 64); n != 1<<62+1 {
		t.Fatalf("id after a clock step back: %d", n)
	}
}

func TestOutcomeMapping(t *testing.T) {
	cases := map[Result]history.OpResult{
		{Status: "ok"}:                                  history.ResultOK,
		{Status: "duplicate"}:                           history.ResultOK,
		{Status: "rejected"}:                            history.ResultRejected,
		{Status: "stale_epoch"}:                         history.ResultFail,
		{Status: "error", ErrorKind: "no_leader"}:       history.ResultFail,
		{Status: "error", ErrorKind: "late"}:            history.ResultFail,
		{Status: "error", ErrorKind: "unknown_outcome"}: history.ResultTimeout,
		{Status: "error", ErrorKind: "internal"}:        history.ResultTimeout,
		{Status: "something new"}:                       history.ResultTimeout,
	}
	for r, want := range cases {
		if got := outcome(r); got != want {
			t.Errorf("%+v: %s, want %s", r, got, want)
		}
	}
}

func TestStateDigest(t *testing.T) {
	if stateDigest("INIT", 0, "") != "" || stateDigest("DONE", 2, "v") != "DONE/2/v" {
		t.Fatal("digest format changed")
	}
}

func TestStatsDetailFromPrometheusText(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `# TYPE chaosgate_aggregator_memory_bytes gauge
chaosgate_aggregator_memory_bytes 1.2e+07
# TYPE chaosgate_aggregator_rss_cap_bytes gauge
chaosgate_aggregator_rss_cap_bytes 2.68435456e+08
# TYPE chaosgate_aggregator_reorder_depth gauge
chaosgate_aggregator_reorder_depth{partition="0"} 3
chaosgate_aggregator_reorder_depth{partition="1"} 7
# TYPE chaosgate_aggregator_dedup_entries gauge
chaosgate_aggregator_dedup_entries{partition="0"} 10
chaosgate_aggregator_dedup_entries{partition="1"} 15
# TYPE go_goroutines gauge
go_goroutines 12
`)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	d, err := StatsDetail(context.Background(), srv.Client(), addr, map[string]float64{"reorder_depth_cap": 64})
	if err != nil {
		t.Fatal(err)
	}
	if d != "dedup_entries=25 memory_bytes=1.2e+07 memory_bytes_cap=2.68435456e+08 reorder_depth=7 reorder_depth_cap=64" {
		t.Fatalf("detail %q", d)
	}
	st, err := history.SortedNodeStats(d)
	if err != nil || len(st) != 5 {
		t.Fatalf("checker cannot read the detail: %v %v", st, err)
	}
}

// TestAppendMessagesJSONMatchesEncodingJSON: the hand-written request body
// decodes to the same messages as the encoding/json one.
func TestAppendMessagesJSONMatchesEncodingJSON(t *testing.T) {
	msgs := []Message{
		{SourceID: "s1", Seq: 18446744073709551615, MsgID: "1", GroupKey: "k", Fingerprint: "f", EventTime: "2026-01-01T00:00:00Z", TraceID: "t", Payload: "a\"b\\c\n\r\t\x01<>&é✓"},
		{SourceID: "s2", Seq: 0, MsgID: "2", GroupKey: "k2", Fingerprint: "\xff bad utf-8"},
	}
	ours := appendMessagesJSON(nil, msgs)
	theirs, _ := json.Marshal(struct {
		Messages []Message `json:"messages"`
	}{msgs})
	var a, b struct {
		Messages []Message `json:"messages"`
	}
	if err := json.Unmarshal(ours, &a); err != nil {
		t.Fatalf("%s: %v", ours, err)
	}
	if err := json.Unmarshal(theirs, &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("decoded differently:\n ours   %+v\n theirs %+v", a, b)
	}
}

// TestOpenLoopBoundsItsRequestsInFlight: against a server that stops
// answering, an open-loop phase holds at most MaxInFlight batches in
// flight (the schedule waits, latency counts from it) instead of opening
// a connection for every scheduled batch; the default bound is the
// batches the rate schedules within one request timeout.
func TestOpenLoopBoundsItsRequestsInFlight(t *testing.T) {
	var mu sync.Mutex
	var now, most, seen int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		now++
		seen++
		most = max(most, now)
		mu.Unlock()
		// Never answers: the client times out and closes the connection,
		// which the server sees once the body is read.
		io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
		mu.Lock()
		now--
		mu.Unlock()
	}))
	defer srv.Close()
	g, err := New(context.Background(), Config{Targets: StaticTargets(srv.Listener.Addr().String()), Partitions: 4, Sources: 2, Keys: 8,
		Timeout: 400 * time.Millisecond, MaxRetries: 1, RetryGrace: 100 * time.Millisecond, MaxInFlight: 12, NoDrain: true, FromStart: true})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := g.Run(context.Background(), Phase{Name: "stall", Duration: 1500 * time.Millisecond, Rate: 400})
	g.Close()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// The server sees a timed-out request end a moment after the client
	// gave up, and the phase's last batch is sent as the phase ends: a
	// little above the bound, far below the ~160 an unbounded loop holds.
	if most > 16 || most < 6 {
		t.Fatalf("the server held %d requests at once, want about the bound 12 (%d requests in all)", most, seen)
	}
	if sum.Timeouts == 0 || sum.Requests > 200 {
		t.Fatalf("summary %+v: want timeouts, and far fewer requests than the 600 the rate schedules", sum)
	}
	t.Logf("at most %d of %d requests in flight; %d timed out", most, seen, sum.Timeouts)
	if c := (&Generator{cfg: Config{Batch: 2, Timeout: 2 * time.Second}}).inFlightCap(200); c != 200 {
		t.Errorf("default bound at 200 msg/s, batch 2, timeout 2s = %d, want 200", c)
	}
	if c := (&Generator{cfg: Config{Batch: 1, Timeout: 2 * time.Second}}).inFlightCap(5); c != 32 {
		t.Errorf("default bound at 5 msg/s = %d, want the floor 32", c)
	}
}

// A cluster that answers every request with 503 gets each message up to
// MaxRetries more times; with a retry budget it gets at most the budget's
// share of the messages again (plus its minimum), the rest fail at once
// and are counted as denied — the server sees the difference.
func TestRetryBudgetBoundsResends(t *testing.T) {
	run := func(budget float64) (Summary, int64) {
		var seen atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen.Add(1)
			io.Copy(io.Discard, r.Body)
			http.Error(w, "no leader", http.StatusServiceUnavailable)
		}))
		defer srv.Close()
		g, err := New(context.Background(), Config{Targets: StaticTargets(srv.Listener.Addr().String()), Partitions: 2, Sources: 4, Keys: 8,
			Timeout: time.Second, MaxRetries: 5, RetryGrace: 2 * time.Second, RetryBudget: budget, NoDrain: true, FromStart: true})
		if err != nil {
			t.Fatal(err)
		}
		sum, err := g.Run(context.Background(), Phase{Name: "down", Duration: 800 * time.Millisecond, Concurrency: 4})
		g.Close()
		if err != nil {
			t.Fatal(err)
		}
		return sum, seen.Load()
	}
	free, freeSeen := run(0)
	if free.Retries < 4*free.Messages || free.RetriesDenied != 0 {
		t.Fatalf("without a budget: %d messages, %d retries, %d denied; want 5 retries a message", free.Messages, free.Retries, free.RetriesDenied)
	}
	held, heldSeen := run(0.1)
	if limit := 0.1*float64(held.Messages) + 10; float64(held.Retries) > limit {
		t.Fatalf("budget 10%%: %d retries for %d messages, above %v", held.Retries, held.Messages, limit)
	}
	if held.RetriesDenied == 0 || held.Failed != held.Messages || held.OK != 0 {
		t.Fatalf("budget 10%%: %+v; want denied re-sends and every message failed", held)
	}
	if heldSeen > held.Messages+held.Retries || freeSeen < 4*free.Messages {
		t.Fatalf("server saw %d requests with the budget (%d messages + %d retries), %d without (%d messages)", heldSeen, held.Messages, held.Retries, freeSeen, free.Messages)
	}
	t.Logf("without a budget: %d messages, %d requests seen; with 10%%: %d messages, %d retries, %d denied, %d requests seen",
		free.Messages, freeSeen, held.Messages, held.Retries, held.RetriesDenied, heldSeen)
	if _, err := New(context.Background(), Config{Targets: StaticTargets("127.0.0.1:1"), RetryBudget: -1}); err == nil || !strings.Contains(err.Error(), "retry budget") {
		t.Fatalf("a negative budget: %v", err)
	}
}
