package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/gameday"
	"github.com/chaosgate/chaosgate/engine/target/local"
)

// requirePrometheus skips the test when the prometheus binary is absent,
// and fails it with CI=true (make test installs Debian's package).
func requirePrometheus(t *testing.T) {
	t.Helper()
	if _, err := local.PrometheusBinary(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI: %v", err)
		}
		t.Skip(err)
	}
}

var startedProm = regexp.MustCompile(`started Prometheus \(pid (\d+)\)`)

// promDemo runs `demo --quick --metrics-source prometheus` and checks
// that the Prometheus it started is gone when it returns.
func promDemo(t *testing.T, bin string, extra ...string) (gamedayReport, string, int, string) {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{"demo", "--quick", "--metrics-source", "prometheus", "-o", "json", "--data-dir", dir}, extra...)
	stdout, stderr, code := runBinary(t, bin, args...)
	r := decodeReport(t, stdout, stderr)
	m := startedProm.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no local Prometheus started:\n%s", tail(stderr, 4000))
	}
	pid, _ := strconv.Atoi(m[1])
	if st, _, err := engine.ProcStat(pid); err == nil && st != 'Z' {
		t.Errorf("the Prometheus chaosgate started (pid %d) is still running after the run", pid)
	}
	return r, stderr, code, filepath.Join(dir, "runs", r.RunID)
}

// readAgreement reads a run's metrics-agreement.jsonl.
func readAgreement(t *testing.T, runDir string) []gameday.MetricsAgreement {
	t.Helper()
	f, err := os.Open(filepath.Join(runDir, "metrics-agreement.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []gameday.MetricsAgreement
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var a gameday.MetricsAgreement
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// agreement is, per field, Σ|PromQL − embedded| / Σ|embedded| over every
// judged window of every arm, and the number of windows PromQL left
// without the field while the embedded scraper had it.
func agreement(recs []gameday.MetricsAgreement) (map[string]float64, map[string]int) {
	diff, base, missing := map[string]float64{}, map[string]float64{}, map[string]int{}
	for _, r := range recs {
		for k, e := range r.Embedded {
			p, ok := r.PromQL[k]
			if !ok {
				missing[k]++
				continue
			}
			diff[k] += math.Abs(p - e)
			base[k] += math.Abs(e)
		}
	}
	rel := map[string]float64{}
	for k, d := range diff {
		if base[k] > 0 {
			rel[k] = d / base[k]
		} else if d == 0 {
			rel[k] = 0
		} else {
			rel[k] = math.Inf(1)
		}
	}
	return rel, missing
}

// TestDemoWithPrometheusMetricsPromotesGoodAndBlocksLeak runs the quick
// demo with the arms' process metrics from a Prometheus chaosgate starts
// (scraping every node each second) and compares the PromQL windows with
// the embedded scraper's over the same time ranges of the same run.
//
// Agreement measured on two good runs (Σ|PromQL − embedded| / Σ embedded
// over the 6 and 9 judged windows of the canary, control and calibration
// arms, on a loaded 2-core machine): HTTP requests 2.2 % and 2.3 %, 5xx
// errors and dependency failures 0 vs 0, dependency calls 6.5 % and 5.0 %,
// GC pause count 15 % and 24 % (a window's edge falls between two scrapes
// differently for each source: a pause or two per window), memory growth
// 13 % and 12 % (PromQL's deriv starts at Prometheus' first scrape, a few
// seconds after the embedded scraper's), GC pause total 54 % and 17 % and
// longest pause 89 % and 44 % (both rebuild pauses from the
// go_gc_duration_seconds summary, whose quantile=1 is the largest recent
// pause, which each source attributes to a different interval). The
// bounds below are loose on purpose: they catch a wrong query or selector,
// not scrape jitter.
func TestDemoWithPrometheusMetricsPromotesGoodAndBlocksLeak(t *testing.T) {
	skipShort(t)
	requirePrometheus(t)
	bin := chaosgateBinary(t)

	r, stderr, code, runDir := promDemo(t, bin)
	if code != 0 || r.Verdict != "promote" || r.ExitCode != 0 {
		t.Fatalf("good canary with PromQL metrics: exit %d, verdict %q (failing %v)\n%s", code, r.Verdict, r.Failing, tail(stderr, 6000))
	}
	recs := readAgreement(t, runDir)
	arms := map[string]int{}
	for _, a := range recs {
		arms[a.Arm]++
		if len(a.Notes) > 0 {
			t.Errorf("%s at %d%%: PromQL left fields without data: %v", a.Arm, a.Weight, a.Notes)
		}
	}
	if arms["canary"] == 0 || arms["control"] == 0 || arms["calibration"] == 0 {
		t.Fatalf("agreement records per arm: %v", arms)
	}
	rel, missing := agreement(recs)
	var keys []string
	for k := range rel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var line []string
	for _, k := range keys {
		line = append(line, fmt.Sprintf("%s %.1f%%", k, 100*rel[k]))
	}
	t.Logf("PromQL vs embedded over %d windows: %s", len(recs), strings.Join(line, ", "))
	for k, n := range missing {
		t.Errorf("PromQL has no %s in %d windows where the embedded scraper has it", k, n)
	}
	for k, bound := range map[string]float64{"requests": 0.15, "dependency_calls": 0.3, "gc_pauses": 0.5, "memory_growth_mb_per_min": 0.4} {
		if v, ok := rel[k]; !ok || v > bound {
			t.Errorf("%s: PromQL and the embedded scraper differ by %.1f%% (bound %.0f%%)", k, 100*v, 100*bound)
		}
	}

	// A canary that leaks memory is blocked on what Prometheus saw (memory
	// growth is deriv() over the run), naming the dimension.
	r, stderr, code, _ = promDemo(t, bin, "--canary-defect", "leak")
	if code != 1 || r.Verdict != "block" || r.ExitCode != 1 {
		t.Fatalf("leaking canary with PromQL metrics: exit %d, verdict %q (failing %v)\n%s", code, r.Verdict, r.Failing, tail(stderr, 6000))
	}
	if !contains(r.Failing, "memory_growth") {
		t.Fatalf("leaking canary blocked without a memory_growth failure: %v\n%s", r.Failing, tail(stderr, 4000))
	}
	t.Logf("leaking canary blocked; failing dimensions %v", r.Failing)
}

// promFromFile is an experiment whose probes.metrics chooses the PromQL
// source with a queries file beside it (queries.yaml); no address, so
// chaosgate starts a Prometheus scraping the nodes.
const promFromFile = `apiVersion: chaosgate.io/v1
kind: Experiment
metadata:
  name: prom-from-file
spec:
  target:
    local: {nodes: 3, partitions: 2}
  steadyState: 1s
  canary:
    steps: [50]
  probes:
    availability: {sources: 4, rate: 200}
    metrics: {source: prometheus, queries: queries.yaml}
  faults:
    - name: kill-one
      duration: 2s
      podKill: {}
`

// TestScenarioFileChoosesTheMetricsSource: an experiment file's
// probes.metrics.source picks the PromQL source (and its queries file,
// relative to the experiment), with no flag; a queries file that is not
// there is a usage error naming the file's field, before anything starts;
// --metrics-source embedded overrides the file.
func TestScenarioFileChoosesTheMetricsSource(t *testing.T) {
	skipShort(t)
	requirePrometheus(t)
	bin := chaosgateBinary(t)
	file := writeExperiment(t, "prom-from-file", promFromFile)
	queries, err := os.ReadFile(filepath.Join("..", "..", "engine", "probe", "promql", "aggregator.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	// No queries file yet: exit 2 at once, naming where the path came from.
	_, stderr, code := runBinary(t, bin, "run", "-f", file, "-o", "json", "--data-dir", t.TempDir())
	if code != exitUsage || !strings.Contains(stderr, file+": spec.probes.metrics.queries") || !strings.Contains(stderr, "queries.yaml") {
		t.Fatalf("missing queries file: exit %d\n%s", code, tail(stderr, 2000))
	}
	// The flag overrides the file: the embedded scraper, no queries read.
	dir := t.TempDir()
	stdout, stderr, code := runBinary(t, bin, "run", "-f", file, "--metrics-source", "embedded", "-o", "json", "--data-dir", dir)
	r := decodeReport(t, stdout, stderr)
	if code == exitUsage || startedProm.MatchString(stderr) {
		t.Fatalf("--metrics-source embedded over the file: exit %d, verdict %q\n%s", code, r.Verdict, tail(stderr, 3000))
	}

	if err := os.WriteFile(filepath.Join(filepath.Dir(file), "queries.yaml"), queries, 0o644); err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	stdout, stderr, code = runBinary(t, bin, "run", "-f", file, "-o", "json", "--data-dir", dir)
	r = decodeReport(t, stdout, stderr)
	if !startedProm.MatchString(stderr) {
		t.Fatalf("the file's metrics source did not start a Prometheus: exit %d\n%s", code, tail(stderr, 4000))
	}
	if code != 0 || r.Verdict != "promote" {
		t.Fatalf("good canary, PromQL metrics chosen by the file: exit %d, verdict %q (failing %v)\n%s", code, r.Verdict, r.Failing, tail(stderr, 4000))
	}
	recs := readAgreement(t, filepath.Join(dir, "runs", r.RunID))
	if len(recs) == 0 {
		t.Fatal("no judged window has PromQL metrics")
	}
	for _, a := range recs {
		if a.PromQL["requests"] <= 0 {
			t.Errorf("%s at %d%%: PromQL found no HTTP requests: %v (notes %v)", a.Arm, a.Weight, a.PromQL, a.Notes)
		}
	}
}
