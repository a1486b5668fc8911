package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/gameday"
	k8sinject "github.com/chaosgate/chaosgate/engine/inject/k8s"
	"github.com/chaosgate/chaosgate/engine/report"
	k8starget "github.com/chaosgate/chaosgate/engine/target/k8s"
	"github.com/chaosgate/chaosgate/evidence"
	"github.com/chaosgate/chaosgate/scenarios"
)

// The fault suite on Kubernetes without probes: engine.Runner's own step
// loop over a plan, the Chaos Mesh injector, a signed evidence record whose
// subject is the canary workload. The commands run the game day instead
// (runOnKubernetes, k8sServeRunner); these tests use it on pods that have
// no process to probe (the API server alone schedules nothing), to check
// the injector, the reaper after a crash and the gate's replay of what
// was recorded.

// k8sRunResult is report/v1 plus what a Kubernetes run has to say.
type k8sRunResult struct {
	report.Report
	ControlRevision string              `json:"control_revision"`
	Subject         k8starget.Subject   `json:"subject"`
	Targets         map[string][]string `json:"targets"`
	Reaped          []engine.Reaped     `json:"reaped,omitempty"`
	Reason          string              `json:"reason,omitempty"`
	Error           string              `json:"error,omitempty"`
	faults          []engine.FaultRecord
}

// k8sRunConfig is what runK8s needs besides the Kubernetes flags.
type k8sRunConfig struct {
	DataDir string
	// RunID is the run's id (its run record's); empty: a new one.
	RunID string
	// Output is table or json (report/v1 plus the Kubernetes fields).
	Output string
	// JSONFile and JUnitFile, when set, receive the report (gate).
	JSONFile, JUnitFile string
	// Revision is --revision: recorded as one more evidence subject, so the
	// gate answers for it (a CI commit) as for the workload's own revision.
	Revision string
	Probes   []engine.Probe
	Log      *slog.Logger
}

// runK8s runs doc against the Kubernetes target: it reaps what crashed
// runs left (journal and cluster), resolves the arms, runs the plan with
// the Chaos Mesh injector, and records evidence whose subject is the
// canary workload's revision. The error carries the exit code (0 promote,
// 1 block, 3 hold, 2 could not judge).
func runK8s(ctx context.Context, w io.Writer, k *k8sOpts, doc *scenarios.Document, rc k8sRunConfig) (*k8sRunResult, error) {
	res, err := runK8sInner(ctx, w, k, doc, rc)
	if res != nil {
		if rc.JSONFile != "" {
			if werr := writeK8sFile(rc.JSONFile, func(f io.Writer) error { return writeK8sJSON(f, res) }); werr != nil && err == nil {
				err = withExitCode(exitUsage, werr)
			}
		}
		if rc.JUnitFile != "" {
			if werr := writeK8sFile(rc.JUnitFile, func(f io.Writer) error { return report.WriteJUnit(f, res.Report) }); werr != nil && err == nil {
				err = withExitCode(exitUsage, werr)
			}
		}
	}
	return res, err
}

func writeK8sJSON(w io.Writer, res *k8sRunResult) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

func writeK8sFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func runK8sInner(ctx context.Context, w io.Writer, k *k8sOpts, doc *scenarios.Document, rc k8sRunConfig) (*k8sRunResult, error) {
	output, log := rc.Output, rc.Log
	if output != "table" && output != "json" {
		return nil, withExitCode(exitUsage, fmt.Errorf("-o %q: want table, json or yaml", output))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(rc.DataDir)
	if err != nil {
		return nil, withExitCode(exitUsage, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, withExitCode(exitUsage, fmt.Errorf("--data-dir: %w", err))
	}
	plan, err := engine.PlanFromDocument(doc)
	if err != nil {
		return nil, withExitCode(exitUsage, err)
	}
	runID := rc.RunID
	if runID == "" {
		runID = newK8sRunID()
	}
	b, err := newK8sBackend(ctx, k, doc, runID)
	if err != nil {
		return nil, withExitCode(exitUsage, err)
	}
	b.log = log
	res := k8sRunResult{Report: report.Report{Schema: report.Schema, RunID: runID, Revision: b.pair.Canary.RevisionString(), Steps: []report.Step{}, Faults: []report.Fault{}},
		ControlRevision: b.pair.Control.RevisionString(), Subject: b.pair.Canary.Subject(),
		Targets: map[string][]string{"canary": b.pair.Canary.PodNames(), "control": b.pair.Control.PodNames()}}
	// Reap first: faults in crashed runs' journals, then chaosgate-owned
	// Chaos Mesh objects that no live run owns.
	reaped, err := engine.Reap(ctx, dir, b.Injectors(), log)
	res.Reaped = append(res.Reaped, reaped...)
	if err != nil {
		return &res, withExitCode(exitUsage, err)
	}
	live, err := k8sinject.LiveRuns(dir, runID)
	if err != nil {
		return &res, withExitCode(exitUsage, err)
	}
	orphans, err := b.injector.ReapOrphans(ctx, live)
	res.Reaped = append(res.Reaped, orphans...)
	if err != nil {
		return &res, withExitCode(exitUsage, err)
	}
	// The first canary step's fault suite, with no judge: the step holds
	// (probes that reach the pods and the judge are the game day's, which
	// the real-pods gate test runs).
	started := time.Now()
	runner, err := engine.NewRunner(engine.Options{DataDir: dir, Injectors: b.Injectors(), Topology: b, Probes: rc.Probes,
		Log: log, RunID: runID, RecoverTimeout: k.recoverTimeout + 5*time.Second})
	if err != nil {
		return &res, withExitCode(exitUsage, err)
	}
	weight := plan.Weights[0]
	out, runErr := runner.Run(ctx, plan, weight)
	res.Verdict = decision.Hold.String()
	res.Reason = "no judge: the fault suite's step holds"
	code := exitHold
	if out != nil {
		res.faults = out.Faults
		res.Faults = append(res.Faults, reportFaults(res.faults)...)
		res.Resilience = report.ResilienceOf(res.Faults)
		res.Steps = append(res.Steps, report.Step{Weight: weight, Verdict: res.Verdict, Reason: res.Reason})
		if !out.Interrupted && (runErr == nil || out.Aborted != "") {
			ev, err := recordK8sEvidence(ctx, dir, doc, b, out, started, rc.Revision)
			if err != nil {
				runErr = errors.Join(runErr, err)
			} else {
				res.Evidence = ev
			}
		}
		res.DurationS = time.Since(started).Seconds()
		if out.Aborted != "" && errors.Is(runErr, engine.ErrAborted) {
			// An aborted step is a hold on what was seen, not an error.
			res.Reason, runErr = "aborted: "+out.Aborted, nil
		}
	}
	if runErr != nil {
		res.Error = runErr.Error()
		code = exitUsage
	}
	res.ExitCode = code
	if output == "json" {
		if err := writeK8sJSON(w, &res); err != nil {
			return &res, withExitCode(exitUsage, err)
		}
	} else {
		printK8sRun(w, res)
	}
	if runErr != nil {
		return &res, withExitCode(exitUsage, runErr)
	}
	if code != exitPromote {
		return &res, withExitCode(code, nil)
	}
	return &res, nil
}

// reportFaults are the report/v1 faults of a run's applied faults (no
// availability: the Kubernetes target carries no measured load yet).
func reportFaults(faults []engine.FaultRecord) []report.Fault {
	var out []report.Fault
	for _, f := range faults {
		if f.AppliedAt.IsZero() {
			continue
		}
		rf := report.Fault{Kind: f.Kind.String(), Arm: f.Arm.String(), Target: f.Target, AppliedAt: f.AppliedAt, Confirmed: engine.Inconclusive.String()}
		if f.Confirmed != 0 {
			rf.Confirmed = f.Confirmed.String()
		}
		if !f.RecoveredAt.IsZero() {
			t := f.RecoveredAt
			rf.RecoveredAt = &t
		}
		out = append(out, rf)
	}
	return out
}

// recordK8sEvidence appends the signed evidence record of a Kubernetes run
// to the ledger under dataDir. Its subject is the canary workload's revision
// (image digest when the pods run one, else the workload revision); the
// names a rollout controller may ask the gate for instead (the canary pods'
// pod-template hash, the image digest alone) and revision (--revision, when
// given) are further subjects.
func recordK8sEvidence(ctx context.Context, dataDir string, doc *scenarios.Document, b *k8sBackend, r *engine.RunnerResult, started time.Time, revision string) (*report.Evidence, error) {
	ctx = context.WithoutCancel(ctx)
	l, err := evidence.OpenDataDir(ctx, dataDir, nil)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	scen, _ := json.Marshal(doc)
	sh := sha256.Sum256(scen)
	p := &evidence.Predicate{RunID: r.RunID, Experiment: evidence.Experiment{Name: doc.Metadata.Name, ScenarioHash: "sha256:" + hex.EncodeToString(sh[:]), Kind: strings.ToLower(doc.Kind)},
		Versions: map[string]string{"chaosgate": version, "target": "k8s"}, StartedAt: started, FinishedAt: time.Now()}
	for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		wl := b.pair.Arm(arm)
		p.Targets = append(p.Targets, evidence.Target{Arm: arm.String(), Name: wl.Ref() + "@" + wl.Revision})
		for _, pod := range wl.Pods {
			p.Targets = append(p.Targets, evidence.Target{Arm: arm.String(), Name: pod.Namespace + "/" + pod.Name, Address: pod.IP})
		}
	}
	for _, f := range r.Faults {
		detail, _ := json.Marshal(map[string]any{"id": f.ID, "experiment": f.Experiment, "weight": f.Weight, "measurement": f.Measurement,
			"detail": f.Detail, "skipped": f.Skipped, "error": f.Error, "recover_error": f.RecoverError,
			"chaos_mesh_records": b.injector.Records(f.ID)})
		conf := "inconclusive"
		if f.Confirmed != 0 {
			conf = f.Confirmed.String()
		}
		p.Injections = append(p.Injections, evidence.Injection{Kind: f.Kind.String(), Arm: f.Arm.String(), Target: f.Target,
			AppliedAt: f.AppliedAt, RecoveredAt: f.RecoveredAt, Confirmed: conf, Detail: detail})
	}
	sort.SliceStable(p.Targets, func(i, j int) bool { return p.Targets[i].Arm < p.Targets[j].Arm })
	p.Decision = &evidence.Decision{Verdict: decision.Hold.String()}
	// faults.json as a game day records it: applied, took effect,
	// removed and how long each was in place. The blobs built from probes
	// (windows, verdicts, traces, metrics, log matches) need probes that
	// reach the pods, which this target does not run yet.
	rep := report.Report{Faults: reportFaults(r.Faults)}
	rep.Resilience = report.ResilienceOf(rep.Faults)
	if data, err := gameday.FaultsBlobOf(rep); err != nil {
		b.log.Warn("evidence blob left out", "blob", gameday.BlobFaults, "err", err)
	} else if ref, err := l.PutBlob(gameday.BlobFaults, gameday.MediaJSON, data); err != nil {
		b.log.Warn("evidence blob left out", "blob", gameday.BlobFaults, "err", err)
	} else {
		p.Blobs = append(p.Blobs, ref)
	}
	rc, err := l.Record(ctx, b.pair.Canary.RevisionString(), p, append(b.pair.Canary.GateKeys(), revision)...)
	if err != nil {
		return nil, err
	}
	return &report.Evidence{LedgerIndex: rc.Index, TreeSize: rc.TreeSize, EnvelopeSHA256: rc.EnvelopeSHA256}, nil
}

func printK8sRun(w io.Writer, r k8sRunResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "run\t%s\n", r.RunID)
	fmt.Fprintf(tw, "canary revision\t%s\n", r.Revision)
	fmt.Fprintf(tw, "control revision\t%s\n", r.ControlRevision)
	for _, x := range r.Reaped {
		fmt.Fprintf(tw, "reaped\t%s\n", x)
	}
	fmt.Fprintln(tw, "")
	fmt.Fprintln(tw, "FAULT\tARM\tTARGET\tCONFIRMED\tMEASUREMENT")
	for _, f := range r.faults {
		c := "inconclusive"
		if f.Confirmed != 0 {
			c = f.Confirmed.String()
		}
		m := f.Measurement
		if f.Skipped != "" {
			c, m = "skipped", f.Skipped
		}
		if f.Error != "" {
			c, m = "error", f.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Kind, f.Arm, f.Target, c, m)
	}
	fmt.Fprintln(tw, "")
	fmt.Fprintf(tw, "verdict\t%s\t%s\n", r.Verdict, r.Reason)
	if r.Evidence != nil {
		fmt.Fprintf(tw, "evidence\tledger index %d, tree size %d, envelope sha256:%s\n", r.Evidence.LedgerIndex, r.Evidence.TreeSize, r.Evidence.EnvelopeSHA256)
	}
	if r.Error != "" {
		fmt.Fprintf(tw, "error\t%s\n", r.Error)
	}
	tw.Flush()
}
