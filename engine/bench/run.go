package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/engine/target/local"
)

// Durability is a tier at which both systems are measured: the same
// promise made by an acknowledgement on both sides.
type Durability struct {
	// Name is "replicated" or "fsync".
	Name string `json:"name"`
	// AggregatorSync is the aggregator's --sync-interval.
	AggregatorSync string `json:"aggregator_sync_interval"`
	// JetStreamSync is JetStream's sync_interval.
	JetStreamSync string `json:"jetstream_sync_interval"`
	// Promise says what survives once a write is acknowledged.
	Promise string `json:"promise"`
}

// The two tiers: replicated (a majority holds the write in memory or the
// page cache, flushed within 2 minutes: JetStream's default) and fsync (a
// majority has fsynced the write before the acknowledgement).
var (
	TierReplicated = Durability{Name: "replicated", AggregatorSync: "2m", JetStreamSync: "2m",
		Promise: "R3; acked once a majority holds the write (page cache), fsynced within 2m: survives process crashes and a minority power loss"}
	TierFsync = Durability{Name: "fsync", AggregatorSync: "always", JetStreamSync: "always",
		Promise: "R3; acked once a majority has fsynced the write: survives a power loss of the whole cluster"}
)

// Tiers maps tier names to tiers.
var Tiers = map[string]Durability{TierReplicated.Name: TierReplicated, TierFsync.Name: TierFsync}

// Config is one benchmark run.
type Config struct {
	// Binary runs the aggregator nodes (empty: this executable).
	Binary string
	// NATSServer is the nats-server binary (empty: found or installed).
	NATSServer string
	// Dir holds both clusters' data and logs.
	Dir string
	// Partitions of the aggregator cluster (default 3: one leader per node,
	// where a JetStream stream is one replicated group).
	Partitions int
	// Tiers are the durability tiers to run (default: replicated, fsync).
	Tiers []Durability
	// RaftLog is the aggregator nodes' --raft-log (empty: their default).
	RaftLog string
	// Workloads are run in order at each tier, each against both systems.
	Workloads []Workload
	// Warmup runs the first workload this long against each system of a
	// tier before measuring (leaders settle, connections open, caches
	// fill); the figures are discarded. 0: 3 s; negative: none.
	Warmup time.Duration
	// Progress receives one line per step; nil discards.
	Progress io.Writer
	// Upstream adds the upstream cell at each tier: the aggregator nodes
	// consume a JetStream stream (--upstream) and the figures are end to
	// end, from the publish to the record in the output stream.
	Upstream bool
}

// Pair is one workload's figures for both systems at one tier.
type Pair struct {
	Tier       string          `json:"tier"`
	Workload   string          `json:"workload"`
	Aggregator WorkloadFigures `json:"aggregator"`
	JetStream  WorkloadFigures `json:"jetstream"`
	Ratio      float64         `json:"ratio"` // aggregator msgs/s over JetStream msgs/s
}

// DefaultWorkloads are 128 B and 1 KiB payloads, 8 sources, 64 keys, in
// closed loop and open loop at rate msgs/s.
func DefaultWorkloads(d Workload, rate float64) []Workload {
	var out []Workload
	for _, size := range []int{128, 1024} {
		c := d
		c.Payload, c.Rate = size, 0
		o := d
		o.Payload, o.Rate, o.Concurrency = size, rate, 0
		out = append(out, c, o)
	}
	return out
}

// Run measures every workload at every tier: per tier it starts a 3-node
// aggregator cluster and a 3-server JetStream cluster configured for that
// durability, runs the workloads against each in turn and stops both.
func Run(ctx context.Context, cfg Config) ([]Pair, error) {
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 3
	}
	if len(cfg.Tiers) == 0 {
		cfg.Tiers = []Durability{TierReplicated, TierFsync}
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	natsBin := cfg.NATSServer
	if natsBin == "" {
		var err error
		if natsBin, err = FindNATSServer(ctx); err != nil {
			return nil, err
		}
	}
	version, err := NATSServerVersion(ctx, natsBin)
	if err != nil {
		return nil, err
	}
	var out []Pair
	for _, tier := range cfg.Tiers {
		if !SupportsSyncInterval(version) && tier.JetStreamSync == "always" {
			return out, fmt.Errorf("tier %s: nats-server %s cannot fsync every write (sync_interval needs 2.10 or later); "+
				"hint: scripts/build-nats-server.sh builds 2.15.2, or pass --tier replicated", tier.Name, version)
		}
		pairs, err := runTier(ctx, cfg, tier, natsBin, version)
		out = append(out, pairs...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// raftLogArg is ", --raft-log NAME" for the progress and tier texts, or
// nothing for the nodes' default.
func raftLogArg(name string) string {
	if name == "" {
		return ""
	}
	return ", --raft-log " + name
}

func runTier(ctx context.Context, cfg Config, tier Durability, natsBin, version string) ([]Pair, error) {
	specs, err := local.Plan(3, 0)
	if err != nil {
		return nil, err
	}
	for i := range specs {
		specs[i].Args = []string{"--sync-interval", tier.AggregatorSync}
		if cfg.RaftLog != "" {
			specs[i].Args = append(specs[i].Args, "--raft-log", cfg.RaftLog)
		}
	}
	dir := filepath.Join(cfg.Dir, tier.Name)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fmt.Fprintf(cfg.Progress, "tier %s: starting 3 aggregator nodes (--sync-interval %s%s) and 3 JetStream servers (nats-server %s, sync_interval %s) under %s\n",
		tier.Name, tier.AggregatorSync, raftLogArg(cfg.RaftLog), version, tier.JetStreamSync, dir)
	sync := tier.JetStreamSync
	if !SupportsSyncInterval(version) {
		sync = "" // 2.9 has no setting: it flushes in the background
	}
	js, err := StartJetStream(ctx, natsBin, filepath.Join(dir, "jetstream"), 3, sync)
	if err != nil {
		return nil, fmt.Errorf("JetStream cluster: %w", err)
	}
	defer js.Stop()
	if cfg.Upstream {
		// the upstream cell's stream exists before the nodes start, so
		// their consumers attach at once (and idle until the cell runs)
		if err := createUpstreamStream(ctx, js.URLs); err != nil {
			return nil, err
		}
		for i := range specs {
			specs[i].Args = append(specs[i].Args, upstreamArgs(js.URLs)...)
		}
	}
	sup, err := local.Start(cctx, local.Config{Binary: cfg.Binary, Dir: filepath.Join(dir, "aggregator"), Nodes: specs, Partitions: cfg.Partitions})
	if err != nil {
		return nil, fmt.Errorf("aggregator cluster: %w", err)
	}
	defer func() { cancel(); sup.Wait() }()
	var addrs []string
	grpcOf := map[string]string{}
	for _, s := range specs {
		addrs = append(addrs, s.HTTP)
		grpcOf[s.ID] = s.GRPC
	}
	aggTier := fmt.Sprintf("%s (--sync-interval %s%s)", tier.Promise, tier.AggregatorSync, raftLogArg(cfg.RaftLog))
	jsTier := fmt.Sprintf("nats-server %s, sync_interval %s", version, tier.JetStreamSync)
	if sync == "" {
		jsTier = fmt.Sprintf("nats-server %s, background flush", version)
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = 3 * time.Second
	}
	if cfg.Warmup > 0 && len(cfg.Workloads) > 0 {
		w := cfg.Workloads[0]
		w.Duration = cfg.Warmup
		fmt.Fprintf(cfg.Progress, "[%s] warm-up %s per system (not measured)\n", tier.Name, cfg.Warmup)
		if _, err := runAggregator(ctx, addrs, grpcOf, cfg.Partitions, w); err != nil {
			return nil, fmt.Errorf("aggregator warm-up: %w", err)
		}
		if _, err := runJetStream(ctx, js.URLs, "CGBWARM", w); err != nil {
			return nil, fmt.Errorf("JetStream warm-up: %w", err)
		}
	}
	var out []Pair
	for i, w := range cfg.Workloads {
		fmt.Fprintf(cfg.Progress, "[%s %d/%d] %s: aggregator\n", tier.Name, i+1, len(cfg.Workloads), w.Name())
		ar, err := runAggregator(ctx, addrs, grpcOf, cfg.Partitions, w)
		if err != nil {
			return out, fmt.Errorf("aggregator, %s: %w", w.Name(), err)
		}
		ar.Tier = aggTier
		fmt.Fprintf(cfg.Progress, "[%s %d/%d] %s: JetStream\n", tier.Name, i+1, len(cfg.Workloads), w.Name())
		jr, err := runJetStream(ctx, js.URLs, fmt.Sprintf("CGB%d", i+1), w)
		if err != nil {
			return out, fmt.Errorf("JetStream, %s: %w", w.Name(), err)
		}
		jr.Tier = jsTier
		p := Pair{Tier: tier.Name, Workload: w.Name(), Aggregator: ar, JetStream: jr}
		if jr.Throughput > 0 {
			p.Ratio = ar.Throughput / jr.Throughput
		}
		out = append(out, p)
	}
	if cfg.Upstream && len(cfg.Workloads) > 0 {
		// the upstream cell, at the first payload size: closed loop (how
		// fast the path goes) and open loop (latency at a sustainable rate)
		var cells []Workload
		for _, w := range cfg.Workloads {
			if w.Payload == cfg.Workloads[0].Payload {
				cells = append(cells, w)
			}
		}
		for _, w := range cells {
			name := "upstream " + w.Name()
			fmt.Fprintf(cfg.Progress, "[%s] %s: JetStream → aggregator → output stream\n", tier.Name, name)
			e2e, pub, err := runUpstream(ctx, js.URLs, addrs, grpcOf, cfg.Partitions, w)
			if err != nil {
				return out, fmt.Errorf("upstream cell: %w", err)
			}
			e2e.Tier, e2e.Workload = aggTier+"; consumed from JetStream ("+jsTier+")", name
			pub.Tier, pub.Workload = jsTier, name
			p := Pair{Tier: tier.Name, Workload: name, Aggregator: e2e, JetStream: pub}
			if pub.Throughput > 0 {
				p.Ratio = e2e.Throughput / pub.Throughput
			}
			out = append(out, p)
		}
	}
	return out, nil
}

func runAggregator(ctx context.Context, addrs []string, grpcOf map[string]string, partitions int, w Workload) (WorkloadFigures, error) {
	if w.Client != ClientHTTP {
		p, err := newGRPCProducer(ctx, addrs, grpcOf, partitions, w)
		if err != nil {
			return WorkloadFigures{}, err
		}
		defer p.Close()
		acked, errs, h, el := drive(ctx, w, p.send)
		r := WorkloadFigures{System: "chaosgate aggregator (gRPC)", Workload: w.Name(), Acked: acked, Errors: errs, Throughput: float64(acked) / el.Seconds()}
		quantiles(&r, h)
		return r, nil
	}
	g, err := load.New(ctx, load.Config{Targets: load.StaticTargets(addrs...), Partitions: partitions, Sources: w.Sources, Keys: w.Keys,
		Batch: w.Batch, PayloadSize: w.Payload, RouteToLeader: w.RouteToLeader, NoDrain: true})
	if err != nil {
		return WorkloadFigures{}, err
	}
	defer g.Close()
	s, err := g.Run(ctx, load.Phase{Name: "bench", Duration: w.Duration, Rate: w.Rate, Concurrency: w.Concurrency})
	if err != nil {
		return WorkloadFigures{}, err
	}
	return WorkloadFigures{System: "chaosgate aggregator (HTTP/JSON)", Workload: w.Name(), Acked: s.OK, Errors: s.Failed,
		Throughput: s.Throughput, P50: s.P50, P99: s.P99, P999: s.P999}, nil
}

func runJetStream(ctx context.Context, urls []string, stream string, w Workload) (WorkloadFigures, error) {
	send, closeFn, err := jetStreamSender(ctx, urls, stream, w)
	if err != nil {
		return WorkloadFigures{}, err
	}
	defer closeFn()
	acked, errs, h, el := drive(ctx, w, send)
	r := WorkloadFigures{System: "NATS JetStream", Workload: w.Name(), Acked: acked, Errors: errs, Throughput: float64(acked) / el.Seconds()}
	quantiles(&r, h)
	return r, nil
}
