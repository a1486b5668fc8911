package node

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chaosgate/chaosgate/aggregator/upstream"
	"github.com/chaosgate/chaosgate/internal/brokers/brokertest"
)

func upstreamOf(t *testing.T, url string) upstream.Config {
	t.Helper()
	u, err := upstream.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func upstreamStatus(t *testing.T, c *testCluster, id string) []upstream.UpstreamStatus {
	t.Helper()
	code, body, _ := doJSON(t, "GET", "http://"+c.http[id]+"/v1/upstreams", nil)
	if code != 200 {
		t.Fatalf("GET /v1/upstreams: %d %s", code, body)
	}
	var st struct {
		Upstreams []upstream.UpstreamStatus `json:"upstreams"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	return st.Upstreams
}

// checkOnceInOrder asserts every message is in the output once and each
// (source, partition) is in seq order along the offsets.
func checkOnceInOrder(t *testing.T, c *testCluster, via string, parts int, sent []Message) {
	t.Helper()
	// A record the group committed is stored, but a node serves reads at
	// its applied index: wait until via has applied every message.
	start := time.Now()
	waitFor(t, "every message readable on "+via, 30*time.Second, func() bool {
		n := 0
		for p := 0; p < parts; p++ {
			n += len(c.readAll(t, via, p))
		}
		return n >= len(sent)
	})
	t.Logf("every message readable on %s after %v", via, time.Since(start).Round(time.Millisecond))
	seen := map[string]int{}
	for p := 0; p < parts; p++ {
		last := map[string]uint64{}
		for _, r := range c.readAll(t, via, p) {
			if r.Type != RecordMessage {
				t.Errorf("partition %d offset %d: a %s record (%s %d..%d)", p, r.Offset, r.Type, r.SourceID, r.FromSeq, r.ToSeq)
				continue
			}
			seen[r.MsgID]++
			if r.Seq <= last[r.SourceID] {
				t.Errorf("partition %d offset %d: %s seq %d after %d", p, r.Offset, r.SourceID, r.Seq, last[r.SourceID])
			}
			last[r.SourceID] = r.Seq
		}
	}
	for _, m := range sent {
		if seen[m.MsgID] != 1 {
			t.Errorf("msg %s (%s seq %d) in the output %d times, want once", m.MsgID, m.SourceID, m.Seq, seen[m.MsgID])
		}
	}
}

// TestUpstreamKafkaRebalanceKeepsEveryMessageOnce: three nodes in one
// consumer group on a 6-partition topic of a Kafka-protocol broker
// (kfake); while records flow, one member leaves (its partitions are
// revoked: drained and committed, then reassigned) and joins again. Every
// record is in the output once, in order, and the group ends with no lag.
func TestUpstreamKafkaRebalanceKeepsEveryMessageOnce(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, "in"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	url := "kafka://" + strings.Join(kc.ListenAddrs(), ",") + "/in?session_timeout=6s&batch=32"
	c := startCluster(t, 3, func(cfg *Config) { cfg.Upstreams = []upstream.Config{upstreamOf(t, url)} })
	prod, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	g := newGen(4)
	var sent []Message
	produce := func(k int) {
		for i := 0; i < k; i++ {
			m := g.next(fmt.Sprintf("src%d", i%5), fmt.Sprintf("k%d", i%11))
			b, _ := json.Marshal(m)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := prod.ProduceSync(ctx, &kgo.Record{Topic: "in", Key: []byte(m.SourceID), Value: b}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			cancel()
			sent = append(sent, m)
		}
	}
	assigned := func() map[string][]int32 {
		out := map[string][]int32{}
		for _, id := range c.ids {
			out[id] = upstreamStatus(t, c, id)[0].Assigned
		}
		return out
	}
	waitFor(t, "every node to hold partitions", 60*time.Second, func() bool {
		a := assigned()
		return len(a["n1"]) > 0 && len(a["n2"]) > 0 && len(a["n3"]) > 0
	})
	t.Logf("assignment: %v", assigned())
	produce(150)
	code, body, _ := doJSON(t, "POST", "http://"+c.http["n3"]+"/v1/upstreams/kafka/leave", nil)
	if code != 200 {
		t.Fatalf("leave: %d %s", code, body)
	}
	waitFor(t, "n3's partitions to move", 60*time.Second, func() bool {
		a := assigned()
		return len(a["n3"]) == 0 && len(a["n1"])+len(a["n2"]) == 6
	})
	t.Logf("after n3 left: %v", assigned())
	produce(150)
	if code, body, _ := doJSON(t, "POST", "http://"+c.http["n3"]+"/v1/upstreams/kafka/join", nil); code != 200 {
		t.Fatalf("join: %d %s", code, body)
	}
	waitFor(t, "n3 to hold partitions again", 60*time.Second, func() bool { return len(assigned()["n3"]) > 0 })
	t.Logf("after n3 joined: %v", assigned())
	produce(150)
	waitFor(t, "the group's lag to reach 0", 60*time.Second, func() bool {
		for _, o := range upstreamStatus(t, c, "n1")[0].Offsets {
			if o.Lag != 0 {
				return false
			}
		}
		return len(upstreamStatus(t, c, "n1")[0].Offsets) == 6
	})
	waitFor(t, "lag metrics at 0", 30*time.Second, func() bool {
		return c.metric(t, "n1", `chaosgate_aggregator_upstream_consumer_lag_messages{partition="0",upstream="kafka"}`) == 0
	})
	checkOnceInOrder(t, c, "n1", 4, sent)
	revoked := 0.0
	for _, id := range c.ids {
		revoked += max(0, c.metric(t, id, `chaosgate_aggregator_upstream_rebalance_events_total{event="revoked",upstream="kafka"}`))
	}
	if revoked < 2 {
		t.Errorf("revocations %v, want at least 2 (leave and join)", revoked)
	}
}

// TestUpstreamMQTTShardsConsumeOnceInOrder: three nodes split the topic
// shards of a real Mosquitto; each source publishes to its shard (QoS 1);
// every message is in the output once, in order.
func TestUpstreamMQTTShardsConsumeOnceInOrder(t *testing.T) {
	srv := brokertest.Mosquitto(t)
	c := startCluster(t, 3, func(cfg *Config) {
		cfg.Upstreams = []upstream.Config{upstreamOf(t, "mqtt://"+srv.Addr+"/chaosgate/in?shards=6")}
	})
	for _, id := range c.ids {
		if a := upstreamStatus(t, c, id)[0].Assigned; len(a) != 2 {
			t.Fatalf("%s holds shards %v, want 2 of 6", id, a)
		}
		// QoS 1 messages are kept only for sessions that subscribed
		waitFor(t, id+" to subscribe", 30*time.Second, func() bool { return upstreamStatus(t, c, id)[0].Attached })
	}
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + srv.Addr).SetClientID("test-producer"))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { pub.Disconnect(100) })
	g := newGen(4)
	var sent []Message
	for i := 0; i < 300; i++ {
		m := g.next(fmt.Sprintf("dev%d", i%7), fmt.Sprintf("k%d", i%13))
		b, _ := json.Marshal(m)
		tok := pub.Publish(upstream.ShardTopic("chaosgate/in", upstream.ShardOf(m.SourceID, 6)), 1, false, b)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		sent = append(sent, m)
	}
	waitFor(t, "every message in the output", 60*time.Second, func() bool {
		n := 0
		for _, v := range c.streamCounts(t, "n1", 4) {
			n += v
		}
		return n >= len(sent)
	})
	checkOnceInOrder(t, c, "n1", 4, sent)
}
