package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/chaosgate/chaosgate/engine/history"
	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/engine/target/local"
)

// newLoadCmd is `chaosgate load`: drive an aggregator cluster and record a
// history/v1 file.
func newLoadCmd() *cobra.Command {
	var (
		clusterFile  string
		duration     time.Duration
		rate         float64
		concurrency  int
		sources      int
		keys         int
		batch        int
		payload      int
		dup, reorder float64
		stateClients int
		histPath     string
		output       string
		noDrain      bool
		statsEvery   time.Duration
		toLeader     bool
		retryBudget  float64
		cpuProfile   string
		publish      string
		upstreamName string
	)
	cmd := &cobra.Command{
		Use:   "load --cluster DIR/cluster.json --history FILE",
		Short: "Drive an aggregator cluster with many sources and record the history/v1 file",
		Long: `load sends messages from many sources (per-(source, partition) contiguous seq,
snowflake msg_ids) to every node of the cluster, with deliberate duplicates,
reordering, retries that reuse the msg_id, and per-key state reads and writes;
then tails every partition's output stream until drained. Every operation goes
to the history file for chaosgate check. --rate > 0 is open loop (messages per
second); --rate 0 is closed loop with --concurrency requests in flight.

With --publish URL the messages go to a message broker instead (the same URL
forms as the aggregator's --upstream: nats://HOST:PORT/STREAM,
kafka://HOST:PORT/TOPIC, mqtt://HOST:PORT/PREFIX?shards=N), each source on
one partition, subject or shard; an "ok" in the history is the broker's
acknowledgement, with its position. After the drain the nodes' dead letters
and the consumer group's committed offsets are added to the history, so
chaosgate check accounts for what was dead-lettered.

Exit codes: 0 the run completed (see the summary), 2 usage or cluster error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if clusterFile == "" {
				return withExitCode(exitUsage, errors.New("--cluster FILE is required"))
			}
			if output != "table" && output != "json" {
				return withExitCode(exitUsage, fmt.Errorf("-o %q: want table, json or yaml", output))
			}
			if cpuProfile != "" {
				pf, err := os.Create(cpuProfile)
				if err != nil {
					return withExitCode(exitUsage, fmt.Errorf("--cpuprofile: %w", err))
				}
				defer pf.Close()
				if err := pprof.StartCPUProfile(pf); err != nil {
					return withExitCode(exitUsage, fmt.Errorf("--cpuprofile: %w", err))
				}
				defer pprof.StopCPUProfile()
			}
			cf, err := local.ReadClusterFile(clusterFile)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			var addrs []string
			for _, n := range cf.Nodes {
				addrs = append(addrs, n.HTTP)
			}
			var hw *history.Writer
			if histPath != "" {
				if hw, err = history.Create(histPath); err != nil {
					return withExitCode(exitUsage, err)
				}
			}
			ctx := cmd.Context()
			var pub load.Publisher
			if publish != "" {
				if pub, err = load.ParsePublisher(ctx, publish); err != nil {
					if hw != nil {
						_ = hw.Close()
					}
					return withExitCode(exitUsage, fmt.Errorf("--publish: %w", err))
				}
				defer pub.Close()
				if upstreamName == "" {
					upstreamName, _, _ = strings.Cut(publish, "://")
				}
			}
			g, err := load.New(ctx, load.Config{Targets: load.StaticTargets(addrs...), NoDrain: noDrain, Sources: sources, Keys: keys, Batch: batch,
				PayloadSize: payload, Dup: dup, Reorder: reorder, StateClients: stateClients, History: hw, Logger: newLogger(slog.LevelWarn),
				StatsInterval: statsEvery, RouteToLeader: toLeader, Publisher: pub, RetryBudget: retryBudget})
			if err != nil {
				if hw != nil {
					_ = hw.Close()
				}
				return withExitCode(exitUsage, err)
			}
			defer g.Close()
			sum, runErr := g.Run(ctx, load.Phase{Name: "load", Duration: duration, Rate: rate, Concurrency: concurrency})
			var ds load.DrainStats
			var drainErr error
			if !noDrain && runErr == nil {
				ds, drainErr = g.Drain(ctx, load.DrainOptions{})
				if pub != nil && drainErr == nil {
					if n, err := g.RecordUpstream(ctx, upstreamName); err != nil {
						drainErr = fmt.Errorf("dead letters and committed offsets of upstream %s: %w", upstreamName, err)
					} else if n > 0 {
						fmt.Fprintf(cmd.ErrOrStderr(), "%d dead letters of upstream %s recorded\n", n, upstreamName)
					}
				}
			}
			if hw != nil {
				if err := hw.Close(); err != nil {
					return withExitCode(exitUsage, err)
				}
			}
			if err := printLoadSummary(cmd.OutOrStdout(), output, sum, ds, !noDrain); err != nil {
				return withExitCode(exitUsage, err)
			}
			if runErr != nil {
				return withExitCode(exitUsage, runErr)
			}
			if drainErr != nil {
				return withExitCode(exitUsage, drainErr)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&clusterFile, "cluster", "", "cluster.json written by chaosgate aggregator cluster")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a Go CPU profile of the load generator to this file")
	f.DurationVar(&duration, "duration", 10*time.Second, "how long to send")
	f.Float64Var(&rate, "rate", 0, "open loop: messages per second in total (0: closed loop)")
	f.IntVar(&concurrency, "concurrency", 0, "closed loop: requests in flight (default: one per source)")
	f.IntVar(&sources, "sources", 8, "number of sources")
	f.IntVar(&keys, "keys", 64, "number of group keys")
	f.IntVar(&batch, "batch", 1, "messages per request (at most 1000)")
	f.IntVar(&payload, "payload", 128, "payload size in bytes")
	f.Float64Var(&dup, "dup", 0.05, "fraction of acknowledged messages re-sent with the same msg_id")
	f.Float64Var(&reorder, "reorder", 0.1, "fraction of messages sent after their successor")
	f.IntVar(&stateClients, "state-clients", 2, "clients doing per-key state reads and CAS writes")
	f.StringVar(&histPath, "history", "", "history/v1 file to write")
	f.StringVar(&publish, "publish", "", "publish to a broker the nodes consume instead of their HTTP API: nats://HOST:PORT/STREAM, kafka://HOST:PORT/TOPIC or mqtt://HOST:PORT/PREFIX?shards=N")
	f.StringVar(&upstreamName, "upstream-name", "", "the nodes' name of that upstream (their --upstream ...?name=; default: the scheme)")
	f.StringVarP(&output, "output", "o", "table", "summary format: table, json or yaml")
	f.BoolVar(&noDrain, "no-drain", false, "do not read the output streams after sending")
	f.BoolVar(&toLeader, "route-to-leader", false, "send each message straight to its partition's leader instead of any node")
	f.Float64Var(&retryBudget, "retry-budget", 0, "re-sends at most this share of the messages offered (plus 10), as a client with a retry budget; past it a message fails at once (0: retry every message up to 20 times)")
	f.DurationVar(&statsEvery, "stats-interval", 2*time.Second, "record every node's /metrics gauges (memory, reorder depth, dedup entries) this often for the I6 caps check; 0 turns it off")
	return cmd
}

func printLoadSummary(w io.Writer, output string, s load.Summary, ds load.DrainStats, drained bool) error {
	if output == "json" {
		b, err := json.Marshal(struct {
			load.Summary
			Drain *load.DrainStats `json:"drain,omitempty"`
		}{s, drainPtr(ds, drained)})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "requests\t%d\nmessages\t%d\nok\t%d\nrejected\t%d\nfailed\t%d\ntimeouts\t%d\nretries\t%d\nduplicates sent\t%d\nreordered\t%d\nstate ops\t%d\n",
		s.Requests, s.Messages, s.OK, s.Rejected, s.Failed, s.Timeouts, s.Retries, s.Duplicates, s.Reordered, s.StateOps)
	if s.RetriesDenied > 0 {
		fmt.Fprintf(tw, "retries denied by the budget\t%d\n", s.RetriesDenied)
	}
	fmt.Fprintf(tw, "latency p50/p95/p99/p99.9\t%s / %s / %s / %s\nthroughput\t%.0f msgs/s over %s\n", s.P50, s.P95, s.P99, s.P999, s.Throughput, s.Duration.Round(time.Millisecond))
	if drained {
		fmt.Fprintf(tw, "drained\t%d records, %d gaps, %d acknowledged unseen, %s\n", ds.Records, ds.Gaps, ds.Unseen, ds.Duration.Round(time.Millisecond))
	}
	return tw.Flush()
}

func drainPtr(ds load.DrainStats, drained bool) *load.DrainStats {
	if !drained {
		return nil
	}
	return &ds
}
