// Package bench measures the canary judge against three baseline judges
// (Flagger-style static thresholds, Argo-style measurement limits,
// Kayenta-style Mann-Whitney scoring) on one seeded, generated corpus of
// good releases, bad releases and data faults, side by side in one run.
// It imports only the decision packages, so the judge stays pure.
package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/chaosgate/chaosgate/decision"
)

// Interval is the length of one observation interval.
const Interval = 60 * time.Second

// chunks is how many sub-intervals (10 s points) an interval has, for the
// time-series judges.
const chunks = 6

// maxSamples caps the latency samples drawn per arm and interval.
const maxSamples = 1000

// service is one system under test with its traffic and its A/A history.
type service struct {
	id        int
	rps       float64 // total requests per second
	weight    float64 // canary share of traffic, 0.01–0.20
	latMedian float64 // ms
	latSigma  float64 // log-normal shape
	errBase   float64
	history   []histWindow
	// omit names the dimensions this service's sources do not collect
	// (memory, gc, sessions, dependency): absent from every window.
	omit map[string]bool
	// quantilesOnly: the latency source gives p50 and p99 (a Prometheus
	// histogram), not raw samples.
	quantilesOnly bool
}

// histWindow is one A/A window summarised as the baseline store keeps it.
type histWindow struct {
	at              time.Time
	canary, control armWindow
	ctx             *decision.Context
}

// armWindow is what one arm produced in one interval.
type armWindow struct {
	requests, errors       float64
	latency                []float64 // samples (≤ maxSamples)
	latN                   float64   // in a summary: how many samples p50 and p99 rest on (0: all requests)
	p50, p99               float64
	gc                     []float64
	sessions, interrupts   float64
	depCalls, depFails     float64
	violations             float64
	memGrowth              float64
	chunkErr, chunkP99     []float64 // per 10 s point
	chunkGCLong, chunkSess []float64
}

// defect is what makes a canary bad.
type defect struct {
	kind   string // e.g. "errors", "p99", "gc", "sessions", "consistency", "variance", "memory"
	label  string // e.g. "errors +0.5pp"
	errAdd float64
	latMul float64
	// tailMul stretches only the slowest 3 % of requests (tailZ) (a slow
	// path: a retry, a lock, a slow dependency call), so p99 moves by this
	// factor while the median does not.
	tailMul float64
	latVar  float64 // multiplier of the log-normal shape, mean kept
	gcMed   float64 // median GC pause under the defect, ms (0: none)
	sessAd  float64
	viol    bool
	memAdd  float64
	// goal: a regression of practical size the judge must catch.
	goal bool
}

// dataFault is a problem with the data, not with the release.
type dataFault struct {
	kind       string // gap, nan, stale, empty
	looks      []int  // 1-based looks affected
	persistent bool
}

// Release is one canary of the corpus, observed for up to MaxLooks intervals.
type Release struct {
	ID        int
	Service   int
	Bad       bool
	Defect    string // "" for good releases
	Label     string
	Fault     string // data fault kind, "" when none
	Persist   bool   // the data fault lasts every look
	TotalRPS  float64
	CanaryRPS float64
	Weight    float64
	At        time.Time
	svc       *service
	looks     []look // cumulative data per look
	fault     *dataFault
	// Class is the kind of regression of a bad release ("errors",
	// "p99-tail", ...), the slice its detection is reported in.
	Class string
	// Goal marks a bad release whose regression is one the judge must
	// catch: of practical size (above the dimension's effect floor) and
	// the canary's alone.
	Goal bool
	// Context is what the judged windows were observed under.
	Context *decision.Context
	// TailSpread is how far the service's healthy arms' p99s drift apart
	// per window (σ of the log, as the generator drew it), when the
	// generator models it: the detectability of a tail regression.
	TailSpread float64
	// SNR is a goal regression's effect over the A/A noise σ of the
	// statistic it moves, in its own context, weight and time at the end of
	// the step, as an oracle that knows the generator's model measures it
	// (see oracleSNR); 0 when the generator does not model it.
	SNR float64
	// promoteFrom is the first look at which a promotion is final; before
	// it a judge keeps judging. Zero for every release of the corpus: the
	// bench sets it on the fault-free twin of a blocked data-fault release,
	// to judge the twin for as many intervals as the release was judged.
	promoteFrom int
}

// look is the cumulative view of both arms after some intervals, plus the
// last interval on its own.
type look struct {
	canary, control         armWindow // cumulative
	lastCanary, lastControl armWindow // this interval only
}

// MaxLooks is the number of intervals every judge may use per release.
const MaxLooks = 5

// StepLooks is the step window: the first look at which a promotion counts.
const StepLooks = 3

// Corpus is the generated set of releases.
type Corpus struct {
	// Name says which generator made it: "tuning" (the corpus the
	// defaults were tuned on) or "independent" (held out: never tuned on).
	Name     string
	Seed     uint64
	Releases []*Release
	services []*service
}

// CorpusOptions sizes the corpus.
type CorpusOptions struct {
	Seed       uint64
	Services   int
	Good       int
	BadPerKind int
	Faults     int // good releases with a data fault
}

// DefaultCorpus is the size used by chaosgate bench judge.
var DefaultCorpus = CorpusOptions{Seed: 1, Services: 40, Good: 1000, BadPerKind: 80, Faults: 320}

var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func defects() []defect {
	return []defect{
		{kind: "errors", label: "errors +0.1pp", errAdd: 0.001},
		{kind: "errors", label: "errors +0.5pp", errAdd: 0.005, goal: true},
		{kind: "errors", label: "errors +1pp", errAdd: 0.01, goal: true},
		{kind: "p99", label: "p99 x1.1", latMul: 1.1},
		{kind: "p99", label: "p99 x1.25", latMul: 1.25, goal: true},
		{kind: "p99", label: "p99 x1.5", latMul: 1.5, goal: true},
		{kind: "p99-tail", label: "p99 x1.25 (tail)", tailMul: 1.25, goal: true},
		{kind: "p99-tail", label: "p99 x1.5 (tail)", tailMul: 1.5, goal: true},
		{kind: "gc", label: "gc pauses (median 2ms)", gcMed: 2},
		{kind: "gc", label: "gc pauses (median 5ms)", gcMed: 5, goal: true},
		{kind: "sessions", label: "sessions +0.05pp", sessAd: 0.0005},
		// A session is 20 requests here: at 100 canary rps an interval
		// holds 300 sessions, where +0.2 pp is under one interruption more
		// per interval — reported, but not a goal.
		{kind: "sessions", label: "sessions +0.2pp", sessAd: 0.002},
		{kind: "consistency", label: "consistency violation", viol: true, goal: true},
		{kind: "variance", label: "latency variance x1.5", latVar: 1.5, goal: true},
		{kind: "memory", label: "memory +1.5MB/min", memAdd: 1.5},
		{kind: "memory", label: "memory +4MB/min", memAdd: 4, goal: true},
	}
}

// Generate builds the corpus deterministically from opt.Seed.
func Generate(opt CorpusOptions) *Corpus {
	r := rand.New(rand.NewPCG(opt.Seed, opt.Seed^0x9e3779b97f4a7c15))
	c := &Corpus{Name: "tuning", Seed: opt.Seed}
	for i := 0; i < opt.Services; i++ {
		s := &service{
			id:  i,
			rps: math.Exp(r.Float64() * math.Log(1000)), // log-uniform 1–1000 rps

			weight:    0.01 + 0.19*r.Float64(),
			latMedian: 5 + 45*r.Float64(),
			latSigma:  0.3 + 0.4*r.Float64(),
			errBase:   0.0002 + 0.0018*r.Float64(),
		}
		if i%2 == 1 {
			// Half the services are busy (100–1000 rps) so that every
			// traffic bucket, canary arm included, has enough releases.
			s.rps = 100 + 900*r.Float64()
		}
		// Most services keep a week of hourly A/A windows; a third keep
		// only the last 12 to 72 hours (a new service, a short
		// retention), so that σ̂ read from a short history — and its
		// sampling error — is part of what the defaults are tuned on.
		first := 0
		if r.IntN(3) == 0 {
			first = 7*24 - (12 + r.IntN(61))
		}
		for h := first; h < 7*24; h++ {
			at := t0.Add(time.Duration(h) * time.Hour)
			chaos := chaosLevel(r)
			cw := s.window(r, at, s.weight, chaos, nil)
			kw := s.window(r, at, 1-s.weight, chaos, nil)
			s.history = append(s.history, histWindow{at: at, canary: cw.summary(), control: kw.summary(), ctx: chaosContext(chaos)})
		}
		c.services = append(c.services, s)
	}
	id := 0
	add := func(d *defect, f *dataFault) {
		s := c.services[r.IntN(len(c.services))]
		rel := &Release{ID: id, Service: s.id, svc: s, TotalRPS: s.rps, Weight: s.weight, CanaryRPS: s.rps * s.weight,
			At: t0.Add(7*24*time.Hour + time.Duration(r.Float64()*float64(24*time.Hour))).Truncate(time.Minute)}
		id++
		if d != nil {
			rel.Bad, rel.Defect, rel.Label, rel.Class, rel.Goal = true, d.kind, d.label, d.kind, d.goal
		} else {
			rel.Label = "good"
		}
		if f != nil {
			rel.Fault, rel.Persist, rel.fault = f.kind, f.persistent, f
			rel.Label = "good, data fault: " + f.kind
			if f.persistent {
				rel.Label += " (persistent)"
			}
		}
		chaos := chaosLevel(r)
		rel.Context = chaosContext(chaos)
		var cum look
		violAt := 1 + r.IntN(StepLooks)
		for l := 1; l <= MaxLooks; l++ {
			at := rel.At.Add(time.Duration(l) * Interval)
			dd := d
			if d != nil && d.viol && l < violAt {
				dd = nil // the violation shows up at some interval of the step
			}
			cw := s.window(r, at, s.weight, chaos, dd)
			kw := s.window(r, at, 1-s.weight, chaos, nil)
			cum.canary = cum.canary.add(cw)
			cum.control = cum.control.add(kw)
			cum.lastCanary, cum.lastControl = cw, kw
			rel.looks = append(rel.looks, cum)
		}
		if d != nil && d.goal && rel.CanaryRPS >= 100 {
			rel.SNR = s.oracleSNR(d, rel.At, chaos, opt.Seed<<20^uint64(rel.ID))
		}
		c.Releases = append(c.Releases, rel)
	}
	for i := 0; i < opt.Good; i++ {
		add(nil, nil)
	}
	for _, d := range defects() {
		for i := 0; i < opt.BadPerKind; i++ {
			d := d
			add(&d, nil)
		}
	}
	kinds := []string{"gap", "nan", "stale", "empty"}
	for i := 0; i < opt.Faults; i++ {
		f := &dataFault{kind: kinds[i%len(kinds)], persistent: r.IntN(4) == 0}
		if f.persistent {
			f.looks = []int{1, 2, 3, 4, 5}
		} else {
			f.looks = []int{1 + r.IntN(StepLooks)}
		}
		add(nil, f)
	}
	return c
}

// chaosContext is the context a window under chaos of this level records:
// the game day's faults at that intensity, or the steady state.
func chaosContext(chaos float64) *decision.Context {
	if chaos <= 0 {
		return decision.NewContext(0)
	}
	return decision.NewContext(chaos, "networkDelay", "podKill")
}

// chaosLevel draws the fault intensity both arms are under in a window.
func chaosLevel(r *rand.Rand) float64 {
	if r.IntN(10) < 4 {
		return 0
	}
	return r.Float64()
}

// window simulates one interval of one arm carrying share of the traffic.
func (s *service) window(r *rand.Rand, at time.Time, share, chaos float64, d *defect) armWindow {
	hour := float64(at.UTC().Hour()) + float64(at.UTC().Minute())/60
	load := 0.6 + 0.4*math.Sin(2*math.Pi*(hour-9)/24) // diurnal traffic
	// Each arm's pods are hit by the same faults, but not identically.
	armChaos := chaos * math.Exp(0.5*r.NormFloat64())
	var w armWindow
	w.requests = poisson(r, s.rps*share*load*Interval.Seconds())
	p := s.errBase*(1+0.3*load) + 0.004*armChaos
	lat := s.latMedian * (1 + 0.3*load)
	sigma := s.latSigma
	tail := 0.02 * armChaos
	if d != nil {
		p += d.errAdd
		if d.latMul > 0 {
			lat *= d.latMul
		}
		if d.latVar > 0 {
			ns := sigma * d.latVar
			lat *= math.Exp(sigma*sigma/2 - ns*ns/2) // same mean, wider spread
			sigma = ns
		}
	}
	w.errors = binomial(r, w.requests, math.Min(p, 1))
	n := int(math.Min(w.requests, maxSamples))
	w.latency = make([]float64, n)
	tailMul := 1.0
	if d != nil && d.tailMul > 0 {
		tailMul = d.tailMul
	}
	for i := range w.latency {
		z := r.NormFloat64()
		x := lat * math.Exp(sigma*z)
		if z > tailZ {
			x *= tailMul // the slow path: only the slowest 3 %
		}
		if r.Float64() < tail {
			x += r.ExpFloat64() * 200 // injected network delay
		}
		w.latency[i] = x
	}
	gcMed, gcSigma, cycles := 0.5, 0.8, poisson(r, 30*load)
	if d != nil && d.gcMed > 0 {
		gcMed, gcSigma, cycles = d.gcMed, 1.0, poisson(r, 120*load)
	}
	w.gc = make([]float64, int(cycles))
	for i := range w.gc {
		w.gc[i] = gcMed * math.Exp(gcSigma*r.NormFloat64())
	}
	w.sessions = math.Floor(w.requests / 20)
	ps := 0.00005 + 0.0005*armChaos
	if d != nil {
		ps += d.sessAd
	}
	w.interrupts = binomial(r, w.sessions, math.Min(ps, 1))
	w.depCalls = 2 * w.requests
	w.depFails = binomial(r, w.depCalls, 0.0001+0.001*armChaos)
	if d != nil && d.viol {
		w.violations = 1 + poisson(r, 2)
	}
	w.memGrowth = 0.3*r.NormFloat64() + 0.5*armChaos*r.Float64()
	if d != nil {
		w.memGrowth += d.memAdd
	}
	// 10 s points for the time-series judges.
	w.chunkErr = make([]float64, chunks)
	w.chunkP99 = make([]float64, chunks)
	w.chunkGCLong = make([]float64, chunks)
	w.chunkSess = make([]float64, chunks)
	for k := 0; k < chunks; k++ {
		lo, hi := k*len(w.latency)/chunks, (k+1)*len(w.latency)/chunks
		if hi > lo {
			w.chunkP99[k] = q99(w.latency[lo:hi])
		} else {
			w.chunkP99[k] = math.NaN()
		}
	}
	spread(r, w.errors, w.requests, w.chunkErr)
	spread(r, w.interrupts, w.sessions, w.chunkSess)
	for _, g := range w.gc {
		if g > 10 {
			w.chunkGCLong[r.IntN(chunks)]++
		}
	}
	w.p50 = quantileOf(w.latency, 0.5)
	w.p99 = q99(w.latency)
	return w
}

// oracleSNR is a goal regression's signal-to-noise ratio on this corpus:
// the mean shift its defect gives the statistic its class moves, over the
// A/A noise σ of that statistic, at the end of the step (StepLooks
// intervals, cumulative) — oracleReplicates runs of the service's two arms
// with and without the defect at the release's time and chaos level, drawn
// with a random stream of their own (the corpus does not change). The
// shift is measured, not the defect's nominal size: under chaos the
// injected network delay can hide a slower slow path in the tail. A shift
// at or below zero gives the smallest positive SNR (0 means not modelled);
// +Inf for consistency violations, which healthy arms never show.
func (s *service) oracleSNR(d *defect, at time.Time, chaos float64, seed uint64) float64 {
	if d.viol {
		return math.Inf(1)
	}
	rate := func(x, n float64) float64 {
		if n <= 0 {
			return 0
		}
		return x / n
	}
	long := func(w armWindow) float64 {
		n := 0.0
		for _, g := range w.gc {
			if g > 10 {
				n++
			}
		}
		return n
	}
	var stat func(c, k armWindow) float64
	switch d.kind {
	case "errors":
		stat = func(c, k armWindow) float64 { return rate(c.errors, c.requests) - rate(k.errors, k.requests) }
	case "sessions":
		stat = func(c, k armWindow) float64 { return rate(c.interrupts, c.sessions) - rate(k.interrupts, k.sessions) }
	case "p99", "p99-tail", "variance":
		stat = func(c, k armWindow) float64 { return math.Log(c.p99) - math.Log(k.p99) }
	case "gc":
		stat = func(c, k armWindow) float64 { return long(c) - long(k) }
	case "memory":
		stat = func(c, k armWindow) float64 { return c.memGrowth - k.memGrowth }
	default:
		return 0
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	draw := func(def *defect) []float64 {
		var out []float64
		for rep := 0; rep < oracleReplicates; rep++ {
			var c, k armWindow
			for l := 1; l <= StepLooks; l++ {
				t := at.Add(time.Duration(l) * Interval)
				c = c.add(s.window(r, t, s.weight, chaos, def))
				k = k.add(s.window(r, t, 1-s.weight, chaos, nil))
			}
			if v := stat(c, k); !math.IsNaN(v) && !math.IsInf(v, 0) {
				out = append(out, v)
			}
		}
		return out
	}
	aa, bad := draw(nil), draw(d)
	if len(aa) < 2 || len(bad) == 0 {
		return 0
	}
	sd := sampleSD(aa)
	shift := mean(bad) - mean(aa)
	switch {
	case shift <= 0:
		return math.SmallestNonzeroFloat64
	case sd == 0:
		return math.Inf(1)
	}
	return shift / sd
}

// tailZ is the standard normal quantile above which a request is on the
// slow path of a tail-only regression: the slowest 3 %.
const tailZ = 1.880794

// spread distributes x events over n trials into per-chunk rates.
func spread(r *rand.Rand, x, n float64, out []float64) {
	per := n / float64(len(out))
	counts := make([]float64, len(out))
	for i := 0; i < int(x); i++ {
		counts[r.IntN(len(out))]++
	}
	for k := range out {
		if per > 0 {
			out[k] = counts[k] / per
		} else {
			out[k] = math.NaN()
		}
	}
}

// summary drops the raw samples, as the baseline store does.
func (w armWindow) summary() armWindow {
	// The quantiles rest on the samples drawn, which may be fewer than the
	// requests; a source that reports quantiles says how many.
	if len(w.latency) > 0 {
		w.latN = float64(len(w.latency))
	}
	w.latency = nil
	w.chunkErr, w.chunkP99, w.chunkGCLong, w.chunkSess = nil, nil, nil, nil
	return w
}

// add accumulates interval o into the cumulative window w.
func (w armWindow) add(o armWindow) armWindow {
	var s armWindow
	s.requests = w.requests + o.requests
	s.errors = w.errors + o.errors
	s.latency = append(append([]float64(nil), w.latency...), o.latency...)
	s.gc = append(append([]float64(nil), w.gc...), o.gc...)
	s.sessions = w.sessions + o.sessions
	s.interrupts = w.interrupts + o.interrupts
	s.depCalls = w.depCalls + o.depCalls
	s.depFails = w.depFails + o.depFails
	s.violations = w.violations + o.violations
	// Memory growth over the whole window: the mean slope.
	prev := float64(len(w.chunkErr) / chunks)
	s.memGrowth = (w.memGrowth*prev + o.memGrowth) / (prev + 1)
	s.chunkErr = append(append([]float64(nil), w.chunkErr...), o.chunkErr...)
	s.chunkP99 = append(append([]float64(nil), w.chunkP99...), o.chunkP99...)
	s.chunkGCLong = append(append([]float64(nil), w.chunkGCLong...), o.chunkGCLong...)
	s.chunkSess = append(append([]float64(nil), w.chunkSess...), o.chunkSess...)
	s.p50 = quantileOf(s.latency, 0.5)
	s.p99 = q99(s.latency)
	return s
}

func q99(v []float64) float64 { return quantileOf(v, 0.99) }

func quantileOf(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	if i < 0 {
		i = 0
	}
	return s[min(i, len(s)-1)]
}

func poisson(r *rand.Rand, lambda float64) float64 {
	if lambda <= 0 {
		return 0
	}
	if lambda > 30 {
		return math.Max(0, math.Round(lambda+math.Sqrt(lambda)*r.NormFloat64()))
	}
	l := math.Exp(-lambda)
	k, prod := 0.0, r.Float64()
	for prod > l {
		k++
		prod *= r.Float64()
	}
	return k
}

func binomial(r *rand.Rand, n, p float64) float64 {
	if n <= 0 || p <= 0 {
		return 0
	}
	if n < 50 {
		x := 0.0
		for i := 0; i < int(n); i++ {
			if r.Float64() < p {
				x++
			}
		}
		return x
	}
	if n*p < 30 {
		return math.Min(n, poisson(r, n*p))
	}
	return math.Min(n, math.Max(0, math.Round(n*p+math.Sqrt(n*p*(1-p))*r.NormFloat64())))
}

// String describes a release for reports.
func (r *Release) String() string {
	return fmt.Sprintf("#%d %s (service %d, %.1f rps total, canary %.0f%% = %.2f rps)", r.ID, r.Label, r.Service, r.TotalRPS, 100*r.Weight, r.CanaryRPS)
}
