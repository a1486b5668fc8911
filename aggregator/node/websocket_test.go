package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// runWSClient is the child process of TestWebSocketTenThousandConnections:
// it opens n connections to ws://addr/v1/ws, ingests one message on every
// 100th, prints "opened N", then on "close" closes half of them cleanly,
// prints "closed N" and waits to be killed (dropping the rest abruptly).
func runWSClient(spec string) int {
	addr, nStr, _ := strings.Cut(spec, ",")
	n, _ := strconv.Atoi(nStr)
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	conns := make([]*websocket.Conn, n)
	var failed atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	g := newGen(4)
	msgs := make([][]byte, n)
	for i := range msgs {
		if i%100 == 0 {
			msgs[i], _ = json.Marshal(g.next(fmt.Sprintf("ws-%d", i), fmt.Sprintf("k%d", i)))
		}
	}
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, "ws://"+addr+"/v1/ws", nil)
			if err == nil && msgs[i] != nil {
				if err = c.Write(ctx, websocket.MessageText, msgs[i]); err == nil {
					var b []byte
					if _, b, err = c.Read(ctx); err == nil {
						var ir IngestResponse
						if json.Unmarshal(b, &ir) != nil || len(ir.Results) != 1 || (ir.Results[0].Status != StatusOK && ir.Results[0].Status != StatusDuplicate) {
							err = fmt.Errorf("ingest over websocket: %s", b)
						}
					}
				}
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		fmt.Printf("failed %d %v\n", failed.Load(), firstErr.Load())
		return 1
	}
	fmt.Printf("opened %d\n", n)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "close" {
			for i := 0; i < n/2; i++ {
				_ = conns[i].Close(websocket.StatusNormalClosure, "bye")
			}
			fmt.Printf("closed %d\n", n/2)
		}
	}
	select {} // killed by the parent: the other half is dropped without a close
}

// TestWebSocketTenThousandConnections opens 10,000 WebSocket ingest
// connections from another process, ingests over some of them, closes
// half cleanly and drops the rest by killing the client: every handler
// goroutine ends, every connection's token bucket is forgotten, and the
// server's goroutine count returns to its baseline.
func TestWebSocketTenThousandConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 connections")
	}
	const n = 10000
	// 10,000 idle connections hold their buffers (and the race detector
	// multiplies memory): a cap that admission does not hit.
	c := startCluster(t, 1, func(cfg *Config) { cfg.RSSCap = 8 << 30 })
	nd := c.node("n1")
	settle := func() int {
		runtime.GC()
		return runtime.NumGoroutine()
	}
	base := settle()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("AGGREGATOR_WS_CLIENT=%s,%d", c.http["n1"], n))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	out := bufio.NewScanner(stdout)
	line := func() string {
		if !out.Scan() {
			t.Fatalf("client ended: %v", out.Err())
		}
		return out.Text()
	}
	if l := line(); l != fmt.Sprintf("opened %d", n) {
		t.Fatalf("client: %s", l)
	}
	waitFor(t, "10,000 server-side connections", 60*time.Second, func() bool { return nd.WebSocketConns() == n })
	open := runtime.NumGoroutine()
	buckets := nd.conns.Len()
	t.Logf("goroutines: baseline %d, with %d connections open %d; connection token buckets %d", base, n, open, buckets)
	if open < base+n {
		t.Errorf("with %d connections open the server runs %d goroutines (baseline %d): want one per connection at least", n, open, base)
	}
	fmt.Fprintln(stdin, "close")
	if l := line(); l != fmt.Sprintf("closed %d", n/2) {
		t.Fatalf("client: %s", l)
	}
	waitFor(t, "the cleanly closed half to end", 60*time.Second, func() bool { return nd.WebSocketConns() == n-n/2 })
	half := runtime.NumGoroutine()
	_ = cmd.Process.Kill() // the rest are dropped without a close frame
	<-done
	waitFor(t, "every connection to end", 60*time.Second, func() bool { return nd.WebSocketConns() == 0 })
	var after int
	waitFor(t, "the goroutine count to return to its baseline", 60*time.Second, func() bool {
		after = settle()
		return after <= base
	})
	t.Logf("goroutines: after %d closed cleanly %d, after the rest were dropped %d (baseline %d); token buckets left %d; opened_total %v",
		n/2, half, after, base, nd.conns.Len(), c.metric(t, "n1", "chaosgate_aggregator_websocket_connections_opened_total"))
	if nd.conns.Len() != 0 {
		t.Errorf("%d connection token buckets left after every connection closed", nd.conns.Len())
	}
	if v := c.metric(t, "n1", "chaosgate_aggregator_websocket_connections"); v != 0 {
		t.Errorf("websocket_connections gauge %v, want 0", v)
	}
}

// TestWebSocketIngestAnswersEachFrame: frames are answered in order with
// the body POST /v1/messages would return, malformed ones with the error
// naming the JSON path, and the connection stays usable.
func TestWebSocketIngestAnswersEachFrame(t *testing.T) {
	c := startCluster(t, 1, func(cfg *Config) { cfg.RSSCap = 8 << 30 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+c.http["n1"]+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	g := newGen(4)
	m1, m2 := g.next("s", "k1"), g.next("s", "k2")
	frames := []any{m1, map[string]any{"messages": []Message{m2, m1}}, `{"source_id":"s","seq":"x"}`}
	for i, f := range frames {
		var b []byte
		if s, ok := f.(string); ok {
			b = []byte(s)
		} else {
			b, _ = json.Marshal(f)
		}
		if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
		_, reply, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch i {
		case 0, 1:
			var ir IngestResponse
			if err := json.Unmarshal(reply, &ir); err != nil || len(ir.Results) == 0 {
				t.Fatalf("frame %d: reply %s", i, reply)
			}
			for _, r := range ir.Results {
				if r.Status != StatusOK && r.Status != StatusDuplicate {
					t.Fatalf("frame %d: %s", i, reply)
				}
			}
			if i == 1 && ir.Results[1].Status != StatusDuplicate {
				t.Errorf("re-sent message: %s, want duplicate", reply)
			}
		case 2:
			var eb ErrorBody
			if err := json.Unmarshal(reply, &eb); err != nil || eb.Kind != "invalid" || eb.Path != "$.seq" {
				t.Fatalf("malformed frame: reply %s, want kind invalid at $.seq", reply)
			}
		}
	}
}
