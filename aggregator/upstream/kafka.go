package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kafkaAdapter is a member of a Kafka consumer group (franz-go, cooperative
// sticky balancing). Each assigned partition is a lane: its records are
// submitted in offset order, one batch at a time, and its offset is
// committed only after the batch is stored or dead-lettered. On a revoke
// the member stops taking records of the revoked partitions, drains the
// batch in flight, commits what was stored and only then lets the
// rebalance go on.
type kafkaAdapter struct {
	cfg  Config
	p    *pipeline
	log  *slog.Logger
	node string

	mu    sync.Mutex
	lanes map[int32]*kafkaLane

	adminMu sync.Mutex
	admin   *kgo.Client
	joined  atomic.Bool
}

func newKafkaAdapter(cfg Config, p *pipeline, opts Options) *kafkaAdapter {
	return &kafkaAdapter{cfg: cfg, p: p, log: opts.Logger.With("upstream", cfg.Name), node: opts.Node, lanes: map[int32]*kafkaLane{}}
}

// kafkaLane is one assigned partition.
type kafkaLane struct {
	part   int32
	ch     chan []*kgo.Record
	ctx    context.Context
	cancel context.CancelFunc
	stop   chan struct{} // closed: take nothing more
	done   chan struct{} // closed when the lane's goroutine ended

	mu        sync.Mutex
	stored    int64 // next offset to commit (-1: nothing stored yet)
	epoch     int32
	committed int64
}

func (l *kafkaLane) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

func (a *kafkaAdapter) assigned() []int32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]int32, 0, len(a.lanes))
	for p := range a.lanes {
		out = append(out, p)
	}
	return out
}

func (a *kafkaAdapter) consume(ctx context.Context) error {
	var cl *kgo.Client
	startLane := func(part int32) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.lanes[part] != nil {
			return
		}
		lctx, cancel := context.WithCancel(context.Background())
		l := &kafkaLane{part: part, ch: make(chan []*kgo.Record, 4), ctx: lctx, cancel: cancel, stop: make(chan struct{}), done: make(chan struct{}), stored: -1, committed: -1}
		a.lanes[part] = l
		go a.runLane(l)
	}
	// endLanes stops the lanes of parts: drain (finish the batch in flight)
	// and commit, or — when the partitions are lost or the defect is on —
	// abandon what is in flight.
	endLanes := func(ctx context.Context, parts []int32, drain bool) {
		var ls []*kafkaLane
		a.mu.Lock()
		for _, p := range parts {
			if l := a.lanes[p]; l != nil {
				ls = append(ls, l)
				delete(a.lanes, p)
			}
		}
		a.mu.Unlock()
		for _, l := range ls {
			close(l.stop)
			if !drain {
				l.cancel()
			}
		}
		grace := time.NewTimer(a.cfg.SessionTimeout)
		defer grace.Stop()
		for _, l := range ls {
			select {
			case <-l.done:
			case <-grace.C:
				a.log.Warn("kafka: a revoked partition's batch did not finish in time; abandoning it (it will be re-read)", "partition", l.part)
				l.cancel()
				<-l.done
			}
		}
		if drain && cl != nil {
			a.commit(ctx, cl, ls)
		}
		for _, l := range ls {
			l.cancel()
		}
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(a.cfg.Brokers...),
		kgo.ClientID("chaosgate-" + a.node),
		kgo.ConsumerGroup(a.cfg.Group),
		kgo.ConsumeTopics(a.cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(a.cfg.SessionTimeout),
		kgo.HeartbeatInterval(max(a.cfg.SessionTimeout/5, 100*time.Millisecond)),
		kgo.RebalanceTimeout(2 * a.cfg.SessionTimeout),
		kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 250 * time.Millisecond }),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			for _, p := range m[a.cfg.Topic] {
				startLane(p)
			}
			a.joined.Store(true)
			a.p.m.rebalances.WithLabelValues(a.cfg.Name, "assigned").Inc()
			a.log.Info("kafka partitions assigned", "partitions", m[a.cfg.Topic])
		}),
		kgo.OnPartitionsRevoked(func(rctx context.Context, _ *kgo.Client, m map[string][]int32) {
			if len(m[a.cfg.Topic]) == 0 {
				return
			}
			a.p.m.rebalances.WithLabelValues(a.cfg.Name, "revoked").Inc()
			a.log.Info("kafka partitions revoked: draining and committing before the rebalance goes on", "partitions", m[a.cfg.Topic])
			endLanes(rctx, m[a.cfg.Topic], !a.cfg.CommitBeforeStore)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			a.p.m.rebalances.WithLabelValues(a.cfg.Name, "lost").Inc()
			a.log.Warn("kafka partitions lost (session expired): abandoning what is in flight; the new owner re-reads it", "partitions", m[a.cfg.Topic])
			endLanes(context.Background(), m[a.cfg.Topic], false)
		}),
	}
	var err error
	cl, err = kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	stopCommitter := make(chan struct{})
	committerDone := make(chan struct{})
	go func() {
		defer close(committerDone)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopCommitter:
				return
			case <-t.C:
			}
			a.mu.Lock()
			ls := make([]*kafkaLane, 0, len(a.lanes))
			for _, l := range a.lanes {
				ls = append(ls, l)
			}
			a.mu.Unlock()
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			a.commit(cctx, cl, ls)
			cancel()
		}
	}()
	defer func() {
		a.joined.Store(false)
		close(stopCommitter)
		<-committerDone
		// Leaving: finish and commit every lane, then leave the group (the
		// final revoke finds no lanes left).
		a.mu.Lock()
		var parts []int32
		for p := range a.lanes {
			parts = append(parts, p)
		}
		a.mu.Unlock()
		cctx, cancel := context.WithTimeout(context.Background(), a.cfg.SessionTimeout)
		endLanes(cctx, parts, !a.cfg.CommitBeforeStore)
		cancel()
		cl.Close()
	}()
	for ctx.Err() == nil {
		if err := a.p.waitAdmitted(ctx); err != nil {
			break
		}
		fs := cl.PollRecords(ctx, a.cfg.Batch*4)
		if fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(topic string, part int32, err error) {
			if ctx.Err() == nil {
				a.log.Debug("kafka fetch", "topic", topic, "partition", part, "err", err)
			}
		})
		fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
			if len(ftp.Records) == 0 {
				return
			}
			a.mu.Lock()
			l := a.lanes[ftp.Partition]
			a.mu.Unlock()
			if l == nil || l.stopped() {
				return // revoked meanwhile: the new owner reads them from the committed offset
			}
			if a.cfg.CommitBeforeStore {
				// DEFECT: the offsets are committed before the aggregator
				// has the records.
				last := ftp.Records[len(ftp.Records)-1]
				cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{a.cfg.Topic: {ftp.Partition: {Epoch: last.LeaderEpoch, Offset: last.Offset + 1}}}, nil)
			}
			for recs := range chunks(ftp.Records, a.cfg.Batch) {
				select {
				case l.ch <- recs:
				case <-l.stop:
					return
				case <-ctx.Done():
					return
				}
			}
		})
	}
	return nil
}

func chunks(rs []*kgo.Record, n int) func(func([]*kgo.Record) bool) {
	return func(yield func([]*kgo.Record) bool) {
		for len(rs) > 0 {
			k := min(n, len(rs))
			if !yield(rs[:k]) {
				return
			}
			rs = rs[k:]
		}
	}
}

// runLane submits a partition's batches in order and records what is
// stored.
func (a *kafkaAdapter) runLane(l *kafkaLane) {
	defer close(l.done)
	ds := make([]Delivery, 0, a.cfg.Batch)
	for {
		var recs []*kgo.Record
		select {
		case <-l.stop:
			return // queued batches are dropped: the next owner reads them
		case recs = <-l.ch:
		}
		ds = ds[:0]
		for _, r := range recs {
			ds = append(ds, Delivery{Payload: r.Value, Partition: r.Partition, Offset: r.Offset})
		}
		if err := a.p.process(l.ctx, ds); err != nil {
			return
		}
		last := recs[len(recs)-1]
		l.mu.Lock()
		l.stored, l.epoch = last.Offset+1, last.LeaderEpoch
		l.mu.Unlock()
	}
}

// commit commits the stored offsets of ls that advanced.
func (a *kafkaAdapter) commit(ctx context.Context, cl *kgo.Client, ls []*kafkaLane) {
	if a.cfg.CommitBeforeStore {
		return // the defect committed at fetch time
	}
	offs := map[int32]kgo.EpochOffset{}
	for _, l := range ls {
		l.mu.Lock()
		if l.stored > l.committed {
			offs[l.part] = kgo.EpochOffset{Epoch: l.epoch, Offset: l.stored}
		}
		l.mu.Unlock()
	}
	if len(offs) == 0 {
		return
	}
	var cerr error
	cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{a.cfg.Topic: offs}, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		cerr = err
		if err == nil {
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if p.ErrorCode != 0 {
						cerr = fmt.Errorf("partition %d: error code %d", p.Partition, p.ErrorCode)
					}
				}
			}
		}
	})
	if cerr != nil {
		a.log.Warn("kafka commit failed; the records will be re-read (dedup holds)", "err", cerr)
		return
	}
	for _, l := range ls {
		if o, ok := offs[l.part]; ok {
			l.mu.Lock()
			l.committed = max(l.committed, o.Offset)
			l.mu.Unlock()
		}
	}
}

// offsets measures the group's lag per partition of the topic.
func (a *kafkaAdapter) offsets(ctx context.Context) (map[string]Offsets, error) {
	a.adminMu.Lock()
	if a.admin == nil {
		cl, err := kgo.NewClient(kgo.SeedBrokers(a.cfg.Brokers...), kgo.ClientID("chaosgate-"+a.node+"-lag"))
		if err != nil {
			a.adminMu.Unlock()
			return nil, err
		}
		a.admin = cl
	}
	adm := kadm.NewClient(a.admin)
	a.adminMu.Unlock()
	ends, err := adm.ListEndOffsets(ctx, a.cfg.Topic)
	if err != nil {
		return nil, err
	}
	if err := ends.Error(); err != nil {
		return nil, err
	}
	starts, err := adm.ListStartOffsets(ctx, a.cfg.Topic)
	if err != nil {
		return nil, err
	}
	commits, err := adm.FetchOffsets(ctx, a.cfg.Group)
	if err != nil {
		return nil, err
	}
	out := map[string]Offsets{}
	for part, e := range ends[a.cfg.Topic] {
		committed := int64(0)
		if s, ok := starts.Lookup(a.cfg.Topic, part); ok && s.Offset > 0 {
			committed = s.Offset
		}
		if c, ok := commits.Lookup(a.cfg.Topic, part); ok && c.Err == nil && c.At >= 0 {
			committed = c.At
		}
		out[strconv.Itoa(int(part))] = Offsets{Committed: committed, End: e.Offset, Lag: max(0, e.Offset-committed)}
	}
	return out, nil
}

func (a *kafkaAdapter) ready() bool { return a.joined.Load() }

func (a *kafkaAdapter) close() {
	a.adminMu.Lock()
	defer a.adminMu.Unlock()
	if a.admin != nil {
		a.admin.Close()
		a.admin = nil
	}
}
