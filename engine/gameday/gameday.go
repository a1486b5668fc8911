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
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/decision/baseline"
	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/canary"
	"github.com/chaosgate/chaosgate/engine/decisionlog"
	"github.com/chaosgate/chaosgate/engine/history"
	"github.com/chaosgate/chaosgate/engine/inject/overload"
	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/engine/probe/availability"
	"github.com/chaosgate/chaosgate/engine/probe/consistency"
	"github.com/chaosgate/chaosgate/engine/probe/logs"
	"github.com/chaosgate/chaosgate/engine/probe/metrics"
	"github.com/chaosgate/chaosgate/engine/probe/promql"
	"github.com/chaosgate/chaosgate/engine/report"
	"github.com/chaosgate/chaosgate/engine/target/local"
	"github.com/chaosgate/chaosgate/engine/target/local/arms"
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
	// Judge decides each judged window (nil: decision.Judge{}, chaosgate's
	// judge). Whatever it answers goes through the same hold policy,
	// rollback, report and evidence.
	Judge canary.Judge
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
	// splitJournaled: the journal holds an outstanding traffic split.
	splitJournaled bool
	// l7 is chaosgate's router in front of a local target's arms, when
	// the experiment file asks for it (traffic: {provider: router}).
	l7 *l7Router
	// prom is the PromQL source when Config.Prometheus is set; promSrv the
	// Prometheus the run started, if any.
	prom *promql.Source
	// promMinWindow is the shortest range queried (promShortestWindow).
	promMinWindow time.Duration
	promSrv       *local.Prometheus
	plan          engine.Plan
	rate          float64
	// overload plays the overload fault on every target: a burst from
	// the game day's own load generator (see injectors).
	overload *overload.Injector

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
	avail := r.avail
	r.mu.Unlock()
	sort.Strings(s.ActiveFaults)
	if avail != nil {
		s.Arms = map[engine.Arm]ArmLive{}
		now := time.Now()
		for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
			st := avail.Summarize(arm, availability.Span{Start: now.Add(-6 * time.Second), End: now})
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
	if err := defectsCanShow(cfg); err != nil {
		return nil, err
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
		Judge:     r.cfg.Judge,
		Config:    r.cfg.Decision,
		Observe:   r.observe,
		SetWeight: r.setWeight,
		Rollback: func(ctx context.Context) error {
			r.emit(engine.EventInfo, "rollback", 0, "rollback: all traffic back to the control")
			return r.setWeight(ctx, 0)
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

// setWeight moves the load's split, and the real requests' split on a
// target that routes them, to the canary weight; the run's log says what
// the route holds.
func (r *Run) setWeight(ctx context.Context, weight int) error {
	if err := r.avail.SetWeight(ctx, weight); err != nil {
		return err
	}
	if r.l7 != nil {
		if err := r.l7.setWeight(r, weight); err != nil {
			return engine.E(engine.KindInvalid, "router", err)
		}
	}
	ts, ok := r.target.(TrafficSplitter)
	if !ok {
		return nil
	}
	rec, journaled := ts.JournaledSplit()
	journaled = journaled && r.journal != nil
	if journaled && weight > 0 && !r.splitJournaled {
		// Journaled before the first request moves: a crash from here on
		// leaves the reaper a route to send back to the stable arm.
		if err := r.journal.Append(engine.Record{Type: engine.RecIntent, ID: rec.ID, Applied: &rec}); err != nil {
			return err
		}
		r.splitJournaled = true
	}
	split, err := ts.SetCanaryWeight(ctx, weight)
	if err != nil {
		return engine.E(engine.KindUnavailable, "traffic", err)
	}
	if journaled && weight == 0 && r.splitJournaled {
		if err := r.journal.Append(engine.Record{Type: engine.RecRecovered, ID: rec.ID}); err != nil {
			return err
		}
		r.splitJournaled = false
	}
	if split != "" {
		r.emit(engine.EventInfo, "traffic", weight, "traffic: "+split)
	}
	return nil
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

// upstreamDefects are the canary defects that act only on the nodes'
// upstream consumers (the aggregator's commit-before-store): without a
// broker the nodes consume, they change nothing.
var upstreamDefects = map[string]bool{"commit-before-store": true}

// defectsCanShow refuses a canary defect the scenario cannot exercise: a
// run would promote the known-bad build and say nothing about it.
func defectsCanShow(cfg Config) error {
	lt := cfg.Doc.Spec.Target.Local
	for _, d := range cfg.CanaryDefects {
		if upstreamDefects[d] && (cfg.Target != nil || lt == nil || len(lt.Upstreams) == 0) {
			return engine.E(engine.KindInvalid, "game day", fmt.Errorf("%s: canary defect %s acts only on the nodes' upstream consumers, and this scenario's local target has no spec.target.local.upstreams: "+
				"the defect could not show, and a promote would say nothing about it (hint: chaosgate gate -f upstreams --revision REV --canary-defect %s runs a game day with brokers)", cfg.Doc.Source, d, d))
		}
	}
	return nil
}
