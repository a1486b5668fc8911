package bench

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestBenchSmoke runs the four judges on a small corpus (the full one with
// CHAOSGATE_BENCH_FULL=1, seed 42: the tuning seed) and checks what must
// hold on any corpus.
func TestBenchSmoke(t *testing.T) {
	opt := CorpusOptions{Seed: 42, Services: 2, Good: 20, BadPerKind: 2, Faults: 8}
	if os.Getenv("CHAOSGATE_BENCH_FULL") != "" {
		opt = CorpusOptions{Seed: 42, Services: 40, Good: 1000, BadPerKind: 80, Faults: 320}
	}
	c := Generate(opt)
	rep := Run(c, []Judge{NewChaosgate(decision.Default(), c), NewFlagger(), NewArgo(), NewKayenta()})
	var out bytes.Buffer
	WriteTable(&out, rep)
	WriteGoals(&out, Goals(rep))
	t.Log("\n" + out.String())
	if len(rep.Judges) != 4 || rep.Bad != len(defects())*opt.BadPerKind || rep.Good != opt.Good || rep.Faults != opt.Faults {
		t.Fatalf("corpus: %+v", rep)
	}
	cg := rep.Judges[0]
	if cg.ConsistencyBlocks != cg.ConsistencyN || cg.ConsistencyN != opt.BadPerKind {
		t.Errorf("consistency violations blocked %d/%d", cg.ConsistencyBlocks, cg.ConsistencyN)
	}
	if cg.FaultCaused != 0 {
		t.Errorf("%d good releases blocked because of a data fault", cg.FaultCaused)
	}
	if !strings.Contains(out.String(), "NAB-style score") {
		t.Error("table lacks the NAB score")
	}
}

func TestCorpusIsSeeded(t *testing.T) {
	opt := CorpusOptions{Seed: 7, Services: 2, Good: 5, BadPerKind: 1, Faults: 4}
	a, b := Generate(opt), Generate(opt)
	if fmt.Sprint(a.Releases[3].looks) != fmt.Sprint(b.Releases[3].looks) { // NaN-safe comparison
		t.Fatal("the same seed generated different corpora")
	}
	opt.Seed = 8
	if fmt.Sprint(a.Releases[3].looks) == fmt.Sprint(Generate(opt).Releases[3].looks) {
		t.Fatal("different seeds generated the same corpus")
	}
}

// blockAll blocks every release at its first interval.
type blockAll struct{}

func (blockAll) Name() string        { return "block-all" }
func (blockAll) Run(*Release) Ruling { return Ruling{Outcome: decision.Block, Look: 1} }

// The block-all reference in the report is what a judge that blocks
// everything really scores, and it is far above zero.
func TestNABBlockAllReference(t *testing.T) {
	c := Generate(CorpusOptions{Seed: 9, Services: 2, Good: 30, BadPerKind: 2, Faults: 8})
	rep := Run(c, []Judge{blockAll{}})
	if got, want := rep.NABBlockAll, rep.Judges[0].NAB; got < want-1e-9 || got > want+1e-9 {
		t.Fatalf("reference %.3f, block-all judge scored %.3f", got, want)
	}
	if rep.Judges[0].FPR != 1 || rep.NABBlockAll <= 0 {
		t.Fatalf("block-all: FPR %.2f, NAB %.1f", rep.Judges[0].FPR, rep.NABBlockAll)
	}
	var out bytes.Buffer
	WriteTable(&out, rep)
	if !strings.Contains(out.String(), fmt.Sprintf("blocks every release at its first interval scores %.1f", rep.NABBlockAll)) {
		t.Fatalf("table lacks the reference:\n%s", out.String())
	}
}

// TestTradeoffMatchesTheJudge checks that the sweep at the configured alpha
// gives exactly the chaosgate judge's own figures (judged concurrently, so
// -race also checks that judges share the corpus safely), that a looser
// alpha blocks at least as many good releases on this corpus, and that the
// table names every alpha.
func TestTradeoffMatchesTheJudge(t *testing.T) {
	c := Generate(CorpusOptions{Seed: 11, Services: 2, Good: 60, BadPerKind: 3, Faults: 8})
	cfg := decision.Default()
	rep := Run(c, []Judge{NewChaosgate(cfg, c), NewArgo()})
	points := Tradeoff(c, cfg, []float64{cfg.Alpha, 0.3, cfg.Alpha})
	want := PointOf(cfg.Alpha, rep.Judges[0])
	if points[0] != want || points[2] != want {
		t.Fatalf("sweep at alpha %g: %+v and %+v, judge: %+v", cfg.Alpha, points[0], points[2], want)
	}
	if points[1].Alpha != 0.3 || points[1].FPR < want.FPR {
		t.Fatalf("alpha 0.3: %+v; alpha %g: %+v", points[1], cfg.Alpha, want)
	}
	var out strings.Builder
	WriteTradeoff(&out, rep, points)
	for _, s := range []string{"0.01 ", "0.3 ", "argo-style"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("trade-off table lacks %q:\n%s", s, out.String())
		}
	}
}

// TestTwinIsJudgedAsLong: the fault-free twin of a blocked data-fault
// release is judged for as many intervals as the release was — every judge
// keeps judging a release whose promotion is not yet final, and promotes
// it no earlier than asked. Without that, the bench would count as caused
// by missing data a block the twin also meets once judged that long.
func TestTwinIsJudgedAsLong(t *testing.T) {
	c := Generate(CorpusOptions{Seed: 3, Services: 2, Good: 30, BadPerKind: 0, Faults: 0})
	for _, j := range []Judge{NewChaosgate(decision.Default(), c), NewFlagger(), NewArgo(), NewKayenta()} {
		early := 0
		for _, rel := range c.Releases {
			if res := j.Run(rel); res.Outcome == decision.Promote && res.Look < MaxLooks {
				early++
			}
			twin := *rel
			twin.promoteFrom = MaxLooks
			if res := j.Run(&twin); res.Outcome == decision.Promote && res.Look < MaxLooks {
				t.Errorf("%s promoted %s at interval %d, before the interval %d asked for", j.Name(), rel, res.Look, MaxLooks)
			}
		}
		if early == 0 {
			t.Errorf("%s promoted no release before interval %d: the check above proves nothing", j.Name(), MaxLooks)
		}
	}
}

// A good release the chaosgate judge blocks is reported with what failed in
// the blocking verdict: every false positive has at least one dimension and
// rule, most frequent first. A lax alpha makes false positives certain.
func TestFalsePositiveCauses(t *testing.T) {
	cfg := decision.Default()
	cfg.Alpha = 0.5
	c := GenerateIndependent(CorpusOptions{Seed: 3, Services: 6, Good: 60, BadPerKind: 1, Faults: 4})
	rep := Run(c, []Judge{NewChaosgate(cfg, c), NewFlagger()})
	cg := rep.Judges[0]
	if cg.GoodBlock == 0 {
		t.Fatalf("no false positive at alpha 0.5 on %d good releases: the test checks nothing", cg.GoodN)
	}
	total := 0
	for i, fc := range cg.FalsePositiveCauses {
		if fc.Dimension == "" || fc.Rule == "" || fc.N <= 0 {
			t.Errorf("cause %d is empty: %+v", i, fc)
		}
		if i > 0 && fc.N > cg.FalsePositiveCauses[i-1].N {
			t.Errorf("causes not most frequent first: %+v", cg.FalsePositiveCauses)
		}
		total += fc.N
	}
	if total < cg.GoodBlock {
		t.Errorf("%d false positives but only %d failures named: %+v", cg.GoodBlock, total, cg.FalsePositiveCauses)
	}
	if len(rep.Judges[1].FalsePositiveCauses) != 0 {
		t.Errorf("the Flagger-style judge cannot say what failed, yet has causes: %+v", rep.Judges[1].FalsePositiveCauses)
	}
	var out bytes.Buffer
	WriteTable(&out, rep)
	if want := fmt.Sprintf("chaosgate's %d false positives, by what failed in the blocking verdict: %s by %s", cg.GoodBlock, cg.FalsePositiveCauses[0].Dimension, cg.FalsePositiveCauses[0].Rule); !strings.Contains(out.String(), want) {
		t.Errorf("the table does not say %q:\n%s", want, out.String())
	}
	t.Logf("%d false positives: %+v", cg.GoodBlock, cg.FalsePositiveCauses)
}

// The tuning corpus's oracle: the measured shift over the A/A noise grows
// with the effect, the injected network delay of heavy chaos hides part of
// a tail-only regression, consistency violations are +Inf, and only goal
// releases at 100 canary rps or more carry an SNR.
func TestTuningOracleSNR(t *testing.T) {
	s := &service{id: 0, rps: 2000, weight: 0.2, latMedian: 20, latSigma: 0.5, errBase: 0.001}
	at := t0.Add(7*24*time.Hour + 10*time.Hour)
	byLabel := func(label string) *defect {
		for _, d := range defects() {
			if d.label == label {
				return &d
			}
		}
		t.Fatalf("no defect %q", label)
		return nil
	}
	p125, p15 := s.oracleSNR(byLabel("p99 x1.25"), at, 0, 1), s.oracleSNR(byLabel("p99 x1.5"), at, 0, 1)
	if !(p15 > DetectableSNR && p15 > p125 && p125 > 1) {
		t.Errorf("p99 ×1.25 SNR %.2f, ×1.5 %.2f: want ×1.5 detectable at 400 canary rps and above ×1.25", p125, p15)
	}
	steadyTail, chaosTail := s.oracleSNR(byLabel("p99 x1.25 (tail)"), at, 0, 1), s.oracleSNR(byLabel("p99 x1.25 (tail)"), at, 1, 1)
	if !(chaosTail < steadyTail) {
		t.Errorf("tail ×1.25 SNR %.2f steady, %.2f under full chaos: the injected delay should hide part of it", steadyTail, chaosTail)
	}
	if e := s.oracleSNR(byLabel("errors +1pp"), at, 0, 1); e <= DetectableSNR {
		t.Errorf("errors +1 pp at 400 canary rps: SNR %.2f", e)
	}
	if v := s.oracleSNR(byLabel("consistency violation"), at, 0, 1); !math.IsInf(v, 1) {
		t.Errorf("consistency violation SNR %v, want +Inf", v)
	}
	c := Generate(CorpusOptions{Seed: 5, Services: 6, Good: 2, BadPerKind: 3, Faults: 0})
	with := 0
	for _, rel := range c.Releases {
		want := rel.Goal && rel.CanaryRPS >= 100
		if want && rel.SNR <= 0 {
			t.Errorf("%s: goal release at %.0f canary rps without SNR", rel, rel.CanaryRPS)
		}
		if !want && rel.SNR != 0 {
			t.Errorf("%s: SNR %v", rel, rel.SNR)
		}
		if rel.SNR > 0 {
			with++
		}
	}
	if with == 0 {
		t.Error("no release of the small corpus carries an SNR: the check above checked nothing")
	}
	t.Logf("p99 ×1.25 %.1f, ×1.5 %.1f, tail ×1.25 steady %.1f / chaos %.1f; %d releases with an SNR", p125, p15, steadyTail, chaosTail, with)
}
