package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/decision/config"
	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/canary"
	"github.com/chaosgate/chaosgate/engine/gameday"
	"github.com/chaosgate/chaosgate/engine/probe/logs"
	"github.com/chaosgate/chaosgate/engine/probe/promql"
	"github.com/chaosgate/chaosgate/engine/report"
	"github.com/chaosgate/chaosgate/engine/target/local"
	"github.com/chaosgate/chaosgate/evidence"
	"github.com/chaosgate/chaosgate/scenarios"
	"github.com/chaosgate/chaosgate/web"
)

// stepJudge decides the game days' judged windows; nil is chaosgate's
// judge. Only tests set it: a scripted judge shows that a target's
// pipeline carries any verdict sequence (promote, then block) to the
// rollback, the report and the evidence.
var stepJudge canary.Judge

// newRunCmd is `chaosgate run -f FILE`: one experiment or game day against
// the local target.
func newRunCmd() *cobra.Command {
	var o gamedayOpts
	var k k8sOpts
	var file, target string
	cmd := &cobra.Command{
		Use:   "run -f FILE",
		Short: "Run one experiment or game-day file: faults at every canary step, judge, evidence",
		Long: `run executes an experiment or game-day file (a path, or the name of a
built-in scenario: see chaosgate scenarios list) against the local target: a
control and a canary cluster of the reference aggregator, every edge behind a
fault proxy, load split by the canary weight. At each canary step it runs the
faults on both arms, builds the judge's windows from the probes, and
promotes, holds or rolls back. Every completed run appends a signed evidence
record to the ledger under --data-dir.

Before it starts it recovers what a crashed run left behind (and says what).
SIGINT or SIGTERM recovers every fault and exits 2 with an interrupted report.

Exit codes: 0 promote, 1 block, 3 hold, 2 usage, configuration or
infrastructure error (or interrupted).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return withExitCode(exitUsage, errors.New("-f FILE is required (a scenario file or a built-in name; see chaosgate scenarios list)"))
			}
			if target != "local" && target != "k8s" {
				return withExitCode(exitUsage, fmt.Errorf("--target %q: want local or k8s", target))
			}
			doc, err := scenarios.Open(file)
			if err != nil {
				return withExitCode(exitUsage, err)
			}
			o.doc = doc
			if target == "k8s" {
				return runOnKubernetes(cmd, &k, doc, o)
			}
			_, err = runGameday(cmd, o)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "experiment or game-day file, or a built-in scenario name")
	f.StringVar(&target, "target", "local", "where the system under test runs: local or k8s")
	o.flags(cmd)
	k.flags(cmd)
	return cmd
}

// gamedayOpts are the flags shared by run, gate and demo.
type gamedayOpts struct {
	dataDir, output, binary, revision string
	defects                           []string
	decisionFile, consulTokenFile     string
	doc                               *scenarios.Document
	// jsonFile and junitFile are written by gate.
	jsonFile, junitFile string
	// verifyLedger runs `ledger verify` after the run (demo).
	verifyLedger bool
	// metricsSource is embedded or prometheus; promURL, queriesFile and
	// the selectors configure the PromQL source.
	metricsSource, promURL, queriesFile string
	canarySelector, controlSelector     string
	// queriesOrigin names where queriesFile came from when it was not
	// --queries (the scenario file's spec.probes.metrics.queries).
	queriesOrigin string
	// logServer is KIND=URL of a log server (victorialogs or loki).
	logServer string
	// logSettle is how long a window's end lies in the past before the log
	// server is asked about it.
	logSettle time.Duration
	// notify says who is told how the run ended.
	notify notifyFlags
	// target, when set, finds the run's target (given the run's id, its
	// data directory and logger) instead of the local clusters: the
	// Kubernetes workloads of --target k8s.
	target func(ctx context.Context, runID, dataDir string, log *slog.Logger) (targetSetup, error)
}

// targetSetup is a run's target other than the local clusters (the same
// as a run of serve's API gets).
type targetSetup = web.RunTarget

func (o *gamedayOpts) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", ".chaosgate", "directory for clusters, journal, baseline history, ledger and keys")
	f.StringVarP(&o.output, "output", "o", "table", "report format: table, json or yaml (report/v1)")
	f.StringVar(&o.binary, "binary", "", "chaosgate binary the aggregator nodes run (default: this executable)")
	f.StringVarP(&o.decisionFile, "decision", "c", "", "decision matrix, hot-reloaded during the run: decision.yaml or consul://HOST:PORT/KEY (default: the built-in defaults)")
	f.StringVar(&o.consulTokenFile, "consul-token-file", "", "file holding the Consul ACL token for a consul:// --decision (default: CONSUL_HTTP_TOKEN)")
	f.StringVar(&o.metricsSource, "metrics-source", "embedded", "where the arms' process metrics (HTTP errors, GC pauses, dependency calls, memory growth) come from: embedded (chaosgate scrapes the nodes) or prometheus (PromQL)")
	f.StringVar(&o.promURL, "prometheus", "", `with --metrics-source prometheus: the base URL of a Prometheus that scrapes the run's nodes — local target: with an arm label (arm="canary", arm="control", arm="calibration"; targets in DATA/runs/RUN/prometheus/targets.json); --target k8s: with namespace and pod labels (deploy/prometheus/scrape-config.yaml); default: start a local Prometheus scraping the nodes`)
	f.StringVar(&o.queriesFile, "queries", "", "with --metrics-source prometheus: the PromQL queries file (queries/v1; default: the reference aggregator's)")
	f.StringVar(&o.canarySelector, "prom-canary-selector", "", `with --prometheus: the canary's label matchers (default arm="canary")`)
	f.StringVar(&o.controlSelector, "prom-control-selector", "", `with --prometheus: the control's label matchers (default arm="control")`)
	f.StringVar(&o.logServer, "log-server", "", "log server that receives every decision line over Loki's push API and answers the log guards: victorialogs=http://HOST:9428 (LogsQL) or loki=http://HOST:3100 (LogQL). The local target ships its nodes' logs to it; on --target k8s your cluster's log agent ships the pods' logs and the guards ask for each arm's namespace and pod-name streams (--log-namespace-label, --log-pod-label). Default: the guards read the local nodes' log files")
	f.DurationVar(&o.logSettle, "log-settle", 2*time.Second, "with --log-server: how long a window's end must lie in the past before the log server is asked about it (a cluster's log agent ships lines a few seconds late)")
	o.notify.register(cmd)
}

// metricsFromFile takes the metrics source the scenario file's
// spec.probes.metrics names (source, address, queries — the queries file
// relative to the scenario file) wherever the command's flag was not set:
// the flags override the file.
func (o *gamedayOpts) metricsFromFile(flags *pflag.FlagSet) {
	if o.doc == nil || o.doc.Spec.Probes.Metrics == nil {
		return
	}
	m := o.doc.Spec.Probes.Metrics
	if flags.Changed("metrics-source") {
		if o.metricsSource != scenarios.MetricsPrometheus {
			return // the file's Prometheus is not asked
		}
	} else if m.Source != "" {
		o.metricsSource = m.Source
	}
	if m.Address != "" && !flags.Changed("prometheus") {
		o.promURL = m.Address
	}
	if m.Queries != "" && !flags.Changed("queries") {
		o.queriesFile = m.Queries
		if !filepath.IsAbs(m.Queries) && !strings.HasPrefix(o.doc.Source, "library:") {
			o.queriesFile = filepath.Join(filepath.Dir(o.doc.Source), m.Queries)
		}
		o.queriesOrigin = fmt.Sprintf("%s: spec.probes.metrics.queries", o.doc.Source)
	}
}

// prometheusConfig checks the metrics-source flags and returns the PromQL
// configuration of a game day (nil: the embedded scraper).
func (o *gamedayOpts) prometheusConfig() (*gameday.Prometheus, error) {
	switch o.metricsSource {
	case "", "embedded":
		if o.promURL != "" || o.queriesFile != "" || o.canarySelector != "" || o.controlSelector != "" {
			return nil, errors.New("--prometheus, --queries and --prom-canary-selector/--prom-control-selector need --metrics-source prometheus")
		}
		return nil, nil
	case "prometheus":
	default:
		return nil, fmt.Errorf("--metrics-source %q: want embedded or prometheus", o.metricsSource)
	}
	p := &gameday.Prometheus{Address: o.promURL, Selectors: map[engine.Arm]string{}}
	if o.promURL == "" {
		if o.canarySelector != "" || o.controlSelector != "" {
			return nil, errors.New("--prom-canary-selector/--prom-control-selector need --prometheus URL: the Prometheus chaosgate starts labels the arms itself")
		}
		bin, err := local.PrometheusBinary()
		if err != nil {
			return nil, fmt.Errorf("--metrics-source prometheus without --prometheus starts a local Prometheus: %w", err)
		}
		p.Binary = bin
	}
	if o.queriesFile != "" {
		q, err := promql.LoadFile(o.queriesFile)
		if err != nil {
			origin := o.queriesOrigin
			if origin == "" {
				origin = "--queries"
			}
			return nil, fmt.Errorf("%s:\n%w", origin, err)
		}
		p.Queries = q
	}
	if s := selector(o.canarySelector); s != "" {
		p.Selectors[engine.ArmCanary] = s
	}
	if s := selector(o.controlSelector); s != "" {
		p.Selectors[engine.ArmControl] = s
	}
	return p, nil
}

// runOutput is report/v1 with what the run itself has to say.
type runOutput struct {
	report.Report
	Interrupted bool     `json:"interrupted,omitempty"`
	Aborted     string   `json:"aborted,omitempty"`
	Error       string   `json:"error,omitempty"`
	Reason      string   `json:"reason,omitempty"`
	Failing     []string `json:"failing_dimensions,omitempty"`
	Reaped      []string `json:"reaped,omitempty"`
}

// runGameday reaps leftovers, runs the document with a live view and
// prints the report. The error carries the exit code of the verdict.
func runGameday(cmd *cobra.Command, o gamedayOpts) (*gameday.RunOutcome, error) {
	if o.output != "table" && o.output != "json" {
		return nil, withExitCode(exitUsage, fmt.Errorf("-o %q: want table, json or yaml", o.output))
	}
	dir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return nil, withExitCode(exitUsage, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, withExitCode(exitUsage, fmt.Errorf("--data-dir: %w", err))
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	progress := cmd.ErrOrStderr()
	log := newLogger(levelFromEnv())
	// Reap first: faults and processes a crashed run left behind.
	var reapBuf strings.Builder
	if err := reapLeftovers(ctx, &reapBuf, dir, nil, log); err != nil {
		io.WriteString(progress, reapBuf.String())
		return nil, err
	}
	var reaped []string
	for _, l := range strings.Split(strings.TrimSpace(reapBuf.String()), "\n") {
		if l != "" {
			reaped = append(reaped, strings.TrimPrefix(l, "reaped: "))
		}
	}
	if len(reaped) > 0 {
		fmt.Fprintf(progress, "recovered what a crashed run left behind in %s:\n", dir)
		for _, r := range reaped {
			fmt.Fprintln(progress, "  reaped:", r)
		}
	} else {
		fmt.Fprintf(progress, "no leftovers of a crashed run in %s\n", dir)
	}
	dcfg, stopDecision, err := openDecision(ctx, o.decisionFile, o.consulTokenFile)
	if err != nil {
		return nil, withExitCode(exitUsage, err)
	}
	defer stopDecision()
	o.metricsFromFile(cmd.Flags())
	prom, err := o.prometheusConfig()
	if err != nil {
		return nil, withExitCode(exitUsage, err)
	}
	notifier, err := o.notify.dispatcher(dir, progress)
	if err != nil {
		return nil, withExitCode(exitUsage, err)
	}
	var logServer *logs.Server
	if o.logServer != "" {
		if logServer, err = logs.ParseServer(o.logServer); err != nil {
			return nil, withExitCode(exitUsage, fmt.Errorf("--log-server: %w", err))
		}
	}
	cfg := gameday.Config{Prometheus: prom, LogServer: logServer, LogSettle: o.logSettle, Doc: o.doc, DataDir: dir, Binary: o.binary, CanaryDefects: o.defects, Revision: o.revision,
		Decision: dcfg, Judge: stepJudge, Log: log, Versions: map[string]string{"chaosgate": version}}
	view := newLiveView(progress)
	cfg.OnEvent = view.event
	// The run's record under DATA/serve/runs: serve on this data directory
	// lists the run, shows it live and keeps its page. A data directory
	// that cannot hold it costs the record, not the run.
	rec, recErr := web.RecordRun(dir, web.RunMeta{Scenario: o.doc.Metadata.Name, Revision: o.revision,
		Trigger: web.CommandTrigger(cmd.Name(), os.Getenv)})
	if recErr != nil {
		fmt.Fprintf(progress, "run record not kept: %v\n", recErr)
	} else {
		cfg.RunID = rec.ID()
		cfg.OnEvent = func(ev engine.Event) {
			view.event(ev)
			rec.Live().Emit(web.LiveEventOf(ev))
		}
	}
	if o.target != nil {
		if cfg.RunID == "" {
			cfg.RunID = newK8sRunID()
		}
		ts, err := o.target(ctx, cfg.RunID, dir, log)
		for _, r := range ts.Reaped {
			fmt.Fprintln(progress, "  reaped:", r)
		}
		reaped = append(reaped, ts.Reaped...)
		if err != nil {
			if rec != nil {
				rec.Finish(nil, err)
			}
			return nil, withExitCode(exitUsage, err)
		}
		cfg.Target, cfg.GateKeys = ts.Target, ts.GateKeys
		if ts.Revision != "" {
			cfg.Revision = ts.Revision
		}
		for k, v := range ts.Versions {
			cfg.Versions[k] = v
		}
	}
	run, err := gameday.New(cfg)
	if err != nil {
		if rec != nil {
			rec.Finish(nil, err)
		}
		return nil, withExitCode(exitUsage, err)
	}
	if rec != nil {
		rec.Live().SetState(func() web.LiveState { return web.GameDayState(run.Snapshot()) })
	}
	fmt.Fprintf(progress, "run %s: %s (%s)%s\n", run.RunID(), o.doc.Metadata.Name, o.doc.Source, defectSuffix(o.defects))
	view.start(run)
	out, runErr := run.Execute(ctx)
	view.stop()
	if rec != nil {
		rec.Finish(&web.RunResult{Report: out.Report, Reason: out.Reason, Error: out.Error, Aborted: out.Aborted,
			Interrupted: out.Interrupted, Failing: out.Failing}, runErr)
	}
	res := runOutput{Report: out.Report, Interrupted: out.Interrupted, Aborted: out.Aborted, Error: out.Error, Reason: out.Reason,
		Failing: out.Failing, Reaped: reaped}
	code := out.Report.ExitCode
	if out.Interrupted || (runErr != nil && out.Aborted == "") {
		code = exitUsage
		res.ExitCode = exitUsage
	}
	res.Report.ExitCode = code
	if o.jsonFile != "" {
		if err := writeFileWith(o.jsonFile, func(w io.Writer) error { return writeRunJSON(w, res) }); err != nil {
			return out, withExitCode(exitUsage, err)
		}
	}
	if o.junitFile != "" {
		if err := writeFileWith(o.junitFile, func(w io.Writer) error { return report.WriteJUnit(w, res.Report) }); err != nil {
			return out, withExitCode(exitUsage, err)
		}
	}
	notifyRunOutput(ctx, progress, notifier, o.notify, o.jsonFile, o.doc.Metadata.Name, res, runErr)
	w := cmd.OutOrStdout()
	if o.output == "json" {
		if err := writeRunJSON(w, res); err != nil {
			return out, withExitCode(exitUsage, err)
		}
	} else {
		printRunTable(w, res, out)
	}
	if o.verifyLedger && res.Evidence != nil {
		if err := verifyLedgerLine(ctx, progress, dir); err != nil {
			return out, withExitCode(exitBlock, err)
		}
	}
	if out.Interrupted {
		return out, withExitCode(exitUsage, fmt.Errorf("interrupted: every fault was recovered (%s)", out.Error))
	}
	if runErr != nil && out.Aborted == "" {
		return out, withExitCode(exitUsage, runErr)
	}
	if code != 0 {
		return out, withExitCode(code, nil)
	}
	return out, nil
}

func levelFromEnv() slog.Level {
	if os.Getenv("CHAOSGATE_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelError
}

func defectSuffix(d []string) string {
	if len(d) == 0 {
		return ""
	}
	return ", canary defect " + strings.Join(d, ", ")
}

// openDecision opens the decision matrix of a run: the built-in defaults
// (spec empty), or a file or Consul key (consul://HOST:PORT/KEY) kept in
// step while the run goes, so every judgement uses the config in force.
// stop ends the watch.
func openDecision(ctx context.Context, spec, consulTokenFile string) (current func() *decision.Config, stop func(), err error) {
	if spec == "" {
		d := decision.Default()
		return func() *decision.Config { return d }, func() {}, nil
	}
	src, err := config.ParseSource(spec)
	if err != nil {
		return nil, nil, fmt.Errorf("--decision: %w", err)
	}
	src.ConsulTokenFile = consulTokenFile
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	store, done, err := config.OpenSource(wctx, src, nil, nil)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return store.Current, func() { cancel(); <-done }, nil
}

func writeRunJSON(w io.Writer, r runOutput) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func writeFileWith(path string, f func(io.Writer) error) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	tmp := path + ".tmp"
	fh, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := f(fh); err != nil {
		fh.Close()
		os.Remove(tmp)
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func verifyLedgerLine(ctx context.Context, w io.Writer, dataDir string) error {
	l, err := evidence.Open(context.WithoutCancel(ctx), filepath.Join(dataDir, evidence.LedgerSubdir), evidence.Options{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("ledger verify: %w", err)
	}
	defer l.Close()
	rep, err := l.Verify(context.WithoutCancel(ctx), false)
	if err != nil {
		fmt.Fprintf(w, "ledger verify: FAILED: %v\n", err)
		return err
	}
	fmt.Fprintf(w, "ledger verify: ok (%d entries, %d blocks, tree size %d)\n", rep.Entries, rep.Blocks, rep.TreeSize)
	return nil
}

func printRunTable(w io.Writer, r runOutput, out *gameday.RunOutcome) {
	fmt.Fprintln(w)
	verdict := r.Verdict
	if r.Interrupted {
		verdict = "interrupted (no verdict)"
	} else if r.Error != "" && r.Aborted == "" {
		verdict = "error (the platform could not judge)"
	}
	fmt.Fprintf(w, "run %s  revision %s\nverdict: %s (exit %d)\n", r.RunID, r.Revision, strings.ToUpper(verdict), r.ExitCode)
	if r.Reason != "" {
		fmt.Fprintf(w, "reason: %s\n", r.Reason)
	}
	if len(r.Failing) > 0 {
		fmt.Fprintf(w, "failing dimensions: %s\n", strings.Join(r.Failing, ", "))
	}
	if r.Aborted != "" {
		fmt.Fprintf(w, "aborted: %s\n", r.Aborted)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "error: %s\n", r.Error)
	}
	if len(r.Steps) > 0 {
		fmt.Fprintln(w, "\ncanary steps:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  WEIGHT\tVERDICT\tSCORE\tCOVERAGE\tWINDOWS\tFAILED")
		for _, s := range r.Steps {
			var failed []string
			for _, d := range s.Dimensions {
				if d.Outcome == decision.Fail {
					failed = append(failed, string(d.Name))
				}
			}
			fmt.Fprintf(tw, "  %d%%\t%s\t%.3f\t%.3f\t%d\t%s\n", s.Weight, s.Verdict, s.Score, s.Coverage, s.Windows, strings.Join(failed, ","))
		}
		tw.Flush()
		last := r.Steps[len(r.Steps)-1]
		fmt.Fprintf(w, "\ndimensions at %d%%:\n", last.Weight)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  DIMENSION\tOUTCOME\tCANARY\tCONTROL\tCONFIDENCE\tREASON")
		for _, d := range last.Dimensions {
			reason := d.Reason
			if len(reason) > 110 {
				reason = reason[:107] + "..."
			}
			fmt.Fprintf(tw, "  %s\t%s\t%.4g\t%.4g\t%.2f\t%s\n", d.Name, d.Outcome, d.Canary, d.Control, d.Confidence, reason)
		}
		tw.Flush()
	}
	if len(out.Faults) > 0 {
		fmt.Fprintln(w, "\nfaults (both arms):")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  STEP\tKIND\tARM\tTARGET\tAPPLIED\tCONFIRMED\tRECOVERED\tDETAIL")
		for _, f := range out.Faults {
			applied, recovered := "-", "-"
			if !f.AppliedAt.IsZero() {
				applied = f.AppliedAt.Format("15:04:05.000")
			}
			if !f.RecoveredAt.IsZero() {
				recovered = f.RecoveredAt.Format("15:04:05.000")
			}
			conf := "-"
			if f.Confirmed != 0 {
				conf = f.Confirmed.String()
			}
			detail := f.Measurement
			if f.Skipped != "" {
				detail = "skipped: " + f.Skipped
			}
			if f.Error != "" {
				detail = "error: " + f.Error
			}
			if len(detail) > 70 {
				detail = detail[:67] + "..."
			}
			fmt.Fprintf(tw, "  %d%%\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Weight, f.Kind, f.Arm, f.Target, applied, conf, recovered, detail)
		}
		tw.Flush()
		kinds := map[string]bool{}
		allOK := true
		for _, f := range out.Faults {
			kinds[f.Kind.String()] = true
			if f.AppliedAt.IsZero() || f.RecoveredAt.IsZero() || f.Confirmed != engine.Confirmed {
				allOK = false
			}
		}
		var ks []string
		for k := range kinds {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		state := "all applied, confirmed and recovered"
		if !allOK {
			state = "NOT all applied, confirmed and recovered (see above)"
		}
		fmt.Fprintf(w, "  %d fault applications, kinds %s: %s\n", len(out.Faults), strings.Join(ks, ", "), state)
	}
	if a := r.Probes.Availability; a != nil {
		fmt.Fprintln(w, "\navailability (whole run):")
		fmt.Fprintf(w, "  canary   %6d requests  success %.4f  p99 %.1f ms\n", a.Canary.Requests, a.Canary.SuccessRatio, a.Canary.P99MS)
		fmt.Fprintf(w, "  control  %6d requests  success %.4f  p99 %.1f ms\n", a.Control.Requests, a.Control.SuccessRatio, a.Control.P99MS)
	}
	if c := r.Probes.Consistency; c != nil {
		fmt.Fprintln(w, "\nconsistency (I1-I9, everything acknowledged):")
		for _, x := range []struct {
			name string
			raw  json.RawMessage
		}{{"canary", c.Canary}, {"control", c.Control}} {
			var rep struct {
				OK     bool `json:"ok"`
				Counts struct {
					SentOK   int    `json:"sent_ok"`
					Received int    `json:"received"`
					Lin      string `json:"linearizability"`
				} `json:"counts"`
				Violations []struct {
					Invariant string `json:"invariant"`
					Detail    string `json:"detail"`
				} `json:"violations"`
			}
			json.Unmarshal(x.raw, &rep)
			state := "every invariant holds"
			if !rep.OK {
				var v []string
				for _, y := range rep.Violations {
					v = append(v, y.Invariant+" ("+y.Detail+")")
				}
				state = "VIOLATED: " + strings.Join(v, "; ")
				if len(state) > 200 {
					state = state[:197] + "..."
				}
			}
			fmt.Fprintf(w, "  %-8s %d acknowledged, %d received, linearizability %s: %s\n", x.name, rep.Counts.SentOK, rep.Counts.Received, rep.Counts.Lin, state)
		}
	}
	if m := r.Probes.Metrics; m != nil {
		fmt.Fprintln(w, "\nmetrics (whole run):")
		for _, x := range []struct {
			name string
			m    map[string]float64
		}{{"canary", m.Canary}, {"control", m.Control}} {
			fmt.Fprintf(w, "  %-8s gc pauses %.0f (max %.2f ms), goroutines %.0f, rss %.0f MiB, forwards %.0f (%.0f failed), log guards %.0f\n",
				x.name, x.m["gc_pauses"], x.m["gc_pause_max_ms"], x.m["goroutines_max"], x.m["rss_bytes_max"]/(1<<20), x.m["dependency_calls"], x.m["dependency_failures"], x.m["log_guard_matches"])
		}
	}
	if r.Evidence != nil {
		fmt.Fprintf(w, "\nevidence: ledger index %d, tree size %d, envelope sha256 %s\n", r.Evidence.LedgerIndex, r.Evidence.TreeSize, r.Evidence.EnvelopeSHA256)
	}
	fmt.Fprintf(w, "duration: %.1fs; run data: %s\n", r.DurationS, out.RunDir)
}

// liveView shows progress: a view redrawn in place on a terminal, plain
// lines otherwise.
type liveView struct {
	w     io.Writer
	tty   bool
	t0    time.Time
	mu    sync.Mutex
	run   *gameday.Run
	last  []string
	lines int
	done  chan struct{}
	wg    sync.WaitGroup
}

func newLiveView(w io.Writer) *liveView {
	v := &liveView{w: w, t0: time.Now(), done: make(chan struct{})}
	if f, ok := w.(*os.File); ok && os.Getenv("TERM") != "dumb" {
		v.tty = term.IsTerminal(int(f.Fd()))
	}
	return v
}

func (v *liveView) event(ev engine.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	line := fmt.Sprintf("[%6.1fs] %-13s %s", ev.T.Sub(v.t0).Seconds(), ev.Phase, ev.Msg)
	if ev.Weight > 0 && ev.Kind != engine.EventVerdict {
		line = fmt.Sprintf("[%6.1fs] %-13s %3d%%  %s", ev.T.Sub(v.t0).Seconds(), ev.Phase, ev.Weight, ev.Msg)
	}
	if !v.tty {
		fmt.Fprintln(v.w, line)
		return
	}
	v.last = append(v.last, line)
	if len(v.last) > 6 {
		v.last = v.last[len(v.last)-6:]
	}
}

func (v *liveView) start(run *gameday.Run) {
	v.mu.Lock()
	v.run = run
	v.mu.Unlock()
	if !v.tty {
		return
	}
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			v.draw()
			select {
			case <-v.done:
				v.draw()
				return
			case <-t.C:
			}
		}
	}()
}

func (v *liveView) stop() {
	select {
	case <-v.done:
	default:
		close(v.done)
	}
	v.wg.Wait()
}

func (v *liveView) draw() {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.run.Snapshot()
	var b strings.Builder
	if v.lines > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\x1b[J", v.lines)
	}
	out := []string{
		fmt.Sprintf("chaosgate run %s   %5.1fs   phase: %s   canary weight: %d%%", s.RunID, s.Elapsed.Seconds(), s.Phase, s.Weight),
	}
	faults := "none"
	if len(s.ActiveFaults) > 0 {
		faults = strings.Join(s.ActiveFaults, "; ")
	}
	out = append(out, "active faults: "+faults)
	for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		a := s.Arms[arm]
		out = append(out, fmt.Sprintf("  %-8s success %s  p99 %7.1f ms  (%d msgs, last 6s)", arm, ratio(a.SuccessRatio), a.P99MS, a.Requests))
	}
	steps := "none yet"
	if len(s.Steps) > 0 {
		steps = strings.Join(s.Steps, " | ")
	}
	out = append(out, "step verdicts: "+steps)
	out = append(out, "recent:")
	for _, l := range v.last {
		out = append(out, "  "+l)
	}
	for _, l := range out {
		b.WriteString(l)
		b.WriteString("\n")
	}
	v.lines = len(out)
	io.WriteString(v.w, b.String())
}

func ratio(x float64) string {
	if x != x {
		return "   -   "
	}
	return fmt.Sprintf("%.4f", x)
}
