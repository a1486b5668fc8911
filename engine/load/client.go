package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/chaosgate/chaosgate/internal/textclip"
	"github.com/chaosgate/chaosgate/internal/traceparent"
)

// Message is one message of the aggregator's message contract (API.md).
type Message struct {
	SourceID    string `json:"source_id"`
	Seq         uint64 `json:"seq"`
	MsgID       string `json:"msg_id"`
	GroupKey    string `json:"group_key"`
	Fingerprint string `json:"fingerprint"`
	EventTime   string `json:"event_time,omitempty"`
	TraceID     string `json:"trace_id,omitempty"`
	Payload     string `json:"payload,omitempty"`

	partition int
	dup       bool // a deliberate re-send of an acknowledged message
}

// Result is the aggregator's outcome for one message.
type Result struct {
	MsgID        string `json:"msg_id"`
	Status       string `json:"status"`
	Partition    int    `json:"partition"`
	Epoch        uint64 `json:"epoch"`
	HLC          string `json:"hlc"`
	Node         string `json:"node"`
	Error        string `json:"error"`
	ErrorKind    string `json:"error_kind"`
	RetryAfterMs int64  `json:"retry_after_ms"`
}

// StreamRecord is one record of GET /v1/stream/{p}.
type StreamRecord struct {
	Offset      int64  `json:"offset"`
	Type        string `json:"type"`
	SourceID    string `json:"source_id"`
	Seq         uint64 `json:"seq"`
	MsgID       string `json:"msg_id"`
	GroupKey    string `json:"group_key"`
	Fingerprint string `json:"fingerprint"`
	FromSeq     uint64 `json:"from_seq"`
	ToSeq       uint64 `json:"to_seq"`
	Epoch       uint64 `json:"epoch"`
	HLC         string `json:"hlc"`
	Node        string `json:"node"`
}

// StreamPage is the body of GET /v1/stream/{p}.
type StreamPage struct {
	Partition     int            `json:"partition"`
	Leader        string         `json:"leader"`
	Epoch         uint64         `json:"epoch"`
	Next          int64          `json:"next"`
	HighWatermark int64          `json:"high_watermark"`
	Records       []StreamRecord `json:"records"`
}

// ClusterInfo is the body of GET /v1/cluster.
type ClusterInfo struct {
	Node           string `json:"node"`
	Partitioner    string `json:"partitioner"`
	PartitionCount int    `json:"partition_count"`
	Nodes          []struct {
		ID   string `json:"id"`
		HTTP string `json:"http"`
	} `json:"nodes"`
	Partitions []struct {
		ID      int      `json:"id"`
		Leader  string   `json:"leader"`
		Epoch   uint64   `json:"epoch"`
		Members []string `json:"members"`
	} `json:"partitions"`
}

// StateView is the body of GET/PUT /v1/state/{key}.
type StateView struct {
	Key     string `json:"key"`
	State   string `json:"state"`
	Version uint64 `json:"version"`
	Value   string `json:"value"`
}

// Targets returns the HTTP addresses (host:port) to send to. It is called
// for every request, so the set may change while load runs.
type Targets func() []string

// StaticTargets returns a fixed target list.
func StaticTargets(addrs ...string) Targets {
	return func() []string { return addrs }
}

// client talks HTTP to the aggregator nodes, round-robin over the targets.
type client struct {
	hc      *http.Client
	targets Targets
	rr      atomic.Uint64
	timeout time.Duration
	// traced counts requests for the trace sampling (TraceEvery).
	traced atomic.Uint64
	// headers are set on every request (Config.Headers).
	headers map[string]string
}

// TraceEvery is the share of requests marked sampled in their W3C
// traceparent: one in TraceEvery. Every request carries a trace id; only
// sampled ones are logged by the node that serves them (a log line for
// every request slowed a five-node cluster's recovery on a busy host) and
// kept in the run's trace sample.
const TraceEvery = 32

func newClient(targets Targets, timeout time.Duration, conns int) *client {
	tr := &http.Transport{MaxIdleConns: conns * 4, MaxIdleConnsPerHost: conns, IdleConnTimeout: 30 * time.Second}
	return &client{hc: &http.Client{Transport: tr}, targets: targets, timeout: timeout}
}

func (c *client) close() { c.hc.CloseIdleConnections() }

func (c *client) pick() (string, error) {
	ts := c.targets()
	if len(ts) == 0 {
		return "", errors.New("no targets")
	}
	return ts[int(c.rr.Add(1)%uint64(len(ts)))], nil
}

type httpOutcome struct {
	status     int
	body       []byte
	retryAfter time.Duration
	err        error // transport error or timeout: unknown outcome
	// traceID is the W3C trace id the request carried in its traceparent.
	traceID string
}

func (c *client) do(ctx context.Context, method, addr, path string, body []byte) httpOutcome {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return httpOutcome{err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	// Every request is the root of its own W3C trace; one in TraceEvery
	// is sampled, and the node that serves it logs its trace id.
	tp := traceparent.New()
	tid := tp.TraceIDString()
	if c.traced.Add(1)%TraceEvery != 1 {
		tp.Flags &^= traceparent.FlagSampled
		tid = "" // not sampled: not logged by the node, not kept
	}
	req.Header.Set(traceparent.Header, tp.String())
	resp, err := c.hc.Do(req)
	if err != nil {
		return httpOutcome{err: err, traceID: tid}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return httpOutcome{err: err, traceID: tid}
	}
	out := httpOutcome{status: resp.StatusCode, body: b, traceID: tid}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			out.retryAfter = time.Duration(n) * time.Second
		}
	}
	return out
}

// FetchCluster asks one of the targets for GET /v1/cluster.
func FetchCluster(ctx context.Context, targets Targets) (ClusterInfo, error) {
	c := newClient(targets, 5*time.Second, 1)
	defer c.close()
	var lastErr error
	for _, addr := range targets() {
		o := c.do(ctx, http.MethodGet, addr, "/v1/cluster", nil)
		if o.err != nil {
			lastErr = o.err
			continue
		}
		if o.status != http.StatusOK {
			lastErr = fmt.Errorf("%s: GET /v1/cluster: HTTP %d: %s", addr, o.status, truncate(o.body))
			continue
		}
		var ci ClusterInfo
		if err := json.Unmarshal(o.body, &ci); err != nil {
			lastErr = fmt.Errorf("%s: GET /v1/cluster: %w", addr, err)
			continue
		}
		if ci.PartitionCount < 1 {
			lastErr = fmt.Errorf("%s: GET /v1/cluster: partition_count %d", addr, ci.PartitionCount)
			continue
		}
		return ci, nil
	}
	if lastErr == nil {
		lastErr = errors.New("no targets")
	}
	return ClusterInfo{}, lastErr
}

// WatchCluster hands apply the cluster view (FetchCluster, 2 s timeout) at
// once and then every interval until ctx ends. A fetch that fails is
// skipped, so the last view applied stays in force.
func WatchCluster(ctx context.Context, targets Targets, every time.Duration, apply func(ClusterInfo)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ci, err := FetchCluster(cctx, targets)
		cancel()
		if err == nil {
			apply(ci)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func truncate(b []byte) string { return textclip.Bytes(b, 200) }

// Leaders counts, per node id, the partitions it leads according to
// GET /v1/cluster on the first target that answers.
func Leaders(ctx context.Context, targets Targets) (map[string]int, error) {
	ci, err := FetchCluster(ctx, targets)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, p := range ci.Partitions {
		if p.Leader != "" {
			out[p.Leader]++
		}
	}
	return out, nil
}

// BusiestLeader is the node leading the most partitions (ties: lowest id).
func BusiestLeader(ctx context.Context, targets Targets) (string, int, error) {
	ls, err := Leaders(ctx, targets)
	if err != nil {
		return "", 0, err
	}
	best, n := "", -1
	for id, c := range ls {
		if c > n || (c == n && id < best) {
			best, n = id, c
		}
	}
	if best == "" {
		return "", 0, errors.New("no partition has a leader")
	}
	return best, n, nil
}

// appendMessagesJSON appends {"messages":[...]} for msgs: the same JSON
// encoding/json produces for a batch (the load generator's hot path, so it
// is written out instead of reflected).
func appendMessagesJSON(b []byte, msgs []Message) []byte {
	b = append(b, `{"messages":[`...)
	for i := range msgs {
		m := &msgs[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"source_id":`...)
		b = appendJSONString(b, m.SourceID)
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, m.Seq, 10)
		b = append(b, `,"msg_id":`...)
		b = appendJSONString(b, m.MsgID)
		b = append(b, `,"group_key":`...)
		b = appendJSONString(b, m.GroupKey)
		b = append(b, `,"fingerprint":`...)
		b = appendJSONString(b, m.Fingerprint)
		if m.EventTime != "" {
			b = append(b, `,"event_time":`...)
			b = appendJSONString(b, m.EventTime)
		}
		if m.TraceID != "" {
			b = append(b, `,"trace_id":`...)
			b = appendJSONString(b, m.TraceID)
		}
		if m.Payload != "" {
			b = append(b, `,"payload":`...)
			b = appendJSONString(b, m.Payload)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 goes through
// encoding/json, which replaces it as it always has.
func appendJSONString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		q, _ := json.Marshal(s)
		return append(b, q...)
	}
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
