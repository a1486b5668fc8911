package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaosgate/chaosgate/internal/waitctx"
)

// natsAdapter pulls from a durable JetStream consumer shared by the nodes
// (each message goes to one of them) and acknowledges a message only after
// the aggregator stored it or it was dead-lettered. A message whose node
// died unacknowledged is redelivered after AckWait; the aggregator's dedup
// drops what was stored before.
type natsAdapter struct {
	cfg  Config
	p    *pipeline
	log  *slog.Logger
	node string

	monMu sync.Mutex
	mon   *nats.Conn
	bound atomic.Bool
}

func newNATSAdapter(cfg Config, p *pipeline, opts Options) *natsAdapter {
	return &natsAdapter{cfg: cfg, p: p, log: opts.Logger.With("upstream", cfg.Name), node: opts.Node}
}

func (a *natsAdapter) urls() string {
	var u []string
	for _, b := range a.cfg.Brokers {
		u = append(u, "nats://"+b)
	}
	return strings.Join(u, ",")
}

func (a *natsAdapter) connect(name string) (*nats.Conn, error) {
	return nats.Connect(a.urls(), nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.RetryOnFailedConnect(true), nats.Timeout(2*time.Second))
}

func (a *natsAdapter) assigned() []int32 { return nil }

func (a *natsAdapter) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{Durable: a.cfg.Group, AckPolicy: jetstream.AckExplicitPolicy, AckWait: a.cfg.AckWait,
		DeliverPolicy: jetstream.DeliverAllPolicy, FilterSubject: a.cfg.Subject, MaxAckPending: 4 * a.cfg.Batch * 16, MaxDeliver: -1}
}

func (a *natsAdapter) consume(ctx context.Context) error {
	nc, err := a.connect("chaosgate-" + a.node + "-" + a.cfg.Name)
	if err != nil {
		return fmt.Errorf("nats connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	var cons jetstream.Consumer
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cons, err = js.CreateOrUpdateConsumer(cctx, a.cfg.Stream, a.consumerConfig())
		cancel()
		if err == nil {
			a.bound.Store(true)
			defer a.bound.Store(false)
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		a.log.Warn("jetstream consumer not ready (is the stream there and the server up?)", "stream", a.cfg.Stream, "consumer", a.cfg.Group, "err", err)
		if waitctx.Sleep(ctx, time.Second) != nil {
			return nil
		}
	}
	// Messages flow continuously (a pull subscription that keeps up to
	// 2×batch outstanding); they are taken in batches of what is there.
	queue := make(chan jetstream.Msg, a.cfg.Batch)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case queue <- m:
		case <-ctx.Done():
		}
	}, jetstream.PullMaxMessages(2*a.cfg.Batch), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if ctx.Err() == nil {
			a.log.Debug("jetstream consume", "err", err)
		}
	}))
	if err != nil {
		return fmt.Errorf("jetstream consume: %w", err)
	}
	defer cc.Stop()
	ds := make([]Delivery, 0, a.cfg.Batch)
	msgs := make([]jetstream.Msg, 0, a.cfg.Batch)
	for {
		if err := a.p.waitAdmitted(ctx); err != nil {
			return nil
		}
		msgs = msgs[:0]
		select {
		case <-ctx.Done():
			return nil
		case m := <-queue:
			msgs = append(msgs, m)
		}
	fill:
		for len(msgs) < a.cfg.Batch {
			select {
			case m := <-queue:
				msgs = append(msgs, m)
			default:
				break fill
			}
		}
		ds = ds[:0]
		for _, m := range msgs {
			off := int64(-1)
			if md, err := m.Metadata(); err == nil {
				off = int64(md.Sequence.Stream)
			}
			ds = append(ds, Delivery{Payload: m.Data(), Partition: -1, Offset: off})
		}
		if a.cfg.CommitBeforeStore {
			a.ack(msgs) // DEFECT: acknowledged before the aggregator has them
		}
		if err := a.p.process(ctx, ds); err != nil {
			return nil // not acknowledged: redelivered after AckWait
		}
		if !a.cfg.CommitBeforeStore {
			a.ack(msgs)
		}
	}
}

// ack acknowledges msgs; a lost acknowledgement only means a redelivery,
// which the aggregator deduplicates.
func (a *natsAdapter) ack(msgs []jetstream.Msg) {
	for _, m := range msgs {
		if err := m.Ack(); err != nil {
			a.log.Debug("jetstream ack", "err", err)
		}
	}
}

// offsets is the consumer's position: delivered-but-unacknowledged plus
// not-yet-delivered messages are its lag.
func (a *natsAdapter) offsets(ctx context.Context) (map[string]Offsets, error) {
	a.monMu.Lock()
	if a.mon == nil {
		nc, err := a.connect("chaosgate-" + a.node + "-" + a.cfg.Name + "-lag")
		if err != nil {
			a.monMu.Unlock()
			return nil, err
		}
		a.mon = nc
	}
	nc := a.mon
	a.monMu.Unlock()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	cons, err := js.Consumer(ctx, a.cfg.Stream, a.cfg.Group)
	if err != nil {
		return nil, err
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	lag := int64(ci.NumPending) + int64(ci.NumAckPending)
	committed := int64(ci.AckFloor.Stream) + 1
	return map[string]Offsets{"all": {Committed: committed, End: committed + lag, Lag: lag}}, nil
}

func (a *natsAdapter) ready() bool { return a.bound.Load() }

func (a *natsAdapter) close() {
	a.monMu.Lock()
	defer a.monMu.Unlock()
	if a.mon != nil {
		a.mon.Close()
		a.mon = nil
	}
}
