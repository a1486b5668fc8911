// Package load is the load generator of the availability and consistency
// probes: many sources sending to the aggregator's HTTP API with
// per-(source, partition) contiguous seq, snowflake msg_ids, deliberate
// duplicates and reordering, retries that reuse the msg_id, per-key state
// reads and writes, HDR latency histograms per phase and arm, and a consumer
// that tails every partition's stream until drained. Every operation is
// recorded in a history/v1 file for the consistency checker.
//
// A Generator is driven phase by phase (Run), so the engine can label each
// phase and arm and change the target list between phases or during one.
package load

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/chaosgate/chaosgate/engine/history"
)

// Config is what a Generator sends and where.
type Config struct {
	// Targets are the node HTTP addresses (required).
	Targets Targets
	// Partitions is P; 0 asks GET /v1/cluster.
	Partitions int
	// Sources is the number of sources (default 8); Keys the number of group
	// keys (default 64).
	Sources, Keys int
	// Batch is the number of messages per request (default 1).
	Batch int
	// PayloadSize is the payload length in bytes (default 128).
	PayloadSize int
	// Dup is the fraction of acknowledged messages re-sent later with the
	// same msg_id, seq and fingerprint; Reorder the fraction of messages sent
	// after their successor.
	Dup, Reorder float64
	// Timeout bounds one HTTP request (default 5s); MaxRetries bounds the
	// re-sends of one message after a timeout, 5xx or 429 (default 20).
	Timeout    time.Duration
	MaxRetries int
	// MaxInFlight bounds the batches an open-loop phase has in flight
	// (retries included), as a real client's connection pool does; at the
	// bound the schedule waits and latency still counts from each batch's
	// scheduled time. Default: the batches the phase's rate schedules
	// within one Timeout (at least 32, at most 4096) — never reached while
	// requests answer well within their timeout, and it keeps a cluster
	// that stops answering from piling up a connection per scheduled
	// batch in the generator, the router and the fault proxies.
	MaxInFlight int
	// RetryGrace bounds how long after a phase's end its messages are
	// still retried (default 10s), so a phase against an overloaded or
	// broken cluster ends in bounded time; what is still unacknowledged
	// then counts as failed (its outcome stays unknown in the history).
	RetryGrace time.Duration
	// RetryBudget, above 0, bounds a phase's re-sends to this share of the
	// messages it has offered so far, plus RetryBudgetMin — as Envoy's
	// retry budgets and gRPC's retry throttling bound a real client's
	// retries, so that the load does not multiply an outage it measures: a
	// cluster that times out every request would otherwise get each
	// message up to MaxRetries more times, each on a new connection. A
	// message whose re-send the budget refuses fails at once (its last
	// attempt's outcome stays in the history) and is counted in
	// Summary.RetriesDenied. 0 (the default): every message is retried up
	// to MaxRetries.
	RetryBudget float64
	// RetryBudgetMin is the re-sends a phase may always make under a
	// RetryBudget, so that a phase's first failures are retried before it
	// has offered many messages (default 10).
	RetryBudgetMin int
	// StateClients run per-key state reads and writes (GET/PUT /v1/state)
	// concurrently with the messages, for I9; StateKeys is the key pool.
	StateClients, StateKeys int
	// RouteToLeader sends each message straight to its partition's leader
	// (from GET /v1/cluster, refreshed every second) instead of to any node,
	// which forwards it; it saves the forwarding hop.
	RouteToLeader bool
	// StatsInterval > 0 scrapes every target's /metrics that often while a
	// phase runs and records a "stats" node event (memory, reorder depth,
	// dedup entries, in-flight work) for the I6 caps check; StatsCaps adds
	// caps the metrics do not carry, e.g. {"dedup_entries_cap": 100000}.
	StatsInterval time.Duration
	StatsCaps     map[string]float64
	// History receives every operation; nil records nothing.
	History *history.Writer
	// Publisher, when set, sends the messages to a message broker that
	// the aggregator consumes (its --upstream) instead of to its HTTP API;
	// Targets are still read (drain, cluster, dead letters).
	Publisher Publisher
	// Name prefixes sources, keys and history clients; it must be unique
	// per cluster (default "load-<random>").
	Name string
	// IDNode is the snowflake node number (0..1023).
	IDNode int64
	// Headers are set on every request the generator sends, e.g. the
	// deployment header that pins its sources to one arm behind a router
	// (x-deployment-id: canary).
	Headers map[string]string
	// NoDrain promises that Drain will not be called, so acknowledged
	// messages are not remembered for it (less memory and CPU per message:
	// benchmarks, --no-drain).
	NoDrain bool
	// Acks, when set, is where this generator notes the messages it got
	// acknowledged, shared with the generator that drains the same cluster
	// into the same history: an overload burst next to the steady load
	// passes the steady generator's Acks() here, so that the steady
	// generator's Drain waits for the burst's messages too (a message the
	// nodes acknowledged but still hold, e.g. in a reorder buffer, would
	// otherwise be read as lost). Set it, and the acknowledgements are
	// noted even with NoDrain. Nil: the generator keeps its own.
	Acks *AckTracker
	// FromStart makes the consumer read every partition from offset 0;
	// by default it starts at the high watermarks found by New, so that
	// records of earlier runs on the same cluster are not in this history.
	// Run one generator per cluster at a time (or merge their histories).
	FromStart bool
	// Seed seeds the random choices (0: time-based).
	Seed int64
	// Logger receives progress logs; nil discards them.
	Logger *slog.Logger
	// TraceSample is how many answered message requests Traces keeps,
	// evenly spread over all of them (default DefaultTraceSample).
	TraceSample int
}

// Phase is one stretch of load with its labels.
type Phase struct {
	Name string // e.g. "steady", "fault"
	Arm  string // e.g. "canary", "control"
	// Duration of the phase.
	Duration time.Duration
	// Rate > 0 is open loop: messages per second in total, issued on
	// schedule whatever the latency (latency is measured from the scheduled
	// time). Rate 0 is closed loop with Concurrency requests in flight
	// (default: one per source).
	Rate        float64
	Concurrency int
}

// Summary is the outcome of a phase (or of all phases together).
type Summary struct {
	Phase    string `json:"phase"`
	Arm      string `json:"arm"`
	Requests int64  `json:"requests"` // HTTP requests, retries included
	Messages int64  `json:"messages"` // distinct messages offered
	OK       int64  `json:"ok"`       // new messages acknowledged (ok or duplicate)
	Rejected int64  `json:"rejected"` // message attempts rejected by backpressure
	Failed   int64  `json:"failed"`   // messages definitely not stored after retries
	Timeouts int64  `json:"timeouts"` // message attempts with unknown outcome
	Retries  int64  `json:"retries"`  // message re-sends after a failed attempt
	// RetriesDenied are the re-sends the retry budget refused (those
	// messages failed at once).
	RetriesDenied int64         `json:"retries_denied,omitempty"`
	Duplicates    int64         `json:"duplicates"` // deliberate re-sends of acknowledged messages
	DupAcked      int64         `json:"dup_acked"`  // deliberate re-sends acknowledged (as duplicate)
	Reordered     int64         `json:"reordered"`  // messages sent after their successor
	StateOps      int64         `json:"state_ops"`
	P50           time.Duration `json:"p50"`
	P95           time.Duration `json:"p95"`
	P99           time.Duration `json:"p99"`
	P999          time.Duration `json:"p999"`
	Max           time.Duration `json:"max"`
	Duration      time.Duration `json:"duration"`
	Throughput    float64       `json:"throughput"` // new messages acknowledged per second
}

// SuccessRatio is OK over the messages that got a final outcome.
func (s Summary) SuccessRatio() float64 {
	if s.Messages == 0 {
		return 0
	}
	return float64(s.OK) / float64(s.Messages)
}

type source struct {
	mu   sync.Mutex
	name string
	seqs []uint64 // per partition
	held *Message // reordered message waiting for its successor
	dups []Message
}

// Generator sends load and records it. It is safe to call Run for one phase
// at a time; Drain after the last phase.
type Generator struct {
	cfg     Config
	parts   int
	cl      *client
	ids     *IDGen
	sources []*source
	keys    []string
	payload string
	log     *slog.Logger

	rngMu sync.Mutex
	rng   *rand.Rand

	mu       sync.Mutex
	phases   []Summary
	hists    map[string]*hdrhistogram.Histogram // "phase/arm" → latency in µs
	allHist  *hdrhistogram.Histogram
	acks     *AckTracker // acked messages not yet seen in the stream
	stateSeq atomic.Int64
	next     []int64 // per partition: the consumer's next offset
	leaders  atomic.Pointer[map[int]string]
	traces   traceSample
	// cur is the phase running now (Live).
	cur atomic.Pointer[livePhase]
}

// livePhase is a running phase's counters and start.
type livePhase struct {
	ph    Phase
	start time.Time
	ps    *phaseStats
}

// Live returns the running phase's counts so far (latency quantiles
// included); ok is false when no phase runs.
func (g *Generator) Live() (Summary, bool) {
	lp := g.cur.Load()
	if lp == nil {
		return Summary{}, false
	}
	return lp.ps.summary(lp.ph, time.Since(lp.start)), true
}

// New prepares a generator; it asks GET /v1/cluster for P when
// cfg.Partitions is 0.
func New(ctx context.Context, cfg Config) (*Generator, error) {
	if cfg.Targets == nil || len(cfg.Targets()) == 0 {
		return nil, errors.New("load: no targets")
	}
	if cfg.Sources <= 0 {
		cfg.Sources = 8
	}
	if cfg.Keys <= 0 {
		cfg.Keys = 64
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1
	}
	if cfg.Batch > 1000 {
		return nil, errors.New("load: batch above the aggregator's limit of 1000 messages")
	}
	if cfg.PayloadSize <= 0 {
		cfg.PayloadSize = 128
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = 20
	}
	if cfg.RetryGrace <= 0 {
		cfg.RetryGrace = 10 * time.Second
	}
	if !(cfg.RetryBudget >= 0) || math.IsInf(cfg.RetryBudget, 0) || cfg.RetryBudgetMin < 0 {
		return nil, fmt.Errorf("load: retry budget %v (min %d): want a share ≥ 0 and a minimum ≥ 0", cfg.RetryBudget, cfg.RetryBudgetMin)
	}
	if cfg.RetryBudget > 0 && cfg.RetryBudgetMin == 0 {
		cfg.RetryBudgetMin = 10
	}
	if cfg.StateKeys <= 0 {
		cfg.StateKeys = 8
	}
	if cfg.Name == "" {
		// Sources and keys must be new to the cluster: a source that starts
		// its seq at 1 again would be deduplicated against an earlier run.
		cfg.Name = "load-" + runID()
	}
	if cfg.Dup < 0 || cfg.Dup > 1 || cfg.Reorder < 0 || cfg.Reorder > 1 {
		return nil, errors.New("load: dup and reorder are fractions in [0, 1]")
	}
	if cfg.Seed == 0 {
		cfg.Seed = time.Now().UnixNano()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Partitions <= 0 {
		ci, err := FetchCluster(ctx, cfg.Targets)
		if err != nil {
			return nil, fmt.Errorf("load: partition count: %w", err)
		}
		cfg.Partitions = ci.PartitionCount
	}
	ids, err := NewIDGen(cfg.IDNode)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	g := &Generator{cfg: cfg, parts: cfg.Partitions, ids: ids, log: cfg.Logger,
		cl: newClient(cfg.Targets, cfg.Timeout, 64), rng: rand.New(rand.NewSource(cfg.Seed)),
		hists: map[string]*hdrhistogram.Histogram{}, allHist: newHist(), acks: cfg.Acks}
	g.cl.headers = cfg.Headers
	if g.acks == nil {
		g.acks = NewAckTracker()
	}
	for i := 0; i < cfg.Sources; i++ {
		g.sources = append(g.sources, &source{name: fmt.Sprintf("%s-s%d", cfg.Name, i+1), seqs: make([]uint64, cfg.Partitions)})
	}
	for i := 0; i < cfg.Keys; i++ {
		g.keys = append(g.keys, fmt.Sprintf("%s-k%d", cfg.Name, i+1))
	}
	g.payload = strings.Repeat("x", cfg.PayloadSize)
	g.next = make([]int64, g.parts)
	g.traces.max = cfg.TraceSample
	if g.traces.max <= 0 {
		g.traces.max = DefaultTraceSample
	}
	if !cfg.FromStart {
		if err := g.startAtHighWatermarks(ctx); err != nil {
			g.Close()
			return nil, err
		}
	}
	return g, nil
}

// Partitions reports P.
func (g *Generator) Partitions() int { return g.parts }

// Close releases idle connections.
func (g *Generator) Close() { g.cl.close() }

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 3) }

func (g *Generator) float() float64 {
	g.rngMu.Lock()
	defer g.rngMu.Unlock()
	return g.rng.Float64()
}

func (g *Generator) intn(n int) int {
	g.rngMu.Lock()
	defer g.rngMu.Unlock()
	return g.rng.Intn(n)
}

// nextBatch builds the next request of source s: new messages in seq
// order, with a reordered message held back past its successor and
// deliberate duplicates of acknowledged messages mixed in.
func (g *Generator) nextBatch(s *source, n int, ps *phaseStats) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, 0, n+2)
	// A partition-aware producer (RouteToLeader) fills a batch with keys
	// whose partitions share one leader, as a Kafka producer batches per
	// partition: the batch is one request to one node, with no forwarding.
	var lead map[int]string
	if g.cfg.RouteToLeader {
		if lm := g.leaders.Load(); lm != nil {
			lead = *lm
		}
	}
	batchLeader := ""
	for len(out) < n {
		key := g.keys[g.intn(len(g.keys))]
		p := Partition(key, g.parts)
		if lead != nil {
			if batchLeader == "" {
				batchLeader = lead[p]
			}
			for try := 0; try < 32 && lead[p] != batchLeader; try++ {
				key = g.keys[g.intn(len(g.keys))]
				p = Partition(key, g.parts)
			}
		}
		s.seqs[p]++
		id := g.ids.Next()
		m := Message{SourceID: s.name, Seq: s.seqs[p], MsgID: id, GroupKey: key, Fingerprint: "fp-" + id,
			EventTime: time.Now().UTC().Format(time.RFC3339Nano), TraceID: fmt.Sprintf("%032s", id), Payload: g.payload, partition: p}
		ps.messages.Add(1)
		if s.held == nil && g.cfg.Reorder > 0 && g.float() < g.cfg.Reorder {
			s.held = &m // sent after the next message
			continue
		}
		out = append(out, m)
		if s.held != nil {
			out = append(out, *s.held)
			s.held = nil
			ps.reordered.Add(1)
		}
	}
	if len(s.dups) > 0 {
		d := s.dups[0]
		d.dup = true
		out = append(out, d)
		s.dups = s.dups[1:]
		ps.duplicates.Add(1)
	}
	return out
}

// flushHeld sends nothing but returns a held message, so a phase never ends
// with a message that was never offered.
func (s *source) flushHeld() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held == nil {
		return nil
	}
	m := *s.held
	s.held = nil
	return []Message{m}
}

type phaseStats struct {
	requests, messages, ok, dupAcked, rejected, failed, timeouts, retries, duplicates, reordered, stateOps atomic.Int64
	retriesDenied                                                                                          atomic.Int64
	histMu                                                                                                 sync.Mutex
	hist                                                                                                   *hdrhistogram.Histogram
	retryUntil                                                                                             time.Time // no retries after this
}

// reserveRetry counts n re-sends if the retry budget (Config.RetryBudget)
// allows them, and reports whether it did; without a budget it always
// does.
func (g *Generator) reserveRetry(ps *phaseStats, n int) bool {
	after := ps.retries.Add(int64(n))
	if g.cfg.RetryBudget <= 0 {
		return true
	}
	if float64(after) <= g.cfg.RetryBudget*float64(ps.messages.Load())+float64(g.cfg.RetryBudgetMin) {
		return true
	}
	ps.retries.Add(-int64(n))
	ps.retriesDenied.Add(int64(n))
	return false
}

func (ps *phaseStats) observe(d time.Duration) {
	ps.histMu.Lock()
	defer ps.histMu.Unlock()
	_ = ps.hist.RecordValue(max(1, d.Microseconds()))
}

// Run drives one phase and returns its summary.
func (g *Generator) Run(ctx context.Context, ph Phase) (Summary, error) {
	if ph.Duration <= 0 {
		return Summary{}, errors.New("load: phase duration must be positive")
	}
	start := time.Now()
	ps := &phaseStats{hist: newHist(), retryUntil: start.Add(ph.Duration + g.cfg.RetryGrace)}
	lp := &livePhase{ph: ph, start: start, ps: ps}
	g.cur.Store(lp)
	defer g.cur.CompareAndSwap(lp, nil)
	pctx, cancel := context.WithTimeout(ctx, ph.Duration)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < g.cfg.StateClients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			g.stateLoop(pctx, fmt.Sprintf("%s-state%d", g.cfg.Name, i+1), ps)
		}(i)
	}
	if g.cfg.RouteToLeader {
		lctx, stopLeaders := context.WithCancel(ctx)
		defer stopLeaders()
		leadersDone := make(chan struct{})
		defer func() { stopLeaders(); <-leadersDone }()
		go func() { defer close(leadersDone); WatchCluster(lctx, g.cfg.Targets, time.Second, g.storeLeaders) }()
	}
	// Stats are sampled until every send of the phase is done: overload
	// shows most in the tail.
	sctx, stopStats := context.WithCancel(ctx)
	statsDone := make(chan struct{})
	go func() {
		defer close(statsDone)
		if g.cfg.StatsInterval > 0 {
			g.statsLoop(sctx)
		}
	}()
	if ph.Rate > 0 {
		g.openLoop(ctx, pctx, ph.Rate, ps)
	} else {
		conc := ph.Concurrency
		if conc <= 0 {
			conc = len(g.sources)
		}
		for w := 0; w < conc; w++ {
			wg.Add(1)
			go func(s *source) {
				defer wg.Done()
				for pctx.Err() == nil {
					t0 := time.Now()
					g.send(ctx, g.nextBatch(s, g.cfg.Batch, ps), ps, t0)
				}
			}(g.sources[w%len(g.sources)])
		}
	}
	wg.Wait()
	for _, s := range g.sources {
		if held := s.flushHeld(); held != nil && ctx.Err() == nil {
			g.send(ctx, held, ps, time.Now())
		}
	}
	stopStats()
	<-statsDone
	sum := ps.summary(ph, time.Since(start))
	g.mu.Lock()
	g.phases = append(g.phases, sum)
	k := ph.Name + "/" + ph.Arm
	if g.hists[k] == nil {
		g.hists[k] = newHist()
	}
	ps.histMu.Lock()
	g.hists[k].Merge(ps.hist)
	g.allHist.Merge(ps.hist)
	ps.histMu.Unlock()
	g.mu.Unlock()
	return sum, ctx.Err()
}

// openLoop issues batches on a fixed schedule; each batch runs in its own
// goroutine (bounded), and latency counts from the scheduled time.
func (g *Generator) openLoop(ctx, pctx context.Context, rate float64, ps *phaseStats) {
	interval := time.Duration(float64(time.Second) * float64(g.cfg.Batch) / rate)
	if interval <= 0 {
		interval = time.Microsecond
	}
	sem := make(chan struct{}, g.inFlightCap(rate))
	var wg sync.WaitGroup
	next := time.Now()
	for i := 0; ; i++ {
		if d := time.Until(next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-pctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		if pctx.Err() != nil {
			break
		}
		sched := next
		next = next.Add(interval)
		s := g.sources[i%len(g.sources)]
		batch := g.nextBatch(s, g.cfg.Batch, ps)
		select {
		case sem <- struct{}{}:
		case <-pctx.Done():
		}
		if pctx.Err() != nil {
			// its seqs are assigned: send it anyway, so the phase leaves no
			// hole in any source's sequence
			g.send(ctx, batch, ps, sched)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			g.send(ctx, batch, ps, sched)
		}()
	}
	wg.Wait()
}

// inFlightCap is an open-loop phase's bound on batches in flight at rate.
func (g *Generator) inFlightCap(rate float64) int {
	if g.cfg.MaxInFlight > 0 {
		return g.cfg.MaxInFlight
	}
	n := math.Ceil(rate / float64(g.cfg.Batch) * g.cfg.Timeout.Seconds())
	return int(min(max(n, 32), 4096))
}

// send delivers one batch with retries and records every attempt.
func (g *Generator) send(ctx context.Context, batch []Message, ps *phaseStats, sched time.Time) {
	if g.cfg.Publisher != nil {
		g.publish(ctx, batch, ps, sched)
		return
	}
	pending := batch
	src := g.sourceOf(batch)
	for attempt := 0; len(pending) > 0; attempt++ {
		var retry []Message
		var wait time.Duration
		if routes := g.route(pending); routes != nil {
			// one request per partition leader, in parallel
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, rt := range routes {
				wg.Add(1)
				go func(addr string, msgs []Message) {
					defer wg.Done()
					r, w := g.attempt(ctx, addr, msgs, ps, sched, src)
					mu.Lock()
					retry, wait = append(retry, r...), max(wait, w)
					mu.Unlock()
				}(rt.addr, rt.msgs)
			}
			wg.Wait()
		} else {
			addr, err := g.cl.pick()
			if err != nil {
				g.finalFail(pending, ps)
				return
			}
			retry, wait = g.attempt(ctx, addr, pending, ps, sched, src)
		}
		if len(retry) == 0 {
			return
		}
		if attempt >= g.cfg.MaxRetries || ctx.Err() != nil || time.Now().After(ps.retryUntil) || !g.reserveRetry(ps, len(retry)) {
			g.finalFail(retry, ps)
			return
		}
		pending = retry
		if wait == 0 {
			wait = min(time.Duration(1<<min(attempt, 6))*20*time.Millisecond, time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// attempt sends msgs to addr once, records every outcome and returns the
// messages to retry and how long to wait first (retry-after, if any).
func (g *Generator) attempt(ctx context.Context, addr string, pending []Message, ps *phaseStats, sched time.Time, src string) ([]Message, time.Duration) {
	body := appendMessagesJSON(make([]byte, 0, 256*len(pending)), pending)
	ps.requests.Add(1)
	o := g.cl.do(ctx, http.MethodPost, addr, "/v1/messages", body)
	now := time.Now()
	if o.err == nil && o.traceID != "" {
		// Answered and sampled: the node has logged its trace id.
		g.traces.add(TracedRequest{TraceID: o.traceID, T: now.UTC(), Addr: addr, Method: http.MethodPost, Path: "/v1/messages", Status: o.status, Messages: len(pending)})
	}
	var results []Result
	if o.err == nil {
		var resp struct {
			Results []Result `json:"results"`
		}
		if json.Unmarshal(o.body, &resp) == nil && len(resp.Results) == len(pending) {
			results = resp.Results
		}
	}
	var retry []Message
	var wait time.Duration
	allOK := true
	for i, m := range pending {
		ev := history.Line{Op: history.OpSend, T: now, Client: src, Source: m.SourceID, Seq: m.Seq, MsgID: m.MsgID, Key: m.GroupKey,
			Fingerprint: m.Fingerprint, Partition: m.partition, HasPartition: true}
		if results == nil {
			ev.Result = history.ResultTimeout
			ps.timeouts.Add(1)
			retry = append(retry, m)
			allOK = false
			g.record(ev)
			continue
		}
		r := results[i]
		ev.Node, ev.Epoch = r.Node, r.Epoch
		if g.cfg.History != nil {
			if h, err := history.ParseHLC(r.HLC); err == nil {
				ev.HLC = h
			}
		}
		switch outcome(r) {
		case history.ResultOK:
			ev.Result = history.ResultOK
			if m.dup {
				ps.dupAcked.Add(1)
				break
			}
			ps.ok.Add(1)
			g.noteAcked(m)
			if g.cfg.Dup > 0 && g.float() < g.cfg.Dup {
				g.queueDup(m)
			}
		case history.ResultRejected:
			ev.Result = history.ResultRejected
			ps.rejected.Add(1)
			retry = append(retry, m)
			wait = max(wait, time.Duration(r.RetryAfterMs)*time.Millisecond)
			allOK = false
		case history.ResultFail:
			ev.Result = history.ResultFail
			allOK = false
			if r.ErrorKind == "no_leader" || r.ErrorKind == "not_leader" {
				retry = append(retry, m) // definitely not stored; try again
			} else if !m.dup {
				ps.failed.Add(1)
			}
		default:
			ev.Result = history.ResultTimeout
			ps.timeouts.Add(1)
			retry = append(retry, m)
			allOK = false
		}
		g.record(ev)
	}
	if allOK {
		ps.observe(now.Sub(sched))
	}
	if wait == 0 && len(retry) > 0 {
		wait = o.retryAfter
	}
	return retry, wait
}

type route struct {
	addr string
	msgs []Message
}

// route groups msgs by the HTTP address of their partition's leader when
// RouteToLeader is on and the leaders are known; nil means "any node".
func (g *Generator) route(msgs []Message) []route {
	if !g.cfg.RouteToLeader {
		return nil
	}
	lm := g.leaders.Load()
	if lm == nil {
		return nil
	}
	var out []route
	idx := map[string]int{}
	for _, m := range msgs {
		addr := (*lm)[m.partition]
		if addr == "" {
			if a, err := g.cl.pick(); err == nil {
				addr = a
			}
		}
		i, ok := idx[addr]
		if !ok {
			i = len(out)
			idx[addr] = i
			out = append(out, route{addr: addr})
		}
		out[i].msgs = append(out[i].msgs, m)
	}
	return out
}

// storeLeaders keeps the partition → leader HTTP address map of a
// cluster view.
func (g *Generator) storeLeaders(ci ClusterInfo) {
	httpOf := map[string]string{}
	for _, n := range ci.Nodes {
		httpOf[n.ID] = n.HTTP
	}
	lm := map[int]string{}
	for _, p := range ci.Partitions {
		if a := httpOf[p.Leader]; a != "" {
			lm[p.ID] = a
		}
	}
	g.leaders.Store(&lm)
}

func (g *Generator) finalFail(ms []Message, ps *phaseStats) {
	ps.failed.Add(int64(len(ms)))
}

func (g *Generator) sourceOf(batch []Message) string {
	if len(batch) == 0 {
		return ""
	}
	return batch[0].SourceID
}

// outcome maps an aggregator result to a history result: acknowledgements
// are ok; explicit backpressure is rejected; refusals that the aggregator
// guarantees were not stored are fail; everything else is an unknown outcome.
func outcome(r Result) history.OpResult {
	switch r.Status {
	case "ok", "duplicate":
		return history.ResultOK
	case "rejected":
		return history.ResultRejected
	case "stale_epoch":
		return history.ResultFail
	case "error":
		switch r.ErrorKind {
		case "no_leader", "not_leader", "late", "invalid", "overload":
			return history.ResultFail
		}
	}
	return history.ResultTimeout
}

func (g *Generator) record(ev history.Line) {
	if g.cfg.History == nil {
		return
	}
	if err := g.cfg.History.Write(ev); err != nil {
		g.log.Error("history write", "err", err)
	}
}

// Record writes an event (for example a nemesis node event) to the history.
func (g *Generator) Record(ev history.Line) { g.record(ev) }

func (g *Generator) noteAcked(m Message) {
	if g.cfg.NoDrain && g.cfg.Acks == nil {
		return
	}
	g.acks.Acked(m.partition, m.MsgID)
}

// Acks is the set of messages this generator's Drain waits for; pass it
// as Config.Acks to another generator writing to the same cluster and
// history.
func (g *Generator) Acks() *AckTracker { return g.acks }

// AckTracker is the set of acknowledged messages an output stream has not
// shown yet, by partition. It is safe for concurrent use.
type AckTracker struct {
	mu     sync.Mutex
	byPart map[int]map[string]bool
}

// NewAckTracker returns an empty tracker.
func NewAckTracker() *AckTracker { return &AckTracker{byPart: map[int]map[string]bool{}} }

// Acked notes that message id was acknowledged on partition p.
func (a *AckTracker) Acked(p int, id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	set := a.byPart[p]
	if set == nil {
		set = map[string]bool{}
		a.byPart[p] = set
	}
	set[id] = true
}

// Seen notes that message id was read from partition p's output stream.
func (a *AckTracker) Seen(p int, id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.byPart[p], id)
}

// Unseen counts the acknowledged messages not read from a stream yet.
func (a *AckTracker) Unseen() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, set := range a.byPart {
		n += len(set)
	}
	return n
}

func (g *Generator) queueDup(m Message) {
	for _, s := range g.sources {
		if s.name == m.SourceID {
			s.mu.Lock()
			if len(s.dups) < 1024 {
				s.dups = append(s.dups, m)
			}
			s.mu.Unlock()
			return
		}
	}
}

func (ps *phaseStats) summary(ph Phase, d time.Duration) Summary {
	ps.histMu.Lock()
	defer ps.histMu.Unlock()
	s := Summary{Phase: ph.Name, Arm: ph.Arm, Requests: ps.requests.Load(), Messages: ps.messages.Load(), OK: ps.ok.Load(),
		Rejected: ps.rejected.Load(), Failed: ps.failed.Load(), Timeouts: ps.timeouts.Load(), Retries: ps.retries.Load(), RetriesDenied: ps.retriesDenied.Load(),
		Duplicates: ps.duplicates.Load(), DupAcked: ps.dupAcked.Load(), Reordered: ps.reordered.Load(), StateOps: ps.stateOps.Load(), Duration: d}
	fillQuantiles(&s, ps.hist)
	s.Throughput = float64(s.OK) / d.Seconds()
	return s
}

func fillQuantiles(s *Summary, h *hdrhistogram.Histogram) {
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	s.P50, s.P95, s.P99, s.P999, s.Max = us(h.ValueAtQuantile(50)), us(h.ValueAtQuantile(95)), us(h.ValueAtQuantile(99)), us(h.ValueAtQuantile(99.9)), us(h.Max())
}

// Summaries returns every phase's summary so far, in order.
func (g *Generator) Summaries() []Summary {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Summary(nil), g.phases...)
}

// Total sums every phase; its latency quantiles come from the merged
// histogram.
func (g *Generator) Total() Summary {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := Summary{Phase: "total"}
	for _, p := range g.phases {
		t.Requests += p.Requests
		t.Messages += p.Messages
		t.OK += p.OK
		t.Rejected += p.Rejected
		t.Failed += p.Failed
		t.Timeouts += p.Timeouts
		t.Retries += p.Retries
		t.RetriesDenied += p.RetriesDenied
		t.Duplicates += p.Duplicates
		t.DupAcked += p.DupAcked
		t.Reordered += p.Reordered
		t.StateOps += p.StateOps
		t.Duration += p.Duration
	}
	fillQuantiles(&t, g.allHist)
	if t.Duration > 0 {
		t.Throughput = float64(t.OK) / t.Duration.Seconds()
	}
	return t
}

// Histogram returns a copy of the latency histogram (µs) of one phase and
// arm, or nil.
func (g *Generator) Histogram(phase, arm string) *hdrhistogram.Histogram {
	g.mu.Lock()
	defer g.mu.Unlock()
	h := g.hists[phase+"/"+arm]
	if h == nil {
		return nil
	}
	return hdrhistogram.Import(h.Export())
}

// runID is a short id that differs between runs.
func runID() string {
	var b [4]byte
	_, _ = crand.Read(b[:])
	return fmt.Sprintf("%x", b)
}
