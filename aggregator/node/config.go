// Package node is one reference-aggregator node: its partitions (raft
// groups with deterministic state machines), its HTTP and gRPC APIs,
// forwarding to partition leaders, admission control, metrics, health and
// the defect zoo.
package node

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/chaosgate/chaosgate/aggregator/upstream"
)

// Defect names (--defect NAME). Each turns on one known-bad behaviour.
const (
	DefectAckBeforeCommit = "ack-before-commit"
	DefectNoDedup         = "no-dedup"
	DefectStaleRead       = "stale-read"
	DefectUnboundedQueue  = "unbounded-queue"
	DefectSlowPath        = "slow-path"
	DefectErrorRate       = "error-rate"
	DefectHLCNoUpdate     = "hlc-no-update"
	DefectGCChurn         = "gc-churn"
	DefectLeak            = "leak"
	// DefectCommitBeforeStore commits upstream offsets (acknowledges broker
	// messages) before the aggregator stored them.
	DefectCommitBeforeStore = "commit-before-store"
	// DefectSilentDrop acknowledges a fraction of messages without storing
	// them and only says so in its log.
	DefectSilentDrop = "silent-drop"
)

// DefectHelp describes every defect.
var DefectHelp = map[string]string{
	DefectAckBeforeCommit: "acknowledge writes before a majority commits them (acked writes are lost when a leader is cut off)",
	DefectNoDedup:         "disable both dedup levels (retries and duplicates reach the output stream)",
	DefectStaleRead:       "serve stream and state reads locally without a quorum check (split-brain reads)",
	DefectUnboundedQueue:  "no queue bound, no adaptive limit, no memory admission (memory grows under overload)",
	DefectSlowPath:        "add latency to every request (--slow-path-delay)",
	DefectErrorRate:       "fail a fraction of requests before storing them (--error-rate)",
	DefectHLCNoUpdate:     "the hybrid logical clock ignores received timestamps (HLC regressions after failover)",
	DefectGCChurn:         "allocate heavily on every request (GC pauses)",
	DefectLeak:            "retain --leak-bytes of every request for good (memory grows)",
	DefectSilentDrop: "acknowledge a fraction of messages (--drop-rate) without storing them; only a WARN log line " +
		"(\"dropped message …\") says so — what log guards exist to catch",
	DefectCommitBeforeStore: "upstream consumers commit offsets (acknowledge broker messages) as soon as they fetch them, before the aggregator stored them, " +
		"and abandon a revoked partition's records in flight (messages are lost when a consumer dies or a rebalance moves a partition)",
}

// Raft log layouts (--raft-log).
const (
	RaftLogShared    = "shared"
	RaftLogPartition = "partition"
	// RaftLogRaftWAL is github.com/hashicorp/raft-wal, one per partition,
	// as the raft log and the stable store (term and vote).
	RaftLogRaftWAL = "raft-wal"
)

// Defects is the set of defects turned on.
type Defects map[string]bool

// ParseDefects validates names; an unknown name is an error listing the
// known ones.
func ParseDefects(names []string) (Defects, error) {
	d := Defects{}
	for _, raw := range names {
		for _, n := range strings.Split(raw, ",") {
			n = strings.TrimSpace(n)
			if n == "" {
				continue
			}
			if _, ok := DefectHelp[n]; !ok {
				return nil, fmt.Errorf("unknown defect %q: known defects are %s", n, strings.Join(KnownDefects(), ", "))
			}
			d[n] = true
		}
	}
	return d, nil
}

// KnownDefects lists every defect name, sorted.
func KnownDefects() []string {
	out := make([]string, 0, len(DefectHelp))
	for k := range DefectHelp {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Has reports whether defect name is on.
func (d Defects) Has(name string) bool { return d[name] }

// List returns the defects turned on, sorted.
func (d Defects) List() []string {
	out := make([]string, 0, len(d))
	for k, on := range d {
		if on {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Config configures a node. Zero values take the defaults of Defaults.
type Config struct {
	ID         string
	HTTPListen string
	GRPCListen string
	RaftListen string
	// Listeners, when set, are used instead of listening on the addresses.
	HTTPListener net.Listener
	GRPCListener net.Listener
	RaftListener net.Listener
	// Peers are the raft addresses this node dials, by node id (every node,
	// itself included). PeerHTTP and PeerGRPC are the API addresses used to
	// forward to leaders and reported by GET /v1/cluster.
	Peers    map[string]string
	PeerHTTP map[string]string
	PeerGRPC map[string]string
	DataDir  string
	// DialSource is the local IP address every connection to a peer (raft,
	// forwarded requests) is dialled from; empty: the system's choice. On
	// a host with several addresses it makes the node's traffic leave from
	// the address its peers and network policies know it by.
	DialSource string

	Partitions int
	// RaftLog is where raft logs live: RaftLogPartition (default: one log
	// per partition; their fsyncs run in parallel) or RaftLogShared (one log
	// per node: one fsync covers the appends of every partition, which
	// wins on devices where fsyncs do not overlap) or RaftLogRaftWAL
	// (hashicorp/raft-wal per partition, also holding term and vote).
	RaftLog string
	// SyncInterval is the durability of an acknowledgement: 0 (default)
	// fsyncs the raft log on every replica before an entry counts as
	// stored, so an acknowledged message survives a power loss of the
	// whole cluster; above 0, entries are stored in the page cache and
	// fsynced within SyncInterval, so an acknowledged message survives
	// process crashes and the power loss of a minority (NATS JetStream's
	// default durability, with sync_interval 2m).
	SyncInterval time.Duration
	// StreamRetention is how many of the newest records each partition's
	// output stream keeps (0: all). Older records are removed, so that
	// snapshots, and with them restart time, stay bounded; reading below
	// the earliest kept offset is an error (410), never a silent skip.
	StreamRetention uint64
	Defects         Defects
	// RSSCap bounds memory: admission refuses new work above 80% of it.
	RSSCap int64
	// GoMemoryLimit sets the Go runtime's soft memory limit to 70% of
	// RSSCap (process-wide: only for a node that owns its process).
	GoMemoryLimit bool

	// RaftInflight is how many AppendEntries RPCs may be in flight per
	// follower (1: synchronous, every RPC with a deadline).
	RaftInflight      int
	HeartbeatTimeout  time.Duration
	ElectionTimeout   time.Duration
	ApplyTimeout      time.Duration
	RequestTimeout    time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotInterval  time.Duration
	BalanceInterval   time.Duration

	ReorderTimeout     time.Duration
	ReorderMaxCount    int
	ReorderMaxDistance int
	TickInterval       time.Duration
	DedupTTL           time.Duration
	// DedupMax bounds the (msg_id, fingerprint) pairs remembered by the
	// whole node; each partition holds an equal share.
	DedupMax       int
	MaxClockOffset time.Duration

	SourceRate      float64
	ConnRate        float64
	MaxRequests     int
	QueueDepth      int
	MaxBatch        int
	InflightInitial int
	InflightMax     int
	LatencyTarget   time.Duration

	SlowPathDelay time.Duration
	ErrorRate     float64
	// DropRate is the fraction of messages the silent-drop defect drops.
	DropRate float64
	// LeakBytes is what the leak defect retains per request, on top of
	// the request's own size.
	LeakBytes int

	// Physical is the physical clock in Unix ns (default time.Now). The
	// admin API's clock skew (admin.go) is added to it.
	Physical func() int64
	// AdminToken, when set, serves the admin API (/v1/admin/...: clock
	// skew, leadership transfer) to callers that present it as a bearer
	// token; empty: no admin API.
	AdminToken string
	// Logger receives the node's logs (default slog.Default()).
	Logger *slog.Logger
	// LogOutput receives raft's own logs (default os.Stderr).
	LogOutput io.Writer
	// RaftLogLevel is raft's log level (default "warn").
	RaftLogLevel string
	// Upstreams are the message brokers this node consumes from (NATS
	// JetStream, Kafka, MQTT); see aggregator/upstream.
	Upstreams []upstream.Config
	// DLQMax bounds the letters of the node's dead-letter queue (default
	// 100000).
	DLQMax int
	// WebSocketMax bounds the WebSocket ingest connections served at once
	// (default 20000; beyond: 503).
	WebSocketMax int

	// Pprof serves Go's runtime profiles under /debug/pprof/ on the HTTP
	// listener (off by default: profiles expose internals).
	Pprof bool
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	def := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	defi := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	if c.Partitions == 0 {
		c.Partitions = 16
	}
	if c.RaftLog == "" {
		c.RaftLog = RaftLogPartition
	}
	if c.RSSCap == 0 {
		c.RSSCap = 256 << 20
	}
	defi(&c.RaftInflight, 1)
	def(&c.HeartbeatTimeout, time.Second)
	def(&c.ElectionTimeout, time.Second)
	def(&c.ApplyTimeout, 5*time.Second)
	def(&c.RequestTimeout, 10*time.Second)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 4096
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = c.SnapshotThreshold
	}
	def(&c.SnapshotInterval, 30*time.Second)
	def(&c.BalanceInterval, 2*time.Second)
	def(&c.ReorderTimeout, 2*time.Second)
	defi(&c.ReorderMaxCount, 1024)
	defi(&c.ReorderMaxDistance, 4096)
	def(&c.TickInterval, c.ReorderTimeout/4)
	def(&c.DedupTTL, 10*time.Minute)
	defi(&c.DedupMax, 200000)
	def(&c.MaxClockOffset, 500*time.Millisecond)
	if c.SourceRate == 0 {
		c.SourceRate = 50000
	}
	if c.ConnRate == 0 {
		c.ConnRate = 100000
	}
	defi(&c.MaxRequests, 1024)
	defi(&c.QueueDepth, 1024)
	defi(&c.MaxBatch, 512)
	defi(&c.InflightInitial, 4096)
	defi(&c.InflightMax, 32768)
	def(&c.LatencyTarget, 250*time.Millisecond)
	def(&c.SlowPathDelay, 50*time.Millisecond)
	if c.LeakBytes == 0 {
		c.LeakBytes = 16 << 10
	}
	if c.ErrorRate == 0 {
		c.ErrorRate = 0.1
	}
	if c.DropRate == 0 {
		c.DropRate = 0.02
	}
	if c.Defects == nil {
		c.Defects = Defects{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.LogOutput == nil {
		c.LogOutput = os.Stderr
	}
	if c.RaftLogLevel == "" {
		c.RaftLogLevel = "warn"
	}
	defi(&c.WebSocketMax, 20000)
	for i := range c.Upstreams {
		c.Upstreams[i].Defaults()
		c.Upstreams[i].CommitBeforeStore = c.Defects.Has(DefectCommitBeforeStore)
	}
}

// Validate reports configuration errors.
func (c *Config) Validate() error {
	switch {
	case c.ID == "":
		return fmt.Errorf("--id is required")
	case c.DataDir == "":
		return fmt.Errorf("--data-dir is required")
	case c.Partitions < 1 || c.Partitions > 4096:
		return fmt.Errorf("--partitions %d: want 1..4096", c.Partitions)
	case len(c.Peers) == 0:
		return fmt.Errorf("--peers is required (n1=ADDR,n2=ADDR,...; include this node)")
	case c.Peers[c.ID] == "":
		return fmt.Errorf("--peers has no address for this node %q", c.ID)
	case c.RaftLog != RaftLogShared && c.RaftLog != RaftLogPartition && c.RaftLog != RaftLogRaftWAL:
		return fmt.Errorf("--raft-log %q: want %s, %s or %s", c.RaftLog, RaftLogPartition, RaftLogShared, RaftLogRaftWAL)
	case c.ErrorRate < 0 || c.ErrorRate > 1:
		return fmt.Errorf("--error-rate %v: want 0..1", c.ErrorRate)
	case c.DropRate < 0 || c.DropRate > 1:
		return fmt.Errorf("--drop-rate %v: want 0..1", c.DropRate)
	case c.LeakBytes < 0 || c.LeakBytes > 64<<20:
		return fmt.Errorf("--leak-bytes %d: want 0..%d", c.LeakBytes, 64<<20)
	case c.SyncInterval < 0:
		return fmt.Errorf("--sync-interval %v: want always or a positive duration", c.SyncInterval)
	case c.DialSource != "" && net.ParseIP(c.DialSource) == nil:
		return fmt.Errorf("--dial-source %q: want an IP address of this host, e.g. 10.0.0.7", c.DialSource)
	}
	for i := range c.Upstreams {
		if err := c.Upstreams[i].Validate(); err != nil {
			return fmt.Errorf("--upstream: %v", err)
		}
	}
	for id := range c.Peers {
		if id != c.ID && c.PeerHTTP[id] == "" {
			return fmt.Errorf("--peer-http has no address for node %q (needed to forward to it)", id)
		}
	}
	return nil
}

// ParseSyncInterval reads the --sync-interval value: "always" (fsync
// every raft log append, 0) or a positive duration such as 100ms or 2m.
func ParseSyncInterval(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if strings.EqualFold(t, "always") || t == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(t)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--sync-interval %q: want always (fsync before every acknowledgement) or a positive duration like 100ms or 2m", s)
	}
	return d, nil
}

// ParseAddrMap reads "n1=ADDR,n2=ADDR".
func ParseAddrMap(flag, s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--%s: %q is not ID=HOST:PORT (e.g. n1=127.0.0.1:7201)", flag, part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("--%s: %s: %v", flag, part, err)
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("--%s: node %q given twice", flag, id)
		}
		out[id] = addr
	}
	return out, nil
}

func sortedIDs(m map[string]string) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
