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
throughput ratio. nats-server is installed with apt-get when missing and the
command runs as root.

Exit codes: 0 the benchmark ran, 2 it could not run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return withExitCode(exitUsage, fmt.Errorf("-o %q: want table or json", output))
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
			pairs, err := bench.Run(cmd.Context(), bench.Config{Binary: binary, NATSServer: natsServer, Dir: dir,
				Workloads: bench.DefaultWorkloads(w, rate), Progress: cmd.ErrOrStderr()})
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			return printBenchPairs(cmd.OutOrStdout(), output, pairs)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&w.Duration, "duration", 10*time.Second, "duration of each cell (4 workloads x 2 systems)")
	f.IntVar(&w.Sources, "sources", 8, "sources")
	f.IntVar(&w.Keys, "keys", 64, "group keys (JetStream: subjects)")
	f.IntVar(&w.Batch, "batch", 8, "messages per request (JetStream: async publishes awaited together)")
	f.IntVar(&w.Concurrency, "concurrency", 32, "closed loop: requests in flight")
	f.BoolVar(&w.RouteToLeader, "route-to-leader", false, "send aggregator messages straight to their partition leaders (no forwarding hop)")
	f.Float64Var(&rate, "rate", 1000, "open loop: messages per second")
	f.StringVar(&dir, "data-dir", "", "directory for both clusters (default: a temporary directory, removed afterwards)")
	f.BoolVar(&keep, "keep", false, "keep the temporary directory")
	f.StringVar(&natsServer, "nats-server", "", "nats-server binary (default: from PATH, installed with apt-get when root)")
	f.StringVar(&binary, "binary", "", "chaosgate binary for the aggregator nodes (default: this executable)")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
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
	fmt.Fprintln(tw, "workload\tsystem\tmsgs/s\tp50\tp99\tp99.9\terrors\tratio")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
	for _, p := range pairs {
		for _, r := range []bench.Result{p.Aggregator, p.JetStream} {
			ratio := ""
			if r.System == p.Aggregator.System {
				ratio = fmt.Sprintf("%.2f", p.Ratio)
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%s\t%d\t%s\n", p.Workload, r.System, r.Throughput, ms(r.P50), ms(r.P99), ms(r.P999), r.Errors, ratio)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(pairs) > 0 {
		fmt.Fprintf(w, "\ndurability: aggregator %s; JetStream %s\n", pairs[0].Aggregator.Tier, pairs[0].JetStream.Tier)
	}
	return nil
}
