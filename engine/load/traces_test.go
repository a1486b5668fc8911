package load

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/internal/traceparent"
)

// Every request of the load generator carries a sampled W3C traceparent of
// its own, and the outcome names its trace id.
func TestEveryRequestCarriesItsOwnTraceparent(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Traceparent"))
		mu.Unlock()
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	c := newClient(StaticTargets(addr), 2*time.Second, 2)
	defer c.close()
	var ids []string
	for i := 0; i < 3*TraceEvery; i++ {
		o := c.do(context.Background(), http.MethodPost, addr, "/v1/messages", []byte(`[]`))
		if o.err != nil || o.status != 200 {
			t.Fatalf("request %d: %v %d", i, o.err, o.status)
		}
		ids = append(ids, o.traceID)
	}
	mu.Lock()
	defer mu.Unlock()
	seen := map[string]bool{}
	for i, h := range got {
		if len(h) != traceparent.Len {
			t.Fatalf("request %d: traceparent %q is not 55 characters", i, h)
		}
		tp, err := traceparent.Parse(h)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if h[:3] != "00-" {
			t.Fatalf("request %d: %q is not a version 00 header", i, h)
		}
		// One request in TraceEvery is sampled (the first of each run of
		// TraceEvery): only its trace id is kept.
		if want := i%TraceEvery == 0; tp.Sampled() != want {
			t.Fatalf("request %d: %q sampled %v, want %v", i, h, tp.Sampled(), want)
		}
		if tp.Sampled() && tp.TraceIDString() != ids[i] || !tp.Sampled() && ids[i] != "" {
			t.Fatalf("request %d: header trace id %s, outcome names %q", i, tp.TraceIDString(), ids[i])
		}
		if seen[tp.TraceIDString()] {
			t.Fatalf("trace id %s used twice", tp.TraceIDString())
		}
		seen[tp.TraceIDString()] = true
	}
}

// The trace sample stays within its bound and spreads evenly over every
// request, from the first to the last.
func TestTraceSampleIsBoundedAndEven(t *testing.T) {
	for _, n := range []int{0, 1, 7, 100, 199, 200, 201, 1000, 12345} {
		g := &Generator{}
		g.traces.max = 100
		for i := 0; i < n; i++ {
			g.traces.add(TracedRequest{TraceID: "x", Messages: i})
		}
		tr := g.Traces()
		if tr.Requests != int64(n) {
			t.Fatalf("n=%d: requests %d", n, tr.Requests)
		}
		want := min(n, 100)
		if len(tr.Sample) > 100 || (n <= 100 && len(tr.Sample) != n) || (n > 100 && len(tr.Sample) < 50) {
			t.Fatalf("n=%d: %d kept, want about %d", n, len(tr.Sample), want)
		}
		if n == 0 {
			continue
		}
		if tr.Sample[0].Messages != 0 {
			t.Fatalf("n=%d: the first request is not kept", n)
		}
		// Evenly spread: gaps between kept requests differ at most
		// twofold, and the last kept is within two gaps of the end.
		if len(tr.Sample) > 2 {
			lo, hi := n, 0
			for i := 1; i < len(tr.Sample); i++ {
				d := tr.Sample[i].Messages - tr.Sample[i-1].Messages
				if d <= 0 {
					t.Fatalf("n=%d: sample out of order at %d", n, i)
				}
				lo, hi = min(lo, d), max(hi, d)
			}
			if hi > 2*lo {
				t.Fatalf("n=%d: gaps from %d to %d: not evenly spread", n, lo, hi)
			}
			if last := tr.Sample[len(tr.Sample)-1].Messages; n-1-last > 2*hi {
				t.Fatalf("n=%d: the sample ends at request %d", n, last)
			}
		}
	}
}
