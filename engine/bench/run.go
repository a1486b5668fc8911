package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/engine/target/local"
)

// AggregatorTier describes the aggregator's durability in this benchmark.
const AggregatorTier = "R3, acked after a majority commit, fsynced (group commit)"

// Config is one benchmark run.
type Config struct {
	// Binary runs the aggregator nodes (empty: this executable).
	Binary string
	// NATSServer is the nats-server binary (empty: found or installed).
	NATSServer string
	// Dir holds both clusters' data and logs.
	Dir string
	// Partitions of the aggregator cluster (default 16).
	Partitions int
	// Workloads are run in order, each against both systems.
	Workloads []Workload
	// Progress receives one line per step; nil discards.
	Progress io.Writer
}

// Pair is one workload's figures for both systems.
type Pair struct {
	Workload   string  `json:"workload"`
	Aggregator Result  `json:"aggregator"`
	JetStream  Result  `json:"jetstream"`
	Ratio      float64 `json:"ratio"` // aggregator msgs/s over JetStream msgs/s
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

// Run starts a 3-node aggregator cluster and a 3-server JetStream cluster
// and runs every workload against each in turn.
func Run(ctx context.Context, cfg Config) ([]Pair, error) {
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 16
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
	specs, err := local.Plan(3, 0)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fmt.Fprintf(cfg.Progress, "starting 3 aggregator nodes and 3 JetStream servers under %s\n", cfg.Dir)
	sup, err := local.Start(cctx, local.Config{Binary: cfg.Binary, Dir: filepath.Join(cfg.Dir, "aggregator"), Nodes: specs, Partitions: cfg.Partitions})
	if err != nil {
		return nil, fmt.Errorf("aggregator cluster: %w", err)
	}
	defer func() { cancel(); sup.Wait() }()
	js, err := StartJetStream(ctx, natsBin, filepath.Join(cfg.Dir, "jetstream"), 3)
	if err != nil {
		return nil, fmt.Errorf("JetStream cluster: %w", err)
	}
	defer js.Stop()
	var addrs []string
	for _, s := range specs {
		addrs = append(addrs, s.HTTP)
	}
	var out []Pair
	for i, w := range cfg.Workloads {
		fmt.Fprintf(cfg.Progress, "[%d/%d] %s: aggregator\n", i+1, len(cfg.Workloads), w.Name())
		ar, err := runAggregator(ctx, addrs, cfg.Partitions, w)
		if err != nil {
			return out, fmt.Errorf("aggregator, %s: %w", w.Name(), err)
		}
		fmt.Fprintf(cfg.Progress, "[%d/%d] %s: JetStream\n", i+1, len(cfg.Workloads), w.Name())
		jr, err := runJetStream(ctx, js.URLs, fmt.Sprintf("CGB%d", i+1), w)
		if err != nil {
			return out, fmt.Errorf("JetStream, %s: %w", w.Name(), err)
		}
		p := Pair{Workload: w.Name(), Aggregator: ar, JetStream: jr}
		if jr.Throughput > 0 {
			p.Ratio = ar.Throughput / jr.Throughput
		}
		out = append(out, p)
	}
	return out, nil
}

func runAggregator(ctx context.Context, addrs []string, partitions int, w Workload) (Result, error) {
	g, err := load.New(ctx, load.Config{Targets: load.StaticTargets(addrs...), Partitions: partitions, Sources: w.Sources, Keys: w.Keys,
		Batch: w.Batch, PayloadSize: w.Payload, RouteToLeader: w.RouteToLeader})
	if err != nil {
		return Result{}, err
	}
	defer g.Close()
	s, err := g.Run(ctx, load.Phase{Name: "bench", Duration: w.Duration, Rate: w.Rate, Concurrency: w.Concurrency})
	if err != nil {
		return Result{}, err
	}
	return Result{System: "chaosgate aggregator", Tier: AggregatorTier, Workload: w.Name(), Acked: s.OK, Errors: s.Failed,
		Throughput: s.Throughput, P50: s.P50, P99: s.P99, P999: s.P999}, nil
}

func runJetStream(ctx context.Context, urls []string, stream string, w Workload) (Result, error) {
	send, closeFn, err := jetStreamSender(ctx, urls, stream, w)
	if err != nil {
		return Result{}, err
	}
	defer closeFn()
	acked, errs, h, el := drive(ctx, w, send)
	r := Result{System: "NATS JetStream", Tier: JetStreamTier, Workload: w.Name(), Acked: acked, Errors: errs, Throughput: float64(acked) / el.Seconds()}
	quantiles(&r, h)
	return r, nil
}
