package upstream

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseURL(t *testing.T) {
	good := []struct {
		in   string
		want func(Config) bool
	}{
		{"nats://127.0.0.1:4222/IN", func(c Config) bool {
			return c.Kind == KindNATS && c.Stream == "IN" && c.Name == "nats" && c.Group == "chaosgate" && c.AckWait == 5*time.Second && c.Retry.MaxAttempts == 8
		}},
		{"kafka://a:9092,b:9093/orders?group=g1&name=orders&session_timeout=6s&max_attempts=3&backoff=10ms&max_backoff=1s", func(c Config) bool {
			return c.Kind == KindKafka && len(c.Brokers) == 2 && c.Topic == "orders" && c.Group == "g1" && c.Name == "orders" &&
				c.SessionTimeout == 6*time.Second && c.Retry.MaxAttempts == 3 && c.Retry.Initial == 10*time.Millisecond && c.Retry.Max == time.Second
		}},
		{"mqtt://127.0.0.1:1883/chaosgate/in?shards=4&breaker_after=2&slow_call=2s&lag_alert=500&lag_alert_for=30s", func(c Config) bool {
			return c.Kind == KindMQTT && c.Topic == "chaosgate/in" && c.Shards == 4 && c.Breaker.After == 2 && c.Breaker.SlowCall == 2*time.Second &&
				c.LagAlert == 500 && c.LagAlertFor == 30*time.Second
		}},
		{"NATS://[::1]:4222/S?consumer=c2&subject=in.%3E", func(c Config) bool { return c.Group == "c2" && c.Subject == "in.>" && c.Brokers[0] == "[::1]:4222" }},
	}
	for _, g := range good {
		c, err := ParseURL(g.in)
		if err != nil {
			t.Errorf("%s: %v", g.in, err)
			continue
		}
		if !g.want(c) {
			t.Errorf("%s: got %+v", g.in, c)
		}
	}
	bad := []struct{ in, want string }{
		{"127.0.0.1:4222/IN", "want SCHEME://"},
		{"amqp://h:1/q", `unknown scheme "amqp"`},
		{"nats:///IN", "no broker address"},
		{"nats://h/IN", `broker "h" is not HOST:PORT`},
		{"nats://h:99999/IN", "is not 1..65535"},
		{"nats://h:1", "nats needs a stream"},
		{"kafka://h:1/", "kafka needs a topic"},
		{"mqtt://h:1/a/#", "has a wildcard"},
		{"kafka://h:1/t?bogus=1", `unknown parameter "bogus"`},
		{"kafka://h:1/t?batch=5000", "batch 5000: want 1..1000"},
		{"kafka://h:1/t?backoff=soon", `backoff="soon": want a duration`},
		{"kafka://h:1/t?backoff=2s&max_backoff=1s", "want 0 < backoff <= max_backoff"},
		{"kafka://h:1/t?name=a%20b", `upstream name "a b"`},
		{"mqtt://h:1/p?shards=5000", "shards 5000"},
		{"kafka://h:1/t?lag_alert=-3", "lag_alert"},
	}
	for _, b := range bad {
		_, err := ParseURL(b.in)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: error %v, want it to contain %q", b.in, err, b.want)
		}
	}
}

// FuzzParseURL: any input gives a config that validates or a clear error,
// never a panic.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"nats://127.0.0.1:4222/IN?batch=8", "kafka://a:1,b:2/t?group=g&session_timeout=1s", "mqtt://h:1/p/q?shards=3",
		"nats://:/", "kafka://h:1/t?%zz", "mqtt://h:1/%2F?shards=-1", "x://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseURL(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseURL(%q) accepted a config that does not validate: %v", s, err)
		}
		if _, err := ParseURL(c.String()); err != nil {
			t.Fatalf("String() of %q = %q does not parse: %v", s, c.String(), err)
		}
	})
}

func TestDLQRoundTripTornTailAndReplay(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dlq.jsonl")
	q, err := OpenDLQ(path, 3)
	if err != nil {
		t.Fatal(err)
	}
	part, off := int32(2), int64(41)
	l1, err := q.Add(Letter{Upstream: "kafka", Node: "n1", UpstreamPartition: &part, UpstreamOffset: &off, MsgID: "7", Reason: "late: x", Attempts: 1, Payload: `{"a":1}`})
	if err != nil || l1.ID != 1 {
		t.Fatalf("add: %v %+v", err, l1)
	}
	l2, _ := q.Add(Letter{Upstream: "kafka", Reason: "retries exhausted after 5 attempts: no_leader", Attempts: 5, Payload: "x"})
	if err := q.SetReplay(l2.ID, Replay{At: time.Now(), Result: "stored"}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Add(Letter{Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Add(Letter{Reason: "r"}); err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("fourth letter in a queue of 3: %v", err)
	}
	q.Close()
	// a crash mid-append leaves a torn last line: it is dropped on open
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"letter":{"id":9,"reas`)
	f.Close()
	q, err = OpenDLQ(path, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	got, next := q.List(1, 10)
	if len(got) != 3 || next != 4 || got[0].UpstreamOffset == nil || *got[0].UpstreamOffset != 41 || got[1].Replay == nil || !got[1].Replayed() || got[0].Replayed() {
		t.Fatalf("after reopen: %+v next %d", got, next)
	}
	l4, err := q.Add(Letter{Reason: "after reopen"})
	if err != nil || l4.ID != 4 {
		t.Fatalf("add after reopen: %v %+v", err, l4)
	}
	if _, err := OpenDLQ(filepath.Join(dir, "x", "dlq.jsonl"), 0); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte("{\"letter\":{\"id\":1}}\n{\"replay\":{\"id\":5,\"at\":\"2026-01-01T00:00:00Z\",\"result\":\"stored\"}}\n"), 0o644)
	if _, err := OpenDLQ(bad, 0); err == nil || !strings.Contains(err.Error(), "line 2: replay of unknown letter 5") {
		t.Fatalf("bad file: %v", err)
	}
}

// FuzzDecodeDLQ: any file content decodes or gives an error naming its
// line, never a panic; what decodes encodes back to the same letters.
func FuzzDecodeDLQ(f *testing.F) {
	f.Add([]byte("{\"letter\":{\"id\":1,\"at\":\"2026-01-01T00:00:00Z\",\"node\":\"n1\",\"upstream\":\"k\",\"reason\":\"r\",\"attempts\":1,\"payload\":\"p\"}}\n"))
	f.Add([]byte("{\"letter\":{\"id\":1,\"reason\":\"r\",\"attempts\":1,\"payload\":\"p\",\"at\":\"2026-01-01T00:00:00Z\",\"node\":\"\",\"upstream\":\"\"}}\n{\"replay\":{\"id\":1,\"at\":\"2026-01-01T00:00:00Z\",\"result\":\"stored\"}}\n{\"lett"))
	f.Add([]byte("\n\n{}\n"))
	f.Add([]byte("{\"letter\":{\"id\":0}}\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		letters, good, err := DecodeDLQ(raw)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		if good > len(raw) || (good > 0 && raw[good-1] != '\n') {
			t.Fatalf("good prefix %d of %d bytes is not whole lines", good, len(raw))
		}
		for _, l := range letters {
			if l.ID == 0 {
				t.Fatalf("letter without an id accepted")
			}
		}
	})
}
