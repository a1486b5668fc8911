package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/chaosgate/chaosgate/engine/bench"
)

// newBenchAggregatorCmd is `chaosgate bench aggregator`: the reference
// aggregator and NATS JetStream side by side, same workload, one run.
func newBenchAggregatorCmd() *cobra.Command {
	var (
		w          bench.Workload
		rate       float64
		dir        string
		keep       bool
		natsServer string
		binary     string
		output     string
		tiers      []string
		partitions int
		upstream   bool
		raftLog    string
	)
	cmd := &cobra.Command{
		Use:   "aggregator",
		Short: "Benchmark the reference aggregator against NATS JetStream (R3, dedup) on one workload",
		Long: `aggregator starts a local 3-node aggregator cluster and a local 3-server NATS
JetStream cluster (stream with 3 replicas and a duplicate window, dedup by
Nats-Msg-Id), then runs the same workload against each in turn: 128 B and
1 KiB payloads, in closed loop (--concurrency requests of --batch messages in
flight) and open loop (--rate messages/s, latency measured from the scheduled
send time). It prints msgs/s, p50/p99/p99.9 and the aggregator/JetStream
throughput ratio.

Both systems are measured at matched durability tiers, each on freshly
started clusters:
  replicated  acked once a majority holds the write in memory / page cache,
              fsynced within 2m (aggregator --sync-interval 2m; JetStream
              sync_interval 2m, its default)
  fsync       acked once a majority has fsynced the write (aggregator
              --sync-interval always, its default; JetStream sync_interval
              always)

The upstream cell (--upstream-cell, on by default) runs the first closed-loop
workload through the aggregator's NATS JetStream upstream: a producer
publishes to an R3 stream, the nodes consume it (acknowledging after their
commit) and a reader follows the output streams; it prints the end-to-end
msgs/s and latency (publish → record in the output stream) beside the
producer's own JetStream publish figures.

nats-server is the build of scripts/build-nats-server.sh (2.15.2) when
cached, else one on PATH, else the Debian package installed with apt-get
when the command runs as root; nats-server 2.9 cannot fsync every write,
so with it only --tier replicated runs.

Exit codes: 0 the benchmark ran, 2 it could not run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return withExitCode(exitUsage, fmt.Errorf("-o %q: want table, json or yaml", output))
			}
			if dir == "" {
				d, err := os.MkdirTemp("", "chaosgate-bench-")
				if err != nil {
					return withExitCode(exitUsage, err)
				}
				dir = d
				if !keep {
					defer os.RemoveAll(d)
				}
			}
			if w.Client != bench.ClientGRPC && w.Client != bench.ClientHTTP {
				return withExitCode(exitUsage, fmt.Errorf("--client %q: want grpc or http", w.Client))
			}
			switch raftLog {
			case "", "partition", "shared", "raft-wal":
			default:
				return withExitCode(exitUsage, fmt.Errorf("--raft-log %q: want partition, shared or raft-wal (the aggregator's --raft-log)", raftLog))
			}
			var ts []bench.Durability
			for _, name := range tiers {
				t, ok := bench.Tiers[name]
				if !ok {
					return withExitCode(exitUsage, fmt.Errorf("--tier %q: want replicated or fsync", name))
				}
				ts = append(ts, t)
			}
			pairs, err := bench.Run(cmd.Context(), bench.Config{Binary: binary, NATSServer: natsServer, Dir: dir, Partitions: partitions,
				Tiers: ts, Workloads: bench.DefaultWorkloads(w, rate), Progress: cmd.ErrOrStderr(), Upstream: upstream, RaftLog: raftLog})
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			return printBenchPairs(cmd.OutOrStdout(), output, pairs)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&w.Duration, "duration", 10*time.Second, "duration of each cell (4 workloads x 2 systems x each tier)")
	f.StringSliceVar(&tiers, "tier", []string{"replicated", "fsync"}, "durability tiers to run: replicated, fsync")
	f.IntVar(&partitions, "partitions", 3, "aggregator partitions (3: one leader per node; a JetStream stream is one replicated group)")
	f.IntVar(&w.Sources, "sources", 8, "sources")
	f.IntVar(&w.Keys, "keys", 64, "group keys (JetStream: subjects)")
	f.IntVar(&w.Batch, "batch", 8, "messages per request (JetStream: async publishes awaited together)")
	f.IntVar(&w.Concurrency, "concurrency", 32, "closed loop: requests in flight")
	f.BoolVar(&w.RouteToLeader, "route-to-leader", true, "aggregator client is partition-aware (as a Kafka producer): each batch goes to one partition leader; false sends to any node, which forwards")
	f.StringVar(&w.Client, "client", bench.ClientGRPC, "aggregator client: grpc (a producer on the nodes' gRPC Ingest streams, many batches in flight per stream, as the NATS client publishes) or http (chaosgate's load generator posting JSON batches)")
	f.Float64Var(&rate, "rate", 1000, "open loop: messages per second")
	f.StringVar(&raftLog, "raft-log", "", "the aggregator nodes' --raft-log: partition, shared or raft-wal (default: the aggregator's default)")
	f.BoolVar(&upstream, "upstream-cell", true, "add the upstream cell: NATS JetStream → aggregator (--upstream) → output stream, end to end")
	f.StringVar(&dir, "data-dir", "", "directory for both clusters (default: a temporary directory, removed afterwards)")
	f.BoolVar(&keep, "keep", false, "keep the temporary directory")
	f.StringVar(&natsServer, "nats-server", "", "nats-server binary (default: the cached 2.15.2 build, else from PATH, else installed with apt-get when root)")
	f.StringVar(&binary, "binary", "", "chaosgate binary for the aggregator nodes (default: this executable)")
	f.StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

func printBenchPairs(w io.Writer, output string, pairs []bench.Pair) error {
	if output == "json" {
		b, err := json.Marshal(pairs)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "tier\tworkload\tsystem\tmsgs/s\tp50\tp99\tp99.9\terrors\tratio")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
	for _, p := range pairs {
		for _, r := range []bench.WorkloadFigures{p.Aggregator, p.JetStream} {
			ratio := ""
			if r.System == p.Aggregator.System {
				ratio = fmt.Sprintf("%.2f", p.Ratio)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%d\t%s\n", p.Tier, p.Workload, r.System, r.Throughput, ms(r.P50), ms(r.P99), ms(r.P999), r.Errors, ratio)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, p := range pairs {
		if !seen[p.Tier] {
			seen[p.Tier] = true
			fmt.Fprintf(w, "\ntier %s: aggregator %s; JetStream %s", p.Tier, p.Aggregator.Tier, p.JetStream.Tier)
		}
	}
	if len(pairs) > 0 {
		fmt.Fprintln(w)
	}
	return nil
}
