package bench

import (
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/chaosgate/chaosgate/decision"
)

// DefaultIndependentCorpus is the size of the independent corpus: every
// goal class has well over 40 releases with at least 100 canary rps.
var DefaultIndependentCorpus = CorpusOptions{Seed: 1, Services: 80, Good: 1000, BadPerKind: 80, Faults: 320}

// GenerateIndependent builds the independent corpus deterministically from
// opt.Seed: releases judged with the same harness as Generate's, from a
// model of services that shares none of its shapes, so that the judge is
// checked on data its defaults were not tuned on. The model:
//
// Services. Canary weight is one of 1, 2, 5, 10, 25 or 50 %. Three
// services in five are busy: their canary traffic is log-uniform in
// 100–2000 rps (the total is that over the weight, up to 200 000 rps);
// the others' total traffic is log-uniform in 0.2–20 000 rps. Traffic
// follows a day curve with the service's own peak hour and amplitude.
//
// Latency. A request takes a fast path, log-logistic (median 2–80 ms,
// shape 2.5–6: a power-law tail), or with probability 0.3–6 % a slow path
// (a retry, a cold cache, a slow dependency call), log-normal with a
// median 4–25 times the fast one. Each arm's tail drifts per window: the
// latencies above the median are stretched in log space by a factor that
// grows from 1 at the median to d at the p99 and beyond, so the stretch
// leaves p50 and moves p99 by d exactly; ln d is normal with a
// service-specific σ, log-uniform in 0.5–30 % (four fifths of its
// variance lasts through a release, a fifth is new each interval), and
// the whole distribution of an arm drifts by a fifth of that. A source gives either raw samples (at
// most 1000 an interval, and every latency figure of the service — the
// history's quantiles too — is computed from them: the p99 of 1000
// samples of such a tail has a spread of its own, 9–30 % for most
// services, often above the drift) or, for three services in ten,
// quantiles only: p50 and p99 over every request of the window (a
// histogram), drawn as the order statistic of that many requests.
//
// Counts. Error, session-interruption and dependency-failure rates are
// per service (errors 0.005–0.2 %, interruptions 0.001–0.015 % of
// sessions of 3–50 requests, dependency failures 0.001–0.03 % of 0.3–5
// calls a request), each overdispersed per arm and window by a log-normal
// factor whose σ is per service (2–60 %). GC pauses are one replica's:
// 4–60 cycles a minute of 0.1–1.5 ms median, plus up to 0.8 pauses a
// minute of 12–100 ms; no healthy pause is over 110 ms. Memory grows at a
// service's mean rate with per-arm noise of σ 0.03–3 MB/min, half of it
// lasting through a release.
//
// Faults. A window is steady or under faults: one of the service's one to
// three game-day scenarios (one or two of networkDelay, podKill,
// partition, splitBrain), or now and then another one, at an intensity in
// 0.05–1. Each arm is hit by intensity × the service's sensitivity (0.2–2)
// × its own log-normal factor (wider for a small arm: few replicas), and
// each fault kind moves the tail, the latency scale, and the error,
// interruption, dependency-failure, GC and memory figures of the arm in
// proportion. History windows and releases record their context; about
// half of each are steady.
//
// History. Each service has A/A windows over the seven days before its
// releases: most every 6 hours (28), one in five fewer than 12, some every
// 2 or 3 hours. Services omit dimensions their sources do not collect
// (memory 35 %, sessions 30 %, GC and dependency calls 25 % each).
//
// Releases. Good releases run the control's build. Bad ones regress the
// canary alone, in the judged window's context: "errors" +0.5 and +1 pp
// (and +0.1 pp, not a goal), "sessions" +1 pp interruptions, "p99-tail"
// ×1.25 and ×1.5 (and ×1.1, not a goal) — the slow path gets slower or
// more frequent, calibrated so that p99 rises by the factor, with the
// fast path rescaled so that the median does not move — "gc" 6 more
// pauses of 150–320 ms an interval, "dependency" +1 pp failures,
// "memory" +8 MB/min (and +2 MB/min, not a goal), "consistency"
// violations from some interval of the step on. A class goes only to
// services that collect its dimension, and every other release of each
// kind to a busy service. Data faults (gap, nan, stale, empty; a quarter
// persistent) hit good releases as in Generate, and only dimensions the
// service collects.
func GenerateIndependent(opt CorpusOptions) *Corpus {
	g := newIndGen(opt)
	r := g.r
	pick := func(need string, busyOnly bool) *indService {
		var from []*indService
		for _, s := range g.svcs {
			if (need == "" || !s.svc.omit[need]) && (!busyOnly || s.busy()) {
				from = append(from, s)
			}
		}
		if len(from) == 0 {
			return nil
		}
		return from[r.IntN(len(from))]
	}
	if len(g.svcs) == 0 {
		return g.c
	}
	for i := 0; i < opt.Good; i++ {
		g.release(pick("", false), nil, nil)
	}
	for _, d := range indDefects() {
		for i := 0; i < opt.BadPerKind; i++ {
			s := pick(d.needs, i%2 == 0)
			if s == nil {
				s = pick(d.needs, false)
			}
			if s == nil {
				break // no service collects the dimension
			}
			g.release(s, &d, nil)
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
		need := ""
		if f.kind == "gap" && len(g.c.Releases)%3 == 2 {
			need = "gc" // the gap is in the GC pauses (see Release.mask)
		}
		s := pick(need, false)
		if s == nil {
			s = pick("", false)
		}
		g.release(s, nil, f)
	}
	return g.c
}

// canaryWeights are the canary shares services run at.
var canaryWeights = []float64{0.01, 0.02, 0.05, 0.10, 0.25, 0.50}

// faultKinds are the kinds of fault a game day injects.
var faultKinds = []string{"networkDelay", "podKill", "partition", "splitBrain"}

// faultEffect is how much one kind of fault moves an arm per unit of hit
// (intensity × sensitivity × the arm's own factor).
type faultEffect struct {
	tail  float64 // ln of the p99 stretch
	scale float64 // ln of the whole latency distribution's scale
	err   float64 // error rate added
	sess  float64 // interruption rate added
	dep   float64 // dependency failure rate added
	gc    float64 // mean extra pauses of 5–80 ms per interval
	mem   float64 // memory growth added, up to, MB/min
}

var faultEffects = map[string]faultEffect{
	"networkDelay": {tail: 0.6, scale: 0.15, err: 0.0005, sess: 0.0005, dep: 0.004},
	"podKill":      {tail: 0.4, scale: 0.05, err: 0.002, sess: 0.003, dep: 0.0005, gc: 2, mem: 1.5},
	"partition":    {tail: 0.5, scale: 0.05, err: 0.004, sess: 0.002, dep: 0.008, mem: 0.3},
	"splitBrain":   {tail: 0.3, scale: 0.02, err: 0.001, sess: 0.004, dep: 0.002, mem: 0.2},
}

// indDefect is a canary-only regression of the independent corpus.
type indDefect struct {
	class, dim, label string
	goal              bool
	needs             string // the dimension the service must collect, "" for always collected
	errAdd, sessAdd   float64
	depAdd, memAdd    float64
	tail              float64 // p99 factor, tail only (0: none)
	gcPauses          int     // extra long pauses per interval
	viol              bool
}

func indDefects() []indDefect {
	return []indDefect{
		{class: "errors", dim: "errors", label: "errors +0.1pp", errAdd: 0.001},
		{class: "errors", dim: "errors", label: "errors +0.5pp", errAdd: 0.005, goal: true},
		{class: "errors", dim: "errors", label: "errors +1pp", errAdd: 0.01, goal: true},
		{class: "sessions", dim: "sessions", label: "sessions +1pp", sessAdd: 0.01, needs: "sessions", goal: true},
		{class: "p99-tail", dim: "p99", label: "p99 x1.1 (tail)", tail: 1.1},
		{class: "p99-tail", dim: "p99", label: "p99 x1.25 (tail)", tail: 1.25, goal: true},
		{class: "p99-tail", dim: "p99", label: "p99 x1.5 (tail)", tail: 1.5, goal: true},
		{class: "gc", dim: "gc", label: "gc +6 pauses 150-320ms", gcPauses: 6, needs: "gc", goal: true},
		{class: "dependency", dim: "dependency", label: "dependency failures +1pp", depAdd: 0.01, needs: "dependency", goal: true},
		{class: "memory", dim: "memory", label: "memory +2MB/min", memAdd: 2, needs: "memory"},
		{class: "memory", dim: "memory", label: "memory +8MB/min", memAdd: 8, needs: "memory", goal: true},
		{class: "consistency", dim: "consistency", label: "consistency violation", viol: true, goal: true},
	}
}

// latencyModel is a service's latency distribution: a log-logistic fast
// path and a log-normal slow path taken by a share of the requests.
type latencyModel struct {
	fastMedian, fastShape float64
	slowShare             float64
	slowMedian, slowSigma float64
}

func (m latencyModel) cdf(x float64) float64 {
	if x <= 0 {
		return 0
	}
	fast := 1 / (1 + math.Pow(x/m.fastMedian, -m.fastShape))
	slow := 0.5 * math.Erfc(-math.Log(x/m.slowMedian)/(m.slowSigma*math.Sqrt2))
	return (1-m.slowShare)*fast + m.slowShare*slow
}

// quantile inverts the mixture's CDF: it lies between the two paths'
// quantiles at the same level.
func (m latencyModel) quantile(u float64) float64 {
	qf := m.fastMedian * math.Pow(u/(1-u), 1/m.fastShape)
	qs := m.slowMedian * math.Exp(m.slowSigma*math.Sqrt2*math.Erfinv(2*u-1))
	return invertCDF(m.cdf, u, math.Min(qf, qs), math.Max(qf, qs))
}

// drawLog draws the log of one request's latency.
func (m latencyModel) drawLog(r *rand.Rand) float64 {
	if r.Float64() < m.slowShare {
		return math.Log(m.slowMedian) + m.slowSigma*r.NormFloat64()
	}
	u := r.Float64()
	for u == 0 {
		u = r.Float64()
	}
	return math.Log(m.fastMedian) + math.Log(u/(1-u))/m.fastShape
}

// keepMedian rescales the fast path so that the mixture's median is q50.
func (m latencyModel) keepMedian(q50 float64) latencyModel {
	slow := 0.5 * math.Erfc(-math.Log(q50/m.slowMedian)/(m.slowSigma*math.Sqrt2))
	f := (0.5 - m.slowShare*slow) / (1 - m.slowShare)
	if f <= 0 || f >= 1 {
		return m
	}
	m.fastMedian = q50 / math.Pow(f/(1-f), 1/m.fastShape)
	return m
}

// invertCDF returns the x in [lo, hi] at which cdf reaches u (bisection in
// log space).
func invertCDF(cdf func(float64) float64, u, lo, hi float64) float64 {
	a, b := math.Log(lo), math.Log(hi)
	for i := 0; i < 50 && b-a > 1e-9; i++ {
		mid := (a + b) / 2
		if cdf(math.Exp(mid)) < u {
			a = mid
		} else {
			b = mid
		}
	}
	return math.Exp((a + b) / 2)
}

// stretch is an arm's drift in one interval: log latencies above a (the
// steady median's log) are pushed up by lnd·(l−a)/(b−a), reaching lnd at
// b (the steady p99's log) and beyond; then everything shifts by shift.
type stretch struct{ a, b, lnd, shift float64 }

func (t stretch) apply(x float64) float64 { return math.Exp(t.applyLog(math.Log(x))) }

// applyLog is apply in log space.
func (t stretch) applyLog(l float64) float64 {
	w := math.Min(math.Max((l-t.a)/(t.b-t.a), 0), 1)
	return l + t.lnd*w + t.shift
}

func (t stretch) invert(y float64) float64 {
	v := math.Log(y) - t.shift
	switch {
	case v <= t.a:
		return math.Exp(v)
	case v >= t.b+t.lnd:
		return math.Exp(v - t.lnd)
	}
	k := t.lnd / (t.b - t.a)
	return math.Exp((v + t.a*k) / (1 + k))
}

// latComp is one arm's latency distribution in one interval, weighted by
// its requests: a window's population is the mixture of its intervals'.
type latComp struct {
	m latencyModel
	t stretch
	n float64
}

func (c latComp) cdf(y float64) float64      { return c.m.cdf(c.t.invert(y)) }
func (c latComp) quantile(u float64) float64 { return c.t.apply(c.m.quantile(u)) }

// mixtureQuantile is the level-u quantile of the request-weighted mixture.
func mixtureQuantile(cs []latComp, u float64) float64 {
	if len(cs) == 1 {
		return cs[0].quantile(u)
	}
	lo, hi, n := math.Inf(1), 0.0, 0.0
	for _, c := range cs {
		q := c.quantile(u)
		lo, hi, n = math.Min(lo, q), math.Max(hi, q), n+c.n
	}
	if n <= 0 || hi <= lo {
		return lo
	}
	return invertCDF(func(y float64) float64 {
		s := 0.0
		for _, c := range cs {
			s += c.n * c.cdf(y)
		}
		return s / n
	}, u, lo, hi)
}

// orderLevel is the level at which the level-u empirical quantile of n
// requests falls: the order statistic's distribution, to the normal
// approximation.
func orderLevel(r *rand.Rand, u, n float64) float64 {
	v := u + math.Sqrt(u*(1-u)/n)*r.NormFloat64()
	return math.Min(math.Max(v, 1/(n+1)), n/(n+1))
}

// indService is one service of the independent model.
type indService struct {
	svc                       *service
	canaryRPS                 float64
	lat                       latencyModel
	a, b                      float64 // logs of the steady p50 and p99
	tailSigma                 float64
	loadAmp, peak, loadLat    float64
	loadErr                   float64
	errBase, errDisp          float64
	reqPerSession             float64
	sessBase, sessDisp        float64
	callsPerReq               float64
	depBase, depDisp          float64
	gcRate, gcMedian, gcSigma float64
	gcLong                    float64
	memMean, memSigma         float64
	sens                      float64
	scenarios                 [][]string
}

func (s *indService) busy() bool { return s.canaryRPS >= 100 }

// logU draws log-uniformly from [lo, hi].
func logU(r *rand.Rand, lo, hi float64) float64 {
	return lo * math.Exp(r.Float64()*math.Log(hi/lo))
}

func uniform(r *rand.Rand, lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }

func randomScenario(r *rand.Rand) []string {
	a := faultKinds[r.IntN(len(faultKinds))]
	if r.IntN(5) < 3 {
		return []string{a}
	}
	b := faultKinds[r.IntN(len(faultKinds))]
	return []string{a, b} // NewContext drops a repeat
}

func newIndService(r *rand.Rand, id int) *indService {
	s := &indService{svc: &service{id: id, omit: map[string]bool{}}}
	s.svc.weight = canaryWeights[r.IntN(len(canaryWeights))]
	if id%5 < 3 {
		s.canaryRPS = logU(r, 100, 2000)
		s.svc.rps = s.canaryRPS / s.svc.weight
	} else {
		s.svc.rps = logU(r, 0.2, 20000)
		s.canaryRPS = s.svc.rps * s.svc.weight
	}
	s.lat = latencyModel{fastMedian: logU(r, 2, 80), fastShape: uniform(r, 2.5, 6), slowShare: logU(r, 0.003, 0.06),
		slowSigma: uniform(r, 0.25, 0.6)}
	s.lat.slowMedian = s.lat.fastMedian * logU(r, 4, 25)
	s.a, s.b = math.Log(s.lat.quantile(0.5)), math.Log(s.lat.quantile(0.99))
	s.tailSigma = logU(r, 0.005, 0.30)
	s.loadAmp, s.peak, s.loadLat, s.loadErr = uniform(r, 0.1, 0.6), uniform(r, 0, 24), uniform(r, 0, 0.3), uniform(r, 0, 1)
	s.errBase, s.errDisp = logU(r, 5e-5, 2e-3), logU(r, 0.02, 0.6)
	s.reqPerSession, s.sessBase, s.sessDisp = logU(r, 3, 50), logU(r, 1e-5, 1.5e-4), logU(r, 0.02, 0.6)
	s.callsPerReq, s.depBase, s.depDisp = logU(r, 0.3, 5), logU(r, 1e-5, 3e-4), logU(r, 0.02, 0.6)
	s.gcRate, s.gcMedian, s.gcSigma, s.gcLong = logU(r, 4, 60), logU(r, 0.1, 1.5), uniform(r, 0.4, 0.8), uniform(r, 0, 0.8)
	s.memMean, s.memSigma = uniform(r, -0.1, 0.6), logU(r, 0.03, 3)
	s.sens = logU(r, 0.2, 2)
	for n := 1 + r.IntN(3); n > 0; n-- {
		s.scenarios = append(s.scenarios, randomScenario(r))
	}
	for _, o := range []struct {
		dim   string
		share float64
	}{{"memory", 0.35}, {"gc", 0.25}, {"sessions", 0.30}, {"dependency", 0.25}} {
		if r.Float64() < o.share {
			s.svc.omit[o.dim] = true
		}
	}
	s.svc.quantilesOnly = r.Float64() < 0.3
	return s
}

// historyWindows is how many A/A windows the service's recorder kept over
// the seven days.
func historyWindows(r *rand.Rand) int {
	switch u := r.Float64(); {
	case u < 0.2:
		return 4 + r.IntN(8) // thin
	case u < 0.85:
		return 28 // every 6 hours
	case u < 0.93:
		return 56
	}
	return 84
}

// drawContext draws what a window is observed under.
func (s *indService) drawContext(r *rand.Rand, steady float64) *decision.Context {
	if r.Float64() < steady {
		return decision.NewContext(0)
	}
	kinds := s.scenarios[r.IntN(len(s.scenarios))]
	if r.IntN(100) < 15 {
		kinds = randomScenario(r)
	}
	return decision.NewContext(math.Round(uniform(r, 0.05, 1)*20)/20, kinds...)
}

// load is the service's traffic level at a time, relative to its mean.
func (s *indService) load(r *rand.Rand, at time.Time) float64 {
	h := float64(at.UTC().Hour()) + float64(at.UTC().Minute())/60
	return (1 + s.loadAmp*math.Cos(2*math.Pi*(h-s.peak)/24)) * math.Exp(0.05*r.NormFloat64())
}

// armDraw is what lasts for one arm through a run of intervals (a release,
// or one history window): standard normal parts of its drifts and how
// hard the faults hit it.
type armDraw struct {
	tail, scale, err, sess, dep, mem float64
	hit                              float64
}

func (s *indService) drawArm(r *rand.Rand, ctx *decision.Context, share float64) armDraw {
	p := armDraw{tail: r.NormFloat64(), scale: r.NormFloat64(), err: r.NormFloat64(), sess: r.NormFloat64(),
		dep: r.NormFloat64(), mem: r.NormFloat64()}
	tau := 0.3
	if share < 0.1 {
		tau = 0.6 // a small arm has few replicas: a fault hits them or not
	}
	if !ctx.Steady() {
		p.hit = ctx.Intensity * s.sens * math.Exp(tau*r.NormFloat64()-tau*tau/2)
	}
	return p
}

// lasting mixes a lasting part p with a new one: four fifths of the
// variance last.
func lasting(r *rand.Rand, p float64) float64 { return 0.8944*p + 0.4472*r.NormFloat64() }

// overdispersed is a log-normal factor of mean 1.
func overdispersed(r *rand.Rand, sigma, p float64) float64 {
	return math.Exp(sigma*lasting(r, p) - sigma*sigma/2)
}

// interval simulates one arm carrying share of the traffic for one
// interval, with latency model lat; it returns the window, its latency
// distribution and its latency samples sorted. A history window (hist)
// has no 10 s points, and no samples when its quantiles are over every
// request.
func (s *indService) interval(r *rand.Rand, load, share float64, ctx *decision.Context, p armDraw, d *indDefect, lat latencyModel, hist bool) (armWindow, latComp, []float64) {
	var e faultEffect
	if p.hit > 0 {
		h := p.hit * math.Exp(0.2*r.NormFloat64()-0.02)
		for _, k := range ctx.Faults {
			f := faultEffects[k]
			e.tail += f.tail * h
			e.scale += f.scale * h
			e.err += f.err * h
			e.sess += f.sess * h
			e.dep += f.dep * h
			e.gc += f.gc * h
			e.mem += f.mem * h * r.Float64()
		}
	}
	if d == nil {
		d = &indDefect{}
	}
	var w armWindow
	w.requests = poisson(r, s.svc.rps*share*load*Interval.Seconds())

	lnd := math.Max(s.tailSigma*lasting(r, p.tail)+e.tail, -0.7*(s.b-s.a))
	shift := 0.2*s.tailSigma*lasting(r, p.scale) + s.loadLat*(load-1) + e.scale
	comp := latComp{m: lat, t: stretch{a: s.a, b: s.b, lnd: lnd, shift: shift}, n: w.requests}
	population := s.svc.quantilesOnly && w.requests > maxSamples
	if !hist || !population {
		// A history window keeps its quantiles only.
		w.latency = make([]float64, int(math.Min(w.requests, maxSamples)))
		for i := range w.latency {
			w.latency[i] = math.Exp(comp.t.applyLog(lat.drawLog(r)))
		}
	}
	sorted := append([]float64(nil), w.latency...)
	sort.Float64s(sorted)
	if population {
		w.p50 = comp.quantile(orderLevel(r, 0.5, w.requests))
		w.p99 = comp.quantile(orderLevel(r, 0.99, w.requests))
	} else {
		w.p50, w.p99 = sortedQuantile(sorted, 0.5), sortedQuantile(sorted, 0.99)
	}

	pe := s.errBase*math.Max(0.1, 1+s.loadErr*(load-1))*overdispersed(r, s.errDisp, p.err) + e.err + d.errAdd
	w.errors = binomial(r, w.requests, math.Min(pe, 1))

	w.sessions = poisson(r, w.requests/s.reqPerSession)
	ps := s.sessBase*overdispersed(r, s.sessDisp, p.sess) + e.sess + d.sessAdd
	w.interrupts = binomial(r, w.sessions, math.Min(ps, 1))

	w.depCalls = poisson(r, w.requests*s.callsPerReq)
	pd := s.depBase*overdispersed(r, s.depDisp, p.dep) + e.dep + d.depAdd
	w.depFails = binomial(r, w.depCalls, math.Min(pd, 1))

	cycles := int(poisson(r, s.gcRate*(0.7+0.3*load)))
	for i := 0; i < cycles; i++ {
		x := s.gcMedian * math.Exp(s.gcSigma*r.NormFloat64())
		for x > 110 {
			x = s.gcMedian * math.Exp(s.gcSigma*r.NormFloat64())
		}
		w.gc = append(w.gc, x)
	}
	for i := int(poisson(r, s.gcLong)); i > 0; i-- {
		w.gc = append(w.gc, uniform(r, 12, 100))
	}
	for i := int(poisson(r, e.gc)); i > 0; i-- {
		w.gc = append(w.gc, uniform(r, 5, 80))
	}
	for i := 0; i < d.gcPauses; i++ {
		w.gc = append(w.gc, uniform(r, 150, 320))
	}

	w.memGrowth = s.memMean + s.memSigma*(0.7071*p.mem+0.7071*r.NormFloat64()) + e.mem + d.memAdd

	if hist {
		return w, comp, sorted
	}
	// 10 s points for the time-series judges, from the same source.
	w.chunkErr = make([]float64, chunks)
	w.chunkP99 = make([]float64, chunks)
	w.chunkGCLong = make([]float64, chunks)
	w.chunkSess = make([]float64, chunks)
	for k := 0; k < chunks; k++ {
		lo, hi := k*len(w.latency)/chunks, (k+1)*len(w.latency)/chunks
		switch {
		case population:
			w.chunkP99[k] = comp.quantile(orderLevel(r, 0.99, w.requests/chunks))
		case hi > lo:
			w.chunkP99[k] = q99(w.latency[lo:hi])
		default:
			w.chunkP99[k] = math.NaN()
		}
	}
	spreadCounts(r, w.errors, w.requests, w.chunkErr)
	spreadCounts(r, w.interrupts, w.sessions, w.chunkSess)
	for _, g := range w.gc {
		if g > 10 {
			w.chunkGCLong[r.IntN(chunks)]++
		}
	}
	return w, comp, sorted
}

// spreadCounts is spread, with many events split by binomial draws.
func spreadCounts(r *rand.Rand, x, n float64, out []float64) {
	if x <= 2000 {
		spread(r, x, n, out)
		return
	}
	per := n / float64(len(out))
	left := x
	for k := range out {
		c := left
		if k < len(out)-1 {
			c = binomial(r, left, 1/float64(len(out)-k))
		}
		left -= c
		out[k] = c / per
	}
}

// armRun is one arm's cumulative window through a release: its
// intervals' latency distributions and its latency samples sorted.
type armRun struct {
	cum    armWindow
	comps  []latComp
	sorted []float64
}

// accumulate adds interval w (latency distribution comp, samples sorted)
// to the run: add for every field, the quantiles from the merged sorted
// samples (the same as add's), or for a quantile source over every
// request of the window.
func (s *indService) accumulate(r *rand.Rand, run *armRun, w armWindow, comp latComp, sorted []float64) armWindow {
	run.comps = append(run.comps, comp)
	run.sorted = mergeSorted(run.sorted, sorted)
	prev, lw := run.cum, w
	prev.latency, lw.latency = nil, nil
	out := prev.add(lw)
	out.latency = append(append([]float64(nil), run.cum.latency...), w.latency...)
	if s.svc.quantilesOnly && out.requests > float64(len(out.latency)) {
		out.p50 = mixtureQuantile(run.comps, orderLevel(r, 0.5, out.requests))
		out.p99 = mixtureQuantile(run.comps, orderLevel(r, 0.99, out.requests))
	} else {
		out.p50, out.p99 = sortedQuantile(run.sorted, 0.5), sortedQuantile(run.sorted, 0.99)
	}
	run.cum = out
	return out
}

// sortedQuantile is quantileOf of already sorted samples.
func sortedQuantile(s []float64, q float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func mergeSorted(a, b []float64) []float64 {
	out := make([]float64, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if b[j] < a[i] {
			out = append(out, b[j])
			j++
		} else {
			out = append(out, a[i])
			i++
		}
	}
	return append(append(out, a[i:]...), b[j:]...)
}

// tailRegression is the service's latency model with the slow path slower
// (slower) or more frequent, calibrated so that p99 rises by factor, with
// the fast path rescaled to keep the median.
func (s *indService) tailRegression(factor float64, slower bool) latencyModel {
	m := s.lat
	q50, target := math.Exp(s.a), factor*math.Exp(s.b)
	slowerBy := func(base latencyModel) func(float64) latencyModel {
		return func(k float64) latencyModel {
			x := base
			x.slowMedian *= k
			return x.keepMedian(q50)
		}
	}
	oftener := func(k float64) latencyModel {
		x := m
		x.slowShare = m.slowShare + k*(0.15-m.slowShare)
		return x.keepMedian(q50)
	}
	solve := func(f func(float64) latencyModel, lo, hi float64) (latencyModel, bool) {
		if f(hi).quantile(0.99) < target {
			return m, false
		}
		for i := 0; i < 50; i++ {
			mid := (lo + hi) / 2
			if f(mid).quantile(0.99) < target {
				lo = mid
			} else {
				hi = mid
			}
		}
		x := f(hi)
		return x, math.Abs(x.quantile(0.99)/target-1) < 0.005
	}
	if !slower {
		if x, ok := solve(oftener, 0, 1); ok {
			return x
		}
	}
	if x, ok := solve(slowerBy(m), 1, 100); ok {
		return x
	}
	if x, ok := solve(oftener, 0, 1); ok {
		return x
	}
	base := m
	base.slowShare = math.Max(m.slowShare, 0.02)
	x, _ := solve(slowerBy(base), 1, 100)
	return x
}

// record draws the service's A/A history: windows evenly spaced over the
// seven days before t0+7d, each one interval of both arms running the same
// build in its own context.
func (s *indService) record(r *rand.Rand) {
	n := historyWindows(r)
	step := 7 * 24 * time.Hour / time.Duration(n)
	off := time.Duration(r.Float64() * float64(step)).Truncate(time.Minute)
	for k := 0; k < n; k++ {
		at := t0.Add(off + time.Duration(k)*step)
		ctx := s.drawContext(r, 0.5)
		load := s.load(r, at)
		cw, _, _ := s.interval(r, load, s.svc.weight, ctx, s.drawArm(r, ctx, s.svc.weight), nil, s.lat, true)
		kw, _, _ := s.interval(r, load, 1-s.svc.weight, ctx, s.drawArm(r, ctx, 1-s.svc.weight), nil, s.lat, true)
		s.svc.history = append(s.svc.history, histWindow{at: at, canary: cw.summary(), control: kw.summary(), ctx: ctx})
	}
}

// indGen holds the generator's state.
type indGen struct {
	r    *rand.Rand
	c    *Corpus
	svcs []*indService
}

// newIndGen draws the services and their A/A history.
func newIndGen(opt CorpusOptions) *indGen {
	r := rand.New(rand.NewPCG(opt.Seed^0x5bd1e9955bd1e995, opt.Seed+0x2545f4914f6cdd1d))
	g := &indGen{r: r, c: &Corpus{Name: "independent", Seed: opt.Seed}}
	for i := 0; i < opt.Services; i++ {
		s := newIndService(r, i)
		s.record(r)
		g.svcs = append(g.svcs, s)
		g.c.services = append(g.c.services, s.svc)
	}
	return g
}

// release generates one release of service s with defect d or data fault f
// (both nil: a good release) and appends it to the corpus.
func (g *indGen) release(s *indService, d *indDefect, f *dataFault) *Release {
	r := g.r
	w := s.svc.weight
	rel := &Release{ID: len(g.c.Releases), Service: s.svc.id, svc: s.svc, TotalRPS: s.svc.rps, Weight: w,
		CanaryRPS: s.svc.rps * w, Label: "good",
		At: t0.Add(7*24*time.Hour + time.Duration(r.Float64()*float64(24*time.Hour))).Truncate(time.Minute)}
	if d != nil {
		rel.Bad, rel.Defect, rel.Label, rel.Class, rel.Goal = true, d.dim, d.label, d.class, d.goal
	}
	rel.TailSpread = s.tailSigma
	if f != nil {
		rel.Fault, rel.Persist, rel.fault = f.kind, f.persistent, f
		rel.Label = "good, data fault: " + f.kind
		if f.persistent {
			rel.Label += " (persistent)"
		}
	}
	ctx := s.drawContext(r, 0.5)
	rel.Context = ctx
	cp, kp := s.drawArm(r, ctx, w), s.drawArm(r, ctx, 1-w)
	lat := s.lat
	if d != nil && d.tail > 0 {
		lat = s.tailRegression(d.tail, r.IntN(2) == 0)
	}
	if d != nil && d.goal {
		rel.SNR = s.oracleSNR(d, ctx, w, rel.At, g.c.Seed<<20^uint64(rel.ID))
	}
	violAt := 1 + r.IntN(StepLooks)
	var crun, krun armRun
	for l := 1; l <= MaxLooks; l++ {
		load := s.load(r, rel.At.Add(time.Duration(l)*Interval))
		cw, ccomp, csorted := s.interval(r, load, w, ctx, cp, d, lat, false)
		kw, kcomp, ksorted := s.interval(r, load, 1-w, ctx, kp, nil, s.lat, false)
		if d != nil && d.viol && l >= violAt {
			cw.violations = poisson(r, 1)
			if l == violAt {
				cw.violations++ // first seen in this interval
			}
		}
		rel.looks = append(rel.looks, look{
			canary: s.accumulate(r, &crun, cw, ccomp, csorted), control: s.accumulate(r, &krun, kw, kcomp, ksorted),
			lastCanary: cw, lastControl: kw})
	}
	g.c.Releases = append(g.c.Releases, rel)
	return rel
}

// oracleReplicates is how many A/A runs the oracle draws per release.
const oracleReplicates = 40

// DetectableSNR is the signal-to-noise ratio from which a regression
// counts as detectable: an oracle that knew the A/A noise σ of the
// statistic exactly, testing one-sided at k ≈ 3.1 (α spent at the step's
// last look), would block an effect of 5σ with power ≈ 0.95.
const DetectableSNR = 5

// oracleSNR is the regression's effect over the A/A noise of the statistic
// its class moves, for the judged window at the end of the step
// (StepLooks intervals): the standard deviation of the canary−control
// difference of that statistic over oracleReplicates A/A runs of the same
// service, context, weight and time, drawn from the generator's own model
// with a random stream of their own (the corpus does not change). +Inf for
// classes that healthy arms never show (GC pauses over 110 ms,
// consistency violations); 0 for a good release.
func (s *indService) oracleSNR(d *indDefect, ctx *decision.Context, w float64, at time.Time, seed uint64) float64 {
	if d == nil {
		return 0
	}
	if d.gcPauses > 0 || d.viol {
		return math.Inf(1)
	}
	var stat func(c, k armWindow) float64
	var effect float64
	rate := func(x, n float64) float64 {
		if n <= 0 {
			return 0
		}
		return x / n
	}
	switch {
	case d.tail > 0:
		effect = math.Log(d.tail)
		stat = func(c, k armWindow) float64 { return math.Log(c.p99) - math.Log(k.p99) }
	case d.errAdd > 0:
		effect = d.errAdd
		stat = func(c, k armWindow) float64 { return rate(c.errors, c.requests) - rate(k.errors, k.requests) }
	case d.sessAdd > 0:
		effect = d.sessAdd
		stat = func(c, k armWindow) float64 { return rate(c.interrupts, c.sessions) - rate(k.interrupts, k.sessions) }
	case d.depAdd > 0:
		effect = d.depAdd
		stat = func(c, k armWindow) float64 { return rate(c.depFails, c.depCalls) - rate(k.depFails, k.depCalls) }
	case d.memAdd > 0:
		effect = d.memAdd
		stat = func(c, k armWindow) float64 { return c.memGrowth - k.memGrowth }
	default:
		return 0
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var diffs []float64
	for rep := 0; rep < oracleReplicates; rep++ {
		cp, kp := s.drawArm(r, ctx, w), s.drawArm(r, ctx, 1-w)
		var crun, krun armRun
		var c, k armWindow
		for l := 1; l <= StepLooks; l++ {
			load := s.load(r, at.Add(time.Duration(l)*Interval))
			cw, ccomp, csorted := s.interval(r, load, w, ctx, cp, nil, s.lat, false)
			kw, kcomp, ksorted := s.interval(r, load, 1-w, ctx, kp, nil, s.lat, false)
			c, k = s.accumulate(r, &crun, cw, ccomp, csorted), s.accumulate(r, &krun, kw, kcomp, ksorted)
		}
		if v := stat(c, k); !math.IsNaN(v) && !math.IsInf(v, 0) {
			diffs = append(diffs, v)
		}
	}
	if len(diffs) < 2 {
		return 0
	}
	sd := sampleSD(diffs)
	if sd == 0 {
		return math.Inf(1)
	}
	return effect / sd
}
