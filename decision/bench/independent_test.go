package bench

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/chaosgate/chaosgate/decision"
)

func TestIndependentIsSeeded(t *testing.T) {
	opt := CorpusOptions{Seed: 7, Services: 4, Good: 4, BadPerKind: 1, Faults: 4}
	a, b := GenerateIndependent(opt), GenerateIndependent(opt)
	if a.Name != "independent" || a.Seed != 7 {
		t.Fatalf("corpus %q seed %d", a.Name, a.Seed)
	}
	if digest(a) != digest(b) {
		t.Fatal("the same seed generated different corpora")
	}
	opt.Seed = 8
	if digest(a) == digest(GenerateIndependent(opt)) {
		t.Fatal("different seeds generated the same corpus")
	}
}

// digest hashes everything the judges read of a corpus (NaN-safe).
func digest(c *Corpus) uint64 {
	h := fnv.New64a()
	put := func(v ...float64) {
		for _, x := range v {
			binary.Write(h, binary.LittleEndian, math.Float64bits(x))
		}
	}
	arm := func(w armWindow) {
		put(w.requests, w.errors, w.p50, w.p99, w.sessions, w.interrupts, w.depCalls, w.depFails, w.violations, w.memGrowth)
		for _, s := range [][]float64{w.latency, w.gc, w.chunkErr, w.chunkP99, w.chunkGCLong, w.chunkSess} {
			put(float64(len(s)))
			put(s...)
		}
	}
	for _, s := range c.services {
		fmt.Fprint(h, s.id, s.rps, s.weight, s.omit, s.quantilesOnly)
		for _, w := range s.history {
			fmt.Fprint(h, w.at, w.ctx.String())
			arm(w.canary)
			arm(w.control)
		}
	}
	for _, r := range c.Releases {
		fmt.Fprint(h, r.ID, r.Service, r.Label, r.Class, r.Goal, r.Fault, r.Persist, r.At, r.Context.String())
		for _, l := range r.looks {
			arm(l.canary)
			arm(l.control)
			arm(l.lastCanary)
			arm(l.lastControl)
		}
	}
	return h.Sum64()
}

var goalClasses = []string{"errors", "sessions", "p99-tail", "gc", "dependency", "memory", "consistency"}

// Every goal class is generated with canary traffic of at least 100 rps,
// each only on services that collect its dimension, and the corpus has the
// size asked for.
func TestIndependentGoalClasses(t *testing.T) {
	opt := CorpusOptions{Seed: 1, Services: 16, Good: 10, BadPerKind: 4, Faults: 8}
	c := GenerateIndependent(opt)
	busy := map[string]int{}
	good, bad, faults := 0, 0, 0
	for _, rel := range c.Releases {
		switch {
		case rel.Bad:
			bad++
		case rel.Fault != "":
			faults++
		default:
			good++
		}
		if !rel.Bad {
			continue
		}
		if rel.Class == "" || rel.Defect == "" || rel.Label == "" {
			t.Errorf("bad release %s without class, defect or label", rel)
		}
		if rel.svc.omit[rel.Defect] {
			t.Errorf("%s: a %s regression on a service that does not collect %s", rel, rel.Class, rel.Defect)
		}
		if rel.Goal && rel.CanaryRPS >= 100 {
			busy[rel.Class]++
		}
		last := rel.looks[MaxLooks-1]
		switch rel.Class {
		case "gc":
			long := 0
			for _, g := range last.lastCanary.gc {
				if g >= 150 && g <= 320 {
					long++
				}
			}
			if long != 6 {
				t.Errorf("%s: %d pauses of 150–320 ms in the last interval, want 6", rel, long)
			}
		case "consistency":
			if last.canary.violations == 0 || last.control.violations != 0 {
				t.Errorf("%s: violations canary %v control %v", rel, last.canary.violations, last.control.violations)
			}
		}
	}
	if good != opt.Good || faults != opt.Faults || bad != 12*opt.BadPerKind {
		t.Errorf("good %d, bad %d, data faults %d", good, bad, faults)
	}
	for _, cl := range goalClasses {
		if busy[cl] == 0 {
			t.Errorf("no %q goal release with canary >= 100 rps: %v", cl, busy)
		}
	}
	busySvc := 0
	for _, s := range c.services {
		if s.rps*s.weight >= 100 {
			busySvc++
		}
		for _, h := range s.history {
			for _, g := range append(append([]float64(nil), h.canary.gc...), h.control.gc...) {
				if g > 120 {
					t.Fatalf("service %d: a healthy GC pause of %.0f ms", s.id, g)
				}
			}
		}
	}
	if 2*busySvc < len(c.services) {
		t.Errorf("%d of %d services with canary >= 100 rps", busySvc, len(c.services))
	}
}

// History windows and releases carry their context: steady or faults of
// the game-day kinds at an intensity in [0, 1], both kinds present.
func TestIndependentContexts(t *testing.T) {
	c := GenerateIndependent(CorpusOptions{Seed: 2, Services: 10, Good: 40, BadPerKind: 1, Faults: 4})
	kinds := map[string]bool{"networkDelay": true, "podKill": true, "partition": true, "splitBrain": true}
	check := func(what string, ctx *decision.Context) bool {
		if ctx == nil {
			t.Fatalf("%s has no context", what)
		}
		for _, f := range ctx.Faults {
			if !kinds[f] {
				t.Fatalf("%s: fault %q", what, f)
			}
		}
		if !ctx.Steady() && (ctx.Intensity <= 0 || ctx.Intensity > 1) {
			t.Fatalf("%s: intensity %g", what, ctx.Intensity)
		}
		return ctx.Steady()
	}
	var hs, hf, rs, rf int
	for _, s := range c.services {
		for i, h := range s.history {
			if check(fmt.Sprintf("service %d history window %d", s.id, i), h.ctx) {
				hs++
			} else {
				hf++
			}
		}
	}
	for _, rel := range c.Releases {
		if check(rel.String(), rel.Context) {
			rs++
		} else {
			rf++
		}
	}
	if hs == 0 || hf == 0 || rs == 0 || rf == 0 {
		t.Fatalf("steady/faulted: history %d/%d, releases %d/%d", hs, hf, rs, rf)
	}
}

// What a service does not collect is absent from the judge's input —
// both arms and every history window — and a quantile source gives p50
// and p99, no samples.
func TestIndependentOmittedAbsent(t *testing.T) {
	c := GenerateIndependent(CorpusOptions{Seed: 3, Services: 16, Good: 48, BadPerKind: 0, Faults: 0})
	j := NewChaosgate(decision.Default(), c)
	seen := map[string]int{}
	for _, rel := range c.Releases {
		in := j.Input(rel, StepLooks)
		arms := []decision.ArmInput{in.Canary, in.Control}
		for _, h := range in.History {
			arms = append(arms, h.Canary, h.Control)
		}
		if len(in.History) != len(rel.svc.history) || in.Context != rel.Context {
			t.Fatalf("%s: input history or context is not the service's", rel)
		}
		omit := rel.svc.omit
		for _, a := range arms {
			for dim, missing := range map[string]bool{
				"memory":     a.MemoryGrowthMBPerMin.State == decision.Missing,
				"gc":         a.GCPausesMS.State == decision.Missing,
				"sessions":   a.Sessions.State == decision.Missing && a.SessionInterruptions.State == decision.Missing,
				"dependency": a.DependencyCalls.State == decision.Missing && a.DependencyFailures.State == decision.Missing,
			} {
				if omit[dim] != missing {
					t.Fatalf("%s: %s omitted %v, missing from the input %v", rel, dim, omit[dim], missing)
				}
			}
		}
		for dim := range omit {
			seen[dim]++
		}
		if rel.svc.quantilesOnly {
			seen["quantiles"]++
			if in.Canary.LatencyMS.State != decision.Missing || (rel.looks[StepLooks-1].canary.requests > 0 && !in.Canary.LatencyP99.OK()) {
				t.Fatalf("%s: a quantile source gave samples or no p99", rel)
			}
		}
	}
	for _, k := range []string{"memory", "gc", "sessions", "dependency", "quantiles"} {
		if seen[k] == 0 {
			t.Errorf("no release of a service that omits %s (%v)", k, seen)
		}
	}
}

// spearman is the rank correlation of x and y.
func spearman(x, y []float64) float64 {
	rank := func(v []float64) []float64 {
		idx := make([]int, len(v))
		for i := range idx {
			idx[i] = i
		}
		sort.Slice(idx, func(a, b int) bool { return v[idx[a]] < v[idx[b]] })
		r := make([]float64, len(v))
		for k, i := range idx {
			r[i] = float64(k)
		}
		return r
	}
	rx, ry := rank(x), rank(y)
	n := float64(len(x))
	d := 0.0
	for i := range rx {
		d += (rx[i] - ry[i]) * (rx[i] - ry[i])
	}
	return 1 - 6*d/(n*(n*n-1))
}

// p99Noise is the standard deviation of ln p99 measured over n requests
// of the service's steady latency distribution: the order statistic's,
// sqrt(0.99·0.01/n) over the density of ln latency at the p99.
func (s *indService) p99Noise(n float64) float64 {
	q, h := math.Exp(s.b), 1e-4
	dens := (s.lat.cdf(q*math.Exp(h)) - s.lat.cdf(q*math.Exp(-h))) / (2 * h)
	return math.Sqrt(0.99*0.01/n) / dens
}

// The A/A p99 spread measured on a service's steady history tracks the
// spread the service was drawn with. Measured where the p99 of a window
// is sharp enough to show the drift: a quantile source (p99 over every
// request) whose canary arm's p99 has a sampling noise under 2 % — a
// p99 from 1000 samples, or one in a thin stretch of a two-path
// distribution, is noisier than the tightest services' drift.
func TestIndependentSpreadTracksDrawn(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	var drawn, measured []float64
	for i := 0; i < 600; i++ {
		s := newIndService(r, i)
		if !s.svc.quantilesOnly || s.p99Noise(s.canaryRPS*Interval.Seconds()) > 0.02 {
			continue
		}
		s.record(r)
		var d []float64
		for _, h := range s.svc.history {
			if h.ctx.Steady() {
				d = append(d, math.Abs(math.Log(h.canary.p99)-math.Log(h.control.p99)))
			}
		}
		if len(d) < 5 {
			continue
		}
		drawn = append(drawn, s.tailSigma)
		measured = append(measured, 1.4826*quantileOf(d, 0.5))
	}
	if len(drawn) < 20 {
		t.Fatalf("only %d services to compare", len(drawn))
	}
	if rho := spearman(drawn, measured); rho <= 0.8 {
		t.Fatalf("rank correlation of measured and drawn A/A p99 spread %.2f over %d services", rho, len(drawn))
	} else {
		t.Logf("rank correlation %.3f over %d services", rho, len(drawn))
	}
}

// A p99-tail regression raises p99 by its factor and leaves the median:
// exactly in the latency model, and on average in the generated windows
// of quantile sources (p99 over every request; a p99 from at most 5000
// samples of a two-path distribution is too noisy for a mean of a few
// dozen releases).
func TestIndependentTailRegression(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	g := &indGen{r: r, c: &Corpus{}}
	var qo []*indService
	for i := 0; len(qo) < 8; i++ {
		s := newIndService(r, i)
		for _, f := range []float64{1.1, 1.25, 1.5} {
			for _, slower := range []bool{false, true} {
				m := s.tailRegression(f, slower)
				if got := m.quantile(0.99) / math.Exp(s.b); math.Abs(got/f-1) > 0.01 {
					t.Fatalf("service %d x%g (slower %v): model p99 x%.3f", i, f, slower, got)
				}
				if got := m.quantile(0.5) / math.Exp(s.a); math.Abs(got-1) > 0.001 {
					t.Fatalf("service %d x%g (slower %v): model p50 x%.4f", i, f, slower, got)
				}
			}
		}
		if s.busy() && s.svc.quantilesOnly {
			qo = append(qo, s)
		}
	}
	for _, d := range indDefects() {
		if d.tail == 0 {
			continue
		}
		var p99, p50 float64
		const n = 40
		for i := 0; i < n; i++ {
			last := g.release(qo[i%len(qo)], &d, nil).looks[MaxLooks-1]
			p99 += math.Log(last.canary.p99/last.control.p99) / n
			p50 += math.Log(last.canary.p50/last.control.p50) / n
		}
		if math.Abs(p99-math.Log(d.tail)) > 0.05 || math.Abs(p50) > 0.03 {
			t.Errorf("%s: canary/control p99 x%.3f, p50 x%.3f (mean of logs over %d releases)", d.label, math.Exp(p99), math.Exp(p50), n)
		} else {
			t.Logf("%s: canary/control p99 x%.3f, p50 x%.3f (mean of logs over %d releases)", d.label, math.Exp(p99), math.Exp(p50), n)
		}
	}
}

// The oracle's signal-to-noise ratio: infinite for what healthy arms never
// show, larger for a tail regression on a service whose healthy tails
// agree than on one whose tails wander, larger for a bigger effect, and
// drawn from a stream of its own (the same seed gives the same corpus
// whether or not the oracle ran).
func TestIndependentOracleSNR(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	tight, wide := newIndService(r, 0), newIndService(r, 0)
	tight.tailSigma, wide.tailSigma = 0.005, 0.30
	for _, s := range []*indService{tight, wide} {
		s.svc.quantilesOnly = true // the p99 over every request: drift, not sampling, decides
		s.svc.weight, s.svc.rps, s.canaryRPS = 0.5, 2000, 1000
	}
	steady := decision.NewContext(0)
	at := t0.Add(7 * 24 * time.Hour)
	defects := indDefects()
	byLabel := func(label string) *indDefect {
		for i := range defects {
			if defects[i].label == label {
				return &defects[i]
			}
		}
		t.Fatalf("no defect %q", label)
		return nil
	}
	p125, p15 := byLabel("p99 x1.25 (tail)"), byLabel("p99 x1.5 (tail)")
	st := tight.oracleSNR(p125, steady, 0.5, at, 1)
	sw := wide.oracleSNR(p125, steady, 0.5, at, 1)
	if !(st > DetectableSNR && sw < DetectableSNR && st > 3*sw) {
		t.Errorf("p99 ×1.25: SNR %.2f on tight tails, %.2f on tails drifting 30%%; want the first detectable, the second not", st, sw)
	}
	if s15 := wide.oracleSNR(p15, steady, 0.5, at, 1); s15 <= sw {
		t.Errorf("p99 ×1.5 SNR %.2f not above ×1.25's %.2f", s15, sw)
	}
	if s := tight.oracleSNR(byLabel("gc +6 pauses 150-320ms"), steady, 0.5, at, 1); !math.IsInf(s, 1) {
		t.Errorf("GC pauses SNR %v, want +Inf", s)
	}
	if s := tight.oracleSNR(nil, steady, 0.5, at, 1); s != 0 {
		t.Errorf("good release SNR %v, want 0", s)
	}
	// Goal releases carry their SNR; non-goal ones do not.
	c := GenerateIndependent(CorpusOptions{Seed: 2, Services: 12, Good: 2, BadPerKind: 2, Faults: 0})
	for _, rel := range c.Releases {
		if rel.Goal && rel.SNR <= 0 {
			t.Errorf("%s: goal release without SNR", rel)
		}
		if !rel.Goal && rel.SNR != 0 {
			t.Errorf("%s: SNR %v on a release that is not a goal", rel, rel.SNR)
		}
	}
}
