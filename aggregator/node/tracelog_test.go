package node

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/chaosgate/chaosgate/internal/traceparent"
)

// lockedBuffer is a log sink a node and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A sampled traceparent is logged with its trace id by the node that serves
// the request, and by the leader it forwards to; an unsampled or malformed
// one is not logged (and does not fail the request).
func TestRequestLogCarriesTraceID(t *testing.T) {
	logs := map[string]*lockedBuffer{}
	c := startCluster(t, 3, func(cfg *Config) {
		if logs[cfg.ID] == nil {
			logs[cfg.ID] = &lockedBuffer{}
		}
		cfg.Logger = slog.New(slog.NewTextHandler(logs[cfg.ID], nil))
	})
	g := newGen(4)
	key := "trace-key"
	leader := c.leaderOf(partitionOf(key, 4))
	follower := c.ids[0]
	if follower == leader {
		follower = c.ids[1]
	}
	post := func(id, header string, m Message) int {
		b, _ := json.Marshal(map[string]any{"messages": []Message{m}})
		req, _ := http.NewRequest(http.MethodPost, "http://"+c.http[id]+"/v1/messages", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		if header != "" {
			req.Header.Set(traceparent.Header, header)
		}
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	tp := traceparent.New()
	if code := post(follower, tp.String(), g.next("s1", key)); code != http.StatusOK {
		t.Fatalf("HTTP %d", code)
	}
	id := tp.TraceIDString()
	got := logs[follower].String()
	if !strings.Contains(got, "msg=\"http request\"") || !strings.Contains(got, "trace_id="+id) || !strings.Contains(got, "status=200") {
		t.Fatalf("node %s's log has no request line with trace_id=%s:\n%s", follower, id, got)
	}
	if l := logs[leader].String(); !strings.Contains(l, "trace_id="+id) || !strings.Contains(l, "forwarded=true") {
		t.Fatalf("leader %s's log has no forwarded request with trace_id=%s:\n%s", leader, id, l)
	}
	unsampled := traceparent.New()
	unsampled.Flags = 0
	for _, h := range []string{unsampled.String(), "00-zz-bad", ""} {
		if code := post(leader, h, g.next("s1", key)); code != http.StatusOK {
			t.Fatalf("traceparent %q: HTTP %d", h, code)
		}
	}
	if strings.Contains(logs[leader].String(), unsampled.TraceIDString()) {
		t.Fatalf("an unsampled trace was logged")
	}
	// A request the node sheds (every request slot taken) is answered
	// 429 and logged with its trace id too: the caller that recorded the
	// id finds why it was refused.
	n := c.nodes[follower]
	held := 0
	for len(n.reqSem) < cap(n.reqSem) {
		n.reqSem <- struct{}{}
		held++
	}
	shed := traceparent.New()
	code := post(follower, shed.String(), g.next("s1", key))
	for range held {
		<-n.reqSem
	}
	if code != http.StatusTooManyRequests {
		t.Fatalf("with every request slot taken: HTTP %d, want 429", code)
	}
	if l := logs[follower].String(); !strings.Contains(l, "trace_id="+shed.TraceIDString()) || !strings.Contains(l, "status=429") {
		t.Fatalf("node %s's log has no line for the shed request trace_id=%s:\n%s", follower, shed.TraceIDString(), l)
	}
}
