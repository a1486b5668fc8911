package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/chaosgate/chaosgate/aggregator/backpressure"
	"github.com/chaosgate/chaosgate/aggregator/reorder"
	"github.com/chaosgate/chaosgate/aggregator/replica"
)

// group is one partition: a raft group with its state machine, its
// proposer (which batches messages into log entries) and its admission.
type group struct {
	id     int
	n      *Node
	raft   *raft.Raft
	fsm    *fsm
	stable raft.StableStore
	bolt   *replica.BoltStore // the stable store, but with --raft-log raft-wal
	wal    *replica.WAL
	rwal   *replica.RaftWAL // --raft-log raft-wal: log and stable store
	logs   raft.LogStore
	stream *streamLog
	trans  *raft.NetworkTransport
	propCh chan *proposal
	aimd   *backpressure.AIMD

	stop         chan struct{}
	wg           sync.WaitGroup
	mu           sync.Mutex
	lastTransfer time.Time
	// applyMu orders HLC stamps with the raft log: a batch or a reorder
	// tick is stamped and enqueued under it, so entries that release
	// records reach the log in stamp order (records' HLC never goes back
	// along a partition's offsets).
	applyMu sync.Mutex
	// caughtUpTerm is the raft term in which this node, as leader, last
	// applied every entry committed before it (see catchUp).
	caughtUpTerm atomic.Uint64
}

// catchUp makes sure that this node, as leader, has applied every entry
// committed before its term before it stamps anything: applying them makes
// its HLC observe the previous leader's stamps, so a new leader whose
// physical clock runs behind never stamps a record earlier than one already
// in the stream. The raft barrier runs once per term.
func (g *group) catchUp() error {
	term := g.raft.CurrentTerm()
	if g.caughtUpTerm.Load() == term || g.n.cfg.Defects.Has(DefectAckBeforeCommit) {
		// The ack-before-commit build does not wait for the majority here
		// either: a cut-off leader keeps acknowledging.
		return nil
	}
	if err := g.raft.Barrier(g.n.cfg.ApplyTimeout).Error(); err != nil {
		return err
	}
	g.caughtUpTerm.Store(term)
	return nil
}

type proposal struct {
	msgs []Message
	res  chan []Result
}

// addrProvider resolves raft server ids to the addresses this node dials
// (--peers), so the replicated configuration holds ids only and every edge
// can go through its own proxy.
type addrProvider map[string]string

func (a addrProvider) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if addr, ok := a[string(id)]; ok {
		return raft.ServerAddress(addr), nil
	}
	return "", fmt.Errorf("no --peers address for node %q", id)
}

// streamFlushInterval is how often applied records are written to the
// stream log in one write (reads see them at once).
const streamFlushInterval = 100 * time.Millisecond

func openGroup(n *Node, id int) (*group, error) {
	dir := filepath.Join(n.cfg.DataDir, fmt.Sprintf("p%03d", id))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	g := &group{id: id, n: n, stop: make(chan struct{}),
		propCh: make(chan *proposal, n.cfg.QueueDepth),
		aimd:   backpressure.NewAIMD(n.cfg.InflightInitial, 256, n.cfg.InflightMax, n.cfg.LatencyTarget)}
	ok := false
	defer func() {
		if !ok {
			g.closeStores()
		}
	}()
	var err error
	hl := hclog.New(&hclog.LoggerOptions{Name: fmt.Sprintf("raft.%s.p%d", n.cfg.ID, id), Level: hclog.LevelFromString(n.cfg.RaftLogLevel), Output: n.cfg.LogOutput})
	var store raft.LogStore
	switch {
	case n.cfg.RaftLog == RaftLogRaftWAL:
		if g.rwal, err = replica.OpenRaftWAL(filepath.Join(dir, "raft-wal"), replica.RaftWALOptions{SyncInterval: n.cfg.SyncInterval, Logger: hl.Named("raft-wal")}); err != nil {
			return nil, err
		}
		store, g.stable = g.rwal, g.rwal
	case n.shared != nil:
		store = n.shared.Group(uint32(id))
	default:
		if g.wal, err = replica.OpenWALWithOptions(filepath.Join(dir, "wal"), replica.WALOptions{SyncInterval: n.cfg.SyncInterval}); err != nil {
			return nil, err
		}
		store = g.wal
	}
	if g.stable == nil {
		if g.bolt, err = replica.OpenBoltStore(filepath.Join(dir, "raft.db")); err != nil {
			return nil, err
		}
		g.stable = g.bolt
	}
	if g.logs, err = raft.NewLogCache(1024, store); err != nil {
		return nil, err
	}
	// The stream log is derived from the raft log and snapshots, so it is
	// not fsynced and starts empty: restore and replay rewrite it.
	_ = os.Remove(filepath.Join(dir, "stream.db")) // the B+tree store of earlier versions
	if g.stream, err = openStreamLog(filepath.Join(dir, "stream")); err != nil {
		return nil, fmt.Errorf("open stream store: %w", err)
	}
	snaps, err := newSnapshotStore(dir, 2, hl)
	if err != nil {
		return nil, err
	}
	hooks := fsmHooks{
		observeHLC: n.observeHLC,
		dedupHit:   func(level string) { n.metrics.dedupHits.WithLabelValues(level).Inc() },
		gap:        func(k uint64) { n.metrics.gaps.Inc(); n.metrics.gapSeqs.Add(float64(k)) },
		late:       func() { n.metrics.late.Inc() },
	}
	g.fsm, err = newFSM(fsmConfig{Partition: id, NoDedup: n.cfg.Defects.Has(DefectNoDedup),
		Reorder:  reorder.Config{MaxCount: n.cfg.ReorderMaxCount, MaxDistance: uint64(n.cfg.ReorderMaxDistance), Timeout: int64(n.cfg.ReorderTimeout)},
		DedupTTL: int64(n.cfg.DedupTTL), DedupMax: max(1000, n.cfg.DedupMax/n.cfg.Partitions),
		Retain: n.cfg.StreamRetention}, g.stream, hooks)
	if err != nil {
		return nil, err
	}
	layer := n.mux.Layer(uint32(id), n.cfg.ID)
	g.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		ServerAddressProvider: addrProvider(n.cfg.Peers), Stream: layer, MaxPool: 3, Timeout: 5 * time.Second, Logger: hl,
		// Synchronous AppendEntries: every RPC has a deadline. (Pipelining
		// gains little with batched appends, and a pipeline whose peer stops
		// answering has no deadline and can hang shutdown.)
		MaxRPCsInFlight: n.cfg.RaftInflight})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.ID)
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	// The longest lease raft allows. Heartbeats go through raft's main
	// loop (mainLoopHeartbeats), so a follower busy appending answers them
	// late; a half-timeout lease made leaders step down on every
	// scheduling stall of a busy host and left partitions without a
	// leader for tens of seconds after a fault healed. Safety does not
	// rest on the lease: reads go through a Barrier and commits need a
	// quorum.
	rc.LeaderLeaseTimeout = n.cfg.HeartbeatTimeout
	rc.CommitTimeout = 5 * time.Millisecond
	rc.MaxAppendEntries = 256
	rc.BatchApplyCh = true
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.SnapshotInterval = n.cfg.SnapshotInterval
	rc.TrailingLogs = n.cfg.TrailingLogs
	rc.NoLegacyTelemetry = true
	rc.Logger = hl
	if has, err := raft.HasExistingState(g.logs, g.stable, snaps); err != nil {
		return nil, err
	} else if !has {
		var cfg raft.Configuration
		for _, id := range n.ids {
			cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(id)})
		}
		if err := raft.BootstrapCluster(rc, g.logs, g.stable, snaps, g.trans, cfg); err != nil {
			return nil, fmt.Errorf("bootstrap partition %d: %w", id, err)
		}
	}
	if g.raft, err = raft.NewRaft(rc, g.fsm, g.logs, g.stable, snaps, mainLoopHeartbeats{g.trans}); err != nil {
		return nil, fmt.Errorf("start raft for partition %d: %w", id, err)
	}
	ok = true
	g.wg.Add(3)
	go g.proposer()
	go g.ticker()
	go func() {
		defer g.wg.Done()
		g.fsm.flushLoop(g.stop, streamFlushInterval)
	}()
	return g, nil
}

func (g *group) closeStores() {
	if g.trans != nil {
		g.trans.Close()
	}
	if g.wal != nil {
		g.wal.Close()
	}
	if g.rwal != nil {
		if err := g.rwal.Close(); err != nil {
			g.n.log.Warn("close raft log", "partition", g.id, "err", err)
		}
	}
	if g.bolt != nil {
		g.bolt.Close()
	}
	if g.stream != nil {
		g.stream.close()
	}
}

func (g *group) close() {
	close(g.stop)
	g.wg.Wait()
	if g.raft != nil {
		done := make(chan error, 1)
		go func() { done <- g.raft.Shutdown().Error() }()
		select {
		case err := <-done:
			if err != nil {
				g.n.log.Warn("raft shutdown", "partition", g.id, "err", err)
			}
		case <-time.After(5 * time.Second):
			// A replication stream stuck on a peer: closing the transport
			// unblocks it.
			g.n.log.Warn("raft shutdown slow; closing its transport", "partition", g.id)
			g.trans.Close()
			<-done
		}
	}
	if g.fsm != nil {
		g.fsm.flush()
	}
	g.closeStores()
}

func (g *group) isLeader() bool { return g.raft.State() == raft.Leader }

func (g *group) leader() string {
	_, id := g.raft.LeaderWithID()
	return string(id)
}

func (g *group) epoch() uint64 { return g.raft.CurrentTerm() }

// submit proposes msgs (all of this partition) and waits for their results.
func (g *group) submit(ctx context.Context, msgs []Message) []Result {
	unbounded := g.n.cfg.Defects.Has(DefectUnboundedQueue)
	if !unbounded && !g.aimd.Acquire(len(msgs)) {
		g.n.metrics.rejects.WithLabelValues("concurrency").Add(float64(len(msgs)))
		return g.fill(msgs, Result{Status: StatusRejected, Error: "overloaded: in-flight proposals at the adaptive limit", ErrorKind: "overload", RetryAfterMs: 50})
	}
	p := &proposal{msgs: msgs, res: make(chan []Result, 1)}
	select {
	case g.propCh <- p:
	default:
		if !unbounded {
			g.aimd.Release(len(msgs), 0, true, time.Now())
			g.n.metrics.rejects.WithLabelValues("queue").Add(float64(len(msgs)))
			return g.fill(msgs, Result{Status: StatusRejected, Error: "overloaded: proposal queue full", ErrorKind: "overload", RetryAfterMs: 100})
		}
		g.n.unboundedQueued.Add(int64(len(msgs)))
		go func() { // unbounded-queue defect: every waiting request is parked
			defer g.n.unboundedQueued.Add(-int64(len(msgs)))
			select {
			case g.propCh <- p:
			case <-g.stop:
				p.res <- g.fill(msgs, Result{Status: StatusError, Error: "node stopping", ErrorKind: "unavailable"})
			}
		}()
	}
	select {
	case r := <-p.res:
		return r
	case <-ctx.Done():
		return g.fill(msgs, Result{Status: StatusError, Error: "timeout: outcome unknown (" + ctx.Err().Error() + ")", ErrorKind: "unknown_outcome"})
	}
}

func (g *group) fill(msgs []Message, r Result) []Result {
	out := make([]Result, len(msgs))
	for i := range msgs {
		out[i] = r
		out[i].MsgID = msgs[i].MsgID
		out[i].Partition = g.id
		out[i].Node = g.n.cfg.ID
	}
	return out
}

// proposer batches waiting proposals into log entries (group commit on top
// of raft's own batching of concurrent appends) and pipelines them.
func (g *group) proposer() {
	defer g.wg.Done()
	for {
		var batch []*proposal
		select {
		case p := <-g.propCh:
			batch = append(batch, p)
		case <-g.stop:
			return
		}
		n := len(batch[0].msgs)
	drain:
		for n < g.n.cfg.MaxBatch {
			select {
			case p := <-g.propCh:
				batch = append(batch, p)
				n += len(p.msgs)
			default:
				break drain
			}
		}
		g.propose(batch, n)
	}
}

func (g *group) propose(batch []*proposal, n int) {
	c := command{K: cmdBatch, N: g.n.cfg.ID, M: make([]stamped, 0, n)}
	if err := g.catchUp(); err != nil {
		g.finish(batch, n, nil, err, time.Now())
		return
	}
	g.applyMu.Lock()
	for _, p := range batch {
		for _, m := range p.msgs {
			ts := g.n.now()
			c.M = append(c.M, stamped{Message: m, H: ts.String()})
			c.T = ts.Wall
		}
	}
	data := encodeCommand(&c)
	start := time.Now()
	fut := g.raft.Apply(data, g.n.cfg.ApplyTimeout)
	g.applyMu.Unlock()
	if g.n.cfg.Defects.Has(DefectAckBeforeCommit) {
		// ack-before-commit defect: answer as if committed, before the
		// majority has the entry.
		res := make([]Result, 0, n)
		ep := g.epoch()
		for _, s := range c.M {
			res = append(res, Result{MsgID: s.MsgID, Status: StatusOK, Partition: g.id, Epoch: ep, HLC: s.H, Node: g.n.cfg.ID})
		}
		g.deliver(batch, res)
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			err := fut.Error()
			g.aimd.Release(n, time.Since(start), err == nil, time.Now())
			g.n.metrics.applySeconds.Observe(time.Since(start).Seconds())
		}()
		return
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		err := fut.Error()
		var resp any
		if err == nil {
			resp = fut.Response()
		}
		g.finish(batch, n, resp, err, start)
	}()
}

func (g *group) finish(batch []*proposal, n int, resp any, err error, start time.Time) {
	lat := time.Since(start)
	g.aimd.Release(n, lat, err == nil, time.Now())
	g.n.metrics.applySeconds.Observe(lat.Seconds())
	if err == nil {
		if e, ok := resp.(error); ok {
			err = e
		}
	}
	if err != nil {
		r := Result{Status: StatusError, ErrorKind: "unavailable", Error: fmt.Sprintf("partition %d: %v", g.id, err)}
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrRaftShutdown):
			r.ErrorKind = "not_leader"
		case errors.Is(err, raft.ErrEnqueueTimeout):
			r.Status, r.ErrorKind, r.RetryAfterMs = StatusRejected, "overload", 200
		default:
			r.ErrorKind = "unknown_outcome" // may or may not commit
			r.Error += " (outcome unknown: the write may still commit)"
		}
		res := make([]Result, 0, n)
		for _, p := range batch {
			res = append(res, g.fill(p.msgs, r)...)
		}
		g.deliver(batch, res)
		return
	}
	res, _ := resp.([]Result)
	if len(res) != n {
		res = make([]Result, 0, n)
		for _, p := range batch {
			res = append(res, g.fill(p.msgs, Result{Status: StatusError, ErrorKind: "internal", Error: "state machine returned no results"})...)
		}
	}
	g.deliver(batch, res)
}

func (g *group) deliver(batch []*proposal, res []Result) {
	i := 0
	for _, p := range batch {
		p.res <- res[i : i+len(p.msgs)]
		i += len(p.msgs)
	}
}

// ticker drives reorder timeouts through the log: while this node leads and
// messages wait in the reorder buffer, it proposes the leader's clock.
func (g *group) ticker() {
	defer g.wg.Done()
	t := time.NewTicker(g.n.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		if !g.isLeader() {
			continue
		}
		if d, _, _ := g.fsm.stats(); d == 0 {
			continue
		}
		if err := g.catchUp(); err != nil {
			continue
		}
		g.applyMu.Lock()
		ts := g.n.now()
		data := encodeCommand(&command{K: cmdTick, N: g.n.cfg.ID, T: ts.Wall, H: ts.String()})
		fut := g.raft.Apply(data, g.n.cfg.ApplyTimeout)
		g.applyMu.Unlock()
		if err := fut.Error(); err != nil && !errors.Is(err, raft.ErrNotLeader) {
			g.n.log.Warn("reorder tick", "partition", g.id, "err", err)
		}
	}
}

// putState proposes a state compare-and-set.
func (g *group) putState(p putCmd) (putResult, error) {
	if err := g.catchUp(); err != nil {
		return putResult{}, err
	}
	ts := g.n.now()
	data := encodeCommand(&command{K: cmdPut, N: g.n.cfg.ID, T: ts.Wall, H: ts.String(), P: &p})
	fut := g.raft.Apply(data, g.n.cfg.ApplyTimeout)
	if err := fut.Error(); err != nil {
		return putResult{}, err
	}
	switch r := fut.Response().(type) {
	case putResult:
		return r, nil
	case error:
		return putResult{}, r
	}
	return putResult{}, errors.New("state machine returned no result")
}

// balance hands leadership to the partition's preferred node once it is
// up and ready, so leaders spread over the nodes. A node that is down is not
// tried (a transfer to it would stall writes until it times out).
func (g *group) balance(preferred string) {
	if !g.isLeader() || preferred == g.n.cfg.ID {
		return
	}
	g.mu.Lock()
	if time.Since(g.lastTransfer) < g.n.cfg.BalanceInterval*3 {
		g.mu.Unlock()
		return
	}
	g.lastTransfer = time.Now()
	g.mu.Unlock()
	if !g.n.peerReady(preferred) {
		return
	}
	if err := g.raft.LeadershipTransferToServer(raft.ServerID(preferred), raft.ServerAddress(preferred)).Error(); err != nil {
		g.mu.Lock()
		g.lastTransfer = time.Now().Add(g.n.cfg.BalanceInterval * 10) // back off
		g.mu.Unlock()
		if !strings.Contains(err.Error(), "not leader") {
			g.n.log.Debug("leadership transfer", "partition", g.id, "to", preferred, "err", err)
		}
	}
}

// mainLoopHeartbeats is the raft transport with hashicorp/raft's heartbeat
// fast path turned off, so heartbeats are handled by raft's main loop like
// every other AppendEntries. On the fast path (v1.8.0) the transport's
// goroutine runs appendEntries, which may raise the term and step a leader
// down while the leader loop is dispatching proposals: a leader resuming
// from a pause then wrote its queued proposals as entries of the new
// leader's term — two leaders in one term, lost and disordered records
// (found by the consistency checker's I8/I5 after a podPause; upstream
// hashicorp/raft PR #701). The cost: a follower answers a heartbeat after
// the AppendEntries ahead of it.
type mainLoopHeartbeats struct{ *raft.NetworkTransport }

// SetHeartbeatHandler ignores raft's fast-path handler (see the type).
func (mainLoopHeartbeats) SetHeartbeatHandler(func(raft.RPC)) {}
