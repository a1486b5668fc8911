package gameday

// The end of a run: report/v1, the decision log and the evidence record.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/canary"
	"github.com/chaosgate/chaosgate/engine/decisionlog"
	"github.com/chaosgate/chaosgate/engine/probe/availability"
	"github.com/chaosgate/chaosgate/engine/probe/metrics"
	"github.com/chaosgate/chaosgate/engine/report"
	"github.com/chaosgate/chaosgate/evidence"
)

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
		rf := report.Fault{Kind: f.Kind.String(), Arm: f.Arm.String(), Target: f.Target, AppliedAt: f.AppliedAt, Confirmed: confName(f), Measurement: f.Measurement}
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
