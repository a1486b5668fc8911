// Package overload plays the overload fault: a burst far above the
// sustainable rate, sent by chaosgate's own load generator to one arm for
// the fault's duration. It needs no agent in the arm, so it plays the same
// on every target — the local target's nodes and a Kubernetes arm's pods —
// and its confirmation measures what the burst achieved and what the arm
// did with it (shed with HTTP 429, parked in queues, held in flight).
//
// The burst's messages go into the arm's history like the steady load's,
// so the consistency checker holds them to the same invariants. A burst
// lives in chaosgate's process: a crash of chaosgate ends it, so recovery
// only waits for a burst still running.
package overload

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/internal/waitctx"
)

// Backend names the overload injector in an applied fault.
const Backend = "load-generator"

// Config is what a burst needs from the target.
type Config struct {
	// Burst returns the load-generator settings of a burst against an
	// arm — its addresses, partitions and history, so the burst's
	// messages are checked like any others; nil: overload is refused.
	Burst func(arm engine.Arm) (load.Config, error)
	// NodeHTTP is a node's own HTTP address, scraped (GET /metrics) for
	// the aggregator's shedding counters; nil, or a node that does not
	// answer them: the burst's own counts confirm it alone.
	NodeHTTP func(arm engine.Arm, node string) (string, error)
}

// Injector plays overload bursts. It implements engine.Injector,
// engine.Preparer and engine.Confirmer.
type Injector struct {
	cfg Config

	mu     sync.Mutex
	bursts map[string]*burst // by fault ID
}

// New returns an overload injector.
func New(cfg Config) *Injector {
	return &Injector{cfg: cfg, bursts: map[string]*burst{}}
}

var (
	_ engine.Injector  = (*Injector)(nil)
	_ engine.Preparer  = (*Injector)(nil)
	_ engine.Confirmer = (*Injector)(nil)
)

// burst is one overload burst in progress.
type burst struct {
	gen    *load.Generator
	start  time.Time
	before nodeLoad
	done   chan struct{}
	sum    load.Summary
	err    error
}

// nodeLoad sums what an arm's nodes report about load shedding.
type nodeLoad struct {
	rejected, requests, code429 float64
	queued, inflight            float64
	nodes                       int
}

// Default settings of an overload burst.
const (
	DefaultBatch        = 20
	burstSources        = 16
	burstRequestTimeout = 2 * time.Second
)

// BatchOf is the messages per request of a burst: the fault's batch, or
// DefaultBatch.
func BatchOf(f engine.Fault) int {
	if f.Batch > 0 {
		return f.Batch
	}
	return DefaultBatch
}

// Describe fills what an applied burst says before it starts: every node
// of the arm is affected, and the detail names the burst.
func Describe(a *engine.Applied, t engine.Target, f engine.Fault) {
	a.Affected = append([]string(nil), t.Nodes...)
	a.Detail = fmt.Sprintf("burst of %.0f msg/s (%d per request) for %s through chaosgate's load generator", f.Rate, BatchOf(f), f.Duration)
}

// Prepare says what Inject will do; a burst has nothing to undo.
func (in *Injector) Prepare(_ context.Context, t engine.Target, f engine.Fault) (engine.Applied, error) {
	if f.Kind != engine.Overload {
		return engine.Applied{}, engine.E(engine.KindInvalid, "prepare", fmt.Errorf("the overload injector cannot play %s", f.Kind))
	}
	a := engine.Applied{ID: f.ID, Kind: f.Kind, Target: t, Fault: f, Backend: Backend}
	Describe(&a, t, f)
	return a, nil
}

// Inject starts the burst and returns at once; it runs for the fault's
// duration.
func (in *Injector) Inject(ctx context.Context, t engine.Target, f engine.Fault) (engine.Applied, error) {
	a, err := in.Prepare(ctx, t, f)
	if err != nil {
		return a, err
	}
	if err := in.Start(ctx, t, f); err != nil {
		return a, err
	}
	a.At = time.Now()
	return a, nil
}

// Start starts the burst against the arm (its load generator
// settings come from Config.Burst, stats sampling and caps for I6
// included) and returns at once; it runs for the fault's duration.
func (in *Injector) Start(ctx context.Context, t engine.Target, f engine.Fault) error {
	in.mu.Lock()
	_, running := in.bursts[f.ID]
	in.mu.Unlock()
	if running {
		return nil
	}
	if in.cfg.Burst == nil {
		return engine.E(engine.KindInvalid, "overload", errors.New("no load generator configured for bursts"))
	}
	if f.Rate <= 0 || f.Duration <= 0 {
		return engine.E(engine.KindInvalid, "overload", fmt.Errorf("rate %g over %s", f.Rate, f.Duration))
	}
	lc, err := in.cfg.Burst(t.Arm)
	if err != nil {
		return engine.E(engine.KindUnavailable, "overload of "+t.Arm.String(), err)
	}
	h := fnv.New32a()
	h.Write([]byte(f.ID))
	lc.Name = fmt.Sprintf("burst-%08x", h.Sum32())
	lc.IDNode = 1000 + int64(t.Arm)
	lc.Sources, lc.Dup, lc.Reorder, lc.StateClients = burstSources, 0, 0, 0
	lc.Batch, lc.PayloadSize = BatchOf(f), f.Payload
	// A burst sheds what the arm refuses: one retry at most, none after
	// the burst, so it ends with the fault.
	lc.Timeout, lc.MaxRetries, lc.RetryGrace = burstRequestTimeout, 1, time.Millisecond
	lc.NoDrain, lc.FromStart = true, true
	g, err := load.New(ctx, lc)
	if err != nil {
		return engine.E(engine.KindUnavailable, "overload of "+t.Arm.String(), err)
	}
	b := &burst{gen: g, start: time.Now(), before: in.nodeLoad(ctx, t), done: make(chan struct{})}
	in.mu.Lock()
	in.bursts[f.ID] = b
	in.mu.Unlock()
	go func() {
		defer close(b.done)
		defer g.Close()
		// Never cancelled mid-flight: a request cut off would leave its
		// messages with no outcome the history can tell.
		b.sum, b.err = g.Run(context.WithoutCancel(ctx), load.Phase{Name: "overload", Arm: t.Arm.String(), Duration: f.Duration, Rate: f.Rate})
	}()
	return nil
}

// Confirm measures the burst from a moment after it began until
// the arm felt it or the burst ended: the rate it achieved, what the arm
// rejected (429) and the queue the arm holds. On a loaded host a burst's
// first requests can take longer than that moment to reach the arm, so
// one early look would call a burst that the arm then felt a mismatch.
// An arm can feel a burst so hard that its nodes do not answer a scrape
// (requests time out): the burst is confirmed, and Confirm looks again
// until the nodes answer or the burst ends, so that the measurement says
// what the arm shed and held whenever the arm can tell.
func (in *Injector) Confirm(ctx context.Context, a engine.Applied) engine.ConfirmResult {
	in.mu.Lock()
	b := in.bursts[a.ID]
	in.mu.Unlock()
	if b == nil {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: "no burst running"}
	}
	wait := min(700*time.Millisecond, a.Fault.Duration/2)
	if err := waitctx.Sleep(ctx, time.Until(b.start.Add(wait))); err != nil {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: err.Error()}
	}
	var felt *engine.ConfirmResult // the latest look that confirmed, without the nodes' counters
	var lastChance time.Time       // after the burst: until when the nodes get to answer
	for {
		res, final, scraped := in.lookAtBurst(ctx, a, b)
		if final && !scraped && res.Outcome == engine.Confirmed {
			// Nodes still busy with the burst's last requests answer
			// once those time out.
			if lastChance.IsZero() {
				lastChance = time.Now().Add(overloadAfterBurstWait)
			}
			if time.Now().Before(lastChance) {
				felt, final = &res, false
			}
		}
		switch {
		case res.Outcome == engine.Confirmed && (scraped || final):
			return res
		case res.Outcome == engine.Confirmed:
			felt = &res
		case final:
			if felt != nil {
				return *felt
			}
			return res
		}
		select {
		case <-ctx.Done():
			if felt != nil {
				return *felt
			}
			return res
		case <-doneOrNil(b.done, lastChance.IsZero()):
		case <-time.After(overloadLookInterval):
		}
	}
}

// overloadLookInterval is the pause between two looks at a burst that the
// arm has not yet felt.
const overloadLookInterval = 250 * time.Millisecond

// overloadAfterBurstWait is how long after a felt burst Confirm keeps
// asking nodes that did not answer a scrape for their counters: longer than
// a burst request's timeout.
const overloadAfterBurstWait = 3 * time.Second

// lookAtBurst is one look at a running (or just finished) burst; final
// says that no later look can change the outcome (the burst ended), and
// scraped that the arm's nodes answered.
func (in *Injector) lookAtBurst(ctx context.Context, a engine.Applied, b *burst) (res engine.ConfirmResult, final, scraped bool) {
	s, ok := b.gen.Live()
	select {
	case <-b.done:
		s, ok, final = b.sum, true, true
	default:
	}
	if !ok {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: "the burst has not started"}, false, false
	}
	now := in.nodeLoad(ctx, a.Target)
	el := time.Since(b.start).Seconds()
	rate := float64(s.Messages) / el
	m := fmt.Sprintf("burst offered %.0f msg/s (asked %.0f) in %d requests over %.1fs: %d acked, %d rejected, %d timed out, p99 %s",
		rate, a.Fault.Rate, s.Requests, el, s.OK, s.Rejected, s.Timeouts, s.P99.Round(time.Millisecond))
	shed := now.rejected - b.before.rejected
	if now.nodes > 0 {
		m += fmt.Sprintf("; the arm's nodes: %.0f HTTP 429, %.0f messages rejected by admission, %.0f parked in queues, %.0f requests in flight",
			now.code429-b.before.code429, shed, now.queued, now.inflight)
	} else {
		m += "; the arm's nodes did not answer a scrape"
	}
	// Confirmed: the burst reached the arm and the arm felt it (it shed,
	// queued, held requests or timed out). The rate the burst achieved is
	// not required: its sources wait for answers, so an arm that holds
	// their requests slows the burst down, and on a loaded host the last
	// arm's burst may offer a small share of the rate while the arm's
	// nodes hold hundreds of requests. A mismatch is a burst that did not
	// reach the arm, or reached it as a trickle it did not feel, by the
	// time it ended.
	out := engine.Inconclusive
	reached := s.OK+s.Rejected+s.Timeouts > 0 || now.inflight > 0 || now.requests > b.before.requests
	felt := s.Rejected > 0 || s.Timeouts > 0 || shed > 0 || now.code429 > b.before.code429 || now.queued > 0 || now.inflight >= float64(2*max(1, now.nodes))
	switch {
	case felt:
		out = engine.Confirmed
	case !reached || rate < 0.1*a.Fault.Rate:
		out = engine.Mismatch
	}
	return engine.ConfirmResult{Outcome: out, Measurement: m}, final, now.nodes > 0
}

// Recover waits for the burst to end (it ends with the fault's
// duration; requests in flight end within their timeout). A burst of a
// crashed run died with it: nothing to undo.
func (in *Injector) Recover(ctx context.Context, a engine.Applied) error {
	in.mu.Lock()
	b := in.bursts[a.ID]
	in.mu.Unlock()
	if b == nil {
		return nil
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		return engine.E(engine.KindUnavailable, "overload "+a.ID, fmt.Errorf("burst still running: %w", ctx.Err()))
	}
	return nil
}

// BurstSummary is the outcome of a finished or running overload burst.
func (in *Injector) BurstSummary(id string) (load.Summary, bool) {
	in.mu.Lock()
	b := in.bursts[id]
	in.mu.Unlock()
	if b == nil {
		return load.Summary{}, false
	}
	select {
	case <-b.done:
		return b.sum, true
	default:
		return b.gen.Live()
	}
}

// nodeLoad scrapes every node of the arm for its shedding counters.
func (in *Injector) nodeLoad(ctx context.Context, t engine.Target) nodeLoad {
	var out nodeLoad
	if in.cfg.NodeHTTP == nil {
		return out
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range t.Nodes {
		addr, err := in.cfg.NodeHTTP(t.Arm, n)
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, ok := scrapeLoad(ctx, addr)
			if !ok {
				return
			}
			mu.Lock()
			out.rejected += l.rejected
			out.requests += l.requests
			out.code429 += l.code429
			out.queued += l.queued
			out.inflight += l.inflight
			out.nodes++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func scrapeLoad(ctx context.Context, addr string) (nodeLoad, bool) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(cctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nodeLoad{}, false
	}
	defer resp.Body.Close()
	var l nodeLoad
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name := line[:i]
		switch {
		case strings.HasPrefix(name, "chaosgate_aggregator_rejected_total"):
			l.rejected += v
		case strings.HasPrefix(name, "chaosgate_aggregator_http_requests_total") && strings.Contains(name, `route="messages"`):
			l.requests += v
			if strings.Contains(name, `code="429"`) {
				l.code429 += v
			}
		case name == "chaosgate_aggregator_queued_unbounded":
			l.queued += v
		case name == "chaosgate_aggregator_inflight_requests":
			l.inflight += v
		}
	}
	return l, true
}

// doneOrNil is done while wake, else nil (a channel that never fires): once
// the burst has ended, its closed done channel must not turn the looks
// into a busy loop.
func doneOrNil(done chan struct{}, wake bool) chan struct{} {
	if wake {
		return done
	}
	return nil
}
