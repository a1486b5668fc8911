package main

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chaosgate/chaosgate/aggregator/node"
	"github.com/chaosgate/chaosgate/aggregator/upstream"
)

// newAggregatorCmd runs one reference-aggregator node until SIGTERM/SIGINT.
func newAggregatorCmd() *cobra.Command {
	var (
		cfg                               node.Config
		peers, peerHTTP, peerGRPC, rssCap string
		syncInterval                      string
		defects                           []string
		upstreams                         []string
		adminTokenFile                    string
	)
	cmd := &cobra.Command{
		Use:   "aggregator",
		Short: "Run one reference-aggregator node (replicated, deduplicating, ordered message aggregation)",
		Long: `Run one node of the reference message-aggregation service.

Partitions of group keys (jump-xxhash64) are raft groups over all nodes given
in --peers; a node starts and joins even when its peers are not up yet, and
restarts from --data-dir. --http, --grpc and --raft are listen addresses;
--peers and --peer-http are the addresses dialled for each node (they may be
fault proxies). The network API is aggregator/API.md.

Upstreams (--upstream, repeatable) make the node consume from message
brokers into the same ingest path, acknowledging upstream only after the
aggregator committed (or dead-lettered) a message:
` + upstream.URLHelp + `

Defects (off unless named): ` + strings.Join(node.KnownDefects(), ", ") + `.`,
		Example: `  chaosgate aggregator --id n1 --http 127.0.0.1:7001 --grpc 127.0.0.1:7101 --raft 127.0.0.1:7201 \
    --peers n1=127.0.0.1:7201,n2=127.0.0.1:7202,n3=127.0.0.1:7203 \
    --peer-http n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003 --data-dir /var/lib/chaosgate/n1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Peers, err = node.ParseAddrMap("peers", peers); err != nil {
				return withExitCode(exitUsage, err)
			}
			if cfg.PeerHTTP, err = node.ParseAddrMap("peer-http", peerHTTP); err != nil {
				return withExitCode(exitUsage, err)
			}
			if cfg.PeerGRPC, err = node.ParseAddrMap("peer-grpc", peerGRPC); err != nil {
				return withExitCode(exitUsage, err)
			}
			if cfg.Defects, err = node.ParseDefects(defects); err != nil {
				return withExitCode(exitUsage, err)
			}
			for _, u := range upstreams {
				uc, err := upstream.ParseURL(u)
				if err != nil {
					return withExitCode(exitUsage, fmt.Errorf("--upstream: %w", err))
				}
				cfg.Upstreams = append(cfg.Upstreams, uc)
			}
			if cfg.SyncInterval, err = node.ParseSyncInterval(syncInterval); err != nil {
				return withExitCode(exitUsage, err)
			}
			if cfg.RSSCap, err = parseBytes(rssCap); err != nil {
				return withExitCode(exitUsage, fmt.Errorf("--rss-cap: %v", err))
			}
			if cfg.HTTPListen == "" || cfg.RaftListen == "" {
				return withExitCode(exitUsage, fmt.Errorf("--http and --raft are required"))
			}
			if cfg.PeerHTTP[cfg.ID] == "" {
				cfg.PeerHTTP[cfg.ID] = cfg.HTTPListen
			}
			if cfg.GRPCListen != "" && cfg.PeerGRPC[cfg.ID] == "" {
				cfg.PeerGRPC[cfg.ID] = cfg.GRPCListen
			}
			if adminTokenFile != "" {
				b, err := os.ReadFile(adminTokenFile)
				if err != nil {
					return withExitCode(exitUsage, fmt.Errorf("--admin-token-file: %v", err))
				}
				if cfg.AdminToken = strings.TrimSpace(string(b)); len(cfg.AdminToken) < 16 {
					return withExitCode(exitUsage, fmt.Errorf("--admin-token-file %s: the token is shorter than 16 characters", adminTokenFile))
				}
			}
			cfg.Logger = newLogger(slog.LevelInfo)
			// The Go runtime works to stay under the cap; admission control
			// refuses new work above 80% of it.
			cfg.GoMemoryLimit = true
			n, err := node.Start(cfg)
			if err != nil {
				if node.KindOf(err) == node.KindInvalid {
					return withExitCode(exitUsage, err)
				}
				return withExitCode(exitUsage, fmt.Errorf("aggregator %s: %w", cfg.ID, err))
			}
			<-cmd.Context().Done()
			cfg.Logger.Info("signal received, stopping", "node", cfg.ID)
			return n.Close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ID, "id", "", "node id, e.g. n1 (required)")
	f.StringVar(&cfg.HTTPListen, "http", "", "HTTP API listen address (required)")
	f.StringVar(&cfg.GRPCListen, "grpc", "", "gRPC API listen address (empty: no gRPC)")
	f.StringVar(&cfg.RaftListen, "raft", "", "raft listen address, shared by all partitions (required)")
	f.StringVar(&peers, "peers", "", "raft dial address of every node, this one included: n1=ADDR,n2=ADDR,... (required)")
	f.StringVar(&peerHTTP, "peer-http", "", "HTTP dial address of every node, for forwarding to leaders: n1=ADDR,...")
	f.StringVar(&peerGRPC, "peer-grpc", "", "gRPC address of every node, reported by /v1/cluster: n1=ADDR,...")
	f.StringVar(&cfg.DialSource, "dial-source", "", "local IP address to dial peers (raft, forwarded requests) from; empty: the system's choice (on a host with several addresses, the one peers and network policies know this node by)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for raft logs, snapshots, the output streams and the HLC bound (required)")
	f.IntVar(&cfg.Partitions, "partitions", 16, "number of partitions (fixed when the cluster is created)")
	f.StringArrayVar(&defects, "defect", nil, "turn on a known-bad behaviour (repeatable): "+strings.Join(node.KnownDefects(), ", "))
	f.StringArrayVar(&upstreams, "upstream", nil, "consume a message broker (repeatable): nats://HOST:PORT/STREAM, kafka://HOST:PORT/TOPIC or mqtt://HOST:PORT/PREFIX, with ?name=...&group=... (see above)")
	f.IntVar(&cfg.DLQMax, "dlq-max", 100000, "most letters the node's dead-letter queue holds")
	f.IntVar(&cfg.WebSocketMax, "websocket-max", 20000, "most WebSocket ingest connections (GET /v1/ws) served at once")
	f.StringVar(&adminTokenFile, "admin-token-file", "", "file holding the bearer token of the admin API (/v1/admin/clock: clock skew; /v1/admin/partitions/P/transfer: leadership transfer); empty: no admin API")
	f.StringVar(&rssCap, "rss-cap", "256MiB", "memory cap: admission refuses new work above 80% of it")
	f.StringVar(&cfg.RaftLog, "raft-log", "partition", "raft log: partition (one log per partition, fsyncs in parallel), shared (one log per node, one fsync covers every partition) or raft-wal (hashicorp/raft-wal per partition, also holding raft term and vote)")
	f.StringVar(&syncInterval, "sync-interval", "always", "durability of an acknowledgement: always (every replica fsyncs the raft log before an entry counts as stored; survives a power loss) or a duration like 100ms (entries are fsynced in the background within it; survives process crashes and a minority power loss, like NATS JetStream's default)")
	f.Uint64Var(&cfg.StreamRetention, "stream-retention", 100_000, "newest records kept per partition's output stream (0: all); older ones are removed so snapshots and restarts stay bounded")
	f.IntVar(&cfg.RaftInflight, "raft-inflight", 1, "AppendEntries RPCs in flight per follower (1: synchronous, each with a deadline)")
	f.StringVar(&cfg.RaftLogLevel, "raft-log-level", "warn", "raft library log level")
	f.BoolVar(&cfg.Pprof, "pprof", false, "serve Go runtime profiles under /debug/pprof/ on the HTTP listener")
	f.DurationVar(&cfg.HeartbeatTimeout, "heartbeat-timeout", time.Second, "raft heartbeat timeout")
	f.DurationVar(&cfg.ElectionTimeout, "election-timeout", time.Second, "raft election timeout")
	f.DurationVar(&cfg.ApplyTimeout, "apply-timeout", 5*time.Second, "how long a proposal may wait to be committed")
	f.DurationVar(&cfg.RequestTimeout, "request-timeout", 10*time.Second, "how long a client request may take")
	f.Uint64Var(&cfg.SnapshotThreshold, "snapshot-threshold", 4096, "raft log entries between snapshots")
	f.DurationVar(&cfg.SnapshotInterval, "snapshot-interval", 30*time.Second, "how often raft checks whether to snapshot")
	f.DurationVar(&cfg.BalanceInterval, "balance-interval", 2*time.Second, "how often leaders move to their partition's preferred node")
	f.DurationVar(&cfg.ReorderTimeout, "reorder-timeout", 2*time.Second, "how long a sequence hole may stay open before it becomes a GAP record")
	f.IntVar(&cfg.ReorderMaxCount, "reorder-max-count", 1024, "most messages held per source and partition")
	f.IntVar(&cfg.ReorderMaxDistance, "reorder-max-distance", 4096, "largest sequence distance held per source and partition")
	f.DurationVar(&cfg.DedupTTL, "dedup-ttl", 10*time.Minute, "how long a (msg_id, fingerprint) pair is remembered")
	f.IntVar(&cfg.DedupMax, "dedup-max", 200000, "most (msg_id, fingerprint) pairs remembered by the node (split over its partitions)")
	f.DurationVar(&cfg.MaxClockOffset, "max-clock-offset", 500*time.Millisecond, "largest accepted lead of a received HLC timestamp")
	f.Float64Var(&cfg.SourceRate, "source-rate", 50000, "token bucket per source (messages/s)")
	f.Float64Var(&cfg.ConnRate, "conn-rate", 100000, "token bucket per client connection (messages/s)")
	f.IntVar(&cfg.MaxRequests, "max-requests", 1024, "requests served concurrently (beyond: 429)")
	f.IntVar(&cfg.QueueDepth, "queue-depth", 1024, "proposals queued per partition (beyond: 429)")
	f.IntVar(&cfg.MaxBatch, "max-batch", 512, "most messages per replicated log entry")
	f.IntVar(&cfg.InflightMax, "inflight-max", 32768, "upper bound of the adaptive in-flight limit per partition (messages)")
	f.DurationVar(&cfg.LatencyTarget, "latency-target", 250*time.Millisecond, "commit latency above which the adaptive limit shrinks")
	f.DurationVar(&cfg.SlowPathDelay, "slow-path-delay", 50*time.Millisecond, "latency added by the slow-path defect")
	f.Float64Var(&cfg.ErrorRate, "error-rate", 0.1, "fraction of requests failed by the error-rate defect")
	f.Float64Var(&cfg.DropRate, "drop-rate", 0.02, "fraction of messages acknowledged and dropped by the silent-drop defect")
	f.IntVar(&cfg.LeakBytes, "leak-bytes", 16<<10, "bytes the leak defect retains per request, besides the request itself")
	return cmd
}

// parseBytes reads sizes like 256MiB, 1GiB, 512MB or a plain byte count.
func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	t := strings.TrimSpace(s)
	for _, u := range units {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || v <= 0 {
				return 0, fmt.Errorf("%q: want a size like 256MiB", s)
			}
			return int64(v * float64(u.mult)), nil
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q: want a size like 256MiB", s)
	}
	return v, nil
}
