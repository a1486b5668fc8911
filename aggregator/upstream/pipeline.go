package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/sony/gobreaker/v2"

	"github.com/chaosgate/chaosgate/internal/waitctx"
)

// Status is what became of one submitted message.
type Status uint8

// Statuses of an Outcome.
const (
	// Stored: the aggregator committed the message (ok or duplicate): it
	// may be acknowledged upstream.
	Stored Status = 1 + iota
	// Transient: not stored this time; a retry may succeed.
	Transient
	// Permanent: the aggregator will never store it (malformed, late, stale
	// epoch): it is dead-lettered at once.
	Permanent
)

// Answer is the aggregator's answer for one submitted message.
type Answer struct {
	Status Status
	// Duplicate: stored earlier (an acknowledgement all the same).
	Duplicate bool
	// Reason says why a message was not stored.
	Reason string
	// Identity of the message when it could be decoded.
	MsgID, Source, Key string
	Seq                uint64
	// Where it was stored.
	Partition int
	Epoch     uint64
	Node      string
}

// Sink is the aggregator's ingest path as the upstreams see it.
type Sink interface {
	// Submit stores payloads (each one message of the aggregator's message
	// contract, as JSON) and returns one outcome per payload, in order.
	Submit(ctx context.Context, payloads [][]byte) []Answer
	// Healthy reports whether the downstream can commit at all (every
	// partition has a leader and this node caught up), and why not.
	Healthy() (bool, string)
}

// Delivery is one message taken from an upstream.
type Delivery struct {
	Payload []byte
	// Partition and Offset are the message's position upstream (-1: none).
	Partition int32
	Offset    int64
}

// errors fed to the breaker.
var (
	errDownstream = errors.New("downstream unavailable")
	errSlow       = errors.New("downstream slow")
	errExcluded   = errors.New("message-level failure")
	errUnhealthy  = errors.New("downstream unhealthy")
)

// pipeline submits an upstream's deliveries with retries, dead-lettering
// and circuit breaking. It is shared by the upstream's lanes.
type pipeline struct {
	cfg  Config
	node string
	sink Sink
	dlq  *DLQ
	m    *upMetrics
	log  *slog.Logger
	br   *gobreaker.TwoStepCircuitBreaker[struct{}]

	lagAlert atomic.Bool
	// paused is set by the admin API (pause, backlog); consumption stops
	// at the next delivery.
	pauseMu sync.Mutex
	paused  bool
	resume  chan struct{}
}

func newPipeline(cfg Config, node string, sink Sink, dlq *DLQ, m *upMetrics, log *slog.Logger) *pipeline {
	p := &pipeline{cfg: cfg, node: node, sink: sink, dlq: dlq, m: m, log: log, resume: make(chan struct{})}
	p.br = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        cfg.Name,
		MaxRequests: 1,
		Timeout:     cfg.Breaker.Timeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= uint32(cfg.Breaker.After) || (p.lagAlert.Load() && c.ConsecutiveFailures > 0)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errExcluded) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			m.breakerTransitions.WithLabelValues(cfg.Name, from.String(), to.String()).Inc()
			lvl := slog.LevelInfo
			if to == gobreaker.StateOpen {
				lvl = slog.LevelWarn
			}
			log.Log(context.Background(), lvl, "upstream circuit breaker "+to.String(), "upstream", cfg.Name, "from", from.String(), "to", to.String(),
				"effect", map[gobreaker.State]string{gobreaker.StateOpen: "consumption paused", gobreaker.StateHalfOpen: "probing the downstream", gobreaker.StateClosed: "consuming"}[to])
		},
	})
	return p
}

// breakerState is the breaker's state (closed 0, half-open 1, open 2).
func (p *pipeline) breakerState() gobreaker.State { return p.br.State() }

// setPaused pauses or resumes consumption (admin API).
func (p *pipeline) setPaused(v bool) {
	p.pauseMu.Lock()
	defer p.pauseMu.Unlock()
	if p.paused == v {
		return
	}
	p.paused = v
	if !v {
		close(p.resume)
		p.resume = make(chan struct{})
	}
}

// isPaused reports the admin pause and the resume channel.
func (p *pipeline) isPaused() (bool, <-chan struct{}) {
	p.pauseMu.Lock()
	defer p.pauseMu.Unlock()
	return p.paused, p.resume
}

// Blocked reports whether consumption is paused (admin pause or an open
// breaker): adapters do not fetch while it is.
func (p *pipeline) blocked() bool {
	paused, _ := p.isPaused()
	return paused || p.br.State() == gobreaker.StateOpen
}

// waitAdmitted blocks while the upstream is paused or its breaker is open;
// when the breaker is half-open, one caller probes the downstream's health
// and closes or re-opens it.
func (p *pipeline) waitAdmitted(ctx context.Context) error {
	for {
		if paused, resume := p.isPaused(); paused {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-resume:
			}
			continue
		}
		switch p.br.State() {
		case gobreaker.StateClosed:
			return nil
		case gobreaker.StateHalfOpen:
			done, err := p.br.Allow()
			if err == nil {
				if ok, why := p.sink.Healthy(); ok {
					done(nil)
					continue
				} else {
					p.log.Warn("upstream breaker probe: downstream still unhealthy", "upstream", p.cfg.Name, "reason", why)
					done(errUnhealthy)
				}
			}
		}
		if err := waitctx.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// process stores every delivery of ds or dead-letters it. It returns nil
// once each delivery is accounted for (stored, or durably in the DLQ), and
// an error only when ctx ends first — then nothing of ds may be
// acknowledged upstream.
func (p *pipeline) process(ctx context.Context, ds []Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	start := time.Now()
	pending := make([]int, len(ds))
	for i := range pending {
		pending[i] = i
	}
	attempts := make([]int, len(ds))
	reasons := make([]string, len(ds))
	bo := &backoff.ExponentialBackOff{InitialInterval: p.cfg.Retry.Initial, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: p.cfg.Retry.Max}
	bo.Reset()
	payloads := make([][]byte, 0, len(ds))
	for len(pending) > 0 {
		if err := p.waitAdmitted(ctx); err != nil {
			return err
		}
		done, err := p.br.Allow()
		if err != nil { // the breaker opened in between
			continue
		}
		payloads = payloads[:0]
		for _, i := range pending {
			payloads = append(payloads, ds[i].Payload)
		}
		t0 := time.Now()
		outs := p.sink.Submit(ctx, payloads)
		elapsed := time.Since(t0)
		if ctx.Err() != nil {
			done(errExcluded)
			return ctx.Err()
		}
		var retry []int
		stored, transient := 0, 0
		for j, i := range pending {
			o := outs[j]
			switch o.Status {
			case Stored:
				stored++
				res := "stored"
				if o.Duplicate {
					res = "duplicate"
				}
				p.m.messages.WithLabelValues(p.cfg.Name, res).Inc()
			case Permanent:
				if err := p.deadLetter(ctx, ds[i], o, attempts[i]+1, o.Reason); err != nil {
					reasons[i] = ""
					retry = append(retry, i) // not accounted for yet: keep it
				}
			default:
				transient++
				reasons[i] = o.Reason
				retry = append(retry, i)
			}
		}
		healthy, why := true, ""
		if transient > 0 {
			healthy, why = p.sink.Healthy()
		}
		switch {
		case p.cfg.Breaker.SlowCall > 0 && elapsed > p.cfg.Breaker.SlowCall:
			done(errSlow)
		case transient > 0 && stored == 0 && !healthy:
			done(errDownstream)
		case transient > 0 && stored == 0:
			done(errExcluded)
		default:
			done(nil)
		}
		var keep []int
		for _, i := range retry {
			if reasons[i] == "" { // its dead-letter write failed: try it again as is
				keep = append(keep, i)
				continue
			}
			if !healthy || p.br.State() != gobreaker.StateClosed {
				// the downstream is at fault, not the message
				keep = append(keep, i)
				continue
			}
			attempts[i]++
			if attempts[i] >= p.cfg.Retry.MaxAttempts {
				o := outs[indexOf(pending, i)]
				reason := fmt.Sprintf("retries exhausted after %d attempts: %s", attempts[i], reasons[i])
				if err := p.deadLetter(ctx, ds[i], o, attempts[i], reason); err == nil {
					continue
				}
			}
			keep = append(keep, i)
		}
		if len(keep) > 0 {
			p.m.retries.WithLabelValues(p.cfg.Name).Add(float64(len(keep)))
			if !healthy {
				p.log.Debug("upstream: downstream unhealthy, retrying", "upstream", p.cfg.Name, "pending", len(keep), "reason", why)
			}
			if err := waitctx.Sleep(ctx, bo.NextBackOff()); err != nil {
				return err
			}
		}
		pending = keep
	}
	p.m.processSeconds.WithLabelValues(p.cfg.Name).Observe(time.Since(start).Seconds())
	return nil
}

func indexOf(xs []int, v int) int {
	for j, x := range xs {
		if x == v {
			return j
		}
	}
	return 0
}

// deadLetter writes one delivery to the DLQ (fsynced) with its reason.
func (p *pipeline) deadLetter(ctx context.Context, d Delivery, o Answer, attempts int, reason string) error {
	l := Letter{Upstream: p.cfg.Name, Node: p.node, MsgID: o.MsgID, Source: o.Source, Seq: o.Seq, Key: o.Key,
		Reason: reason, Attempts: attempts, Payload: string(d.Payload)}
	if d.Partition >= 0 {
		v := d.Partition
		l.UpstreamPartition = &v
	}
	if d.Offset >= 0 {
		v := d.Offset
		l.UpstreamOffset = &v
	}
	l, err := p.dlq.Add(l)
	if err != nil {
		p.log.Error("dead-letter queue write failed; the message stays unacknowledged upstream", "upstream", p.cfg.Name, "msg_id", o.MsgID, "err", err)
		_ = waitctx.Sleep(ctx, time.Second)
		return err
	}
	p.m.deadLettered.WithLabelValues(p.cfg.Name, reasonKind(reason)).Inc()
	p.log.Warn("message dead-lettered", "upstream", p.cfg.Name, "dlq_id", l.ID, "msg_id", o.MsgID, "source_id", o.Source, "seq", o.Seq,
		"attempts", attempts, "reason", reason)
	return nil
}

// reasonKind is a bounded label for a dead-letter reason.
func reasonKind(reason string) string {
	switch {
	case strings.HasPrefix(reason, "retries exhausted"):
		return "retries_exhausted"
	case strings.HasPrefix(reason, "invalid"):
		return "invalid"
	case strings.HasPrefix(reason, "late"):
		return "late"
	case strings.HasPrefix(reason, "stale_epoch"):
		return "stale_epoch"
	}
	return "other"
}
