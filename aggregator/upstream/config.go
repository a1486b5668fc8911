// Package upstream feeds the aggregator from message brokers: a NATS
// JetStream pull consumer, a Kafka consumer group and an MQTT subscriber.
// Every adapter hands its deliveries to the same pipeline, which submits them
// to the aggregator's ingest path (HLC stamp, partition, reorder, dedup, state
// machine) and acknowledges or commits them upstream only after the
// aggregator committed them (or after they were written to the dead-letter
// queue).
//
// The pipeline retries a message that failed with exponential backoff and
// jitter up to a limit, then writes it with its reason to a durable
// dead-letter queue that the API lists and replays (with the same msg_id, so
// dedup holds). A failure that the downstream — the aggregator's commit
// path — is unhealthy does not count against the message: it counts against
// a circuit breaker (closed, open, half-open) that pauses consumption of the
// upstream while open and probes the downstream's health before closing.
package upstream

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Kinds of upstream.
const (
	KindNATS  = "nats"
	KindKafka = "kafka"
	KindMQTT  = "mqtt"
)

// Config is one upstream of a node.
type Config struct {
	// Name labels the upstream in metrics, logs, the dead-letter queue and
	// the API (default: the kind).
	Name string
	// Kind is nats, kafka or mqtt.
	Kind string
	// Brokers are the broker addresses (HOST:PORT) to dial.
	Brokers []string

	// Stream is the JetStream stream (NATS); Topic the Kafka topic or the
	// MQTT topic prefix.
	Stream string
	Topic  string
	// Subject filters the JetStream consumer (default: every subject of the
	// stream).
	Subject string
	// Group is the Kafka consumer group or the JetStream durable consumer
	// (default "chaosgate").
	Group string
	// AckWait is how long JetStream waits for an acknowledgement before it
	// redelivers (default 5s). Keep the aggregator's --reorder-timeout
	// above it when nodes share the consumer.
	AckWait time.Duration
	// SessionTimeout is the Kafka group session timeout (default 10s): how
	// long a member that died silently keeps its partitions.
	SessionTimeout time.Duration
	// Shards is the number of MQTT topics PREFIX/0..Shards-1 (default 8);
	// each node subscribes to the shards s with s mod nodes == its index.
	Shards int
	// Batch is the most deliveries submitted together (default 256).
	Batch int

	// Retry bounds the retries of one message.
	Retry RetryPolicy
	// Breaker configures the circuit breaker on the downstream path.
	Breaker BreakerPolicy
	// LagAlert is the lag (messages) above which, held for LagAlertFor,
	// the lag alert fires (default 10000 for 2m). While it fires, one
	// downstream failure opens the breaker.
	LagAlert    int64
	LagAlertFor time.Duration
	// LagInterval is how often the lag is measured (default 1s).
	LagInterval time.Duration

	// CommitBeforeStore is the upstream defect: offsets are committed (and
	// JetStream messages acknowledged) as soon as they are fetched, before
	// the aggregator stored them, and a revoked partition's records in
	// flight are abandoned. Off unless the node names the defect.
	CommitBeforeStore bool
}

// RetryPolicy is the exponential backoff of one message: attempts are spaced
// by Initial, doubling up to Max, each randomised by ±50% (jitter).
type RetryPolicy struct {
	// MaxAttempts is how many times a message is tried while the downstream
	// is healthy before it is dead-lettered (default 8: with the default
	// backoff about 11 s of retries, longer than a partition leader's
	// failover, whose failures a node cannot tell from the message's own
	// until the election ends).
	MaxAttempts int
	Initial     time.Duration // default 100ms
	Max         time.Duration // default 5s
}

// BreakerPolicy configures the circuit breaker.
type BreakerPolicy struct {
	// After is how many consecutive downstream failures open the breaker
	// (default 5).
	After int
	// Timeout is how long the breaker stays open before it probes the
	// downstream (half-open; default 5s).
	Timeout time.Duration
	// SlowCall makes a submission slower than this a downstream failure
	// (default 0: off).
	SlowCall time.Duration
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.Name == "" {
		c.Name = c.Kind
	}
	if c.Group == "" {
		c.Group = "chaosgate"
	}
	def := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	def(&c.AckWait, 5*time.Second)
	def(&c.SessionTimeout, 10*time.Second)
	def(&c.Retry.Initial, 100*time.Millisecond)
	def(&c.Retry.Max, 5*time.Second)
	def(&c.Breaker.Timeout, 5*time.Second)
	def(&c.LagAlertFor, 2*time.Minute)
	def(&c.LagInterval, time.Second)
	if c.Shards == 0 {
		c.Shards = 8
	}
	if c.Batch == 0 {
		c.Batch = 256
	}
	if c.Retry.MaxAttempts == 0 {
		c.Retry.MaxAttempts = 8
	}
	if c.Breaker.After == 0 {
		c.Breaker.After = 5
	}
	if c.LagAlert == 0 {
		c.LagAlert = 10000
	}
}

// Validate reports configuration errors.
func (c *Config) Validate() error {
	if !nameOK(c.Name) {
		return fmt.Errorf("upstream name %q: use 1..64 letters, digits, '-', '_' or '.'", c.Name)
	}
	if len(c.Brokers) == 0 {
		return fmt.Errorf("upstream %s: no broker address", c.Name)
	}
	switch c.Kind {
	case KindNATS:
		if c.Stream == "" {
			return fmt.Errorf("upstream %s: nats needs a stream (nats://HOST:PORT/STREAM)", c.Name)
		}
	case KindKafka:
		if c.Topic == "" {
			return fmt.Errorf("upstream %s: kafka needs a topic (kafka://HOST:PORT/TOPIC)", c.Name)
		}
	case KindMQTT:
		if c.Topic == "" {
			return fmt.Errorf("upstream %s: mqtt needs a topic prefix (mqtt://HOST:PORT/PREFIX)", c.Name)
		}
		if strings.ContainsAny(c.Topic, "+#") {
			return fmt.Errorf("upstream %s: mqtt topic prefix %q has a wildcard; the shards PREFIX/0..N-1 are subscribed to", c.Name, c.Topic)
		}
		if c.Shards < 1 || c.Shards > 1024 {
			return fmt.Errorf("upstream %s: shards %d: want 1..1024", c.Name, c.Shards)
		}
	default:
		return fmt.Errorf("upstream kind %q: want nats, kafka or mqtt", c.Kind)
	}
	switch {
	case c.Batch < 1 || c.Batch > 1000:
		return fmt.Errorf("upstream %s: batch %d: want 1..1000 (the aggregator takes at most 1000 messages a request)", c.Name, c.Batch)
	case c.Retry.MaxAttempts < 1 || c.Retry.MaxAttempts > 1000:
		return fmt.Errorf("upstream %s: max_attempts %d: want 1..1000", c.Name, c.Retry.MaxAttempts)
	case c.Retry.Initial <= 0 || c.Retry.Max < c.Retry.Initial:
		return fmt.Errorf("upstream %s: backoff %s..%s: want 0 < backoff <= max_backoff", c.Name, c.Retry.Initial, c.Retry.Max)
	case c.Breaker.After < 1:
		return fmt.Errorf("upstream %s: breaker_after %d: want at least 1", c.Name, c.Breaker.After)
	case c.Breaker.Timeout <= 0 || c.Breaker.SlowCall < 0:
		return fmt.Errorf("upstream %s: breaker_timeout must be positive and slow_call not negative", c.Name)
	case c.LagAlert < 1 || c.LagAlertFor < 0 || c.LagInterval <= 0:
		return fmt.Errorf("upstream %s: lag_alert must be positive, lag_alert_for not negative, lag_interval positive", c.Name)
	case c.AckWait <= 0 || c.SessionTimeout <= 0:
		return fmt.Errorf("upstream %s: ack_wait and session_timeout must be positive", c.Name)
	}
	return nil
}

func nameOK(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// URLHelp describes the upstream URL syntax.
const URLHelp = `nats://HOST:PORT[,HOST:PORT...]/STREAM[?subject=SUBJ&consumer=NAME&ack_wait=5s]
kafka://HOST:PORT[,HOST:PORT...]/TOPIC[?group=NAME&session_timeout=10s]
mqtt://HOST:PORT/TOPIC/PREFIX[?shards=8]
common parameters: name, batch, max_attempts, backoff, max_backoff, breaker_after,
breaker_timeout, slow_call, lag_alert, lag_alert_for, lag_interval`

// ParseURL reads one upstream from its URL (see URLHelp). Errors name the
// part at fault.
func ParseURL(s string) (Config, error) {
	var c Config
	scheme, rest, ok := strings.Cut(strings.TrimSpace(s), "://")
	if !ok {
		return c, fmt.Errorf("upstream %q: want SCHEME://HOST:PORT/..., scheme nats, kafka or mqtt", s)
	}
	c.Kind = strings.ToLower(scheme)
	if c.Kind != KindNATS && c.Kind != KindKafka && c.Kind != KindMQTT {
		return c, fmt.Errorf("upstream %q: unknown scheme %q (want nats, kafka or mqtt)", s, scheme)
	}
	rest, query, _ := strings.Cut(rest, "?")
	hosts, path, _ := strings.Cut(rest, "/")
	for _, h := range strings.Split(hosts, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" {
			return c, fmt.Errorf("upstream %q: broker %q is not HOST:PORT", s, h)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return c, fmt.Errorf("upstream %q: broker %q: port %q is not 1..65535", s, h, port)
		}
		c.Brokers = append(c.Brokers, h)
	}
	if len(c.Brokers) == 0 {
		return c, fmt.Errorf("upstream %q: no broker address (want %s://HOST:PORT/...)", s, c.Kind)
	}
	path, err := url.PathUnescape(path)
	if err != nil {
		return c, fmt.Errorf("upstream %q: path: %v", s, err)
	}
	path = strings.Trim(path, "/")
	switch c.Kind {
	case KindNATS:
		c.Stream = path
	default:
		c.Topic = path
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return c, fmt.Errorf("upstream %q: query: %v", s, err)
	}
	var errs []error
	dur := func(key string, p *time.Duration) {
		if v := q.Get(key); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				errs = append(errs, fmt.Errorf("%s=%q: want a duration like 5s", key, v))
				return
			}
			*p = d
		}
	}
	num := func(key string, p *int) {
		if v := q.Get(key); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				errs = append(errs, fmt.Errorf("%s=%q: want a non-negative integer", key, v))
				return
			}
			*p = n
		}
	}
	known := map[string]bool{}
	for _, k := range []string{"name", "subject", "consumer", "group", "ack_wait", "session_timeout", "shards", "batch", "max_attempts",
		"backoff", "max_backoff", "breaker_after", "breaker_timeout", "slow_call", "lag_alert", "lag_alert_for", "lag_interval"} {
		known[k] = true
	}
	for k := range q {
		if !known[k] {
			errs = append(errs, fmt.Errorf("unknown parameter %q", k))
		}
	}
	c.Name = q.Get("name")
	c.Subject = q.Get("subject")
	c.Group = q.Get("group")
	if v := q.Get("consumer"); v != "" {
		c.Group = v
	}
	dur("ack_wait", &c.AckWait)
	dur("session_timeout", &c.SessionTimeout)
	num("shards", &c.Shards)
	num("batch", &c.Batch)
	num("max_attempts", &c.Retry.MaxAttempts)
	dur("backoff", &c.Retry.Initial)
	dur("max_backoff", &c.Retry.Max)
	num("breaker_after", &c.Breaker.After)
	dur("breaker_timeout", &c.Breaker.Timeout)
	dur("slow_call", &c.Breaker.SlowCall)
	dur("lag_alert_for", &c.LagAlertFor)
	dur("lag_interval", &c.LagInterval)
	if v := q.Get("lag_alert"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("lag_alert=%q: want a positive integer", v))
		}
		c.LagAlert = n
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("upstream %q: %w (hint: %s)", s, err, strings.ReplaceAll(URLHelp, "\n", "; "))
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// String is the upstream's URL form (without defaults that were not set).
func (c Config) String() string {
	path := c.Topic
	if c.Kind == KindNATS {
		path = c.Stream
	}
	return fmt.Sprintf("%s://%s/%s?name=%s", c.Kind, strings.Join(c.Brokers, ","), path, url.QueryEscape(c.Name))
}
