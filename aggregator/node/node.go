package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/chaosgate/chaosgate/aggregator/backpressure"
	"github.com/chaosgate/chaosgate/aggregator/hlc"
	"github.com/chaosgate/chaosgate/aggregator/partition"
	"github.com/chaosgate/chaosgate/aggregator/replica"
	"github.com/chaosgate/chaosgate/aggregator/state"
	"github.com/chaosgate/chaosgate/aggregator/upstream"
)

// ErrKind classifies node errors for HTTP and gRPC status mapping.
type ErrKind int

// Error kinds.
const (
	// KindInvalid is bad input.
	KindInvalid ErrKind = 1 + iota
	// KindNotFound is an unknown partition or key.
	KindNotFound
	// KindUnavailable is a transient condition (no leader, quorum lost).
	KindUnavailable
	// KindOverload is explicit backpressure.
	KindOverload
	// KindConflict is a version or epoch conflict.
	KindConflict
	// KindIllegal is an illegal state transition.
	KindIllegal
	// KindInternal is a bug or storage failure.
	KindInternal
	// KindGone is a stream offset already removed by retention.
	KindGone
)

// Error is a node error with a kind.
type Error struct {
	Kind ErrKind
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func errorf(k ErrKind, format string, a ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, a...)}
}

// KindOf returns err's kind (KindInternal when it has none).
func KindOf(err error) ErrKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// Node is one running aggregator node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	ids     []string
	clock   *hlc.Clock
	mux     *replica.Mux
	shared  *replica.SharedWAL
	metrics *metrics

	groupsMu sync.RWMutex
	groups   []*group

	sources *backpressure.Keyed
	conns   *backpressure.Keyed
	reqSem  chan struct{}
	// bodyBudget bounds the bytes of request bodies held at once.
	bodyBudget *semaphore.Weighted
	client     *http.Client

	httpSrv  *http.Server
	httpLn   net.Listener
	grpcStop func()
	grpcLn   net.Listener

	memBytes        atomic.Int64
	inflightReq     atomic.Int64
	unboundedQueued atomic.Int64
	// skew offsets the physical clock (ns): the clock-skew fault's input
	// (admin.go).
	skew        atomic.Int64
	physical    func() int64
	leakedBytes atomic.Int64
	leakMu      sync.Mutex
	leaked      [][]byte
	churnSink   atomic.Pointer[[]byte]

	ws        wsConns
	upstreams *upstream.Manager

	stop chan struct{}
	wg   sync.WaitGroup
}

// Start opens the node's stores, joins its raft groups (peers need not be up
// yet) and serves HTTP and gRPC until Close.
func Start(cfg Config) (*Node, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, errorf(KindInvalid, "%v", err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.ID), ids: sortedIDs(cfg.Peers), stop: make(chan struct{}),
		sources: backpressure.NewKeyed(cfg.SourceRate, int(cfg.SourceRate), 100000),
		conns:   backpressure.NewKeyed(cfg.ConnRate, int(cfg.ConnRate), 10000),
		reqSem:  make(chan struct{}, cfg.MaxRequests),
		client: &http.Client{Timeout: cfg.RequestTimeout, Transport: &http.Transport{
			MaxIdleConns: 256, MaxIdleConnsPerHost: 128, IdleConnTimeout: 30 * time.Second,
			DialContext: peerDialer(cfg.DialSource).DialContext}},
	}
	if len(cfg.Defects) > 0 {
		for _, d := range cfg.Defects.List() {
			n.log.Warn("DEFECT ON: this node is a known-bad build", "defect", d, "effect", DefectHelp[d])
		}
	}
	if err := n.loadSkew(); err != nil {
		return nil, errorf(KindInvalid, "%v", err)
	}
	base := cfg.Physical
	if base == nil {
		base = func() int64 { return time.Now().UnixNano() }
	}
	n.physical = n.skewedPhysical(base)
	var err error
	n.clock, err = hlc.New(hlc.Options{Physical: n.physical, MaxOffset: cfg.MaxClockOffset,
		Persist: hlc.FilePersister{Path: filepath.Join(cfg.DataDir, "hlc")}, IgnoreUpdates: cfg.Defects.Has(DefectHLCNoUpdate)})
	if err != nil {
		return nil, err
	}
	n.metrics = newMetrics(n)
	if cfg.GoMemoryLimit {
		debug.SetMemoryLimit(cfg.RSSCap * 7 / 10)
	}
	n.bodyBudget = semaphore.NewWeighted(cfg.RSSCap / 4)
	ok := false
	defer func() {
		if !ok {
			n.Close()
		}
	}()
	rl := cfg.RaftListener
	if rl == nil {
		if rl, err = net.Listen("tcp", cfg.RaftListen); err != nil {
			return nil, fmt.Errorf("listen --raft %s: %w", cfg.RaftListen, err)
		}
	}
	n.mux = replica.NewMux(rl, n.log)
	n.mux.DialFrom(net.ParseIP(cfg.DialSource))
	if cfg.RaftLog == RaftLogShared {
		if n.shared, err = replica.OpenSharedWALWithOptions(filepath.Join(cfg.DataDir, "wal"), replica.WALOptions{SyncInterval: cfg.SyncInterval}); err != nil {
			return nil, fmt.Errorf("open raft log: %w", err)
		}
	}
	for p := 0; p < cfg.Partitions; p++ {
		g, err := openGroup(n, p)
		if err != nil {
			return nil, err
		}
		n.groupsMu.Lock()
		n.groups = append(n.groups, g)
		n.groupsMu.Unlock()
	}
	if n.httpLn = cfg.HTTPListener; n.httpLn == nil {
		if n.httpLn, err = net.Listen("tcp", cfg.HTTPListen); err != nil {
			return nil, fmt.Errorf("listen --http %s: %w", cfg.HTTPListen, err)
		}
	}
	n.httpSrv = &http.Server{Handler: n.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.httpSrv.Serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server", "err", err)
		}
	}()
	if n.grpcLn = cfg.GRPCListener; n.grpcLn == nil && cfg.GRPCListen != "" {
		if n.grpcLn, err = net.Listen("tcp", cfg.GRPCListen); err != nil {
			return nil, fmt.Errorf("listen --grpc %s: %w", cfg.GRPCListen, err)
		}
	}
	if n.grpcLn != nil {
		n.grpcStop = n.serveGRPC(n.grpcLn)
	}
	if err := n.startUpstreams(); err != nil {
		return nil, err
	}
	n.wg.Add(2)
	go n.memorySampler()
	go n.balancer()
	if cfg.Defects.Has(DefectGCChurn) {
		n.wg.Add(1)
		go n.churn()
	}
	ok = true
	n.log.Info("aggregator node started", "http", n.httpLn.Addr().String(), "raft", rl.Addr().String(),
		"partitions", cfg.Partitions, "peers", cfg.Peers, "defects", cfg.Defects.List(), "upstreams", len(cfg.Upstreams))
	return n, nil
}

// peerDialer dials peers (forwarded requests) from the IP address source
// when it is set (Config.DialSource).
func peerDialer(source string) *net.Dialer {
	d := &net.Dialer{Timeout: 2 * time.Second}
	if ip := net.ParseIP(source); ip != nil {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	return d
}

// HTTPAddr is the address the HTTP API listens on.
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

// ID is the node id.
func (n *Node) ID() string { return n.cfg.ID }

// Close stops serving and shuts the raft groups down (graceful stop).
func (n *Node) Close() error {
	select {
	case <-n.stop:
		return nil
	default:
	}
	close(n.stop)
	if n.upstreams != nil {
		// first: nothing more is taken from the brokers, and what is in
		// flight is stored (and acknowledged) or left unacknowledged
		n.upstreams.Close()
	}
	n.ws.closeAll()
	if n.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_ = n.httpSrv.Shutdown(ctx)
		cancel()
	} else if n.httpLn != nil {
		n.httpLn.Close()
	}
	if n.grpcStop != nil {
		n.grpcStop()
	}
	for _, g := range n.groupsSnapshot() {
		g.close()
	}
	if n.shared != nil {
		n.shared.Close()
	}
	if n.mux != nil {
		n.mux.Close()
	}
	n.wg.Wait()
	n.clock.Close()
	n.client.CloseIdleConnections()
	n.log.Info("aggregator node stopped")
	return nil
}

func (n *Node) groupsSnapshot() []*group {
	n.groupsMu.RLock()
	defer n.groupsMu.RUnlock()
	return append([]*group(nil), n.groups...)
}

func (n *Node) group(p int) (*group, error) {
	n.groupsMu.RLock()
	defer n.groupsMu.RUnlock()
	if p < 0 || p >= len(n.groups) {
		return nil, errorf(KindNotFound, "unknown partition %d: this cluster has partitions 0..%d", p, n.cfg.Partitions-1)
	}
	return n.groups[p], nil
}

func (n *Node) now() hlc.Timestamp {
	ts, err := n.clock.Now()
	if err != nil {
		n.log.Error("hlc", "err", err)
	}
	return ts
}

func (n *Node) observeHLC(ts hlc.Timestamp) {
	if _, err := n.clock.Update(ts); err != nil && hlc.IsKind(err, hlc.KindOffset) {
		n.metrics.hlcOffset.Inc()
		n.log.Warn("received timestamp beyond max clock offset", "err", err)
	}
}

// preferred is the node that should lead partition p.
func (n *Node) preferred(p int) string { return n.ids[p%len(n.ids)] }

// peerReady asks a peer's /readyz (through its --peer-http address).
func (n *Node) peerReady(id string) bool {
	addr := n.cfg.PeerHTTP[id]
	if addr == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (n *Node) balancer() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.BalanceInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		for _, g := range n.groupsSnapshot() {
			g.balance(n.preferred(g.id))
		}
	}
}

var memSamples = []rtmetrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}

func (n *Node) memorySampler() {
	defer n.wg.Done()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	s := append([]rtmetrics.Sample(nil), memSamples...)
	for {
		rtmetrics.Read(s)
		n.memBytes.Store(int64(s[0].Value.Uint64() - s[1].Value.Uint64()))
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
	}
}

// overMemory reports whether admission must refuse new work.
func (n *Node) overMemory() bool {
	return !n.cfg.Defects.Has(DefectUnboundedQueue) && n.memBytes.Load() > n.cfg.RSSCap*8/10
}

// IngestOptions qualify one ingest call.
type IngestOptions struct {
	// Forwarded marks a request already forwarded once (no second hop, no
	// second charge to the token buckets).
	Forwarded bool
	// Conn identifies the client connection for its token bucket.
	Conn string
}

func (n *Node) applyRequestDefects(ctx context.Context, msgs []Message) error {
	if n.cfg.Defects.Has(DefectSlowPath) {
		select {
		case <-time.After(n.cfg.SlowPathDelay):
		case <-ctx.Done():
		}
	}
	if n.cfg.Defects.Has(DefectGCChurn) {
		for range 16 {
			b := make([]byte, 64<<10)
			n.churnSink.Store(&b)
		}
	}
	if n.cfg.Defects.Has(DefectLeak) {
		var size int
		for _, m := range msgs {
			size += len(m.Payload) + len(m.MsgID) + n.cfg.LeakBytes
		}
		b := make([]byte, size)
		n.leakMu.Lock()
		n.leaked = append(n.leaked, b)
		n.leakMu.Unlock()
		n.leakedBytes.Add(int64(size))
	}
	if n.cfg.Defects.Has(DefectErrorRate) && rand.Float64() < n.cfg.ErrorRate {
		return errorf(KindInternal, "injected failure (error-rate defect)")
	}
	return nil
}

func (n *Node) churn() {
	defer n.wg.Done()
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		b := make([]byte, 256<<10)
		n.churnSink.Store(&b)
	}
}

// Ingest stores msgs (already validated) and returns one result per
// message in order. Partitions this node does not lead are forwarded to
// their leaders (one hop).
func (n *Node) Ingest(ctx context.Context, msgs []Message, o IngestOptions) []Result {
	out := make([]Result, len(msgs))
	parts := make([]int, len(msgs))
	for i := range msgs {
		parts[i] = partition.Of(msgs[i].GroupKey, n.cfg.Partitions)
		out[i] = Result{MsgID: msgs[i].MsgID, Partition: parts[i], Node: n.cfg.ID}
	}
	fillAll := func(r Result) []Result {
		for i := range out {
			msg, p := out[i].MsgID, out[i].Partition
			out[i] = r
			out[i].MsgID, out[i].Partition, out[i].Node = msg, p, n.cfg.ID
		}
		return n.count(msgs, out)
	}
	if err := n.applyRequestDefects(ctx, msgs); err != nil {
		return fillAll(Result{Status: StatusError, Error: err.Error(), ErrorKind: "internal"})
	}
	if n.overMemory() {
		n.metrics.rejects.WithLabelValues("memory").Add(float64(len(msgs)))
		return fillAll(Result{Status: StatusRejected, Error: fmt.Sprintf("overloaded: memory %d MiB is above 80%% of the %d MiB cap", n.memBytes.Load()>>20, n.cfg.RSSCap>>20), ErrorKind: "overload", RetryAfterMs: 500})
	}
	now := time.Now()
	if !o.Forwarded {
		if ok, wait := n.conns.Allow(o.Conn, len(msgs), now); !ok {
			n.metrics.rejects.WithLabelValues("connection_rate").Add(float64(len(msgs)))
			return fillAll(Result{Status: StatusRejected, Error: "overloaded: connection rate limit", ErrorKind: "overload", RetryAfterMs: max(1, wait.Milliseconds())})
		}
	}
	byPart := map[int][]int{}
	silentDrop := !o.Forwarded && n.cfg.Defects.Has(DefectSilentDrop)
	for i, m := range msgs {
		if silentDrop && rand.Float64() < n.cfg.DropRate {
			out[i].Status = StatusOK
			n.log.Warn("dropped message after acknowledging it", "msg_id", m.MsgID, "source_id", m.SourceID, "seq", m.Seq, "partition", parts[i])
			continue
		}
		if !o.Forwarded {
			if ok, wait := n.sources.Allow(m.SourceID, 1, now); !ok {
				n.metrics.rejects.WithLabelValues("source_rate").Inc()
				out[i].Status, out[i].ErrorKind, out[i].RetryAfterMs = StatusRejected, "overload", max(1, wait.Milliseconds())
				out[i].Error = "overloaded: source " + m.SourceID + " is over its rate limit"
				continue
			}
		}
		byPart[parts[i]] = append(byPart[parts[i]], i)
	}
	var wg sync.WaitGroup
	for p, idx := range byPart {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub := make([]Message, len(idx))
			for j, i := range idx {
				sub[j] = msgs[i]
			}
			res := n.ingestPartition(ctx, p, sub, o)
			for j, i := range idx {
				out[i] = res[j]
			}
		}()
	}
	wg.Wait()
	return n.count(msgs, out)
}

func (n *Node) count(msgs []Message, out []Result) []Result {
	debug := n.log.Enabled(context.Background(), slog.LevelDebug)
	for i, r := range out {
		n.metrics.ingest.WithLabelValues(r.Status).Inc()
		if debug {
			n.log.Debug("ingest", "trace_id", msgs[i].TraceID, "msg_id", r.MsgID, "source_id", msgs[i].SourceID, "seq", msgs[i].Seq,
				"partition", r.Partition, "status", r.Status, "epoch", r.Epoch, "hlc", r.HLC, "err", r.Error)
		}
	}
	return out
}

func (n *Node) ingestPartition(ctx context.Context, p int, msgs []Message, o IngestOptions) []Result {
	g, _ := n.group(p)
	if g.isLeader() {
		return g.submit(ctx, msgs)
	}
	leader := g.leader()
	switch {
	case leader == "":
		return g.fill(msgs, Result{Status: StatusError, ErrorKind: "no_leader", Error: fmt.Sprintf("partition %d has no leader (election in progress or quorum lost); retry", p)})
	case o.Forwarded || leader == n.cfg.ID:
		return g.fill(msgs, Result{Status: StatusError, ErrorKind: "not_leader", Error: fmt.Sprintf("node %s does not lead partition %d (leader %s); a forwarded request is not forwarded again", n.cfg.ID, p, leader)})
	}
	res, err := n.forwardIngest(ctx, leader, msgs)
	if err != nil {
		n.metrics.forwardFailed(ctx)
		for _, m := range msgs {
			n.log.Warn("forward failed", "partition", p, "leader", leader, "trace_id", m.TraceID, "msg_id", m.MsgID, "err", err)
			break
		}
		if errors.Is(err, syscall.ECONNREFUSED) { // nothing was delivered
			return g.fill(msgs, Result{Status: StatusError, ErrorKind: "unavailable", Error: fmt.Sprintf("forward to leader %s of partition %d: %v (not stored)", leader, p, err)})
		}
		return g.fill(msgs, Result{Status: StatusError, ErrorKind: "unknown_outcome", Error: fmt.Sprintf("forward to leader %s of partition %d: %v (outcome unknown)", leader, p, err)})
	}
	return res
}

// forwardHeader marks a request forwarded once.
const forwardHeader = "X-Chaosgate-Forwarded"

// hlcHeader carries the sender's HLC on node-to-node requests.
const hlcHeader = "X-Chaosgate-HLC"

func (n *Node) forwardIngest(ctx context.Context, leader string, msgs []Message) ([]Result, error) {
	addr := n.cfg.PeerHTTP[leader]
	if addr == "" {
		return nil, fmt.Errorf("no --peer-http address for %s", leader)
	}
	n.metrics.forwards.Inc()
	body, _ := json.Marshal(struct {
		Messages []Message `json:"messages"`
	}{msgs})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/messages", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(forwardHeader, "1")
	req.Header.Set(hlcHeader, n.now().String())
	propagateTrace(ctx, req)
	resp, err := n.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	n.observeHeader(resp.Header.Get(hlcHeader))
	var ir IngestResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&ir); err != nil {
		return nil, fmt.Errorf("leader answered HTTP %d without results: %v", resp.StatusCode, err)
	}
	if len(ir.Results) != len(msgs) {
		return nil, fmt.Errorf("leader answered %d results for %d messages", len(ir.Results), len(msgs))
	}
	return ir.Results, nil
}

func (n *Node) observeHeader(h string) {
	if h == "" {
		return
	}
	if ts, err := hlc.Parse(h); err == nil {
		n.observeHLC(ts)
	}
}

// forwardGet proxies a read to the leader and copies its answer.
func (n *Node) forwardGet(w http.ResponseWriter, r *http.Request, leader string) {
	addr := n.cfg.PeerHTTP[leader]
	req, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+addr+r.URL.RequestURI(), r.Body)
	if err != nil {
		writeErr(w, errorf(KindInternal, "%v", err))
		return
	}
	req.Header.Set(forwardHeader, "1")
	req.Header.Set(hlcHeader, n.now().String())
	req.Header.Set("Content-Type", "application/json")
	propagateTrace(r.Context(), req)
	n.metrics.forwards.Inc()
	resp, err := n.client.Do(req)
	if err != nil {
		n.metrics.forwardFailed(r.Context())
		n.log.Warn("forward failed", "method", r.Method, "path", r.URL.Path, "leader", leader, "err", err)
		writeErr(w, errorf(KindUnavailable, "forward to leader %s: %v", leader, err))
		return
	}
	defer resp.Body.Close()
	n.observeHeader(resp.Header.Get(hlcHeader))
	for _, h := range []string{"Content-Type", "Retry-After"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.Header().Set("X-Chaosgate-Served-By", leader)
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// ReadStream returns records of partition p from offset from. Unless the
// stale-read defect is on, only the leader serves it, after confirming its
// leadership with a quorum.
func (n *Node) ReadStream(ctx context.Context, p int, from uint64, limit int) (StreamPage, error) {
	g, err := n.group(p)
	if err != nil {
		return StreamPage{}, err
	}
	if !n.cfg.Defects.Has(DefectStaleRead) {
		if !g.isLeader() {
			return StreamPage{}, errorf(KindUnavailable, "node %s does not lead partition %d", n.cfg.ID, p)
		}
		if err := g.raft.VerifyLeader().Error(); err != nil {
			return StreamPage{}, errorf(KindUnavailable, "partition %d: leadership not confirmed by a quorum: %v", p, err)
		}
	}
	recs, hwm, err := g.fsm.read(from, limit)
	var gone *retainedError
	if errors.As(err, &gone) {
		return StreamPage{}, errorf(KindGone, "partition %d: offset %d was removed by retention (--stream-retention); the earliest offset kept is %d (hint: read from=%d)", p, from, gone.earliest, gone.earliest)
	}
	if err != nil {
		return StreamPage{}, errorf(KindInternal, "partition %d: read stream: %v", p, err)
	}
	next := from
	if len(recs) > 0 {
		next = recs[len(recs)-1].Offset + 1
	}
	return StreamPage{Partition: p, Leader: g.leader(), Epoch: g.epoch(), Next: next, HighWatermark: hwm, Earliest: g.fsm.earliest(), Records: recs}, nil
}

// GetState reads a key linearizably (a raft barrier on the leader), or
// locally with the stale-read defect.
func (n *Node) GetState(ctx context.Context, key string) (KeyState, error) {
	g, _ := n.group(partition.Of(key, n.cfg.Partitions))
	if !n.cfg.Defects.Has(DefectStaleRead) {
		if !g.isLeader() {
			return KeyState{}, errorf(KindUnavailable, "node %s does not lead the partition of key %q", n.cfg.ID, key)
		}
		if err := g.raft.Barrier(n.cfg.ApplyTimeout).Error(); err != nil {
			return KeyState{}, errorf(KindUnavailable, "partition %d: read barrier not committed by a quorum: %v", g.id, err)
		}
	}
	return keyState(key, g.fsm.get(key)), nil
}

func keyState(key string, v state.Value) KeyState {
	return KeyState{Key: key, State: v.Phase.String(), Version: v.Version, Value: v.Data, Epoch: v.Epoch, HLC: v.HLC}
}

// PutState applies a versioned compare-and-set on the key's leader.
func (n *Node) PutState(ctx context.Context, key string, req PutStateRequest) (KeyState, error) {
	if err := validatePut(key, req); err != nil {
		return KeyState{}, err
	}
	g, _ := n.group(partition.Of(key, n.cfg.Partitions))
	if !g.isLeader() {
		return KeyState{}, errorf(KindUnavailable, "node %s does not lead the partition of key %q", n.cfg.ID, key)
	}
	res, err := g.putState(putCmd{Key: key, State: req.State, Expected: *req.ExpectedVersion, Value: req.Value})
	if err != nil {
		return KeyState{}, errorf(KindUnavailable, "partition %d: %v (outcome unknown if the leader changed)", g.id, err)
	}
	ks := keyState(key, res.Value)
	switch res.Outcome {
	case state.VersionMismatch:
		return ks, errorf(KindConflict, "version mismatch: expected_version %d, current version %d", *req.ExpectedVersion, res.Value.Version)
	case state.IllegalTransition:
		return ks, errorf(KindIllegal, "illegal transition %s → %s (allowed: INIT→PROCESSING, PROCESSING→PROCESSING|DONE|FAILED, DONE|FAILED→INIT)", res.Value.Phase, req.State)
	}
	return ks, nil
}

// validatePut checks a state write before it is routed anywhere.
func validatePut(key string, req PutStateRequest) error {
	if key == "" || len(key) > MaxFieldBytes {
		return errorf(KindInvalid, "key: want 1..%d bytes", MaxFieldBytes)
	}
	if _, ok := state.ParsePhase(req.State); !ok {
		return errorf(KindInvalid, "$.state: %q is not a state (hint: INIT, PROCESSING, DONE or FAILED)", req.State)
	}
	if req.ExpectedVersion == nil {
		return errorf(KindInvalid, "$.expected_version: missing (hint: the version you read; 0 for a new key)")
	}
	if len(req.Value) > MaxPayloadSize {
		return errorf(KindInvalid, "$.value: more than %d bytes", MaxPayloadSize)
	}
	return nil
}

// Cluster describes the cluster as this node sees it.
func (n *Node) Cluster() ClusterInfo {
	ci := ClusterInfo{Node: n.cfg.ID, Partitioner: partition.Name, PartitionCount: n.cfg.Partitions, Defects: n.cfg.Defects.List()}
	for _, id := range n.ids {
		ci.Nodes = append(ci.Nodes, ClusterNode{ID: id, HTTP: n.cfg.PeerHTTP[id], GRPC: n.cfg.PeerGRPC[id], Raft: n.cfg.Peers[id]})
	}
	if ci.Nodes != nil {
		for i := range ci.Nodes {
			if ci.Nodes[i].ID == n.cfg.ID && ci.Nodes[i].HTTP == "" {
				ci.Nodes[i].HTTP = n.HTTPAddr()
			}
		}
	}
	for _, g := range n.groupsSnapshot() {
		ci.Partitions = append(ci.Partitions, ClusterPartition{ID: g.id, Leader: g.leader(), Epoch: g.epoch(), Members: n.ids})
	}
	return ci
}

// Ready reports whether every partition has a known leader and this node
// has applied everything it knows to be committed.
func (n *Node) Ready() (bool, string) {
	for _, g := range n.groupsSnapshot() {
		if g.leader() == "" {
			return false, "partition " + strconv.Itoa(g.id) + " has no leader"
		}
		if a, c := g.raft.AppliedIndex(), g.raft.CommitIndex(); a < c {
			return false, fmt.Sprintf("partition %d applied %d of committed %d", g.id, a, c)
		}
	}
	return true, "ok"
}

func itoa(i int) string { return strconv.Itoa(i) }
