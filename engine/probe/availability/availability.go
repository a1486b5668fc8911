// Package availability is the availability probe: a load generator per arm
// (engine/load) acting as many sources, with the offered traffic split
// between the arms by the current canary weight, and HDR latency histograms
// per phase and arm. Each source belongs to one arm for the whole run (its
// sequence numbers and output stream are that cluster's), so the split is
// keyed: the weight moves rate between the arms' sources, never a source
// between arms.
//
// Load is issued in short overlapping chunks; every chunk keeps its own
// counts and histogram, so any window of the run (a steady state, a fault's
// observation, a whole canary step) can be summarised afterwards.
package availability

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/load"
)

// Name is the probe's name in plans, abort conditions and reports.
const Name = "availability"

// Config wires the probe.
type Config struct {
	// Generators are the load generators of each arm (one per cluster).
	Generators map[engine.Arm]*load.Generator
	// Rate is the total offered rate in messages per second (default 200).
	Rate float64
	// Chunk is the length of one load chunk (default 1s).
	Chunk time.Duration
	// MaxCanaryShare caps the canary's share of the traffic (default 0.5):
	// until the gate promotes it, the canary never carries more load than
	// the control it is compared with, so per-arm resource signals (GC,
	// memory) compare like with like and the control stays a baseline at
	// the 100% step.
	MaxCanaryShare float64
}

// chunk is one stretch of load on one arm.
type chunk struct {
	arm        engine.Arm
	start, end time.Time // scheduled span
	done       bool
	finished   time.Time // when its last message was answered or given up
	sum        load.Summary
	// bars are the chunk's latency histogram (µs) in sparse form: the
	// generator keeps the full one.
	bars []bar
	err  error
}

type bar struct{ v, n int64 }

func sparse(h *hdrhistogram.Histogram) []bar {
	if h == nil {
		return nil
	}
	var out []bar
	for _, b := range h.Distribution() {
		if b.Count > 0 {
			out = append(out, bar{b.To, b.Count})
		}
	}
	return out
}

// Probe drives the load and summarises it per window and arm.
type Probe struct {
	cfg Config

	mu     sync.Mutex
	weight int
	chunks []*chunk
	seq    int

	runMu       sync.Mutex
	cancel      context.CancelFunc // cancels the chunks
	cancelSched context.CancelFunc // stops scheduling new chunks
	running     sync.WaitGroup
	loopWG      sync.WaitGroup
}

// New returns a probe; Start begins the load.
func New(cfg Config) (*Probe, error) {
	if len(cfg.Generators) == 0 {
		return nil, engine.E(engine.KindInvalid, "availability", errors.New("no load generators"))
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 200
	}
	if cfg.Chunk <= 0 {
		cfg.Chunk = time.Second
	}
	if cfg.MaxCanaryShare <= 0 || cfg.MaxCanaryShare > 1 {
		cfg.MaxCanaryShare = 0.5
	}
	return &Probe{cfg: cfg, weight: 50}, nil
}

// Name is the probe's name.
func (p *Probe) Name() string { return Name }

// Share is the canary's share of the offered traffic at weight (percent),
// capped so the control keeps a comparison share.
func (p *Probe) Share(weight int) float64 {
	s := float64(weight) / 100
	if s > p.cfg.MaxCanaryShare {
		s = p.cfg.MaxCanaryShare
	}
	if s < 0 {
		s = 0
	}
	return s
}

// SetWeight routes the canary's share of traffic; it takes effect at the
// next chunk (engine Options.SetWeight).
func (p *Probe) SetWeight(_ context.Context, weight int) error {
	if weight < 0 || weight > 100 {
		return engine.E(engine.KindInvalid, "set weight", fmt.Errorf("weight %d%% is not within 0..100", weight))
	}
	p.mu.Lock()
	p.weight = weight
	p.mu.Unlock()
	return nil
}

func (p *Probe) rate(arm engine.Arm) float64 {
	p.mu.Lock()
	w := p.weight
	p.mu.Unlock()
	if len(p.cfg.Generators) == 1 {
		return p.cfg.Rate
	}
	s := p.Share(w)
	switch arm {
	case engine.ArmCanary, engine.ArmCalibration:
		// The calibration arm mirrors the canary: its own stream at the
		// canary's rate, on top of the split.
		return p.cfg.Rate * s
	}
	return p.cfg.Rate * (1 - s)
}

// Start begins issuing load on every arm until Stop. Starting a running
// probe is a no-op.
func (p *Probe) Start(ctx context.Context) {
	p.runMu.Lock()
	defer p.runMu.Unlock()
	if p.cancel != nil {
		return
	}
	runCtx, cancel := context.WithCancel(ctx)
	schedCtx, cancelSched := context.WithCancel(runCtx)
	p.cancel, p.cancelSched = cancel, cancelSched
	for arm, g := range p.cfg.Generators {
		p.loopWG.Add(1)
		go p.loop(schedCtx, runCtx, arm, g)
	}
}

// loop starts one chunk per Chunk interval; chunks overlap while the
// stragglers of the previous one (retries under a fault) finish.
func (p *Probe) loop(ctx, runCtx context.Context, arm engine.Arm, g *load.Generator) {
	defer p.loopWG.Done()
	next := time.Now()
	for ctx.Err() == nil {
		rate := p.rate(arm)
		c := &chunk{arm: arm, start: next, end: next.Add(p.cfg.Chunk)}
		p.mu.Lock()
		p.seq++
		name := "c" + strconv.Itoa(p.seq)
		p.chunks = append(p.chunks, c)
		p.mu.Unlock()
		if rate > 0 {
			p.running.Add(1)
			go func() {
				defer p.running.Done()
				sum, err := g.Run(runCtx, load.Phase{Name: name, Arm: arm.String(), Duration: p.cfg.Chunk, Rate: rate})
				bars := sparse(g.Histogram(name, arm.String()))
				p.mu.Lock()
				c.sum, c.bars, c.done, c.finished = sum, bars, true, time.Now()
				if err != nil && !errors.Is(err, context.Canceled) {
					c.err = err
				}
				p.mu.Unlock()
			}()
		} else {
			p.mu.Lock()
			c.done, c.finished = true, c.start
			p.mu.Unlock()
		}
		next = next.Add(p.cfg.Chunk)
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// Stop ends the load and waits for every chunk to finish (its in-flight
// messages answered or given up). The probe may be started again.
func (p *Probe) Stop() {
	p.runMu.Lock()
	defer p.runMu.Unlock()
	if p.cancel == nil {
		return
	}
	// Stop scheduling, then let the chunks in flight finish their phase:
	// cancelling their context would turn in-flight messages into failures.
	p.cancelSched()
	p.loopWG.Wait()
	p.running.Wait()
	p.cancel()
	p.cancel, p.cancelSched = nil, nil
}

// Stats is the availability of one arm over a set of spans.
type Stats struct {
	// Requests are messages with a final outcome (acknowledged or failed);
	// Errors the messages definitely not stored after the retries.
	Requests, Errors int64
	OK               int64
	Rejected         int64 // attempts refused by explicit backpressure
	Timeouts         int64 // attempts with an unknown outcome
	Retries          int64
	Offered          int64
	// Attempts are the message sends, first tries, retries and
	// deliberate duplicates alike: what Timeouts and Rejected count out of.
	Attempts            int64
	WindowS             float64
	P50, P95, P99, P999 float64 // milliseconds
	Throughput          float64 // acknowledged messages per second
	// Hist is the merged latency histogram (µs); nil when empty.
	Hist    *hdrhistogram.Histogram
	Chunks  int
	Pending int // chunks of the spans that had not finished
}

// SuccessRatio is OK over the messages with a final outcome (NaN if none).
func (s Stats) SuccessRatio() float64 {
	if s.Requests == 0 {
		return math.NaN()
	}
	return float64(s.OK) / float64(s.Requests)
}

// Span is a time interval. SettleBy, when set, is when the chunks of the
// span must have finished to count in SummarizeSettled: the moment a
// fault was injected after it.
type Span struct {
	Start, End time.Time
	SettleBy   time.Time
}

// Summarize merges the chunks of arm whose scheduled span lies wholly
// within one of spans. Chunks that have not finished are counted in
// Pending.
func (p *Probe) Summarize(arm engine.Arm, spans ...Span) Stats {
	return p.summarize(arm, false, spans)
}

// SummarizeSettled is Summarize restricted, for spans with a SettleBy, to
// the chunks that also finished — every message answered or given up — by
// then. A chunk scheduled in a steady window whose stragglers were still
// being retried when a fault struck measures the fault, not the steady
// state: a judge's window must not count it. (A slow arm's chunks in a
// span with no fault after it still count: that is its steady state.)
func (p *Probe) SummarizeSettled(arm engine.Arm, spans ...Span) Stats {
	return p.summarize(arm, true, spans)
}

func (p *Probe) summarize(arm engine.Arm, settled bool, spans []Span) Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	var st Stats
	var h *hdrhistogram.Histogram
	for _, c := range p.chunks {
		if c.arm != arm || !inSpans(c.start, c.end, spans) {
			continue
		}
		if settled && !settledIn(c, spans) {
			continue
		}
		if !c.done {
			st.Pending++
			continue
		}
		st.Chunks++
		st.WindowS += c.end.Sub(c.start).Seconds()
		s := c.sum
		st.Requests += s.OK + s.Failed
		st.OK += s.OK
		st.Errors += s.Failed
		st.Rejected += s.Rejected
		st.Timeouts += s.Timeouts
		st.Retries += s.Retries
		st.Offered += s.Messages
		st.Attempts += s.Messages + s.Duplicates + s.Retries
		if len(c.bars) > 0 && h == nil {
			h = hdrhistogram.New(1, 60_000_000, 3)
		}
		for _, b := range c.bars {
			_ = h.RecordValues(b.v, b.n)
		}
	}
	if h != nil && h.TotalCount() > 0 {
		ms := func(q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1000 }
		st.P50, st.P95, st.P99, st.P999 = ms(50), ms(95), ms(99), ms(99.9)
		st.Hist = h
	}
	if st.WindowS > 0 {
		st.Throughput = float64(st.OK) / st.WindowS
	}
	return st
}

// settledIn reports whether c finished by the SettleBy of a span it lies in
// (any span without one settles it).
func settledIn(c *chunk, spans []Span) bool {
	for _, s := range spans {
		if c.start.Before(s.Start) || c.end.After(s.End) {
			continue
		}
		if s.SettleBy.IsZero() || (c.done && !c.finished.After(s.SettleBy)) {
			return true
		}
	}
	return false
}

func inSpans(start, end time.Time, spans []Span) bool {
	for _, s := range spans {
		if !start.Before(s.Start) && !end.After(s.End) {
			return true
		}
	}
	return false
}

// Metrics turns stats into the probe's named values.
func (s Stats) Metrics() engine.Metrics {
	m := engine.Metrics{"requests": float64(s.Requests), "errors": float64(s.Errors), "ok": float64(s.OK),
		"rejected": float64(s.Rejected), "timeouts": float64(s.Timeouts), "retries": float64(s.Retries), "attempts": float64(s.Attempts),
		"throughput": s.Throughput, "window_s": s.WindowS}
	if s.Requests > 0 {
		m["success_ratio"] = s.SuccessRatio()
	}
	if s.Hist != nil {
		m["p50_ms"], m["p95_ms"], m["p99_ms"], m["p999_ms"] = s.P50, s.P95, s.P99, s.P999
	}
	return m
}

// Settled reports whether every chunk that started before t has finished:
// no message offered before t is still being retried.
func (p *Probe) Settled(t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.chunks {
		if c.start.Before(t) && !c.done {
			return false
		}
	}
	return true
}

// recoveryChunks is how many finished chunks since a recovery Recovered
// waits for at most: an arm that still times out after that many does so
// on its own, not because of the fault.
const recoveryChunks = 3

// Recovered reports whether every arm has served load cleanly since t: its
// latest finished chunk that started at or after t had no timeout and no
// failed message, or it has finished recoveryChunks chunks since t. A
// cluster that answers its health checks can still be catching up (a
// raft log replayed after a partition) and time out requests for a
// moment; a judge's steady window that starts then measures the fault,
// not the build.
func (p *Probe) Recovered(t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for arm := range p.cfg.Generators {
		var last *chunk
		n := 0
		for _, c := range p.chunks {
			if c.arm != arm || !c.done || c.start.Before(t) {
				continue
			}
			n++
			if last == nil || c.start.After(last.start) {
				last = c
			}
		}
		if last == nil {
			return false
		}
		if n < recoveryChunks && (last.sum.Timeouts > 0 || last.sum.Failed > 0) {
			return false
		}
	}
	return true
}

// Chunk is the length of one load chunk.
func (p *Probe) Chunk() time.Duration { return p.cfg.Chunk }

// Observe summarises the finished chunks of every arm within w. It does not
// wait for chunks still in flight; a window with no finished chunk on any
// arm is an error (the probe could not observe it).
func (p *Probe) Observe(_ context.Context, w engine.Window) (engine.Observation, error) {
	o := engine.Observation{Probe: Name, Window: w, Arms: map[engine.Arm]engine.Metrics{}}
	any := false
	for arm := range p.cfg.Generators {
		st := p.Summarize(arm, Span{Start: w.Start, End: w.End})
		if st.Chunks == 0 {
			continue
		}
		any = true
		o.Arms[arm] = st.Metrics()
	}
	if !any {
		return o, engine.E(engine.KindUnavailable, "availability", fmt.Errorf("no finished load chunk in the %s window %s–%s", w.Phase, w.Start.Format(time.TimeOnly), w.End.Format(time.TimeOnly)))
	}
	return o, nil
}

// FaultWindow is one arm's load through one fault.
type FaultWindow struct {
	// Requests, Failed, Timeouts and Retries sum the chunks that overlap
	// the fault, from its injection to its removal: messages with a final
	// outcome, messages definitely not stored, attempts with an unknown
	// outcome, and re-sends after a failed attempt.
	Requests, Failed, Timeouts, Retries int64
	// RecoveryS is how long after the fault's removal the arm was back in
	// its steady state: a chunk without a failed message or a timeout
	// whose p99 latency is within SteadyP99Bound of the steady state before
	// the fault. 0 when the first chunk after the removal is steady, else
	// the start of the first steady chunk; its resolution is one chunk.
	// Recovered is false when no steady chunk followed in the data.
	RecoveryS float64
	Recovered bool
	// SteadyP99MS is the p99 latency of the arm's chunks in the
	// steadyBefore before the injection (0: none measured).
	SteadyP99MS float64
}

// steadyBefore is how much load before a fault is its steady state.
const steadyBefore = 5 * time.Second

// SteadyP99Bound is the latency a chunk may have to count as steady
// after a fault: twice the steady p99, and at least 50 ms above it (short
// steady windows have noisy tails).
func SteadyP99Bound(steadyP99MS float64) float64 {
	return max(2*steadyP99MS, steadyP99MS+50)
}

// Fault measures arm's load through a fault injected at applied and
// removed at removed.
func (p *Probe) Fault(arm engine.Arm, applied, removed time.Time) FaultWindow {
	p.mu.Lock()
	defer p.mu.Unlock()
	var fw FaultWindow
	var after, before []*chunk
	for _, c := range p.chunks {
		if c.arm != arm || !c.done {
			continue
		}
		if c.end.After(applied) && c.start.Before(removed) {
			fw.Requests += c.sum.OK + c.sum.Failed
			fw.Failed += c.sum.Failed
			fw.Timeouts += c.sum.Timeouts
			fw.Retries += c.sum.Retries
		}
		if !c.start.Before(removed) {
			after = append(after, c)
		}
		if !c.end.After(applied) && !c.start.Before(applied.Add(-steadyBefore)) {
			before = append(before, c)
		}
	}
	fw.SteadyP99MS = chunksP99(before)
	sort.Slice(after, func(i, j int) bool { return after[i].start.Before(after[j].start) })
	for i, c := range after {
		if c.sum.Failed > 0 || c.sum.Timeouts > 0 || c.sum.OK+c.sum.Failed == 0 {
			continue
		}
		if fw.SteadyP99MS > 0 && chunksP99([]*chunk{c}) > SteadyP99Bound(fw.SteadyP99MS) {
			continue
		}
		fw.Recovered = true
		if i > 0 {
			fw.RecoveryS = c.start.Sub(removed).Seconds()
		}
		break
	}
	return fw
}

// chunksP99 is the p99 latency (ms) of the chunks' merged histograms; 0
// when they hold no latency.
func chunksP99(cs []*chunk) float64 {
	var total int64
	for _, c := range cs {
		for _, b := range c.bars {
			total += b.n
		}
	}
	if total == 0 {
		return 0
	}
	type vb struct{ v, n int64 }
	var all []vb
	for _, c := range cs {
		for _, b := range c.bars {
			all = append(all, vb{b.v, b.n})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v < all[j].v })
	rank := int64(math.Ceil(0.99 * float64(total)))
	var seen int64
	for _, b := range all {
		seen += b.n
		if seen >= rank {
			return float64(b.v) / 1000
		}
	}
	return float64(all[len(all)-1].v) / 1000
}

// ChunkStats is one finished load chunk of one arm: the raw outcome behind
// the latency and session dimensions.
type ChunkStats struct {
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Requests int64     `json:"requests"`
	Messages int64     `json:"messages"`
	OK       int64     `json:"ok"`
	Failed   int64     `json:"failed"`
	Timeouts int64     `json:"timeouts"`
	Retries  int64     `json:"retries"`
	P50MS    float64   `json:"p50_ms"`
	P99MS    float64   `json:"p99_ms"`
}

// Chunks returns arm's finished chunks in start order.
func (p *Probe) Chunks(arm engine.Arm) []ChunkStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []ChunkStats
	for _, c := range p.chunks {
		if c.arm != arm || !c.done || c.sum.Messages == 0 {
			continue
		}
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		out = append(out, ChunkStats{Start: c.start, End: c.end, Requests: c.sum.Requests, Messages: c.sum.Messages, OK: c.sum.OK,
			Failed: c.sum.Failed, Timeouts: c.sum.Timeouts, Retries: c.sum.Retries, P50MS: ms(c.sum.P50), P99MS: ms(c.sum.P99)})
	}
	return out
}
