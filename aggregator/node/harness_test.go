package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/internal/freeport"
)

func TestMain(m *testing.M) {
	if cfg := os.Getenv("AGGREGATOR_TEST_CHILD"); cfg != "" {
		os.Exit(runChild(cfg))
	}
	if spec := os.Getenv("AGGREGATOR_WS_CLIENT"); spec != "" {
		os.Exit(runWSClient(spec))
	}
	goleak.VerifyTestMain(m)
}

// edgeProxy is a TCP proxy on one directed raft edge (node A dialling node
// B) that a test can cut, as a network partition would.
type edgeProxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	blocked bool
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

func newEdgeProxy(t testing.TB, target string) *edgeProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &edgeProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p
}

func (p *edgeProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.blocked {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			u, err := net.DialTimeout("tcp", p.target, time.Second)
			if err != nil {
				c.Close()
				return
			}
			p.mu.Lock()
			p.conns[u] = struct{}{}
			p.mu.Unlock()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
			<-done
			c.Close()
			u.Close()
			<-done
			p.mu.Lock()
			delete(p.conns, c)
			delete(p.conns, u)
			p.mu.Unlock()
		}()
	}
}

func (p *edgeProxy) setBlocked(b bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocked = b
	if b {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *edgeProxy) close() {
	p.ln.Close()
	p.setBlocked(true)
	p.wg.Wait()
}

type testCluster struct {
	t       testing.TB
	ids     []string
	dirs    map[string]string
	http    map[string]string
	grpc    map[string]string
	raft    map[string]string
	proxies map[[2]string]*edgeProxy
	nodes   map[string]*Node
	tweak   func(*Config)
	mu      sync.Mutex
}

func startCluster(t testing.TB, size int, tweak func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, dirs: map[string]string{}, http: map[string]string{}, grpc: map[string]string{}, raft: map[string]string{},
		proxies: map[[2]string]*edgeProxy{}, nodes: map[string]*Node{}, tweak: tweak}
	for i := range size {
		id := fmt.Sprintf("n%d", i+1)
		c.ids = append(c.ids, id)
		c.dirs[id] = filepath.Join(t.TempDir(), id)
		c.http[id] = freeAddr(t)
		c.raft[id] = freeAddr(t)
		c.grpc[id] = freeAddr(t)
	}
	for _, a := range c.ids {
		for _, b := range c.ids {
			if a != b {
				c.proxies[[2]string{a, b}] = newEdgeProxy(t, c.raft[b])
			}
		}
	}
	for _, id := range c.ids {
		c.start(id)
	}
	t.Cleanup(c.stopAll)
	c.waitReady()
	return c
}

// freeAddr returns a free 127.0.0.1 address below the kernel's ephemeral
// range that this process has not handed out before (internal/freeport).
func freeAddr(t testing.TB) string {
	addrs, err := freeport.Addrs(1)
	if err != nil {
		t.Fatal(err)
	}
	return addrs[0]
}

func (c *testCluster) config(id string) Config {
	peers := map[string]string{}
	for _, o := range c.ids {
		if o == id {
			peers[o] = c.raft[o]
		} else {
			peers[o] = c.proxies[[2]string{id, o}].ln.Addr().String()
		}
	}
	cfg := Config{ID: id, HTTPListen: c.http[id], RaftListen: c.raft[id], Peers: peers, PeerHTTP: c.http, GRPCListen: c.grpc[id], PeerGRPC: c.grpc, DataDir: c.dirs[id],
		Partitions: 4, HeartbeatTimeout: time.Second, ElectionTimeout: time.Second,
		BalanceInterval: 500 * time.Millisecond, ReorderTimeout: 300 * time.Millisecond, RequestTimeout: 5 * time.Second,
		ApplyTimeout: 2 * time.Second, RaftLogLevel: "error", LogOutput: io.Discard,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if os.Getenv("AGG_TEST_LOG") != "" {
		cfg.Logger, cfg.LogOutput, cfg.RaftLogLevel = slog.Default(), os.Stderr, "warn"
	}
	if v := os.Getenv("AGG_TEST_RAFT_LOG"); v != "" {
		cfg.RaftLog = v
	}
	if v := os.Getenv("AGG_TEST_RAFT_INFLIGHT"); v != "" {
		fmt.Sscan(v, &cfg.RaftInflight)
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	return cfg
}

func (c *testCluster) start(id string) {
	c.t.Helper()
	var n *Node
	var err error
	for range 50 { // the port may be briefly busy after a stop
		if n, err = Start(c.config(id)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	c.mu.Lock()
	c.nodes[id] = n
	c.mu.Unlock()
}

func (c *testCluster) stop(id string) {
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if n != nil {
		n.Close()
	}
}

func (c *testCluster) stopAll() {
	for _, id := range c.ids {
		c.stop(id)
	}
	for _, p := range c.proxies {
		p.close()
	}
	http.DefaultClient.CloseIdleConnections()
}

// isolate cuts (or heals) every raft edge to and from id.
func (c *testCluster) isolate(id string, cut bool) {
	for k, p := range c.proxies {
		if k[0] == id || k[1] == id {
			p.setBlocked(cut)
		}
	}
}

func (c *testCluster) node(id string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

func (c *testCluster) waitReady() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ready := true
		for _, id := range c.ids {
			n := c.node(id)
			if n == nil {
				continue
			}
			if ok, _ := n.Ready(); !ok {
				ready = false
			}
		}
		if ready && c.balanced() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("cluster not ready within 30s")
}

// balanced reports whether every partition is led by its preferred node
// (or the preferred node is down).
func (c *testCluster) balanced() bool {
	if c.config(c.ids[0]).BalanceInterval >= time.Minute {
		return true
	}
	for _, id := range c.ids {
		n := c.node(id)
		if n == nil {
			continue
		}
		for _, g := range n.groupsSnapshot() {
			pref := n.preferred(g.id)
			if c.node(pref) != nil && g.leader() != pref {
				return false
			}
		}
	}
	return true
}

// sendRetry sends msgs to node id, retrying (same msg_id, seq) those not
// acknowledged, as a client would; it returns the final results.
func (c *testCluster) sendRetry(t *testing.T, id string, msgs ...Message) []Result {
	t.Helper()
	final := make([]Result, len(msgs))
	pending := make([]int, len(msgs))
	for i := range pending {
		pending[i] = i
	}
	for attempt := 0; len(pending) > 0; attempt++ {
		if attempt == 100 {
			t.Fatalf("messages not acknowledged after 100 attempts: %+v", final[pending[0]])
		}
		batch := make([]Message, len(pending))
		for j, i := range pending {
			batch[j] = msgs[i]
		}
		_, res := c.send(t, id, batch...)
		var again []int
		for j, i := range pending {
			final[i] = res[j]
			if res[j].Status != StatusOK && res[j].Status != StatusDuplicate {
				again = append(again, i)
			}
		}
		pending = again
		if len(pending) > 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	return final
}

// startClusterB is a 3-node cluster for benchmarks.
func startClusterB(b *testing.B) *testCluster {
	return startCluster(b, 3, func(c *Config) { c.HeartbeatTimeout, c.ElectionTimeout = time.Second, time.Second })
}

// leaderID returns the current leader of partition p.
func (c *testCluster) leaderID(p int) string { return c.leaderOf(p) }

// leaderOf returns the id of the node leading partition p (waiting for one).
func (c *testCluster) leaderOf(p int) string {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, id := range c.ids {
			if n := c.node(id); n != nil {
				if g, _ := n.group(p); g == nil {
					c.t.Fatalf("node %s has no partition %d", id, p)
				} else if g.isLeader() {
					return id
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("partition %d has no leader", p)
	return ""
}

var testClient = &http.Client{Timeout: 20 * time.Second}

func doJSON(t testing.TB, method, url string, body any) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out, resp.Header
}

// trySend posts msgs to node id; transport errors return a nil result.
func (c *testCluster) trySend(id string, msgs ...Message) (int, []Result) {
	b, _ := json.Marshal(map[string]any{"messages": msgs})
	resp, err := testClient.Post("http://"+c.http[id]+"/v1/messages", "application/json", bytes.NewReader(b))
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var ir IngestResponse
	if json.NewDecoder(resp.Body).Decode(&ir) != nil || len(ir.Results) != len(msgs) {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, ir.Results
}

func (c *testCluster) send(t *testing.T, id string, msgs ...Message) (int, []Result) {
	t.Helper()
	code, body, _ := doJSON(t, "POST", "http://"+c.http[id]+"/v1/messages", map[string]any{"messages": msgs})
	var ir IngestResponse
	if err := json.Unmarshal(body, &ir); err != nil {
		t.Fatalf("send: HTTP %d %s", code, body)
	}
	return code, ir.Results
}

// readAll reads partition p's whole stream through node id.
func (c *testCluster) readAll(t *testing.T, id string, p int) []Record {
	t.Helper()
	var out []Record
	from := uint64(0)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body, _ := doJSON(t, "GET", fmt.Sprintf("http://%s/v1/stream/%d?from=%d&limit=500", c.http[id], p, from), nil)
		if code == 503 && time.Now().Before(deadline) { // a leader change: retry as a consumer does
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if code != 200 {
			t.Fatalf("stream %d: HTTP %d %s", p, code, body)
		}
		var page StreamPage
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Records...)
		if len(page.Records) == 0 || page.Next >= page.HighWatermark {
			return out
		}
		from = page.Next
	}
}

// msgGen numbers messages per (source, partition) as API.md requires.
type msgGen struct {
	parts int
	seq   map[string]uint64
	id    uint64
}

func newGen(parts int) *msgGen {
	return &msgGen{parts: parts, seq: map[string]uint64{}, id: 1859302761234567168}
}

func (g *msgGen) next(source, key string) Message {
	p := partitionOf(key, g.parts)
	k := fmt.Sprintf("%s/%d", source, p)
	g.seq[k]++
	g.id++
	return Message{SourceID: source, Seq: g.seq[k], MsgID: fmt.Sprint(g.id), GroupKey: key, Fingerprint: "fp-" + fmt.Sprint(g.id),
		EventTime: "2026-11-22T10:00:00.123456789Z", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Payload: "payload-" + fmt.Sprint(g.id)}
}
