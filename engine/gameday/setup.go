package gameday

// Starting and stopping a run: the arms, their load, probes and metric sources.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chaosgate/chaosgate/decision/baseline"
	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/decisionlog"
	"github.com/chaosgate/chaosgate/engine/history"
	injlocal "github.com/chaosgate/chaosgate/engine/inject/local"
	"github.com/chaosgate/chaosgate/engine/inject/overload"
	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/engine/probe/availability"
	"github.com/chaosgate/chaosgate/engine/probe/logs"
	"github.com/chaosgate/chaosgate/engine/probe/metrics"
	"github.com/chaosgate/chaosgate/engine/target/local"
	"github.com/chaosgate/chaosgate/engine/target/local/arms"
	"github.com/chaosgate/chaosgate/scenarios"
)

func (r *Run) setup(ctx context.Context) error {
	var gensMu sync.Mutex
	if r.cfg.Target != nil {
		r.target = r.cfg.Target
		r.emit(engine.EventPhase, "setup", 0, fmt.Sprintf("%s target: canary %v, control %v (%d partitions); run files under %s",
			r.target.Name(), r.target.Nodes(engine.ArmCanary), r.target.Nodes(engine.ArmControl), r.target.Partitions(), r.dir))
	} else if err := r.startLocal(ctx, &gensMu); err != nil {
		return err
	}
	r.loadArms = r.target.LoadArms()
	parts := r.target.Partitions()
	if err := r.startRouter(); err != nil {
		return err
	}
	var err error
	pr := r.cfg.Doc.Spec.Probes
	sources, rate, budget := 8, 200.0, r.retryBudget()
	if pr.Availability != nil {
		if pr.Availability.Sources > 0 {
			sources = pr.Availability.Sources
		}
		if pr.Availability.Rate > 0 {
			rate = float64(pr.Availability.Rate)
		}
	}
	gens := map[engine.Arm]*load.Generator{}
	r.hists, r.hpaths = map[engine.Arm]*history.Writer{}, map[engine.Arm]string{}
	for i, arm := range r.loadArms {
		p := filepath.Join(r.dir, "history-"+arm.String()+".jsonl")
		hw, err := history.Create(p)
		if err != nil {
			return engine.E(engine.KindUnavailable, "history", err)
		}
		r.hists[arm], r.hpaths[arm] = hw, p
		// The target is asked at each request: a Kubernetes pod replaced
		// by its controller may come back at another address. Behind the
		// router, the load goes to it, pinned to its arm.
		targets, headers := load.Targets(func() []string { return r.target.ClientAddrs(arm) }), map[string]string(nil)
		if r.l7 != nil {
			targets, headers = load.StaticTargets(r.l7.addr), map[string]string{scenarios.RouterPinHeader: arm.String()}
		}
		g, err := load.New(ctx, load.Config{Targets: targets, Headers: headers, Partitions: parts, Sources: sources, Keys: 64,
			Batch: 1, Dup: 0.05, Reorder: 0.05, StateClients: 2, StateKeys: 8, History: hw, Timeout: 2 * time.Second, MaxRetries: 60, RetryBudget: budget,
			Name: arm.String() + "-" + shortHash(r.runID), IDNode: int64(i + 1), Logger: r.cfg.Log})
		if err != nil {
			return engine.E(engine.KindUnavailable, "load generator for "+arm.String(), err)
		}
		gens[arm] = g
		// The checker's I5 tolerance is the nodes' max clock offset.
		if lt := r.cfg.Doc.Spec.Target.Local; lt != nil && lt.MaxClockOffset.Duration > 0 {
			g.Record(history.Line{Op: history.OpNode, T: time.Now(), Node: "all", NodeEvent: history.NodeConfig, Detail: "max_offset=" + lt.MaxClockOffset.Duration.String()})
		}
	}
	gensMu.Lock()
	r.gens = gens
	gensMu.Unlock()
	r.overload = overload.New(overload.Config{Burst: r.burstConfig, NodeHTTP: func(arm engine.Arm, node string) (string, error) {
		if addr, ok := r.target.DirectAddrs(arm)[node]; ok {
			return addr, nil
		}
		return "", fmt.Errorf("%s has no node %q", arm, node)
	}})
	r.rate = rate
	avail, err := availability.New(availability.Config{Generators: gens, Rate: rate})
	if err != nil {
		return err
	}
	// Snapshot reads the probe from the dashboard's goroutine.
	r.mu.Lock()
	r.avail = avail
	r.mu.Unlock()
	interval := time.Second
	if pr.Metrics != nil && pr.Metrics.Interval.Duration > 0 {
		interval = pr.Metrics.Interval.Duration
	}
	if r.mets, err = metrics.New(metrics.Config{Arms: r.loadArms, Targets: r.target.DirectAddrs, Interval: interval}); err != nil {
		return err
	}
	var patterns []string
	if pr.Logs != nil {
		patterns = pr.Logs.Patterns
	}
	// The nodes' log files: the local target's (another target's nodes
	// ship their logs with the cluster's own agent).
	nodeLogs := func(arm engine.Arm) map[string]string {
		m := map[string]string{}
		if r.arms != nil {
			for _, n := range r.arms.Nodes(arm) {
				m[n] = r.arms.LogPath(arm, n)
			}
		}
		return m
	}
	srv := r.cfg.LogServer
	if srv == nil && pr.Logs != nil && pr.Logs.Server != "" {
		if srv, err = logs.ParseServer(pr.Logs.Server); err != nil {
			return fmt.Errorf("spec.probes.logs.server: %w", err)
		}
	}
	if srv != nil {
		sc := logs.ServerConfig{Server: srv, Arms: r.loadArms, Patterns: patterns, Settle: r.cfg.LogSettle}
		if ls, ok := r.target.(LogStreams); ok {
			// The cluster's own agent ships the nodes' logs: ask for its streams.
			sc.Streams = ls.LogStreams
		} else {
			r.shipper = logs.NewShipper(logs.ShipperConfig{Server: srv, Arms: r.loadArms, Files: nodeLogs,
				Labels: func(arm engine.Arm, node string) map[string]string {
					return map[string]string{"app": NodeLogApp, "run_id": r.runID, "arm": arm.String(), "node": node}
				}})
			shipCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
			r.stopShip, r.shipDone = stop, make(chan struct{})
			go func() { defer close(r.shipDone); r.shipper.Run(shipCtx) }()
			sc.Sync = r.shipper.Flush
			sc.Streams = func(arm engine.Arm) logs.Streams {
				return logs.Streams{Labels: map[string]string{"app": NodeLogApp, "run_id": r.runID, "arm": arm.String()}}
			}
		}
		sp, err := logs.NewServerProbe(sc)
		if err != nil {
			return err
		}
		r.logsp, r.decisions = sp, &decisionlog.Pusher{Server: srv}
	} else if r.arms != nil {
		fp, err := logs.New(logs.Config{Arms: r.loadArms, Patterns: patterns, Files: nodeLogs})
		if err != nil {
			return err
		}
		r.logsp = fp
	}
	if r.arms != nil {
		if err := r.setupUpstreams(ctx, parts); err != nil {
			return err
		}
	}
	if r.base, err = baseline.Open(filepath.Join(r.cfg.DataDir, "baseline.db"), baseline.Options{}); err != nil {
		return engine.E(engine.KindUnavailable, "baseline history", err)
	}
	r.mets.Start(context.WithoutCancel(ctx))
	if r.cfg.Prometheus != nil {
		if err := r.setupPrometheus(ctx); err != nil {
			return err
		}
	}
	msg := fmt.Sprintf("arms ready; load: %d sources per arm, %.0f msg/s split by the canary weight", sources, rate)
	if hasArm(r.target, engine.ArmCalibration) {
		msg += "; the calibration cluster (the control's build) mirrors the canary's share and faults to measure A/A noise"
	} else {
		msg += "; no calibration arm: σ̂ comes from the baseline history of " + r.target.Service() + " (priors while it is thin)"
	}
	r.ready = time.Now()
	r.emit(engine.EventInfo, "setup", 0, msg)
	return nil
}

// growthSpan is the span memory growth is measured over up to end: from
// when the arms were ready. The processes that were up then are the ones
// measured; a process started later (a node restarted by a fault, a pod
// replaced) warms up, which is not growth, and both sources leave it out.
func (r *Run) growthSpan(end time.Time) metrics.Span {
	start := r.ready
	if start.IsZero() {
		start = r.start
	}
	return metrics.Span{Start: start, End: end}
}

// startLocal starts the local target: a control, a canary and a
// calibration cluster of the reference aggregator, behind fault proxies.
func (r *Run) startLocal(ctx context.Context, gensMu *sync.Mutex) error {
	lt := r.cfg.Doc.Spec.Target.Local
	parts := lt.Partitions
	if parts <= 0 {
		parts = 8
	}
	r.emit(engine.EventPhase, "setup", 0, fmt.Sprintf("starting the control, the canary and the calibration cluster (%d nodes each, %d partitions%s) under %s",
		lt.Nodes, parts, defectNote(r.cfg.CanaryDefects), r.dir))
	var ups []arms.Upstream
	for _, u := range lt.Upstreams {
		ups = append(ups, arms.Upstream{Name: u.Name, Kind: u.Kind})
	}
	a, err := arms.Start(ctx, arms.Config{Binary: r.cfg.Binary, Dir: r.dir, Nodes: lt.Nodes, Partitions: parts,
		CanaryDefects: r.cfg.CanaryDefects, Logger: r.cfg.Log, Calibration: true, Upstreams: ups,
		CanaryArgs: r.nodeArgs(), ControlArgs: r.nodeArgs(),
		OnEvent: func(arm engine.Arm, ev local.NodeEvent) {
			gensMu.Lock()
			g := r.gens[arm]
			gensMu.Unlock()
			if g == nil {
				return
			}
			switch {
			case ev.Kind == local.NodeExited:
				g.Record(history.Line{Op: history.OpNode, T: ev.At, Node: ev.Node, NodeEvent: history.NodeKill, Detail: "exited: " + ev.Exit})
			case ev.Kind == local.NodeStarted && ev.Restarts > 0:
				g.Record(history.Line{Op: history.OpNode, T: ev.At, Node: ev.Node, NodeEvent: history.NodeStart, Detail: fmt.Sprintf("pid %d restart %d", ev.PID, ev.Restarts)})
			}
		}})
	if err != nil {
		return err
	}
	r.arms = a
	inj := injlocal.New(injlocal.Config{Nodes: a, Proxies: a.Proxies(), Leaders: a.Leaders, NodeHTTP: a.NodeHTTP, Brokers: a.Broker,
		Admin: a.Admin})
	tgt := &localTarget{a: a, inj: inj, parts: parts, name: r.cfg.Doc.Metadata.Name}
	if l := r.cfg.Doc.Spec.Target.Local; l != nil {
		tgt.zones = l.Zones
	}
	r.target = tgt
	return nil
}

// burstConfig is the load-generator settings of an overload burst against
// an arm, on any target. The burst goes straight to the arm's nodes (the
// local target's client proxies, a Kubernetes Service or chaosgate's
// router would throttle or spread it before the nodes see it) and into
// the arm's history, so its messages are checked like any others; its
// acknowledgements go to the steady generator's set, whose drain then
// waits for the burst's messages too. On the local target its stats
// lines carry the nodes' admission caps (the game day sets them), so the
// checker's I6 sees a node that holds more requests than its bound
// instead of shedding them; a user's workload's caps are not known, and
// its lines carry none.
func (r *Run) burstConfig(arm engine.Arm) (load.Config, error) {
	hw, g := r.hists[arm], r.gens[arm]
	if hw == nil || g == nil {
		return load.Config{}, fmt.Errorf("no history for %s", arm)
	}
	direct := r.target.DirectAddrs(arm)
	var addrs []string
	for _, n := range r.target.Nodes(arm) {
		if a, ok := direct[n]; ok {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return load.Config{}, fmt.Errorf("%s has no node with an address to send a burst to", arm)
	}
	lc := load.Config{Targets: load.StaticTargets(addrs...), Partitions: r.target.Partitions(), Keys: 64, History: hw, Logger: r.cfg.Log, Acks: g.Acks(),
		StatsInterval: 250 * time.Millisecond}
	if r.cfg.Target == nil {
		lc.StatsCaps = map[string]float64{"inflight_requests_cap": AdmissionMaxRequests}
	}
	return lc, nil
}

// injectors are the target's injectors, with the overload fault played by
// the game day itself: its burst comes from chaosgate's own load
// generator, which runs beside every target, so it needs nothing of the
// target but the nodes' addresses.
func (r *Run) injectors() map[engine.FaultKind]engine.Injector {
	m := maps.Clone(r.target.Injectors())
	if m == nil {
		m = map[engine.FaultKind]engine.Injector{}
	}
	if r.overload != nil {
		m[engine.Overload] = r.overload
	}
	return m
}

// AdmissionArgs size every arm's admission control for one host that runs
// three clusters and their load: at most 64 requests served at once per
// node, 512 messages in flight per partition (the adaptive limit's
// ceiling) and 64 proposals queued per partition. Beyond them a node sheds
// with HTTP 429; the defaults (1024 requests, 32768 messages, 1024
// proposals) are sized for a node that has a machine to itself, and an
// overload burst this host can drive would not reach them.
var AdmissionArgs = []string{"--max-requests", strconv.Itoa(AdmissionMaxRequests), "--inflight-max", "512", "--queue-depth", "64"}

// admissionArgs are the nodes' admission flags: AdmissionArgs when the
// plan has an overload fault (the burst must meet caps this host can
// reach), none otherwise. Caps this small cost a five-node cluster its
// recovery after a pod kill on a busy host — the load it queued while it
// caught up is shed — so a game day without an overload phase keeps the
// aggregator's defaults.
func (r *Run) admissionArgs() []string {
	for _, e := range r.plan.Experiments {
		for _, f := range e.Faults {
			if f.Kind == engine.Overload {
				return AdmissionArgs
			}
		}
	}
	return nil
}

// nodeArgs are the flags every node of every arm gets: the admission caps
// of an overload game day and the target's max clock offset.
func (r *Run) nodeArgs() []string {
	args := append([]string(nil), r.admissionArgs()...)
	if lt := r.cfg.Doc.Spec.Target.Local; lt != nil && lt.MaxClockOffset.Duration > 0 {
		args = append(args, "--max-clock-offset", lt.MaxClockOffset.Duration.String())
	}
	return args
}

// AdmissionMaxRequests is every node's bound on requests served at once
// (--max-requests): the cap the checker holds the in-flight requests of
// an overload burst's stats lines to (I6).
const AdmissionMaxRequests = 64

func defectNote(d []string) string {
	if len(d) == 0 {
		return ""
	}
	return "; canary defects: " + strings.Join(d, ", ")
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:3])
}

func (r *Run) teardown() {
	if r.avail != nil {
		r.avail.Stop()
	}
	if r.mets != nil {
		r.mets.Stop()
	}
	r.stopPrometheus()
	r.upLoad.close()
	for _, g := range r.gens {
		g.Close()
	}
	if r.l7 != nil {
		r.l7.close(r)
	}
	if r.target != nil {
		r.target.Close()
	}
	if r.stopShip != nil {
		r.stopShip() // after the nodes stopped: their last lines go too
		<-r.shipDone
	}
	for _, h := range r.hists {
		h.Close()
	}
	if r.base != nil {
		r.base.Close()
	}
}
