package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chaosgate/chaosgate/engine/history"
)

// Publisher sends the generator's messages to a message broker instead of
// the aggregator's HTTP API: the aggregator consumes them from there (its
// --upstream). A message is acknowledged when the broker stored it; the
// history records where (upstream, upstream_partition, upstream_offset).
type Publisher interface {
	// Upstream names the broker and topic in the history, e.g. "kafka:in".
	Upstream() string
	// Publish stores msgs, each keyed by its source (one source stays on
	// one partition or shard, in order), and returns one outcome each.
	Publish(ctx context.Context, msgs []Message) []Published
	// Close releases the broker connection.
	Close()
}

// Published is the broker's answer for one message.
type Published struct {
	// Err is set when the broker did not acknowledge the message (its
	// outcome is unknown: it may be stored).
	Err error
	// Partition and Offset are where the broker stored it (Has*: known).
	Partition    int
	HasPartition bool
	Offset       int64
	HasOffset    bool
}

func encodeMessage(m *Message) []byte {
	b, _ := json.Marshal(m)
	return b
}

// KafkaPublisher produces to a Kafka topic with franz-go, keyed by source
// id (idempotent producer, acks from all in-sync replicas).
type KafkaPublisher struct {
	cl    *kgo.Client
	topic string
}

// NewKafkaPublisher connects to brokers.
func NewKafkaPublisher(brokers []string, topic string) (*KafkaPublisher, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(time.Millisecond),
		kgo.RecordDeliveryTimeout(10*time.Second), kgo.ClientID("chaosgate-load"))
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	return &KafkaPublisher{cl: cl, topic: topic}, nil
}

// Upstream is "kafka:TOPIC".
func (p *KafkaPublisher) Upstream() string { return "kafka:" + p.topic }

// Publish produces msgs and waits for every acknowledgement.
func (p *KafkaPublisher) Publish(ctx context.Context, msgs []Message) []Published {
	out := make([]Published, len(msgs))
	var wg sync.WaitGroup
	for i := range msgs {
		wg.Add(1)
		p.cl.Produce(ctx, &kgo.Record{Key: []byte(msgs[i].SourceID), Value: encodeMessage(&msgs[i])}, func(r *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				out[i].Err = err
				return
			}
			out[i] = Published{Partition: int(r.Partition), HasPartition: true, Offset: r.Offset, HasOffset: true}
		})
	}
	wg.Wait()
	return out
}

// Close flushes and disconnects.
func (p *KafkaPublisher) Close() { p.cl.Close() }

// JetStreamPublisher publishes to a JetStream stream, one subject per
// source (SUBJECT_PREFIX.SOURCE), with the msg_id as Nats-Msg-Id so that
// JetStream's duplicate window drops a re-publish too.
type JetStreamPublisher struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream string
	prefix string
}

// NewJetStreamPublisher connects to urls ("nats://HOST:PORT,...") and
// creates the stream (subjects PREFIX.>) when it does not exist.
func NewJetStreamPublisher(ctx context.Context, urls, stream, prefix string, replicas int) (*JetStreamPublisher, error) {
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond), nats.Name("chaosgate-load"))
	if err != nil {
		return nil, fmt.Errorf("nats connect: %w", err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(65536))
	if err != nil {
		nc.Close()
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = js.CreateOrUpdateStream(cctx, jetstream.StreamConfig{Name: stream, Subjects: []string{prefix + ".>"}, Storage: jetstream.FileStorage,
			Replicas: max(1, replicas), Duplicates: 2 * time.Minute})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			nc.Close()
			return nil, fmt.Errorf("create JetStream stream %s: %w", stream, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	return &JetStreamPublisher{nc: nc, js: js, stream: stream, prefix: prefix}, nil
}

// Upstream is "nats:STREAM".
func (p *JetStreamPublisher) Upstream() string { return "nats:" + p.stream }

// Publish publishes msgs asynchronously and waits for their acknowledgements.
func (p *JetStreamPublisher) Publish(ctx context.Context, msgs []Message) []Published {
	out := make([]Published, len(msgs))
	futs := make([]jetstream.PubAckFuture, len(msgs))
	for i := range msgs {
		f, err := p.js.PublishAsync(p.prefix+"."+msgs[i].SourceID, encodeMessage(&msgs[i]), jetstream.WithMsgID(msgs[i].MsgID))
		if err != nil {
			out[i].Err = err
			continue
		}
		futs[i] = f
	}
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	for i, f := range futs {
		if f == nil {
			continue
		}
		select {
		case ack := <-f.Ok():
			out[i] = Published{Offset: int64(ack.Sequence), HasOffset: true}
		case err := <-f.Err():
			out[i].Err = err
		case <-t.C:
			out[i].Err = errors.New("publish acknowledgement timed out")
		case <-ctx.Done():
			out[i].Err = ctx.Err()
		}
	}
	return out
}

// Close disconnects.
func (p *JetStreamPublisher) Close() { p.nc.Close() }

// MQTTPublisher publishes with QoS 1 to the topic shard of each source
// (PREFIX/N, N = FNV-1a(source) mod shards: the aggregator's MQTT
// upstream splits the shards over its nodes).
type MQTTPublisher struct {
	cl     mqtt.Client
	prefix string
	shards int
}

// NewMQTTPublisher connects to broker (HOST:PORT).
func NewMQTTPublisher(broker, prefix string, shards int, clientID string) (*MQTTPublisher, error) {
	cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + broker).SetClientID(clientID).SetAutoReconnect(true).
		SetConnectRetry(true).SetConnectRetryInterval(250 * time.Millisecond).SetOrderMatters(false).SetWriteTimeout(5 * time.Second))
	tok := cl.Connect()
	if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		cl.Disconnect(0)
		return nil, fmt.Errorf("mqtt connect %s: %v", broker, tok.Error())
	}
	return &MQTTPublisher{cl: cl, prefix: prefix, shards: max(1, shards)}, nil
}

// MQTTShard is the shard of a source: the same function as the
// aggregator's (FNV-1a of the source id modulo shards).
func MQTTShard(source string, shards int) int {
	h := fnv.New32a()
	h.Write([]byte(source))
	return int(h.Sum32() % uint32(max(1, shards)))
}

// Upstream is "mqtt:PREFIX".
func (p *MQTTPublisher) Upstream() string { return "mqtt:" + p.prefix }

// Publish publishes msgs with QoS 1 and waits for every PUBACK.
func (p *MQTTPublisher) Publish(ctx context.Context, msgs []Message) []Published {
	out := make([]Published, len(msgs))
	toks := make([]mqtt.Token, len(msgs))
	shards := make([]int, len(msgs))
	for i := range msgs {
		shards[i] = MQTTShard(msgs[i].SourceID, p.shards)
		toks[i] = p.cl.Publish(p.prefix+"/"+strconv.Itoa(shards[i]), 1, false, encodeMessage(&msgs[i]))
	}
	for i, tok := range toks {
		if !tok.WaitTimeout(10 * time.Second) {
			out[i].Err = errors.New("puback timed out")
			continue
		}
		if err := tok.Error(); err != nil {
			out[i].Err = err
			continue
		}
		out[i] = Published{Partition: shards[i], HasPartition: true}
	}
	return out
}

// Close disconnects.
func (p *MQTTPublisher) Close() { p.cl.Disconnect(250) }

// ParsePublisher opens the publisher of an upstream URL as the aggregator's
// --upstream takes it (kafka://HOST:PORT/TOPIC, nats://HOST:PORT/STREAM,
// mqtt://HOST:PORT/PREFIX?shards=N).
func ParsePublisher(ctx context.Context, url string) (Publisher, error) {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return nil, fmt.Errorf("publisher %q: want kafka://, nats:// or mqtt://", url)
	}
	rest, query, _ := strings.Cut(rest, "?")
	hosts, path, _ := strings.Cut(rest, "/")
	brokers := strings.Split(hosts, ",")
	switch scheme {
	case "kafka":
		return NewKafkaPublisher(brokers, path)
	case "nats":
		var urls []string
		for _, b := range brokers {
			urls = append(urls, "nats://"+b)
		}
		prefix := strings.ToLower(path)
		return NewJetStreamPublisher(ctx, strings.Join(urls, ","), path, prefix, 1)
	case "mqtt":
		shards := 8
		for _, kv := range strings.Split(query, "&") {
			if v, ok := strings.CutPrefix(kv, "shards="); ok {
				if n, err := strconv.Atoi(v); err == nil && n > 0 {
					shards = n
				}
			}
		}
		return NewMQTTPublisher(brokers[0], path, shards, "chaosgate-load-"+runID())
	}
	return nil, fmt.Errorf("publisher %q: unknown scheme %q", url, scheme)
}

// publish delivers one batch through the publisher with retries (the same
// msg_id and seq, as the aggregator's dedup expects) and records every
// attempt: "ok" is the broker's acknowledgement.
func (g *Generator) publish(ctx context.Context, batch []Message, ps *phaseStats, sched time.Time) {
	pending := batch
	src := g.sourceOf(batch)
	up := g.cfg.Publisher.Upstream()
	for attempt := 0; len(pending) > 0; attempt++ {
		ps.requests.Add(1)
		res := g.cfg.Publisher.Publish(ctx, pending)
		now := time.Now()
		var retry []Message
		for i, m := range pending {
			r := res[i]
			ev := history.Line{Op: history.OpSend, T: now, Client: src, Source: m.SourceID, Seq: m.Seq, MsgID: m.MsgID, Key: m.GroupKey,
				Fingerprint: m.Fingerprint, Partition: m.partition, HasPartition: true, Upstream: up}
			if r.Err != nil {
				ev.Result = history.ResultTimeout
				ps.timeouts.Add(1)
				retry = append(retry, m)
				g.record(ev)
				continue
			}
			ev.Result = history.ResultOK
			ev.UpstreamPartition, ev.HasUpstreamPartition = r.Partition, r.HasPartition
			ev.UpstreamOffset, ev.HasUpstreamOffset = r.Offset, r.HasOffset
			if m.dup {
				ps.dupAcked.Add(1)
			} else {
				ps.ok.Add(1)
				g.noteAcked(m)
			}
			g.record(ev)
		}
		if len(retry) == 0 {
			ps.observe(now.Sub(sched))
			return
		}
		if attempt >= g.cfg.MaxRetries || ctx.Err() != nil || time.Now().After(ps.retryUntil) || !g.reserveRetry(ps, len(retry)) {
			g.finalFail(retry, ps)
			return
		}
		pending = retry
		t := time.NewTimer(min(time.Duration(1<<min(attempt, 6))*20*time.Millisecond, time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// DeadLetter is one letter of a node's dead-letter queue (GET /v1/dlq).
type DeadLetter struct {
	ID                uint64 `json:"id"`
	Node              string `json:"node"`
	Upstream          string `json:"upstream"`
	UpstreamPartition *int   `json:"upstream_partition"`
	UpstreamOffset    *int64 `json:"upstream_offset"`
	MsgID             string `json:"msg_id"`
	Source            string `json:"source_id"`
	Seq               uint64 `json:"seq"`
	Key               string `json:"group_key"`
	Reason            string `json:"reason"`
	Attempts          int    `json:"attempts"`
	Replay            *struct {
		Result string `json:"result"`
	} `json:"replay"`
}

// DeadLetters reads every letter of the node at addr.
func (g *Generator) DeadLetters(ctx context.Context, addr string) ([]DeadLetter, error) {
	var out []DeadLetter
	from := uint64(1)
	for {
		o := g.cl.do(ctx, "GET", addr, fmt.Sprintf("/v1/dlq?from=%d&limit=1000", from), nil)
		if o.err != nil {
			return out, o.err
		}
		if o.status != 200 {
			return out, fmt.Errorf("GET %s/v1/dlq: HTTP %d %s", addr, o.status, truncate(o.body))
		}
		var page struct {
			Letters []DeadLetter `json:"letters"`
			Next    uint64       `json:"next"`
		}
		if err := json.Unmarshal(o.body, &page); err != nil {
			return out, fmt.Errorf("GET %s/v1/dlq: %w", addr, err)
		}
		out = append(out, page.Letters...)
		if len(page.Letters) == 0 || page.Next <= from {
			return out, nil
		}
		from = page.Next
	}
}

// UpstreamOffsets is one upstream of GET /v1/upstreams.
type UpstreamOffsets struct {
	Name     string  `json:"name"`
	Kind     string  `json:"kind"`
	State    string  `json:"state"`
	Breaker  string  `json:"breaker"`
	Assigned []int32 `json:"assigned"`
	Attached bool    `json:"attached"`
	LagAlert bool    `json:"lag_alert"`
	Offsets  map[string]struct {
		Committed int64 `json:"committed"`
		End       int64 `json:"end"`
		Lag       int64 `json:"lag"`
	} `json:"offsets"`
}

// Upstreams reads GET /v1/upstreams of the node at addr.
func (g *Generator) Upstreams(ctx context.Context, addr string) ([]UpstreamOffsets, error) {
	o := g.cl.do(ctx, "GET", addr, "/v1/upstreams", nil)
	if o.err != nil {
		return nil, o.err
	}
	if o.status != 200 {
		return nil, fmt.Errorf("GET %s/v1/upstreams: HTTP %d %s", addr, o.status, truncate(o.body))
	}
	var st struct {
		Upstreams []UpstreamOffsets `json:"upstreams"`
	}
	if err := json.Unmarshal(o.body, &st); err != nil {
		return nil, fmt.Errorf("GET %s/v1/upstreams: %w", addr, err)
	}
	return st.Upstreams, nil
}

// RecordUpstream writes what the aggregator did with the broker's messages
// to the history: a dlq line for every letter of every target's
// dead-letter queue (of the aggregator upstream named name), and a commit
// line for every partition of the consumer group's committed position (as
// the first answering node measures it). Call it after Drain.
func (g *Generator) RecordUpstream(ctx context.Context, name string) (letters int, err error) {
	up := name
	if g.cfg.Publisher != nil {
		up = g.cfg.Publisher.Upstream()
	}
	client := g.cfg.Name + "-upstream"
	var errs []error
	committed := false
	for _, addr := range g.cfg.Targets() {
		ls, err := g.DeadLetters(ctx, addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, l := range ls {
			if l.Upstream != name || l.MsgID == "" {
				continue
			}
			ev := history.Line{Op: history.OpDLQ, T: time.Now(), Client: client, MsgID: l.MsgID, Source: l.Source, Seq: l.Seq, Key: l.Key,
				Node: l.Node, Reason: l.Reason, Attempts: l.Attempts, Upstream: up}
			if l.UpstreamPartition != nil {
				ev.UpstreamPartition, ev.HasUpstreamPartition = *l.UpstreamPartition, true
			}
			if l.UpstreamOffset != nil {
				ev.UpstreamOffset, ev.HasUpstreamOffset = *l.UpstreamOffset, true
			}
			g.record(ev)
			letters++
		}
		if committed {
			continue
		}
		sts, err := g.Upstreams(ctx, addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, s := range sts {
			if s.Name != name || len(s.Offsets) == 0 {
				continue
			}
			committed = true
			parts := make([]string, 0, len(s.Offsets))
			for p := range s.Offsets {
				parts = append(parts, p)
			}
			sort.Strings(parts)
			for _, p := range parts {
				ev := history.Line{Op: history.OpCommit, T: time.Now(), Client: client, Upstream: up, UpstreamOffset: s.Offsets[p].Committed, HasUpstreamOffset: true}
				if n, err := strconv.Atoi(p); err == nil {
					ev.UpstreamPartition, ev.HasUpstreamPartition = n, true
				}
				g.record(ev)
			}
		}
	}
	if letters == 0 && !committed && len(errs) > 0 {
		return 0, errors.Join(errs...)
	}
	return letters, nil
}
