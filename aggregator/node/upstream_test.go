package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaosgate/chaosgate/aggregator/upstream"
	"github.com/chaosgate/chaosgate/internal/brokers/brokertest"
)

// jsPublisher publishes messages to a JetStream stream "IN" (subjects
// in.>), as an upstream producer would.
type jsPublisher struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func newJSPublisher(t *testing.T, addr string) *jsPublisher {
	t.Helper()
	nc, err := nats.Connect("nats://"+addr, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "IN", Subjects: []string{"in.>"}, Storage: jetstream.FileStorage, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	return &jsPublisher{nc: nc, js: js}
}

func (p *jsPublisher) publish(t *testing.T, m Message) {
	t.Helper()
	b, _ := json.Marshal(m)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.js.Publish(ctx, "in."+m.SourceID, b, jetstream.WithMsgID(m.MsgID)); err != nil {
		t.Fatalf("publish %s: %v", m.MsgID, err)
	}
}

func (p *jsPublisher) publishRaw(t *testing.T, subject string, b []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.js.Publish(ctx, subject, b); err != nil {
		t.Fatal(err)
	}
}

// consumerPending is the JetStream consumer's undelivered plus
// unacknowledged messages.
func (p *jsPublisher) consumerPending(t *testing.T) (pending, ackPending int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := p.js.Consumer(ctx, "IN", "chaosgate")
	if err != nil {
		return -1, -1
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return -1, -1
	}
	return int(ci.NumPending), ci.NumAckPending
}

// metric reads one sample of node id's /metrics: name{labels} (labels as
// written, in order), or -1 when absent.
func (c *testCluster) metric(t *testing.T, id, series string) float64 {
	t.Helper()
	_, body, _ := doJSON(t, "GET", "http://"+c.http[id]+"/metrics", nil)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` ([0-9.e+-]+)$`)
	m := re.FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// streamCounts reads every partition through id and counts each msg_id.
func (c *testCluster) streamCounts(t *testing.T, id string, parts int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for p := 0; p < parts; p++ {
		for _, r := range c.readAll(t, id, p) {
			if r.Type == RecordMessage {
				out[r.MsgID]++
			}
		}
	}
	return out
}

func natsUpstream(t *testing.T, addr, query string) upstream.Config {
	t.Helper()
	u, err := upstream.ParseURL("nats://" + addr + "/IN?" + query)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func dlqLetters(t *testing.T, c *testCluster, id string) []upstream.Letter {
	t.Helper()
	code, body, _ := doJSON(t, "GET", "http://"+c.http[id]+"/v1/dlq", nil)
	if code != 200 {
		t.Fatalf("GET /v1/dlq: %d %s", code, body)
	}
	var page struct {
		Letters []upstream.Letter `json:"letters"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatal(err)
	}
	return page.Letters
}

// TestUpstreamNATSEveryNodeConsumesOnce: three nodes share a JetStream
// consumer; every published message is in the output exactly once and
// the consumer ends with nothing pending or unacknowledged.
func TestUpstreamNATSEveryNodeConsumesOnce(t *testing.T) {
	srv := brokertest.NATS(t)
	pub := newJSPublisher(t, srv.Addr)
	c := startCluster(t, 3, func(cfg *Config) {
		cfg.Upstreams = []upstream.Config{natsUpstream(t, srv.Addr, "batch=16")}
	})
	g := newGen(4)
	want := map[string]bool{}
	for i := 0; i < 300; i++ {
		m := g.next(fmt.Sprintf("s%d", i%3), fmt.Sprintf("k%d", i%17))
		pub.publish(t, m)
		want[m.MsgID] = true
	}
	waitFor(t, "the consumer to drain", 60*time.Second, func() bool {
		p, a := pub.consumerPending(t)
		return p == 0 && a == 0
	})
	got := c.streamCounts(t, "n1", 4)
	for id := range want {
		if got[id] != 1 {
			t.Errorf("msg %s is in the output %d times, want once", id, got[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("output has %d messages, published %d", len(got), len(want))
	}
	stored := 0.0
	for _, id := range c.ids {
		stored += max(0, c.metric(t, id, `chaosgate_aggregator_upstream_messages_total{result="stored",upstream="nats"}`))
		stored += max(0, c.metric(t, id, `chaosgate_aggregator_upstream_messages_total{result="duplicate",upstream="nats"}`))
	}
	if stored < 300 {
		t.Errorf("nodes accounted for %v upstream messages, want at least 300", stored)
	}
}

// TestPoisonMessageDeadLetteredAfterRetriesAndReplayedOnce: a message
// whose partition leader cannot be reached from the consuming node fails
// every attempt while the node itself is healthy. After max_attempts it
// lands in the dead-letter queue with its reason and is acknowledged
// upstream; the breaker stays closed and other messages flow. Once the
// edge heals, a replay stores it with its msg_id; a second replay is
// refused and a forced one is deduplicated: it is in the output once.
func TestPoisonMessageDeadLetteredAfterRetriesAndReplayedOnce(t *testing.T) {
	srv := brokertest.NATS(t)
	pub := newJSPublisher(t, srv.Addr)
	var fwd *edgeProxy
	c := startCluster(t, 3, func(cfg *Config) {
		if cfg.ID != "n1" {
			return
		}
		// n1 forwards to n2 through a proxy the test can cut
		if fwd == nil {
			fwd = newEdgeProxy(t, cfg.PeerHTTP["n2"])
		}
		ph := map[string]string{}
		for k, v := range cfg.PeerHTTP {
			ph[k] = v
		}
		ph["n2"] = fwd.ln.Addr().String()
		cfg.PeerHTTP = ph
		cfg.Upstreams = []upstream.Config{natsUpstream(t, srv.Addr, "batch=8&max_attempts=3&backoff=20ms&max_backoff=100ms")}
	})
	t.Cleanup(fwd.close)
	g := newGen(4)
	key := func(part int) string {
		for i := 0; ; i++ {
			k := fmt.Sprintf("key-%d", i)
			if partitionOf(k, 4) == part {
				return k
			}
		}
	}
	if l := c.leaderOf(1); l != "n2" {
		t.Fatalf("partition 1 is led by %s, want n2 (its preferred leader)", l)
	}
	fwd.setBlocked(true)
	poison := g.next("poison-src", key(1))
	pub.publish(t, poison)
	var good []Message
	for i := 0; i < 20; i++ {
		m := g.next("good-src", key(0)) // partition 0: led by n1 itself
		pub.publish(t, m)
		good = append(good, m)
	}
	waitFor(t, "the poison message in n1's dead-letter queue", 30*time.Second, func() bool { return len(dlqLetters(t, c, "n1")) == 1 })
	l := dlqLetters(t, c, "n1")[0]
	t.Logf("dead letter: id %d msg_id %s attempts %d reason %q", l.ID, l.MsgID, l.Attempts, l.Reason)
	if l.MsgID != poison.MsgID || l.Attempts != 3 || !strings.HasPrefix(l.Reason, "retries exhausted after 3 attempts") || l.Upstream != "nats" || l.UpstreamOffset == nil {
		t.Fatalf("letter %+v: want msg %s, 3 attempts, retries exhausted, with its upstream offset", l, poison.MsgID)
	}
	waitFor(t, "JetStream to have nothing pending (the dead letter is acknowledged)", 30*time.Second, func() bool {
		p, a := pub.consumerPending(t)
		return p == 0 && a == 0
	})
	if v := c.metric(t, "n1", `chaosgate_aggregator_upstream_dead_lettered_total{reason="retries_exhausted",upstream="nats"}`); v != 1 {
		t.Errorf("dead_lettered_total = %v, want 1", v)
	}
	if v := c.metric(t, "n1", `chaosgate_aggregator_upstream_breaker_state{upstream="nats"}`); v != 0 {
		t.Errorf("breaker state %v: one poison message must not open the breaker", v)
	}
	counts := c.streamCounts(t, "n3", 4) // n1 cannot reach n2 yet
	for _, m := range good {
		if counts[m.MsgID] != 1 {
			t.Errorf("good message %s in the output %d times", m.MsgID, counts[m.MsgID])
		}
	}
	if counts[poison.MsgID] != 0 {
		t.Fatalf("poison message is in the output before its replay")
	}

	fwd.setBlocked(false)
	replay := func(q string) (int, upstream.Letter) {
		code, body, _ := doJSON(t, "POST", fmt.Sprintf("http://%s/v1/dlq/%d/replay%s", c.http["n1"], l.ID, q), nil)
		var out upstream.Letter
		_ = json.Unmarshal(body, &out)
		t.Logf("replay%s: HTTP %d %s", q, code, strings.TrimSpace(string(body)))
		return code, out
	}
	var code int
	var rl upstream.Letter
	waitFor(t, "the replay to be stored", 20*time.Second, func() bool {
		code, rl = replay("")
		return code == 200
	})
	if rl.Replay == nil || rl.Replay.Result != "stored" {
		t.Fatalf("replay result %+v, want stored", rl.Replay)
	}
	if code, _ := replay(""); code != http.StatusConflict {
		t.Errorf("second replay: HTTP %d, want 409", code)
	}
	if code, fl := replay("?force=true"); code != 200 || fl.Replay == nil || fl.Replay.Result != "duplicate" {
		t.Errorf("forced replay: HTTP %d %+v, want 200 duplicate", code, fl.Replay)
	}
	counts = c.streamCounts(t, "n1", 4)
	if counts[poison.MsgID] != 1 {
		t.Fatalf("poison message in the output %d times after replays, want once", counts[poison.MsgID])
	}
	if v := c.metric(t, "n1", `chaosgate_aggregator_dlq_replays_total{result="stored"}`); v != 1 {
		t.Errorf("dlq_replays_total{stored} = %v, want 1", v)
	}
	// the dead-letter queue survives a restart with its replay record
	c.stop("n1")
	c.start("n1")
	got := dlqLetters(t, c, "n1")
	if len(got) != 1 || !got[0].Replayed() {
		t.Fatalf("after restart: letters %+v, want the one letter, replayed", got)
	}
}

// TestBreakerOpensOnFailingDownstreamAndClosesAfterRecovery: with two of
// three nodes down no partition has a leader: submissions fail and the
// node is unhealthy, so the breaker opens and consumption pauses (the
// messages stay in JetStream, none is dead-lettered); when the nodes are
// back the half-open probe finds the downstream healthy, the breaker
// closes and every message is stored once. The metrics show it.
func TestBreakerOpensOnFailingDownstreamAndClosesAfterRecovery(t *testing.T) {
	srv := brokertest.NATS(t)
	pub := newJSPublisher(t, srv.Addr)
	c := startCluster(t, 3, func(cfg *Config) {
		if cfg.ID == "n1" {
			cfg.Upstreams = []upstream.Config{natsUpstream(t, srv.Addr, "batch=4&max_attempts=3&backoff=20ms&max_backoff=100ms&breaker_after=3&breaker_timeout=300ms")}
		}
	})
	g := newGen(4)
	warm := g.next("warm", "k1")
	pub.publish(t, warm)
	waitFor(t, "the first message", 30*time.Second, func() bool { p, a := pub.consumerPending(t); return p == 0 && a == 0 })
	state := func() float64 {
		return c.metric(t, "n1", `chaosgate_aggregator_upstream_breaker_state{upstream="nats"}`)
	}
	trans := func(from, to string) float64 {
		return max(0, c.metric(t, "n1", fmt.Sprintf(`chaosgate_aggregator_upstream_breaker_transitions_total{from=%q,to=%q,upstream="nats"}`, from, to)))
	}
	t.Logf("before: breaker state %v", state())

	c.stop("n2")
	c.stop("n3")
	waitFor(t, "n1 to see no leader", 30*time.Second, func() bool { ok, _ := c.node("n1").Ready(); return !ok })
	var msgs []Message
	for i := 0; i < 40; i++ {
		m := g.next(fmt.Sprintf("s%d", i%4), fmt.Sprintf("k%d", i%9))
		pub.publish(t, m)
		msgs = append(msgs, m)
	}
	waitFor(t, "the breaker to open", 30*time.Second, func() bool { return state() == 2 })
	pending, ack := pub.consumerPending(t)
	t.Logf("downstream down: breaker state %v (open), closed→open %v, consumer pending %d, unacknowledged %d, dead letters %d, consuming %v",
		state(), trans("closed", "open"), pending, ack, len(dlqLetters(t, c, "n1")), c.metric(t, "n1", `chaosgate_aggregator_upstream_consuming{upstream="nats"}`))
	if pending+ack == 0 {
		t.Fatalf("consumption did not pause: nothing left in JetStream")
	}
	if n := len(dlqLetters(t, c, "n1")); n != 0 {
		t.Fatalf("%d messages dead-lettered while the downstream was down; they must wait", n)
	}
	c.start("n2")
	c.start("n3")
	waitFor(t, "the breaker to close", 60*time.Second, func() bool { return state() == 0 && trans("half-open", "closed") >= 1 })
	waitFor(t, "JetStream to drain", 60*time.Second, func() bool { p, a := pub.consumerPending(t); return p == 0 && a == 0 })
	t.Logf("recovered: breaker state %v, transitions closed→open %v open→half-open %v half-open→open %v half-open→closed %v",
		state(), trans("closed", "open"), trans("open", "half-open"), trans("half-open", "open"), trans("half-open", "closed"))
	if trans("closed", "open") < 1 || trans("open", "half-open") < 1 {
		t.Errorf("transitions closed→open %v, open→half-open %v: want each at least once", trans("closed", "open"), trans("open", "half-open"))
	}
	c.waitReady()
	counts := c.streamCounts(t, "n1", 4)
	for _, m := range msgs {
		if counts[m.MsgID] != 1 {
			t.Errorf("msg %s in the output %d times, want once", m.MsgID, counts[m.MsgID])
		}
	}
	if n := len(dlqLetters(t, c, "n1")); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
}

// TestUpstreamMalformedRecordIsDeadLetteredAtOnce: a record that is not
// one message of the contract cannot ever be stored: it goes to the
// dead-letter queue on its first attempt with the decoder's error, and
// its replay is refused with the same reason.
func TestUpstreamMalformedRecordIsDeadLetteredAtOnce(t *testing.T) {
	srv := brokertest.NATS(t)
	pub := newJSPublisher(t, srv.Addr)
	c := startCluster(t, 1, func(cfg *Config) {
		cfg.Upstreams = []upstream.Config{natsUpstream(t, srv.Addr, "")}
	})
	pub.publishRaw(t, "in.x", []byte(`{"source_id":"s1","seq":0}`))
	waitFor(t, "a dead letter", 30*time.Second, func() bool { return len(dlqLetters(t, c, "n1")) == 1 })
	l := dlqLetters(t, c, "n1")[0]
	if l.Attempts != 1 || !strings.HasPrefix(l.Reason, "invalid: ") {
		t.Fatalf("letter %+v: want 1 attempt, reason invalid", l)
	}
	code, body, _ := doJSON(t, "POST", fmt.Sprintf("http://%s/v1/dlq/%d/replay", c.http["n1"], l.ID), nil)
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(body), "invalid") {
		t.Fatalf("replay: HTTP %d %s, want 422 invalid", code, body)
	}
	for _, bad := range []string{"/v1/dlq/0", "/v1/dlq/x", "/v1/dlq/99"} {
		if code, _, _ := doJSON(t, "GET", "http://"+c.http["n1"]+bad, nil); code != 404 {
			t.Errorf("GET %s: HTTP %d, want 404", bad, code)
		}
	}
	if code, _, _ := doJSON(t, "GET", "http://"+c.http["n1"]+"/v1/dlq?limit=0", nil); code != 400 {
		t.Errorf("limit=0: HTTP %d, want 400", code)
	}
}
