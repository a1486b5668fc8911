package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/chaosgate/chaosgate/engine/history"
	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/engine/probe/consistency"
	"github.com/chaosgate/chaosgate/engine/target/local"
)

// A cluster scenario of the integration tests: one supervised local
// cluster, load, one fault in the middle of the stream, drain and the
// consistency check.

// scenario is one run: a supervised cluster, load, one mid-stream fault,
// drain and check.
type scenario struct {
	binary, dir                       string
	nodes, partitions                 int
	defects                           []string
	duration                          time.Duration
	sources, keys, concurrency, batch int
	dup, reorder                      float64
	stateClients                      int
	// edges, if set, rewrites the node specs before start (e.g. to put
	// fault proxies on node→node edges).
	edges func(specs []local.NodeSpec) []local.NodeSpec
	// fault runs once mid-stream and describes what it did.
	fault    func(ctx context.Context, sup *local.Supervisor, g *load.Generator, targets load.Targets) (string, error)
	progress io.Writer
	// waitRestart waits for a killed node to be back before draining.
	waitRestart bool
	// minMessages keeps the load running (in further 5 s phases, at most
	// 90 s more) until this many messages were acknowledged.
	minMessages int64
}

type scenarioResult struct {
	load        load.Summary
	drain       load.DrainStats
	report      consistency.Report
	fault       string
	historyPath string
}

func runScenario(ctx context.Context, sc scenario) (scenarioResult, error) {
	var res scenarioResult
	if sc.progress == nil {
		sc.progress = io.Discard
	}
	if err := os.MkdirAll(sc.dir, 0o755); err != nil {
		return res, err
	}
	res.historyPath = filepath.Join(sc.dir, "history.jsonl")
	hw, err := history.Create(res.historyPath)
	if err != nil {
		return res, err
	}
	defer hw.Close()
	specs, err := local.Plan(sc.nodes, 0)
	if err != nil {
		return res, err
	}
	for i := range specs {
		specs[i].Defects = sc.defects
	}
	if sc.edges != nil {
		specs = sc.edges(specs)
	}
	fmt.Fprintf(sc.progress, "starting %d aggregator nodes under %s\n", sc.nodes, sc.dir)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	restarted := make(chan string, 16)
	sup, err := local.Start(ctx, local.Config{Binary: sc.binary, Dir: filepath.Join(sc.dir, "cluster"), Nodes: specs, Partitions: sc.partitions,
		Logger: newLogger(slog.LevelWarn),
		OnEvent: func(ev local.NodeEvent) {
			switch ev.Kind {
			case local.NodeStarted:
				if ev.Restarts > 0 {
					_ = hw.Write(history.Line{Op: history.OpNode, T: ev.At, Node: ev.Node, NodeEvent: history.NodeStart, Detail: fmt.Sprintf("pid %d restart %d", ev.PID, ev.Restarts)})
				}
			case local.NodeRestarted:
				fmt.Fprintf(sc.progress, "node %s restarted (pid %d) and ready\n", ev.Node, ev.PID)
				select {
				case restarted <- ev.Node:
				default:
				}
			}
		}})
	if err != nil {
		return res, err
	}
	defer func() { cancel(); sup.Wait() }()
	var addrs []string
	for _, s := range specs {
		addrs = append(addrs, s.HTTP)
	}
	targets := load.StaticTargets(addrs...)
	g, err := load.New(ctx, load.Config{Targets: targets, Partitions: sc.partitions, Sources: sc.sources, Keys: sc.keys, Batch: sc.batch,
		Dup: sc.dup, Reorder: sc.reorder, StateClients: sc.stateClients, History: hw, Timeout: 3 * time.Second, MaxRetries: 40,
		// the nodes run with the default --dedup-max (per node)
		StatsInterval: 2 * time.Second, StatsCaps: map[string]float64{"dedup_entries_cap": 200000}})
	if err != nil {
		return res, err
	}
	defer g.Close()
	fmt.Fprintf(sc.progress, "cluster ready (%s); driving load for %s\n", sup.ClusterFilePath(), sc.duration)

	faultDone := make(chan error, 1)
	go func() {
		t := time.NewTimer(sc.duration / 2)
		defer t.Stop()
		select {
		case <-ctx.Done():
			faultDone <- ctx.Err()
			return
		case <-t.C:
		}
		if sc.fault == nil {
			faultDone <- nil
			return
		}
		what, err := sc.fault(ctx, sup, g, targets)
		res.fault = what
		if err == nil {
			fmt.Fprintf(sc.progress, "fault: %s\n", what)
		}
		faultDone <- err
	}()
	sum, err := g.Run(ctx, load.Phase{Name: "demo", Duration: sc.duration, Concurrency: sc.concurrency})
	if err != nil {
		return res, err
	}
	if err := <-faultDone; err != nil {
		return res, fmt.Errorf("fault: %w", err)
	}
	for extra := 0; g.Total().OK < sc.minMessages && extra < 18; extra++ {
		if _, err := g.Run(ctx, load.Phase{Name: "demo", Duration: 5 * time.Second, Concurrency: sc.concurrency}); err != nil {
			return res, err
		}
	}
	if sc.minMessages > 0 {
		sum = g.Total()
	}
	res.load = sum
	if sc.waitRestart {
		select {
		case <-restarted:
		case <-time.After(60 * time.Second):
			return res, fmt.Errorf("the killed node was not restarted and ready within 60s (see %s)", filepath.Join(sc.dir, "cluster"))
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	fmt.Fprintf(sc.progress, "load done: %d acknowledged, %.0f msgs/s; draining\n", sum.OK, sum.Throughput)
	ds, err := g.Drain(ctx, load.DrainOptions{Quiet: 5 * time.Second})
	res.drain = ds
	if err != nil {
		return res, err
	}
	if err := hw.Close(); err != nil {
		return res, err
	}
	if res.report, err = consistency.CheckFile(res.historyPath, consistency.Config{}); err != nil {
		return res, err
	}
	return res, nil
}

// killBusiestLeader SIGKILLs the node that leads the most partitions,
// records the kill in the history and waits for the supervisor to restart it.
func killBusiestLeader(ctx context.Context, sup *local.Supervisor, g *load.Generator, targets load.Targets) (string, error) {
	id, n, err := load.BusiestLeader(ctx, targets)
	if err != nil {
		return "", err
	}
	g.Record(history.Line{Op: history.OpNode, T: time.Now(), Node: id, NodeEvent: history.NodeKill, Detail: fmt.Sprintf("SIGKILL, leader of %d partitions", n)})
	pid, err := sup.Signal(id, syscall.SIGKILL)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("SIGKILL %s (pid %d), leader of %d partitions", id, pid, n), nil
}
