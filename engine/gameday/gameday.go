// Package gameday runs an experiment or game-day file end to end on a
// Target — by default the local target: a control and a canary cluster of
// the reference aggregator behind fault proxies; or the user's workloads
// (engine/target/k8s) — with load split between the arms by the canary
// weight, the
// fault suite at every canary step (engine.Runner), the triple probes
// (availability, consistency, metrics and log guards), the judge's windows
// built from them, the step controller (engine/canary) promoting, holding
// or rolling back, and a signed evidence record appended to the ledger.
//
// What the judge compares at a step: consistency over everything both arms
// acknowledged so far (any violation blocks); request outcomes, latency,
// GC pauses, session interruptions and dependency calls over the step's
// steady-state windows (before and after every fault, when the arms run
// fault-free, so a fault that hits a leader on one arm and a follower on the
// other does not pass for a regression); memory growth over the whole run
// (from when the arms were ready, the processes up then).
// Error rate is the servers' HTTP 5xx share.
//
// The judge's noise is measured, not assumed: on the local target a third
// cluster, the calibration arm, runs the control's build and mirrors the canary — its
// share of traffic on its own load stream, and the canary's faults, on the
// same node, at the same time. At every judged window the calibration arm
// against the control is an A/A window of the same period, host load and
// faults, recorded in the baseline history (tagged with the step's faults
// as its context) before the canary is judged, so σ̂ and the count
// dispersion come from two different clusters under the conditions of the
// judgement. When the canary runs the control's own build (no defect), its
// judged windows are recorded as A/A windows too.
package gameday

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/decision/baseline"
	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/canary"
	"github.com/chaosgate/chaosgate/engine/decisionlog"
	"github.com/chaosgate/chaosgate/engine/history"
	injlocal "github.com/chaosgate/chaosgate/engine/inject/local"
	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/engine/probe/availability"
	"github.com/chaosgate/chaosgate/engine/probe/consistency"
	"github.com/chaosgate/chaosgate/engine/probe/logs"
	"github.com/chaosgate/chaosgate/engine/probe/metrics"
	"github.com/chaosgate/chaosgate/engine/probe/promql"
	"github.com/chaosgate/chaosgate/engine/report"
	"github.com/chaosgate/chaosgate/engine/target/local"
	"github.com/chaosgate/chaosgate/engine/target/local/arms"
	"github.com/chaosgate/chaosgate/evidence"
	"github.com/chaosgate/chaosgate/scenarios"
)

// Config describes one run.
type Config struct {
	Doc *scenarios.Document
	// DataDir holds the journal, the ledger and its keys, the baseline
	// history and one directory per run (DATA/runs/RUN).
	DataDir string
	// Binary is the chaosgate executable the nodes run (empty: this one).
	Binary string
	// CanaryDefects turn the canary into a known-bad build.
	CanaryDefects []string
	// Revision is the evidence subject (default "local:<defects or good>").
	Revision string
	// GateKeys are further names the evidence answers for at the gate
	// (e.g. the canary's image digest and pod-template hash, a commit).
	GateKeys []string
	// Decision returns the judge's configuration (default decision.Default);
	// it is read at every judgement (hot reload).
	Decision func() *decision.Config
	// OnEvent receives progress events (serially).
	OnEvent func(engine.Event)
	Log     *slog.Logger
	// RunID overrides the generated run id.
	RunID string
	// Versions are recorded in the evidence (e.g. {"chaosgate": "v1"}).
	Versions map[string]string
	// Prometheus, when set, takes the arms' process metrics from PromQL
	// instead of the embedded scraper (nil: the embedded scraper).
	Prometheus *Prometheus
	// Target, when set, is where the arms run (e.g. the user's Kubernetes
	// workloads); nil runs the local target: the game day starts a control,
	// a canary and a calibration cluster itself from spec.target.local.
	Target Target
	// LogServer, when set, receives the nodes' logs (Loki's push API,
	// labels app="chaosgate-aggregator", run_id, arm, node) and every
	// decision line (engine/decisionlog), and the log guards become
	// queries to it (LogsQL or LogQL) instead of reads of the log files.
	// A target that implements LogStreams has its own agent ship the
	// logs; the guards then ask for its streams.
	LogServer *logs.Server
	// LogSettle is how long a window's end must lie in the past before a
	// log server is asked about it, for a cluster's agent that ships
	// lines with a delay (default 2 s; the game day's own shipper flushes
	// before every query).
	LogSettle time.Duration
}

// logGuard is the log-guard probe: over the nodes' files or a log server.
type logGuard interface {
	engine.Probe
	Scan() error
	Matches(arm engine.Arm, start, end time.Time) []logs.Match
	MatchCount(arm engine.Arm, start, end time.Time) int
	Patterns() []string
}

// ArmLive is one arm's recent availability for live views.
type ArmLive struct {
	SuccessRatio float64
	P99MS        float64
	Requests     int64
}

// Snapshot is the live state of a run.
type Snapshot struct {
	RunID        string
	Phase        string
	Weight       int
	ActiveFaults []string
	Arms         map[engine.Arm]ArmLive
	Steps        []string
	Elapsed      time.Duration
}

// RunOutcome is what a run produced.
type RunOutcome struct {
	RunID    string
	Report   report.Report
	Decision decision.Decision
	Reason   string
	// Interrupted: SIGINT/SIGTERM; Aborted: an abort condition or `chaosgate
	// abort`; Error: the platform could not judge.
	Interrupted bool
	Aborted     string
	Error       string
	RunDir      string
	Faults      []engine.FaultRecord
	Failing     []string // dimensions that failed at the deciding step
}

// Run is one game day in progress.
type Run struct {
	cfg   Config
	runID string
	dir   string
	start time.Time
	// ready is when every arm was up and the load and probes started:
	// memory growth is measured from there (see growthSpan).
	ready time.Time

	// target is where the arms run; arms are the local target's clusters
	// (nil on any other target).
	target   Target
	arms     *arms.Arms
	loadArms []engine.Arm
	gens     map[engine.Arm]*load.Generator
	hists    map[engine.Arm]*history.Writer
	hpaths   map[engine.Arm]string
	avail    *availability.Probe
	mets     *metrics.Probe
	logsp    logGuard
	// shipper pushes the nodes' logs to Config.LogServer; decisions
	// pushes the decision lines there.
	shipper   *logs.Shipper
	stopShip  context.CancelFunc
	shipDone  chan struct{}
	decisions *decisionlog.Pusher
	upLoad    *upstreamLoad
	base      *baseline.Store
	// journal is the game day's own journal (child processes it starts).
	journal *engine.Journal
	// prom is the PromQL source when Config.Prometheus is set; promSrv the
	// Prometheus the run started, if any.
	prom *promql.Source
	// promMinWindow is the shortest range queried (promShortestWindow).
	promMinWindow time.Duration
	promSrv       *local.Prometheus
	plan          engine.Plan
	rate          float64

	evMu   sync.Mutex
	mu     sync.Mutex
	phase  string
	weight int
	active map[string]string
	steps  []string

	faults      []engine.FaultRecord
	phases      []engine.PhaseSpan
	stepStart   time.Time
	stepSpans   []availability.Span
	consistency map[engine.Arm]consistency.Report
	lastVerdict decision.Verdict
	lastInput   decision.Input
	aborted     string
	// judged is every judgement with its input, for the evidence.
	judged []judgedWindow
}

// Quick returns the default game day ("default-gameday", or
// "default-gameday-quick" with quick) from the built-in library.
func Quick(quick bool) (*scenarios.Document, error) {
	name := "default-gameday"
	if quick {
		name = "default-gameday-quick"
	}
	return scenarios.Library(name)
}

func (r *Run) emit(kind engine.EventKind, phase string, weight int, msg string) {
	r.mu.Lock()
	if phase != "" {
		r.phase = phase
	}
	if weight > 0 {
		r.weight = weight
	}
	r.mu.Unlock()
	r.cfg.Log.Info(msg, "phase", phase, "weight", weight)
	if r.cfg.OnEvent != nil {
		r.evMu.Lock()
		r.cfg.OnEvent(engine.Event{T: time.Now(), Kind: kind, Phase: phase, Weight: weight, Msg: msg})
		r.evMu.Unlock()
	}
}

// Snapshot returns the live state (safe from any goroutine).
func (r *Run) Snapshot() Snapshot {
	r.mu.Lock()
	s := Snapshot{RunID: r.runID, Phase: r.phase, Weight: r.weight, Steps: append([]string(nil), r.steps...), Elapsed: time.Since(r.start)}
	for id, what := range r.active {
		s.ActiveFaults = append(s.ActiveFaults, what+" ("+id+")")
	}
	r.mu.Unlock()
	sort.Strings(s.ActiveFaults)
	if r.avail != nil {
		s.Arms = map[engine.Arm]ArmLive{}
		now := time.Now()
		for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
			st := r.avail.Summarize(arm, availability.Span{Start: now.Add(-6 * time.Second), End: now})
			s.Arms[arm] = ArmLive{SuccessRatio: st.SuccessRatio(), P99MS: st.P99, Requests: st.Requests}
		}
	}
	return s
}

// New prepares a run (nothing starts until Execute).
func New(cfg Config) (*Run, error) {
	if cfg.Doc == nil {
		return nil, engine.E(engine.KindInvalid, "game day", errors.New("no scenario document"))
	}
	if cfg.Target == nil && cfg.Doc.Spec.Target.Local == nil {
		return nil, engine.E(engine.KindInvalid, "game day", fmt.Errorf("%s: spec.target has no local target (hint: --target local needs spec.target.local: {nodes: 3})", cfg.Doc.Source))
	}
	if cfg.DataDir == "" {
		return nil, engine.E(engine.KindInvalid, "game day", errors.New("no data dir"))
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Decision == nil {
		def := decision.Default()
		cfg.Decision = func() *decision.Config { return def }
	}
	if cfg.Revision == "" {
		cfg.Revision = "local:good"
		if len(cfg.CanaryDefects) > 0 {
			cfg.Revision = "local:defect-" + strings.Join(cfg.CanaryDefects, "+")
		}
	}
	id := cfg.RunID
	if id == "" {
		var b [3]byte
		if f, err := os.Open("/dev/urandom"); err == nil {
			f.Read(b[:])
			f.Close()
		}
		id = time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
	}
	plan, err := engine.PlanFromDocument(cfg.Doc)
	if err != nil {
		return nil, err
	}
	return &Run{cfg: cfg, runID: id, plan: plan, active: map[string]string{}, start: time.Now(),
		consistency: map[engine.Arm]consistency.Report{}}, nil
}

// RunID is the run's id.
func (r *Run) RunID() string { return r.runID }

// Execute runs the game day. The outcome is returned even with an error;
// an interrupted run returns an error of kind engine.KindCanceled. Every
// fault is recovered and both clusters are stopped before it returns.
func (r *Run) Execute(parent context.Context) (*RunOutcome, error) {
	out := &RunOutcome{RunID: r.runID}
	r.dir = filepath.Join(r.cfg.DataDir, "runs", r.runID)
	out.RunDir = r.dir
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return out, engine.E(engine.KindUnavailable, "run dir", err)
	}
	// The game day's own journal keeps it a live run for its whole life —
	// setup, settling, steady windows, judging — not only while a step's
	// faults hold their journal, so that `chaosgate abort` and a kill
	// switch reach it between steps too. An abort cancels the run's
	// context; every step recovers what it applied.
	j, err := engine.OpenJournal(r.cfg.DataDir, r.runID, r.cfg.Doc.Metadata.Name, nil)
	if err != nil {
		return out, err
	}
	defer j.Close(true)
	r.journal = j
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	stopWatch := engine.WatchAbort(ctx, r.cfg.DataDir, r.runID, func(reason string) {
		r.mu.Lock()
		if r.aborted == "" {
			r.aborted = reason
		}
		r.mu.Unlock()
		r.emit(engine.EventInfo, "abort", 0, "abort requested: "+reason)
		cancel(fmt.Errorf("%w: %s", engine.ErrAborted, reason))
	})
	defer stopWatch()
	err = r.setup(ctx)
	defer r.teardown()
	if err != nil {
		r.mu.Lock()
		aborted := r.aborted
		r.mu.Unlock()
		if aborted != "" && parent.Err() == nil {
			// Aborted while the clusters started: a hold on nothing seen.
			out.Aborted, out.Decision, out.Reason = aborted, decision.Hold, "aborted: "+aborted
		} else {
			out.Error = err.Error()
		}
		r.finishReport(parent, out, nil, false)
		return out, err
	}
	ctrl := &canary.Controller{
		Steps:     r.plan.Weights,
		Config:    r.cfg.Decision,
		Observe:   r.observe,
		SetWeight: r.avail.SetWeight,
		Rollback: func(ctx context.Context) error {
			r.emit(engine.EventInfo, "rollback", 0, "rollback: all traffic back to the control")
			return r.avail.SetWeight(ctx, 0)
		},
		OnJudged: func(w canary.Window, v decision.Verdict) {
			r.recordSameBuild(w.Weight)
			r.mu.Lock()
			r.lastVerdict = v
			r.judged = append(r.judged, judgedWindow{Weight: w.Weight, Extension: w.Extension, Input: r.lastInput, Verdict: v})
			line := fmt.Sprintf("%d%%: %s (score %.3f, coverage %.3f)", w.Weight, v.Decision, v.Score, v.Coverage)
			if w.Extension > 0 {
				line = fmt.Sprintf("%d%% window %d: %s (score %.3f, coverage %.3f)", w.Weight, w.Extension+1, v.Decision, v.Score, v.Coverage)
			}
			if f := failing(v); len(f) > 0 {
				line += " failed: " + strings.Join(f, ", ")
			}
			r.steps = append(r.steps, line)
			n := len(r.judged)
			r.mu.Unlock()
			r.emit(engine.EventVerdict, "judge", w.Weight, "step "+line+" — "+v.Reason)
			r.pushDecision(ctx, r.decisionRun().Step(n, w.Weight, v, r.cfg.Decision()))
			if v.Decision != decision.Promote {
				// The evidence behind a hold or a block, dimension by
				// dimension, so that a run's log explains it on its own.
				for _, d := range v.Dimensions {
					if d.Outcome == decision.Pass && len(d.Diagnosis) == 0 {
						continue
					}
					msg := fmt.Sprintf("  %s %s: canary %.4g, control %.4g, z %.2f (k %.2f) — %s", d.Name, d.Outcome, d.Canary, d.Control, d.Z, d.K, d.Reason)
					if len(d.Diagnosis) > 0 {
						msg += "; " + strings.Join(d.Diagnosis, "; ")
					}
					r.emit(engine.EventInfo, "judge", w.Weight, msg)
				}
			}
		},
	}
	res, runErr := ctrl.Run(ctx)
	r.mu.Lock()
	aborted := r.aborted
	r.mu.Unlock()
	interrupted := parent.Err() != nil || aborted == "" && engine.KindOf(runErr) == engine.KindCanceled && errors.Is(runErr, engine.ErrInterrupted)
	if runErr != nil {
		out.Error = runErr.Error()
		if interrupted {
			out.Interrupted = true
		}
		if aborted != "" {
			out.Aborted = aborted
		}
	}
	out.Decision = res.Decision
	out.Reason = res.Reason
	if out.Aborted != "" {
		// An abort still yields a verdict on what was seen: never a
		// promotion.
		out.Decision, out.Reason = decision.Hold, "aborted: "+out.Aborted
		out.Error = ""
		runErr = nil
	}
	if len(res.Steps) > 0 {
		out.Failing = failing(res.Steps[len(res.Steps)-1].Verdict)
	}
	recordEvidence := !out.Interrupted && (runErr == nil || out.Aborted != "")
	r.finishReport(parent, out, &res, recordEvidence)
	if runErr != nil {
		if out.Interrupted {
			return out, engine.E(engine.KindCanceled, "game day", fmt.Errorf("%w: %v", engine.ErrInterrupted, context.Cause(parent)))
		}
		return out, runErr
	}
	if out.Error != "" {
		return out, errors.New(out.Error)
	}
	return out, nil
}

func failing(v decision.Verdict) []string {
	var f []string
	for _, d := range v.Dimensions {
		if d.Outcome == decision.Fail {
			f = append(f, string(d.Name))
		}
	}
	return f
}

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
	var err error
	pr := r.cfg.Doc.Spec.Probes
	sources, rate := 8, 200.0
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
		// by its controller may come back at another address.
		g, err := load.New(ctx, load.Config{Targets: func() []string { return r.target.ClientAddrs(arm) }, Partitions: parts, Sources: sources, Keys: 64,
			Batch: 1, Dup: 0.05, Reorder: 0.05, StateClients: 2, StateKeys: 8, History: hw, Timeout: 2 * time.Second, MaxRetries: 60,
			Name: arm.String() + "-" + shortHash(r.runID), IDNode: int64(i + 1), Logger: r.cfg.Log})
		if err != nil {
			return engine.E(engine.KindUnavailable, "load generator for "+arm.String(), err)
		}
		gens[arm] = g
	}
	gensMu.Lock()
	r.gens = gens
	gensMu.Unlock()
	r.rate = rate
	if r.avail, err = availability.New(availability.Config{Generators: gens, Rate: rate}); err != nil {
		return err
	}
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
		CanaryArgs: r.admissionArgs(), ControlArgs: r.admissionArgs(),
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
		Admin: a.Admin, Burst: func(arm engine.Arm) (load.Config, error) {
			// An overload burst goes straight to the arm's nodes (the
			// client proxies would throttle it before the nodes see it) and
			// into the arm's history, so its messages are checked like any
			// others.
			hw := r.hists[arm]
			if hw == nil || r.gens[arm] == nil {
				return load.Config{}, fmt.Errorf("no history for %s", arm)
			}
			// Its stats lines carry the nodes' admission caps, so the
			// checker's I6 sees a node that holds more requests than its
			// bound instead of shedding them.
			var direct []string
			for _, n := range a.Nodes(arm) {
				direct = append(direct, a.DirectAddrs(arm)[n])
			}
			// Its acknowledgements go to the steady generator's set, whose
			// drain then waits for the burst's messages too.
			return load.Config{Targets: load.StaticTargets(direct...), Partitions: parts, Keys: 64, History: hw, Logger: r.cfg.Log, Acks: r.gens[arm].Acks(),
				StatsInterval: 250 * time.Millisecond, StatsCaps: map[string]float64{"inflight_requests_cap": AdmissionMaxRequests}}, nil
		}})
	r.target = &localTarget{a: a, inj: inj, parts: parts, name: r.cfg.Doc.Metadata.Name}
	return nil
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

// observe runs one canary window: the first window of a step runs the
// step's fault suite under load; an extension (after a HOLD) observes more
// steady load. Then the load stops, both output streams are drained and
// checked, and the judge's input is built.
func (r *Run) observe(ctx context.Context, w canary.Window) (decision.Input, error) {
	if w.Extension == 0 {
		r.stepStart = time.Now()
		r.stepSpans = nil
	}
	r.avail.Start(context.WithoutCancel(ctx))
	r.upLoad.start(context.WithoutCancel(ctx))
	if w.Extension == 0 {
		if err := r.runFaults(ctx, w.Weight); err != nil {
			r.avail.Stop()
			return decision.Input{}, err
		}
	}
	// The judge's steady window: once both arms are healthy again, a
	// stretch of fault-free load long enough for the canary's samples.
	if err := r.settle(ctx, w.Weight); err != nil {
		r.avail.Stop()
		return decision.Input{}, err
	}
	v := r.verifyLen(w.Weight)
	what := "steady window"
	if w.Extension > 0 {
		what = fmt.Sprintf("hold: extension %d", w.Extension)
	}
	r.emit(engine.EventPhase, "steady", w.Weight, fmt.Sprintf("%s: observing %s of fault-free load at %d%%", what, v, w.Weight))
	s := time.Now()
	// One chunk more, so the window holds v of whole chunks.
	if err := sleep(ctx, v+r.avail.Chunk()); err != nil {
		r.avail.Stop()
		return decision.Input{}, engine.E(engine.KindCanceled, "observe", fmt.Errorf("%w: %v", engine.ErrInterrupted, err))
	}
	r.stepSpans = append(r.stepSpans, availability.Span{Start: s, End: time.Now()})
	r.emit(engine.EventPhase, "verify", w.Weight, "stopping load, draining both output streams and checking consistency")
	r.avail.Stop()
	if err := r.checkConsistency(ctx); err != nil {
		return decision.Input{}, err
	}
	if ctx.Err() != nil {
		return decision.Input{}, engine.E(engine.KindCanceled, "observe", fmt.Errorf("%w: %v", engine.ErrInterrupted, context.Cause(ctx)))
	}
	in, err := r.buildInput(w.Weight)
	r.lastInput = in
	if err != nil {
		return decision.Input{}, err
	}
	r.emit(engine.EventPhase, "judge", w.Weight, fmt.Sprintf("judging the %d%% step", w.Weight))
	return in, nil
}

// settle waits (at most DefaultSettleTimeout, or the target's
// SettleTimeout) until every node of both arms is ready,
// every node agrees on who leads each partition, and no message offered
// before the settling began is still being retried (its retries would
// land in the steady window).
func (r *Run) settle(ctx context.Context, weight int) error {
	began := time.Now()
	limit := DefaultSettleTimeout
	if st, ok := r.target.(SettleTimeout); ok && st.SettleTimeout() > 0 {
		limit = st.SettleTimeout()
	}
	deadline := began.Add(limit)
	var healthySince time.Time
	for {
		err := r.target.Healthy(ctx)
		if err == nil && !r.avail.Settled(began) {
			err = engine.E(engine.KindUnavailable, "settle", errors.New("messages offered during the faults are still being retried"))
		}
		if err != nil {
			healthySince = time.Time{}
		} else if healthySince.IsZero() {
			healthySince = time.Now()
		}
		// Healthy is not yet serving: a cluster answers its health checks
		// while it may still be catching up after a partition, and time
		// out requests for a moment. Wait for a chunk of load that each
		// arm served cleanly (at most a few chunks).
		if err == nil && !r.avail.Recovered(healthySince) {
			err = engine.E(engine.KindUnavailable, "settle", errors.New("an arm has not yet served a chunk of load without timeouts since it became healthy"))
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return engine.E(engine.KindCanceled, "settle", fmt.Errorf("%w: %v", engine.ErrInterrupted, context.Cause(ctx)))
		}
		if time.Now().After(deadline) {
			r.emit(engine.EventInfo, "steady", weight, fmt.Sprintf("the arms are not all healthy after %v; judging anyway: %v", limit, err))
			return nil
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return engine.E(engine.KindCanceled, "settle", fmt.Errorf("%w: %v", engine.ErrInterrupted, err))
		}
	}
}

// verifyLen is the length of the judge's steady window at weight: three
// steady states, at least 4s, and long enough for about 300 canary
// messages, at most 15s.
func (r *Run) verifyLen(weight int) time.Duration {
	d := max(3*r.steady(), 4*time.Second)
	if rate := r.rate * r.avail.Share(weight); rate > 0 {
		need := time.Duration(300 / rate * float64(time.Second))
		d = max(d, min(need, 15*time.Second))
	}
	return d.Round(100 * time.Millisecond)
}

func (r *Run) steady() time.Duration {
	d := r.cfg.Doc.Spec.SteadyState.Duration
	if d <= 0 {
		d = 2 * time.Second
	}
	return d
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// runFaults runs the experiments of one weight with the engine runner.
func (r *Run) runFaults(ctx context.Context, weight int) error {
	plan := r.plan
	plan.Weights = []int{weight}
	// The calibration arm takes the canary's faults: the same fault on the
	// same node, journaled, confirmed and recovered like the others.
	if hasArm(r.target, engine.ArmCalibration) {
		plan.Arms = append(append([]engine.Arm(nil), plan.Arms...), engine.ArmCalibration)
	}
	n := 0
	for _, e := range plan.Experiments {
		if runsAt(e, weight) {
			n += len(e.Faults)
		}
	}
	if n == 0 {
		r.emit(engine.EventPhase, "steady", weight, fmt.Sprintf("no fault at %d%%", weight))
		return nil
	}
	runner, err := engine.NewRunner(engine.Options{DataDir: r.cfg.DataDir, Injectors: r.target.Injectors(), Topology: r.target,
		Probes: r.probes(), SetWeight: r.avail.SetWeight, Log: r.cfg.Log,
		RunID: fmt.Sprintf("%s-w%d", r.runID, weight), RecoverTimeout: 10 * time.Second,
		OnEvent: r.onRunnerEvent})
	if err != nil {
		return err
	}
	res, err := runner.Run(ctx, plan)
	if res != nil {
		r.mu.Lock()
		r.faults = append(r.faults, res.Faults...)
		r.phases = append(r.phases, res.Phases...)
		r.active = map[string]string{}
		r.mu.Unlock()
		// The steady state before the step's first fault is fault-free;
		// later ones follow a recovery and are not.
		for _, ph := range res.Phases {
			if ph.Phase == engine.PhaseSteadyBefore {
				// Its load must have settled before the fault that
				// followed it.
				r.stepSpans = append(r.stepSpans, availability.Span{Start: ph.Start, End: ph.End, SettleBy: ph.End})
				break
			}
		}
		if res.Aborted != "" {
			r.mu.Lock()
			if r.aborted == "" {
				r.aborted = res.Aborted
			}
			r.mu.Unlock()
			return engine.E(engine.KindCanceled, "game day", fmt.Errorf("%w: %s", engine.ErrAborted, res.Aborted))
		}
	}
	if err != nil {
		return err
	}
	return nil
}

// probes are the probes the fault runner observes: availability, metrics
// and, when the run has a log source, the log guards.
func (r *Run) probes() []engine.Probe {
	ps := []engine.Probe{r.avail, r.mets}
	if r.logsp != nil {
		ps = append(ps, r.logsp)
	}
	return ps
}

func runsAt(e engine.Experiment, w int) bool {
	if len(e.RunAt) == 0 {
		return true
	}
	for _, x := range e.RunAt {
		if x == w {
			return true
		}
	}
	return false
}

func (r *Run) onRunnerEvent(ev engine.Event) {
	judge, verify := engine.PhaseJudge.String(), engine.PhaseVerify.String()
	if ev.Phase == judge || ev.Phase == verify {
		// The runner only runs the faults of a step here; verification
		// and judgement are this package's (and reported by it).
		return
	}
	r.mu.Lock()
	switch {
	case ev.Kind == engine.EventFault:
		r.active[ev.Fault] = strings.SplitN(ev.Msg, " applied", 2)[0]
	case ev.Phase == engine.PhaseRecover.String() || ev.Phase == engine.PhaseSteadyAfter.String():
		r.active = map[string]string{}
	}
	r.mu.Unlock()
	msg := ev.Msg
	if ev.Experiment != "" && ev.Kind == engine.EventPhase {
		msg = ev.Experiment + ": " + msg
	}
	r.emit(ev.Kind, ev.Phase, ev.Weight, msg)
}

// checkConsistency drains both arms' output streams (the load is stopped)
// and checks everything each arm acknowledged so far.
func (r *Run) checkConsistency(ctx context.Context) error {
	r.upLoad.stop()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dctx, cancel := context.WithTimeout(ctx, 75*time.Second)
			defer cancel()
			r.upLoad.settle(dctx, r.arms, arm, 30*time.Second)
			// Longer than the nodes' reorder timeout (2s) plus one reorder
			// tick (0.5s): a message acknowledged while an earlier seq of
			// its source was missing waits that long for its hole to be
			// declared a gap before it reaches the stream.
			quiet := 3 * time.Second
			if r.upLoad != nil {
				// a node restarted after a kill takes its broker session's
				// queued messages (MQTT measures no lag) a few seconds later
				quiet = 6 * time.Second
			}
			if _, err := r.gens[arm].Drain(dctx, load.DrainOptions{Quiet: quiet, Max: 40 * time.Second}); err != nil && ctx.Err() == nil {
				errs[i] = engine.E(engine.KindUnavailable, "drain "+arm.String(), err)
				return
			}
			if err := r.upLoad.record(dctx, arm); err != nil && ctx.Err() == nil {
				errs[i] = engine.E(engine.KindUnavailable, "upstreams of "+arm.String(), err)
				return
			}
			if err := r.hists[arm].Flush(); err != nil {
				errs[i] = engine.E(engine.KindUnavailable, "history "+arm.String(), err)
				return
			}
			evs, err := history.ReadFile(r.hpaths[arm])
			if err != nil {
				errs[i] = engine.E(engine.KindInternal, "history "+arm.String(), err)
				return
			}
			rep := consistency.Check(evs, consistency.Config{LinearizabilityTimeout: 5 * time.Second})
			r.mu.Lock()
			r.consistency[arm] = rep
			r.mu.Unlock()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		rep := r.consistency[arm]
		msg := fmt.Sprintf("consistency %s: %d acknowledged, %d received, ", arm, rep.Counts.SentOK, rep.Counts.Received)
		if rep.OK {
			msg += "every invariant holds"
		} else {
			var inv []string
			for _, v := range rep.Violations {
				inv = append(inv, v.Invariant)
			}
			msg += "VIOLATED: " + strings.Join(inv, ", ")
		}
		r.emit(engine.EventInfo, "verify", 0, msg)
	}
	return nil
}

// Violations counts a checker report's violations.
func Violations(rep consistency.Report) float64 {
	c := rep.Counts
	n := c.Lost + c.Duplicated + c.Unexpected + c.OrderViolations + c.HLCViolations + c.SplitBrain
	if c.Linearizability == consistency.LinIllegal {
		n++
	}
	if n == 0 && !rep.OK {
		n = len(rep.Violations)
	}
	return float64(n)
}

// armInput builds one arm's judge input for the step.
func (r *Run) armInput(weight int, arm engine.Arm, steady []availability.Span, step availability.Span) (decision.ArmInput, availability.Stats, error) {
	// Only chunks that finished before the fault that followed their
	// steady span: one that started just before a fault and was still
	// retrying when it struck measures the fault.
	st := r.avail.SummarizeSettled(arm, steady...)
	a := decision.ArmInput{CollectedAt: time.Now()}
	if st.Chunks == 0 {
		return a, st, engine.E(engine.KindUnavailable, "availability", fmt.Errorf("no load chunk of %s in the steady windows", arm))
	}
	if st.Hist != nil {
		a.LatencyP50, a.LatencyP99 = decision.Num(st.P50), decision.Num(st.P99)
	}
	// A session is one send attempt; it is interrupted when the attempt ends
	// without an answer. Attempts, not messages: under faults one message
	// may time out on several retries.
	a.Sessions, a.SessionInterruptions = decision.Num(float64(st.Attempts)), decision.Num(float64(st.Timeouts))
	// Error rate is the servers' own: HTTP 5xx other than 503 over HTTP
	// requests, as a Prometheus query would give it (the load generator
	// retries errors, so its final outcomes hide them). A 503 is the
	// explicit "no leader right now" of an election, which every client
	// retries; it counts as a session interruption only when a client's
	// attempt ends without an answer.
	mw, err := r.mets.Window(arm, spansM(steady)...)
	if err != nil {
		qe := decision.Value{State: decision.QueryError, Err: err.Error()}
		a.DependencyCalls, a.DependencyFailures, a.Requests, a.Errors = qe, qe, qe, qe
	} else {
		a.DependencyCalls, a.DependencyFailures = decision.Num(mw.DependencyCalls), decision.Num(mw.DependencyFailures)
		a.Requests, a.Errors = decision.Num(mw.HTTPRequests), decision.Num(mw.HTTP5xx-mw.HTTP503)
	}
	// GC pauses in the steady windows only, as for errors and latency. Over
	// the whole step they measure the faults (a SIGSTOPped or restarted
	// node, a raft log replayed) and the traffic shift: right after the
	// gate moves traffic to the canary its heap grows to the new load while
	// the control's shrinks, so a good canary paused long three times as
	// often as its control at the 50% step of make demo and in CI.
	if err != nil {
		a.GCPausesMS = decision.Samples{State: decision.QueryError, Err: err.Error()}
		a.WindowS = decision.Value{State: decision.QueryError, Err: err.Error()}
		a.MemoryGrowthMBPerMin = decision.Value{State: decision.QueryError, Err: err.Error()}
	} else {
		a.GCPausesMS = decision.Series(append([]float64{}, mw.GCPausesMS...))
		a.WindowS = decision.Num(mw.WindowS)
	}
	// Memory growth needs a long baseline: the slope over the whole run
	// (growthSpan).
	if run, err := r.mets.Window(arm, r.growthSpan(step.End)); err == nil && run.HasMemoryGrowth {
		a.MemoryGrowthMBPerMin = decision.Num(run.MemoryGrowthMBPerMin)
	} else if err != nil {
		a.MemoryGrowthMBPerMin = decision.Value{State: decision.QueryError, Err: err.Error()}
	}
	if r.prom != nil {
		r.promArm(context.Background(), weight, arm, steady, step, &a)
	}
	if rep, ok := r.consistency[arm]; ok {
		a.ConsistencyViolations = decision.Num(Violations(rep))
	}
	a.LogGuardMatches = r.logGuardMatches(arm, steady)
	return a, st, nil
}

// logGuardMatches counts arm's guarded log lines in the steady spans, the
// spans its requests were counted in.
func (r *Run) logGuardMatches(arm engine.Arm, steady []availability.Span) decision.Value {
	if r.logsp == nil {
		return decision.Value{}
	}
	if err := r.logsp.Scan(); err != nil {
		return decision.Value{State: decision.QueryError, Err: err.Error()}
	}
	n := 0
	for _, s := range steady {
		c := r.logsp.MatchCount(arm, s.Start, s.End)
		if c < 0 {
			err := "log guard query failed"
			if e, ok := r.logsp.(interface{ Err() error }); ok && e.Err() != nil {
				err = e.Err().Error()
			}
			return decision.Value{State: decision.QueryError, Err: err}
		}
		n += c
	}
	return decision.Num(float64(n))
}

func spansM(s []availability.Span) []metrics.Span {
	out := make([]metrics.Span, len(s))
	for i, x := range s {
		out[i] = metrics.Span{Start: x.Start, End: x.End}
	}
	return out
}

// recordSameBuild adds the window just judged to the baseline history when
// the canary runs exactly the control's build (no defect): two separate
// clusters of one build under the same faults are the A/A windows that show
// how far two healthy clusters drift apart, which the control alone cannot.
// It is recorded after the judgement, so a window never judges itself.
func (r *Run) recordSameBuild(weight int) {
	// Only the local target knows the canary runs the control's build.
	if r.arms == nil || len(r.cfg.CanaryDefects) > 0 || r.lastInput.At.IsZero() {
		return
	}
	in := r.lastInput
	if err := r.base.Record(r.service(weight), decision.HistoryWindow{At: in.At.Add(time.Millisecond), Canary: in.Canary, Control: in.Control, Context: in.Context}); err != nil {
		r.cfg.Log.Warn("baseline record", "err", err)
	}
}

func (r *Run) service(weight int) string {
	return fmt.Sprintf("%s/w%d", r.target.Service(), weight)
}

func (r *Run) buildInput(weight int) (decision.Input, error) {
	now := time.Now()
	step := availability.Span{Start: r.stepStart, End: now}
	steady := r.stepSpans
	if len(steady) == 0 {
		steady = []availability.Span{step}
	}
	in := decision.Input{At: now}
	var err error
	if in.Canary, _, err = r.armInput(weight, engine.ArmCanary, steady, step); err != nil {
		return in, err
	}
	if in.Control, _, err = r.armInput(weight, engine.ArmControl, steady, step); err != nil {
		return in, err
	}
	for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		if mw, err := r.mets.Window(arm, spansM(steady)...); err == nil {
			var parts []string
			for route, n := range mw.RouteRequests {
				parts = append(parts, fmt.Sprintf("%s %.0f/%.0f", route, mw.Route5xx[route], n))
			}
			sort.Strings(parts)
			parts = append(parts, fmt.Sprintf("of which 503 %.0f", mw.HTTP503))
			r.cfg.Log.Info("judge window", "arm", arm.String(), "http_5xx_by_route", strings.Join(parts, ", "), "forward_failures", mw.DependencyFailures, "forwards", mw.DependencyCalls)
		}
	}
	in.Context = r.stepContext(weight)
	// The A/A window of this very period: the calibration arm (the
	// control's build, the canary's share and faults) against the control,
	// recorded before the canary is judged.
	if !hasArm(r.target, engine.ArmCalibration) {
		// No calibration arm: the history holds what earlier runs recorded.
	} else if calib, _, err := r.armInput(weight, engine.ArmCalibration, steady, step); err != nil {
		r.cfg.Log.Warn("calibration window", "err", err)
	} else if err := r.base.Record(r.service(weight), decision.HistoryWindow{At: now, Canary: calib, Control: in.Control, Context: in.Context}); err != nil {
		r.cfg.Log.Warn("baseline record", "err", err)
	}
	hist, err := r.base.History(r.service(weight), now.Add(time.Second), r.cfg.Decision().Baseline.Window)
	if err != nil {
		return in, engine.E(engine.KindUnavailable, "baseline history", err)
	}
	in.History = hist
	return in, nil
}

// stepContext is the context of the windows judged at weight: the kinds of
// fault the step runs. Its steady windows lie around those faults, and
// what they measure — a cluster catching up after a partition, memory
// growth over the run — carries them; the A/A windows of the step carry
// the same context, so σ̂ comes from windows of the same schedule.
func (r *Run) stepContext(weight int) *decision.Context {
	var kinds []string
	for _, e := range r.plan.Experiments {
		if !runsAt(e, weight) {
			continue
		}
		for _, f := range e.Faults {
			kinds = append(kinds, f.Kind.String())
		}
	}
	return decision.NewContext(0, kinds...)
}

// finishReport builds the report/v1 and, when asked, the evidence record.
func (r *Run) finishReport(ctx context.Context, out *RunOutcome, res *canary.RolloutResult, record bool) {
	d := out.Decision
	if out.Interrupted || (out.Error != "" && out.Aborted == "") {
		d = 0
	}
	rep := report.New(r.runID, r.cfg.Revision, d)
	if res != nil {
		rep.Steps = res.ReportSteps()
	}
	r.mu.Lock()
	out.Faults = append([]engine.FaultRecord(nil), r.faults...)
	r.mu.Unlock()
	for _, f := range out.Faults {
		rf := report.Fault{Kind: f.Kind.String(), Arm: f.Arm.String(), Target: f.Target, AppliedAt: f.AppliedAt, Confirmed: confName(f)}
		if !f.RecoveredAt.IsZero() {
			t := f.RecoveredAt
			rf.RecoveredAt = &t
		}
		if r.avail != nil && (f.Arm == engine.ArmCanary || f.Arm == engine.ArmControl) && !f.AppliedAt.IsZero() {
			removed := f.RecoveredAt
			if removed.IsZero() {
				removed = time.Now()
			}
			fw := r.avail.Fault(f.Arm, f.AppliedAt, removed)
			fa := &report.FaultAvailability{Requests: fw.Requests, Failed: fw.Failed, Timeouts: fw.Timeouts, Retries: fw.Retries,
				SteadyP99MS: math.Round(fw.SteadyP99MS*10) / 10}
			if fw.Recovered && !f.RecoveredAt.IsZero() {
				v := math.Round(fw.RecoveryS*10) / 10
				fa.RecoveryS = &v
			}
			rf.Availability = fa
		}
		rep.Faults = append(rep.Faults, rf)
	}
	rep.Resilience = report.ResilienceOf(rep.Faults)
	if r.avail != nil {
		whole := availability.Span{Start: r.start, End: time.Now()}
		c, k := r.avail.Summarize(engine.ArmCanary, whole), r.avail.Summarize(engine.ArmControl, whole)
		rep.Probes.Availability = &report.Arms[report.Availability]{Canary: availSummary(c), Control: availSummary(k)}
	}
	if len(r.consistency) == 2 {
		cj, _ := json.Marshal(r.consistency[engine.ArmCanary])
		kj, _ := json.Marshal(r.consistency[engine.ArmControl])
		rep.Probes.Consistency = &report.Arms[json.RawMessage]{Canary: cj, Control: kj}
	}
	if r.mets != nil {
		m := report.Arms[map[string]float64]{Canary: map[string]float64{}, Control: map[string]float64{}}
		for arm, dst := range map[engine.Arm]map[string]float64{engine.ArmCanary: m.Canary, engine.ArmControl: m.Control} {
			if w, err := r.mets.Window(arm, metrics.Span{Start: r.start, End: time.Now()}); err == nil {
				for k, v := range w.Metrics() {
					dst[k] = v
				}
			}
			if r.logsp != nil {
				r.logsp.Scan()
				if n := r.logsp.MatchCount(arm, r.start, time.Now()); n >= 0 {
					dst["log_guard_matches"] = float64(n)
				}
			}
		}
		rep.Probes.Metrics = &m
	}
	rep.DurationS = math.Round(time.Since(r.start).Seconds()*10) / 10
	if record {
		ev, err := r.record(ctx, out, rep, res)
		if err != nil {
			out.Error = strings.TrimPrefix(out.Error+"; ", "; ") + "recording evidence: " + err.Error()
			rep.Verdict, rep.ExitCode = "", decision.ExitNoVerdict
		} else {
			rep.Evidence = ev
			r.emit(engine.EventInfo, "record", 0, fmt.Sprintf("evidence recorded: ledger index %d (tree size %d)", ev.LedgerIndex, ev.TreeSize))
		}
	}
	rep.DurationS = math.Round(time.Since(r.start).Seconds()*10) / 10
	out.Report = rep
	if r.decisions != nil {
		verdict := rep.Verdict
		switch {
		case out.Aborted != "":
			verdict = "abort"
		case verdict == "":
			verdict = "error"
		}
		var last decision.Verdict
		if res != nil && len(res.Steps) > 0 {
			last = res.Steps[len(res.Steps)-1].Verdict
		}
		reason := out.Reason
		if out.Error != "" {
			reason = strings.TrimPrefix(reason+"; ", "; ") + out.Error
		}
		r.mu.Lock()
		weight := r.weight
		r.mu.Unlock()
		r.pushDecision(ctx, r.decisionRun().Final(verdict, reason, weight, last, r.cfg.Decision()))
	}
}

// NodeLogApp is the app label of the nodes' log lines on a log server.
const NodeLogApp = "chaosgate-aggregator"

// decisionRun is what every decision line of the run shares.
func (r *Run) decisionRun() decisionlog.Run {
	return decisionlog.Run{RunID: r.runID, Workload: r.cfg.Revision, ScenarioHash: r.scenarioHash()}
}

// scenarioHash is sha256:… of the scenario the run plays.
func (r *Run) scenarioHash() string {
	scen, _ := json.Marshal(r.cfg.Doc)
	sh := sha256.Sum256(scen)
	return "sha256:" + hex.EncodeToString(sh[:])
}

// pushDecision sends one decision line to the log server, if there is
// one; a failed push is reported, it never changes the run.
func (r *Run) pushDecision(ctx context.Context, l decisionlog.Line) {
	if r.decisions == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := r.decisions.Push(ctx, l); err != nil {
		r.emit(engine.EventInfo, "", 0, "log server: "+err.Error())
	}
}

func confName(f engine.FaultRecord) string {
	if f.Skipped != "" {
		return "inconclusive"
	}
	if f.Confirmed == 0 {
		return "inconclusive"
	}
	return f.Confirmed.String()
}

func availSummary(s availability.Stats) report.Availability {
	a := report.Availability{Requests: s.Requests, P99MS: s.P99}
	if s.Requests > 0 {
		a.SuccessRatio = s.SuccessRatio()
	}
	return a
}

// evidenceVerdict is the verdict the evidence records for a run with at
// least one judged step: the run's own decision, and a hold when it was
// aborted (the controller returns no decision when it stops mid-step;
// an abort is never a promotion).
func evidenceVerdict(out *RunOutcome) string {
	if out.Aborted != "" && out.Decision != decision.Block {
		return decision.Hold.String()
	}
	return out.Decision.String()
}

// record appends the signed evidence of the run to the embedded ledger.
func (r *Run) record(ctx context.Context, out *RunOutcome, rep report.Report, res *canary.RolloutResult) (*report.Evidence, error) {
	ctx = context.WithoutCancel(ctx)
	l, err := evidence.OpenDataDir(ctx, r.cfg.DataDir, nil)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	doc := r.cfg.Doc
	p := &evidence.Predicate{RunID: r.runID, Experiment: evidence.Experiment{Name: doc.Metadata.Name, ScenarioHash: r.scenarioHash(), Kind: strings.ToLower(doc.Kind)},
		Versions: r.cfg.Versions, StartedAt: r.start, FinishedAt: time.Now()}
	// Every cluster the run drove, the calibration arm's included: the
	// injections name it too.
	for _, arm := range r.loadArms {
		for node, addr := range r.target.DirectAddrs(arm) {
			p.Targets = append(p.Targets, evidence.Target{Arm: arm.String(), Name: node, Address: addr})
		}
	}
	sort.Slice(p.Targets, func(i, j int) bool {
		return p.Targets[i].Arm+p.Targets[i].Name < p.Targets[j].Arm+p.Targets[j].Name
	})
	for _, f := range out.Faults {
		fd := map[string]any{"id": f.ID, "experiment": f.Experiment, "weight": f.Weight, "measurement": f.Measurement, "detail": f.Detail, "skipped": f.Skipped, "error": f.Error}
		if f.RecoverError != "" {
			fd["recover_error"] = f.RecoverError
		}
		if fr, ok := r.target.(FaultRecords); ok {
			if recs := fr.FaultRecords(f.ID); recs != nil {
				fd["records"] = recs
			}
		}
		detail, _ := json.Marshal(fd)
		p.Injections = append(p.Injections, evidence.Injection{Kind: f.Kind.String(), Arm: f.Arm.String(), Target: f.Target, AppliedAt: f.AppliedAt,
			RecoveredAt: f.RecoveredAt, Confirmed: confName(f), Detail: detail})
	}
	for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		if rep.Probes.Availability != nil {
			v := rep.Probes.Availability.Canary
			if arm == engine.ArmControl {
				v = rep.Probes.Availability.Control
			}
			b, _ := json.Marshal(v)
			p.Probes = append(p.Probes, evidence.ProbeSummary{Probe: "availability", Arm: arm.String(), Summary: b})
		}
		if c, ok := r.consistency[arm]; ok {
			b, _ := json.Marshal(c)
			ps := evidence.ProbeSummary{Probe: "consistency", Arm: arm.String(), Summary: b}
			if raw, err := os.ReadFile(r.hpaths[arm]); err == nil {
				if ref, err := l.PutBlob("history-"+arm.String()+".jsonl", "application/jsonl", raw); err == nil {
					ps.Blobs = append(ps.Blobs, ref)
				}
			}
			p.Probes = append(p.Probes, ps)
		}
		if rep.Probes.Metrics != nil {
			v := rep.Probes.Metrics.Canary
			if arm == engine.ArmControl {
				v = rep.Probes.Metrics.Control
			}
			b, _ := json.Marshal(v)
			p.Probes = append(p.Probes, evidence.ProbeSummary{Probe: "metrics", Arm: arm.String(), Summary: b})
		}
	}
	if res != nil && len(res.Steps) > 0 {
		last := res.Steps[len(res.Steps)-1]
		dims, _ := json.Marshal(last.Verdict.Dimensions)
		steps, _ := json.Marshal(rep.Steps)
		verdict := evidenceVerdict(out)
		p.Decision = &evidence.Decision{Verdict: verdict, Score: last.Verdict.Score, Coverage: last.Verdict.Coverage,
			ConfigHash: last.Verdict.ConfigHash, Dimensions: dims, Inputs: steps}
		p.ConfigHash = last.Verdict.ConfigHash
	}
	// The raw material behind the verdict, bound by digest: the blobs
	// are stored before the statement that names them is signed.
	p.Blobs = append(p.Blobs, r.rawBlobs(l, rep)...)
	p.TraceIDs = append(p.TraceIDs, r.indexedTraceIDs()...)
	rc, err := l.Record(ctx, r.cfg.Revision, p, r.cfg.GateKeys...)
	if err != nil {
		return nil, err
	}
	return &report.Evidence{LedgerIndex: rc.Index, TreeSize: rc.TreeSize, EnvelopeSHA256: rc.EnvelopeSHA256}, nil
}
