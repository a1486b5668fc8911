package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/target/local"
)

// The tests below run the real chaosgate binary ($CHAOSGATE_BIN from make
// test, or a fresh build): real clusters, real proxies, real signals.

// gamedayReport is the part of the run output the tests read.
type gamedayReport struct {
	Schema   string `json:"schema"`
	RunID    string `json:"run_id"`
	Verdict  string `json:"verdict"`
	ExitCode int    `json:"exit_code"`
	Reason   string `json:"reason"`
	Steps    []struct {
		Weight     int    `json:"weight"`
		Verdict    string `json:"verdict"`
		Dimensions []struct {
			Name        string `json:"name"`
			SigmaSource string `json:"sigma_source"`
		} `json:"dimensions"`
	} `json:"steps"`
	Faults []struct {
		Kind        string     `json:"kind"`
		Arm         string     `json:"arm"`
		Target      string     `json:"target"`
		AppliedAt   time.Time  `json:"applied_at"`
		RecoveredAt *time.Time `json:"recovered_at"`
		Confirmed   string     `json:"confirmed"`
		Measurement string     `json:"measurement"`
	} `json:"faults"`
	Probes struct {
		Consistency *struct {
			Canary  struct{ OK bool } `json:"canary"`
			Control struct{ OK bool } `json:"control"`
		} `json:"consistency"`
		Metrics *struct {
			Canary  map[string]float64 `json:"canary"`
			Control map[string]float64 `json:"control"`
		} `json:"metrics"`
	} `json:"probes"`
	Evidence *struct {
		LedgerIndex uint64 `json:"ledger_index"`
	} `json:"evidence"`
	Interrupted bool     `json:"interrupted"`
	Failing     []string `json:"failing_dimensions"`
	Reaped      []string `json:"reaped"`
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts two aggregator clusters")
	}
}

// runBinary runs chaosgate with args and returns stdout, stderr and the
// exit code.
func runBinary(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func decodeReport(t *testing.T, stdout, stderr string) gamedayReport {
	t.Helper()
	var r gamedayReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("report is not JSON: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, tail(stderr, 3000))
	}
	if r.Schema != "report/v1" {
		t.Fatalf("schema %q", r.Schema)
	}
	return r
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func TestDemoQuickPromotesGoodCanaryAndBlocksDefect(t *testing.T) {
	skipShort(t)
	bin := chaosgateBinary(t)
	dir := t.TempDir()

	stdout, stderr, code := runBinary(t, bin, "demo", "--quick", "-o", "json", "--data-dir", dir)
	r := decodeReport(t, stdout, stderr)
	if code != 0 || r.Verdict != "promote" || r.ExitCode != 0 {
		t.Fatalf("good canary: exit %d, verdict %q (failing %v)\n%s", code, r.Verdict, r.Failing, tail(stderr, 4000))
	}
	kinds := map[string]map[string]bool{}
	for _, f := range r.Faults {
		if f.AppliedAt.IsZero() || f.RecoveredAt == nil || f.RecoveredAt.Before(f.AppliedAt) {
			t.Errorf("fault %s on %s/%s not applied and recovered: %+v", f.Kind, f.Arm, f.Target, f)
		}
		if f.Confirmed != "confirmed" {
			t.Errorf("fault %s on %s/%s: %s (%s)", f.Kind, f.Arm, f.Target, f.Confirmed, f.Measurement)
		}
		if kinds[f.Kind] == nil {
			kinds[f.Kind] = map[string]bool{}
		}
		kinds[f.Kind][f.Arm] = true
	}
	for _, k := range []string{"podKill", "networkDelay", "partition", "splitBrain", "clockSkew"} {
		if !kinds[k]["canary"] || !kinds[k]["control"] || !kinds[k]["calibration"] {
			t.Errorf("fault kind %s not applied to the canary, the control and the calibration arm: %v", k, kinds[k])
		}
	}
	// The judge's σ̂ came from the A/A windows the calibration arm recorded
	// in this run, under the step's own faults.
	for _, st := range r.Steps {
		for _, d := range st.Dimensions {
			if d.Name == "latency_p99" && !strings.Contains(d.SigmaSource, "context ") {
				t.Errorf("step %d: latency σ̂ not from windows of the step's context: %q", st.Weight, d.SigmaSource)
			}
		}
	}
	if c := r.Probes.Consistency; c == nil || !c.Canary.OK || !c.Control.OK {
		t.Errorf("consistency does not hold on both arms: %+v", c)
	}
	if r.Evidence == nil {
		t.Fatal("no evidence reference in the report")
	}
	if !strings.Contains(stderr, "ledger verify: ok") {
		t.Errorf("demo did not verify the ledger:\n%s", tail(stderr, 2000))
	}
	if _, e, c := runBinary(t, bin, "ledger", "verify", "--ledger", filepath.Join(dir, "ledger"), "--keys", filepath.Join(dir, "keys")); c != 0 {
		t.Fatalf("ledger verify: exit %d\n%s", c, e)
	}
	// The statement binds the raw material behind the verdict; the
	// explorer, the export and ledger verify all see it.
	sizes := checkRunBlobs(t, bin, dir, r.RunID, r.Evidence.LedgerIndex)
	t.Logf("blob sizes of a quick demo: %v", sizes)

	// A known-bad canary is blocked by the CI gate, naming the dimension,
	// with the report/v1 JSON and the JUnit XML written.
	jsonFile, junitFile := filepath.Join(t.TempDir(), "report.json"), filepath.Join(t.TempDir(), "report.xml")
	_, stderr, code = runBinary(t, bin, "gate", "-f", "default-gameday-quick", "--revision", "sha256:"+strings.Repeat("ab", 32),
		"--json", jsonFile, "--junit", junitFile, "--data-dir", dir, "--canary-defect", "no-dedup")
	raw, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatalf("gate wrote no JSON report (exit %d): %v\n%s", code, err, tail(stderr, 4000))
	}
	r = decodeReport(t, string(raw), stderr)
	if code != 1 || r.Verdict != "block" || r.ExitCode != 1 {
		t.Fatalf("no-dedup canary: exit %d, verdict %q\n%s", code, r.Verdict, tail(stderr, 4000))
	}
	// The keys every completed run's report has, on any target (the
	// Kubernetes gate test checks its runs against the same list).
	checkReportShape(t, "local no-dedup run", raw)
	junit, err := os.ReadFile(junitFile)
	if err != nil || !bytes.Contains(junit, []byte("<testsuites")) || !bytes.Contains(junit, []byte("consistency")) || !bytes.Contains(junit, []byte("<failure")) {
		t.Fatalf("JUnit report: %v\n%s", err, junit)
	}
	if !contains(r.Failing, "consistency") {
		t.Fatalf("no-dedup canary blocked without a consistency failure: %v", r.Failing)
	}
	if r.Evidence == nil || r.Evidence.LedgerIndex != 1 {
		t.Fatalf("second run's evidence: %+v", r.Evidence)
	}
}

// TestDemoQuickBlocksClockAndOverloadDefects: the quick demo's clock-skew
// phase (a follower skewed behind and handed a partition) and its overload
// burst (open loop, well above what an arm serves) each expose the defect
// no other fault reaches, blocked for its own reason named by the checker.
func TestDemoQuickBlocksClockAndOverloadDefects(t *testing.T) {
	skipShort(t)
	bin := chaosgateBinary(t)
	for _, c := range []struct {
		defect, invariant, detail string
	}{
		// The skewed node stamps below its predecessor once it leads.
		{"hlc-no-update", "I5", "leader change"},
		// The correct build sheds the burst with 429 at its cap of
		// requests in flight; this one takes every request in.
		{"unbounded-queue", "I6", "above its cap"},
	} {
		t.Run(c.defect, func(t *testing.T) {
			stdout, stderr, code := runBinary(t, bin, "demo", "--quick", "-o", "json", "--data-dir", t.TempDir(), "--canary-defect", c.defect)
			r := decodeReport(t, stdout, stderr)
			if code != 1 || r.Verdict != "block" {
				t.Fatalf("%s canary: exit %d, verdict %q (failing %v)\n%s", c.defect, code, r.Verdict, r.Failing, tail(stderr, 4000))
			}
			if !contains(r.Failing, "consistency") {
				t.Fatalf("%s canary blocked without a consistency failure: %v", c.defect, r.Failing)
			}
			var raw struct {
				Probes struct {
					Consistency struct {
						Canary, Control struct {
							OK         bool `json:"ok"`
							Violations []struct {
								Invariant string   `json:"invariant"`
								Detail    string   `json:"detail"`
								Examples  []string `json:"examples"`
							} `json:"violations"`
						}
					} `json:"consistency"`
				} `json:"probes"`
			}
			if err := json.Unmarshal([]byte(stdout), &raw); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, v := range raw.Probes.Consistency.Canary.Violations {
				if v.Invariant == c.invariant && strings.Contains(v.Detail+strings.Join(v.Examples, " "), c.detail) {
					found = true
					t.Logf("%s: %s %s: %s", c.defect, v.Invariant, v.Detail, strings.Join(v.Examples, "; "))
				}
			}
			if !found {
				t.Errorf("the checker does not name %s (%s) for %s: %+v", c.invariant, c.detail, c.defect, raw.Probes.Consistency.Canary.Violations)
			}
			for _, v := range raw.Probes.Consistency.Control.Violations {
				if v.Invariant == c.invariant {
					t.Errorf("the correct control violates %s too: %s %v", v.Invariant, v.Detail, v.Examples)
				}
			}
		})
	}
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// longFaults is an experiment whose first fault lasts a minute, so a test
// can signal chaosgate while it is applied.
const longFaults = `apiVersion: chaosgate.io/v1
kind: Experiment
metadata:
  name: long-%s
spec:
  target:
    local: {nodes: 3, partitions: 2}
  steadyState: 500ms
  canary:
    steps: [50]
  probes:
    availability: {sources: 2, rate: 40}
  faults:
    - name: long
      duration: 60s
      %s
`

// writeExperiment writes an experiment file for `chaosgate run -f` and
// returns its path.
func writeExperiment(t *testing.T, name, text string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// startRun starts `chaosgate run` on a long fault and returns once the
// fault is applied on both arms (its stderr is collected in lines).
func startRun(t *testing.T, bin, dir, name, fault string) (*exec.Cmd, *bytes.Buffer, *lineWatch) {
	t.Helper()
	file := writeExperiment(t, name, fmt.Sprintf(longFaults, name, fault))
	cmd, stdout, lw := startBinary(t, bin, "run", "-f", file, "-o", "json", "--data-dir", dir)
	if !lw.waitForCount(" applied (", 2, 90*time.Second) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the fault was never applied on both arms:\n%s", lw.text())
	}
	return cmd, stdout, lw
}

// startBinary starts chaosgate with args and returns at once: stdout is
// collected in the buffer, stderr line by line; the process is killed at
// the test's end if it is still running.
func startBinary(t *testing.T, bin string, args ...string) (*exec.Cmd, *bytes.Buffer, *lineWatch) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	pr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lw := watchLines(pr)
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, &stdout, lw
}

type lineWatch struct {
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func watchLines(r io.Reader) *lineWatch {
	lw := &lineWatch{done: make(chan struct{})}
	go func() {
		defer close(lw.done)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lw.mu.Lock()
			lw.lines = append(lw.lines, sc.Text())
			lw.mu.Unlock()
		}
	}()
	return lw
}

func (lw *lineWatch) text() string {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return strings.Join(lw.lines, "\n")
}

// waitForCount waits until s occurs n times in the output.
func (lw *lineWatch) waitForCount(s string, n int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Count(lw.text(), s) >= n {
			return true
		}
		select {
		case <-lw.done:
			return strings.Count(lw.text(), s) >= n
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

func (lw *lineWatch) waitFor(s string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(lw.text(), s) {
			return true
		}
		select {
		case <-lw.done:
			return strings.Contains(lw.text(), s)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

func TestRunSignalDuringInjectRecoversEveryFault(t *testing.T) {
	skipShort(t)
	bin := chaosgateBinary(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			cmd, stdout, lw := startRun(t, bin, dir, "signal", "partition: {shape: isolate-one}")
			sent := time.Now()
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			<-lw.done
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit after %s: %v, want exit code 2\n%s", sig, err, lw.text())
			}
			r := decodeReport(t, stdout.String(), lw.text())
			if !r.Interrupted {
				t.Fatalf("report does not say the run was interrupted: %s", stdout.String())
			}
			arms := map[string]bool{}
			for _, f := range r.Faults {
				arms[f.Arm] = true
			}
			if len(r.Faults) != 3 || !arms["canary"] || !arms["control"] || !arms["calibration"] {
				t.Fatalf("want the partition on every arm (canary, control, calibration) in the report, got %+v", r.Faults)
			}
			for _, f := range r.Faults {
				if f.RecoveredAt == nil {
					t.Fatalf("fault %s on %s not recovered: %+v", f.Kind, f.Arm, f)
				}
				if d := f.RecoveredAt.Sub(sent); d > 2*time.Second {
					t.Errorf("fault %s on %s recovered %s after the signal (limit 2s)", f.Kind, f.Arm, d)
				}
			}
			// The journal was closed: the next start finds nothing to reap.
			if reaped, err := engine.Reap(t.Context(), dir, localReapers(), nil); err != nil || len(reaped) != 0 {
				t.Fatalf("leftovers after an interrupted run: %v %v", reaped, err)
			}
			assertNodesGone(t, filepath.Join(dir, "runs", r.RunID))
		})
	}
}

// assertNodesGone checks that no node process of a run survived.
func assertNodesGone(t *testing.T, runDir string) {
	t.Helper()
	for _, arm := range []string{"canary", "control"} {
		cf, err := local.ReadClusterFile(filepath.Join(runDir, arm, "cluster.json"))
		if err != nil {
			t.Fatalf("cluster file of %s: %v", arm, err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for _, n := range cf.Nodes {
			for {
				st, _, err := engine.ProcStat(n.PID)
				if err != nil || st == 'Z' {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("node %s/%s (pid %d) still runs after chaosgate exited", arm, n.ID, n.PID)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
}

func TestRunSIGKILLDuringInjectIsReapedByTheNextRun(t *testing.T) {
	skipShort(t)
	bin := chaosgateBinary(t)
	dir := t.TempDir()
	cmd, stdout, lw := startRun(t, bin, dir, "crash", "podPause: {}")
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	<-lw.done
	if stdout.Len() != 0 {
		t.Fatalf("a SIGKILLed run printed a report: %s", stdout.String())
	}
	runs, _ := filepath.Glob(filepath.Join(dir, "runs", "*"))
	if len(runs) != 1 {
		t.Fatalf("run dirs: %v", runs)
	}
	// The nodes die with their supervisor (parent-death signal), paused or not.
	assertNodesGone(t, runs[0])

	// The next run reaps the paused node's fault first and says so.
	next, _, nlw := startRunNoWait(t, bin, dir)
	if !nlw.waitFor("run ", 60*time.Second) {
		t.Fatalf("the next run did not start:\n%s", nlw.text())
	}
	next.Process.Signal(syscall.SIGINT)
	next.Wait()
	<-nlw.done
	out := nlw.text()
	if !strings.Contains(out, "reaped:") || !strings.Contains(out, "podPause") || !strings.Contains(out, ": recovered") {
		t.Fatalf("the next run did not say what it reaped:\n%s", out)
	}
	if strings.Index(out, "reaped:") > strings.Index(out, "starting the control") && strings.Contains(out, "starting the control") {
		t.Fatalf("reaping did not come first:\n%s", out)
	}
	if reaped, err := engine.Reap(t.Context(), dir, localReapers(), nil); err != nil || len(reaped) != 0 {
		t.Fatalf("leftovers after reaping: %v %v", reaped, err)
	}
}

// startRunNoWait starts `chaosgate run` on the quick game day and returns
// at once.
func startRunNoWait(t *testing.T, bin, dir string) (*exec.Cmd, *bytes.Buffer, *lineWatch) {
	t.Helper()
	return startBinary(t, bin, "run", "-f", "default-gameday-quick", "-o", "json", "--data-dir", dir)
}

// abortDrill is a game day of four short steps, for the abort drill.
const abortDrill = `apiVersion: chaosgate.io/v1
kind: Experiment
metadata:
  name: abort-drill
spec:
  target:
    local: {nodes: 3, partitions: 2}
  steadyState: 1s
  canary:
    steps: [10, 25, 50, 100]
  probes:
    availability: {sources: 4, rate: 200}
  faults:
    - name: kill-one
      duration: 2s
      podKill: {}
`

// lowWeight is an experiment with a single 10% canary step, one of the
// low steps of chaosgate demo, on a fresh data directory.
const lowWeight = `apiVersion: chaosgate.io/v1
kind: Experiment
metadata:
  name: low-weight
spec:
  target:
    local: {nodes: 3, partitions: 2}
  steadyState: 1s
  canary:
    steps: [10]
  probes:
    availability: {sources: 4, rate: 300}
  faults:
    - name: kill-one
      duration: 2s
      podKill: {}
`

// TestRunAtLowWeightPromotes: a good canary at a 10% weight, with no
// history but the run's own A/A windows, promotes — its share of requests
// matches the one those windows record, so it is no traffic collapse.
func TestRunAtLowWeightPromotes(t *testing.T) {
	skipShort(t)
	bin := chaosgateBinary(t)
	dir := t.TempDir()
	file := writeExperiment(t, "low-weight", lowWeight)
	stdout, stderr, code := runBinary(t, bin, "run", "-f", file, "-o", "json", "--data-dir", dir)
	r := decodeReport(t, stdout, stderr)
	if strings.Contains(stderr, "canary-traffic-collapse") {
		t.Errorf("a 10%% canary with a 10%% share was held as a traffic collapse:\n%s", tail(stderr, 3000))
	}
	if code != 0 || r.Verdict != "promote" || len(r.Steps) != 1 || r.Steps[0].Weight != 10 {
		t.Fatalf("good canary at 10%%: exit %d, verdict %q, steps %+v (failing %v)\n%s", code, r.Verdict, r.Steps, r.Failing, tail(stderr, 4000))
	}
}

// TestAbortBetweenStepsStopsTheGameDay: `chaosgate abort` reaches a game
// day after its first step was judged, while no step's faults hold a
// journal (settling into the next step): the run ends aborted with a hold
// (exit 3), records the abort in its evidence, and leaves nothing to reap.
func TestAbortBetweenStepsStopsTheGameDay(t *testing.T) {
	skipShort(t)
	bin := chaosgateBinary(t)
	dir := t.TempDir()
	// Four steps: after the first judgement, three more steps leave the
	// abort time to land between steps even when the abort command
	// itself is slow to start on a loaded host (the quick game day's
	// second, last step was over before it did in one CI run).
	file := writeExperiment(t, "abort-drill", abortDrill)
	cmd, stdout, lw := startBinary(t, bin, "run", "-f", file, "-o", "json", "--data-dir", dir)
	if !lw.waitFor("%: promote (score", 150*time.Second) && !lw.waitFor("%: hold (score", time.Second) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no step was judged:\n%s", lw.text())
	}
	ab := exec.Command(bin, "abort", "--data-dir", dir, "--reason", "drill between steps")
	if out, err := ab.CombinedOutput(); err != nil || !strings.Contains(string(out), "abort requested: run ") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("abort: %v\n%s\nrun:\n%s", err, out, lw.text())
	}
	err := cmd.Wait()
	<-lw.done
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitHold {
		t.Fatalf("exit after abort: %v, want %d (hold)\n%s", err, exitHold, lw.text())
	}
	var res struct {
		Aborted string `json:"aborted"`
		Verdict string `json:"verdict"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || !strings.Contains(res.Aborted, "drill between steps") || res.Verdict != "hold" {
		t.Fatalf("run output does not say it was aborted (%v): %s", err, stdout.String())
	}
	if reaped, err := engine.Reap(t.Context(), dir, localReapers(), nil); err != nil || len(reaped) != 0 {
		t.Fatalf("leftovers after an aborted game day: %v %v", reaped, err)
	}
	if live, _ := engine.ActiveRuns(dir); len(live) != 0 {
		t.Fatalf("live runs after the game day ended: %+v", live)
	}
}
