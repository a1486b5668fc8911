package upstream

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// mqttAdapter subscribes (QoS 1, persistent session, manual
// acknowledgements) to its share of the topic shards PREFIX/0..N-1: shard s
// belongs to the node at index s mod len(nodes) of the sorted node ids.
// A shard is consumed in order by one node, so a source that publishes to
// one shard keeps its order. A PUBACK is sent only after the aggregator
// stored the message or it was dead-lettered; the broker keeps what was not
// acknowledged in the node's session and redelivers it when the node is
// back.
type mqttAdapter struct {
	cfg    Config
	p      *pipeline
	log    *slog.Logger
	node   string
	shards []int
	subbed atomic.Bool
}

func newMQTTAdapter(cfg Config, p *pipeline, opts Options) (*mqttAdapter, error) {
	a := &mqttAdapter{cfg: cfg, p: p, log: opts.Logger.With("upstream", cfg.Name), node: opts.Node}
	idx, n := 0, 1
	if len(opts.Nodes) > 0 {
		ids := slices.Sorted(slices.Values(opts.Nodes))
		idx = slices.Index(ids, opts.Node)
		if idx < 0 {
			return nil, fmt.Errorf("upstream %s: node %q is not among the nodes %v", cfg.Name, opts.Node, ids)
		}
		n = len(ids)
	}
	for s := 0; s < cfg.Shards; s++ {
		if s%n == idx {
			a.shards = append(a.shards, s)
		}
	}
	return a, nil
}

func (a *mqttAdapter) assigned() []int32 {
	out := make([]int32, len(a.shards))
	for i, s := range a.shards {
		out[i] = int32(s)
	}
	return out
}

// ShardOf is the shard a producer publishes source's messages to (FNV-1a
// of the source id), so that one source stays on one shard and in order.
func ShardOf(source string, shards int) int {
	h := fnv.New32a()
	h.Write([]byte(source))
	return int(h.Sum32() % uint32(max(1, shards)))
}

// ShardTopic is the MQTT topic of shard s of prefix.
func ShardTopic(prefix string, s int) string { return prefix + "/" + strconv.Itoa(s) }

type mqttItem struct {
	msg   mqtt.Message
	shard int32
	gen   uint64
}

func (a *mqttAdapter) consume(ctx context.Context) error {
	if len(a.shards) == 0 {
		<-ctx.Done()
		return nil
	}
	queue := make(chan mqttItem, a.cfg.Batch)
	var gen atomic.Uint64
	shardOf := map[string]int32{}
	for _, s := range a.shards {
		shardOf[ShardTopic(a.cfg.Topic, s)] = int32(s)
	}
	handler := func(_ mqtt.Client, m mqtt.Message) {
		it := mqttItem{msg: m, shard: shardOf[m.Topic()], gen: gen.Load()}
		if a.cfg.CommitBeforeStore {
			m.Ack() // DEFECT: acknowledged before the aggregator has it
		}
		select {
		case queue <- it:
		case <-ctx.Done():
		}
	}
	opts := mqtt.NewClientOptions().SetClientID("chaosgate-" + a.node + "-" + a.cfg.Name).SetCleanSession(false).
		SetAutoAckDisabled(true).SetOrderMatters(true).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(250 * time.Millisecond).SetMaxReconnectInterval(2 * time.Second).
		SetKeepAlive(5 * time.Second).SetConnectTimeout(3 * time.Second).SetResumeSubs(true).SetWriteTimeout(5 * time.Second)
	for _, b := range a.cfg.Brokers {
		opts.AddBroker("tcp://" + b)
	}
	filters := map[string]byte{}
	for t := range shardOf {
		filters[t] = 1
	}
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		tok := c.SubscribeMultiple(filters, handler)
		if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
			a.subbed.Store(true)
			a.log.Info("mqtt subscribed", "shards", a.shards)
		} else {
			a.log.Warn("mqtt subscribe failed; retrying on reconnect", "err", tok.Error())
		}
	})
	// A delivery of an earlier connection is not acknowledged on a later
	// one (its packet id may name another message there): the broker
	// redelivers it from the session instead.
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		gen.Add(1)
		a.subbed.Store(false)
		a.log.Warn("mqtt connection lost", "err", err)
	})
	// A resumed session delivers before the subscriptions are made again.
	opts.SetDefaultPublishHandler(handler)
	cl := mqtt.NewClient(opts)
	cl.Connect() // retries in the background until it connects
	defer func() {
		a.subbed.Store(false)
		cl.Disconnect(250)
	}()
	ds := make([]Delivery, 0, a.cfg.Batch)
	items := make([]mqttItem, 0, a.cfg.Batch)
	for {
		items = items[:0]
		select {
		case <-ctx.Done():
			return nil
		case it := <-queue:
			items = append(items, it)
		}
	fill:
		for len(items) < a.cfg.Batch {
			select {
			case it := <-queue:
				items = append(items, it)
			default:
				break fill
			}
		}
		ds = ds[:0]
		for _, it := range items {
			ds = append(ds, Delivery{Payload: it.msg.Payload(), Partition: it.shard, Offset: -1})
		}
		if err := a.p.process(ctx, ds); err != nil {
			return nil // not acknowledged: the broker redelivers from the session
		}
		if !a.cfg.CommitBeforeStore {
			cur := gen.Load()
			for _, it := range items {
				if it.gen == cur {
					it.msg.Ack()
				}
			}
		}
	}
}

// offsets: MQTT 3.1.1 brokers do not report a session's queue, so there is
// no lag to measure.
func (a *mqttAdapter) offsets(context.Context) (map[string]Offsets, error) {
	return map[string]Offsets{}, nil
}

func (a *mqttAdapter) close() {}

func (a *mqttAdapter) ready() bool { return len(a.shards) == 0 || a.subbed.Load() }
