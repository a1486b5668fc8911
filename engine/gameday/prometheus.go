package gameday

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/probe/availability"
	"github.com/chaosgate/chaosgate/engine/probe/metrics"
	"github.com/chaosgate/chaosgate/engine/probe/promql"
	"github.com/chaosgate/chaosgate/engine/target/local"
)

// Prometheus makes a game day take each arm's process metrics — HTTP
// requests and errors, GC pauses, dependency calls and failures, memory
// growth — from PromQL (engine/probe/promql) instead of the embedded
// scraper. Latency and sessions still come from the load driver, and
// consistency from the checker. Every field keeps its state: a query with
// no data is missing, NaN is nan, a failed query is a query error, each
// with its resolved query; never a zero.
type Prometheus struct {
	// Address is the base URL of a Prometheus that scrapes the run's
	// nodes with the labels Selectors match. Empty: the run starts its own
	// (Debian's prometheus binary) scraping every node of every arm each
	// second, and stops it when the run ends.
	Address string
	// Binary is the prometheus executable for a started server (empty:
	// PATH, then /usr/bin).
	Binary string
	// Queries are the PromQL templates (nil: the reference aggregator's).
	Queries *promql.Queries
	// Selectors are each arm's label matchers (missing: DefaultSelector).
	Selectors map[engine.Arm]string
}

// DefaultSelector is the label matcher chaosgate expects for an arm:
// arm="canary", arm="control" or arm="calibration". The nodes' targets,
// with these labels, are written to RUNDIR/prometheus/targets.json in
// Prometheus' file_sd format.
func DefaultSelector(arm engine.Arm) string { return fmt.Sprintf("arm=%q", arm.String()) }

// MetricsAgreement is one judged window of one arm as the embedded
// scraper and PromQL saw it (the run writes one JSON line per arm and
// window to RUNDIR/metrics-agreement.jsonl when PromQL is the source).
type MetricsAgreement struct {
	Weight   int                `json:"weight"`
	Arm      string             `json:"arm"`
	At       time.Time          `json:"at"`
	Embedded map[string]float64 `json:"embedded"`
	PromQL   map[string]float64 `json:"promql"`
	// Notes are PromQL's missing, nan and query_error fields.
	Notes []string `json:"notes,omitempty"`
}

// minPromWindow is the shortest range queried: three scrape intervals of
// the Prometheus a run starts (every second). A user's Prometheus that
// scrapes less often gets three of its own intervals (promShortestWindow).
const minPromWindow = 3 * time.Second

// promShortestWindow is the shortest range the run queries: three of the
// longest scrape interval of any arm's targets, as the server reports it,
// so that a range holds two samples even with one scrape late or failed —
// at least minPromWindow. A steady span shorter than that is queried over
// that much (window_s says so). When the interval cannot be read the run
// says so and keeps minPromWindow.
func (r *Run) promShortestWindow(ctx context.Context, address string) time.Duration {
	var longest time.Duration
	for _, arm := range r.loadArms {
		d, err := r.prom.ScrapeInterval(ctx, r.selector(arm))
		if err != nil {
			r.emit(engine.EventInfo, "setup", 0, fmt.Sprintf("WARNING: %s: %v; steady spans shorter than %v are queried over %v", address, err, minPromWindow, minPromWindow))
			return minPromWindow
		}
		longest = max(longest, d)
	}
	w := max(3*longest, minPromWindow)
	r.emit(engine.EventInfo, "setup", 0, fmt.Sprintf("metrics from PromQL: the arms' targets are scraped every %v; a steady span shorter than %v is queried over %v", longest, w, w))
	return w
}

// PromSelectors is implemented by a target that knows how a Prometheus
// scraping it labels each arm's series (the Kubernetes target: namespace
// and pod, as kubernetes_sd_configs relabelled by deploy/prometheus give
// them).
type PromSelectors interface {
	PromSelector(arm engine.Arm) string
}

func (r *Run) selector(arm engine.Arm) string {
	if s := r.cfg.Prometheus.Selectors[arm]; s != "" {
		return s
	}
	if ps, ok := r.target.(PromSelectors); ok && r.cfg.Prometheus.Address != "" {
		return ps.PromSelector(arm)
	}
	return DefaultSelector(arm)
}

// setupPrometheus writes the scrape targets, starts a Prometheus when no
// address is given, and waits until every arm has been scraped.
func (r *Run) setupPrometheus(ctx context.Context) error {
	pm := r.cfg.Prometheus
	var targets []local.ScrapeTarget
	for _, arm := range r.loadArms {
		for node, addr := range r.target.DirectAddrs(arm) {
			targets = append(targets, local.ScrapeTarget{Arm: arm.String(), Node: node, Addr: addr})
		}
	}
	pdir := filepath.Join(r.dir, "prometheus")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		return engine.E(engine.KindUnavailable, "prometheus", err)
	}
	sd, err := local.FileSD(targets)
	if err != nil {
		return engine.E(engine.KindInternal, "prometheus", err)
	}
	sdPath := filepath.Join(pdir, "targets.json")
	if err := os.WriteFile(sdPath, sd, 0o644); err != nil {
		return engine.E(engine.KindUnavailable, "prometheus", err)
	}
	address := pm.Address
	if address == "" {
		srv, err := local.StartPrometheus(ctx, local.PrometheusConfig{Binary: pm.Binary, Dir: pdir, Targets: targets, Interval: time.Second})
		if err != nil {
			return err
		}
		r.promSrv = srv
		if r.journal != nil {
			if err := r.journal.Spawned(srv.Proc, "prometheus "+srv.URL); err != nil {
				return err
			}
		}
		address = srv.URL
		r.emit(engine.EventInfo, "setup", 0, fmt.Sprintf("metrics from PromQL: started Prometheus (pid %d) on %s scraping %d nodes every 1s (config %s)",
			srv.Proc.Pid, srv.URL, len(targets), filepath.Join(pdir, "prometheus.yml")))
	} else {
		var sels []string
		for _, arm := range r.loadArms {
			sels = append(sels, arm.String()+" {"+r.selector(arm)+"}")
		}
		r.emit(engine.EventInfo, "setup", 0, fmt.Sprintf("metrics from PromQL at %s; selectors: %s; the nodes to scrape, with those labels: %s (file_sd_configs)",
			address, strings.Join(sels, ", "), sdPath))
	}
	src, err := promql.New(address, pm.Queries)
	if err != nil {
		return engine.E(engine.KindInvalid, "prometheus", err)
	}
	r.prom = src
	if err := src.Ping(ctx); err != nil {
		return engine.E(engine.KindUnavailable, "prometheus", fmt.Errorf("%s: %w", address, err))
	}
	// Wait until every arm has been scraped, so that the first window has
	// data: at most 30 s.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting []string
		for _, arm := range r.loadArms {
			res := src.Arm(ctx, arm.String(), r.selector(arm), 10*time.Second, time.Now())
			if res.Arm.CollectedAt.IsZero() {
				waiting = append(waiting, arm.String())
			}
		}
		if len(waiting) == 0 {
			r.promMinWindow = r.promShortestWindow(ctx, address)
			return nil
		}
		if ctx.Err() != nil {
			return engine.E(engine.KindCanceled, "prometheus", fmt.Errorf("%w: %v", engine.ErrInterrupted, context.Cause(ctx)))
		}
		if time.Now().After(deadline) {
			if r.promSrv != nil {
				return engine.E(engine.KindUnavailable, "prometheus", fmt.Errorf("no sample of %s within 30 s\n%s", strings.Join(waiting, ", "), r.promSrv.Log()))
			}
			r.emit(engine.EventInfo, "setup", 0, fmt.Sprintf("WARNING: %s has no data for %s (the judge holds on missing data): check the selectors and that it scrapes the targets in %s",
				address, strings.Join(waiting, ", "), sdPath))
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (r *Run) stopPrometheus() {
	if r.prom != nil {
		r.prom.Close()
	}
	if r.promSrv != nil {
		r.promSrv.Stop()
		if r.journal != nil {
			r.journal.Exited(r.promSrv.Proc)
		}
		r.promSrv = nil
	}
}

// promArm replaces the arm's process metrics with PromQL's: the steady
// spans summed (counts) or joined (GC pauses), memory growth since the
// arms were ready (growthSpan), as the embedded scraper's are built. It records both views
// in the run's agreement file.
func (r *Run) promArm(ctx context.Context, weight int, arm engine.Arm, steady []availability.Span, step availability.Span, a *decision.ArmInput) {
	emb := *a
	sel := r.selector(arm)
	var parts []decision.ArmInput
	var notes []string
	var queried []metrics.Span
	for _, s := range steady {
		// A range needs two samples: a steady span shorter than three
		// scrape intervals (the one before a step's first fault may last
		// a second) is queried over three intervals ending where it ends
		// (promShortestWindow),
		// as the embedded scraper counts the scrape before a span too.
		// window_s says how long the queried windows were.
		w := max(s.End.Sub(s.Start), r.promMinWindow, minPromWindow).Round(time.Millisecond)
		queried = append(queried, metrics.Span{Start: s.End.Add(-w), End: s.End})
		res := r.prom.Arm(ctx, arm.String(), sel, w, s.End)
		parts = append(parts, res.Arm)
		notes = append(notes, res.Notes...)
	}
	pick := func(f func(decision.ArmInput) decision.Value) decision.Value {
		vs := make([]decision.Value, len(parts))
		for i, p := range parts {
			vs[i] = f(p)
		}
		return sumValues(vs)
	}
	a.Requests = pick(func(x decision.ArmInput) decision.Value { return x.Requests })
	a.Errors = pick(func(x decision.ArmInput) decision.Value { return x.Errors })
	a.DependencyCalls = pick(func(x decision.ArmInput) decision.Value { return x.DependencyCalls })
	a.DependencyFailures = pick(func(x decision.ArmInput) decision.Value { return x.DependencyFailures })
	a.WindowS = pick(func(x decision.ArmInput) decision.Value { return x.WindowS })
	a.GCPausesMS = joinSamples(parts)
	growth := r.growthSpan(step.End)
	whole := r.prom.Arm(ctx, arm.String(), sel, growth.End.Sub(growth.Start), step.End)
	a.MemoryGrowthMBPerMin = whole.Arm.MemoryGrowthMBPerMin
	if whole.Arm.MemoryGrowthMBPerMin.State != decision.Present {
		notes = append(notes, whole.Notes...)
	}
	if !whole.Arm.CollectedAt.IsZero() {
		a.CollectedAt = whole.Arm.CollectedAt
	}
	// The embedded scraper still runs: its view of the same time ranges,
	// for the agreement record.
	if mw, err := r.mets.Window(arm, queried...); err == nil {
		emb.Requests, emb.Errors = decision.Num(mw.HTTPRequests), decision.Num(mw.HTTP5xx-mw.HTTP503)
		emb.DependencyCalls, emb.DependencyFailures = decision.Num(mw.DependencyCalls), decision.Num(mw.DependencyFailures)
		emb.GCPausesMS = decision.Series(append([]float64{}, mw.GCPausesMS...))
	}
	if w, err := r.mets.Window(arm, growth); err == nil && w.HasMemoryGrowth {
		emb.MemoryGrowthMBPerMin = decision.Num(w.MemoryGrowthMBPerMin)
	}
	rec := MetricsAgreement{Weight: weight, Arm: arm.String(), At: step.End.UTC(), Embedded: agreementFields(emb), PromQL: agreementFields(*a), Notes: notes}
	r.writeAgreement(rec)
	if arm != engine.ArmCalibration {
		var diffs []string
		for _, k := range []string{"requests", "errors", "gc_pauses", "gc_pause_total_ms", "dependency_calls", "dependency_failures", "memory_growth_mb_per_min"} {
			e, eok := rec.Embedded[k]
			p, pok := rec.PromQL[k]
			switch {
			case eok && pok:
				diffs = append(diffs, fmt.Sprintf("%s %.4g/%.4g", k, p, e))
			case eok:
				diffs = append(diffs, fmt.Sprintf("%s none/%.4g", k, e))
			}
		}
		r.emit(engine.EventInfo, "judge", weight, fmt.Sprintf("  %s metrics, PromQL/embedded: %s", arm, strings.Join(diffs, ", ")))
		for _, n := range notes {
			r.emit(engine.EventInfo, "judge", weight, fmt.Sprintf("  %s PromQL: %s", arm, n))
		}
	}
}

// sumValues adds counts over spans; a span that is not present makes the
// sum not present, keeping the worst state (query error, then NaN, then
// missing) and its explanation.
func sumValues(vs []decision.Value) decision.Value {
	if len(vs) == 0 {
		return decision.Value{}
	}
	var worst *decision.Value
	rank := map[decision.State]int{decision.Missing: 1, decision.NaN: 2, decision.QueryError: 3}
	sum := 0.0
	for i := range vs {
		v := vs[i]
		if v.State != decision.Present {
			if worst == nil || rank[v.State] > rank[worst.State] {
				worst = &vs[i]
			}
			continue
		}
		sum += v.V
	}
	if worst != nil {
		return *worst
	}
	return decision.Num(sum)
}

// joinSamples joins the spans' GC pauses, with sumValues' rule for spans
// without data.
func joinSamples(parts []decision.ArmInput) decision.Samples {
	var out []float64
	vs := make([]decision.Value, len(parts))
	for i, p := range parts {
		vs[i] = decision.Value{State: p.GCPausesMS.State, Err: p.GCPausesMS.Err}
		out = append(out, p.GCPausesMS.V...)
	}
	if v := sumValues(vs); v.State != decision.Present {
		return decision.Samples{State: v.State, Err: v.Err}
	}
	sort.Float64s(out)
	return decision.Series(append([]float64{}, out...))
}

// agreementFields names an arm's process metrics that are present.
func agreementFields(a decision.ArmInput) map[string]float64 {
	m := map[string]float64{}
	put := func(k string, v decision.Value) {
		if v.State == decision.Present {
			m[k] = v.V
		}
	}
	put("requests", a.Requests)
	put("errors", a.Errors)
	put("dependency_calls", a.DependencyCalls)
	put("dependency_failures", a.DependencyFailures)
	put("memory_growth_mb_per_min", a.MemoryGrowthMBPerMin)
	if a.GCPausesMS.State == decision.Present {
		total, mx := 0.0, 0.0
		for _, x := range a.GCPausesMS.V {
			total += x
			mx = math.Max(mx, x)
		}
		m["gc_pauses"] = float64(len(a.GCPausesMS.V))
		m["gc_pause_total_ms"] = total
		m["gc_pause_max_ms"] = mx
	}
	return m
}

func (r *Run) writeAgreement(rec MetricsAgreement) {
	b, err := json.Marshal(rec)
	if err != nil {
		return
	}
	f, err := os.OpenFile(filepath.Join(r.dir, "metrics-agreement.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		r.cfg.Log.Warn("metrics agreement", "err", err)
		return
	}
	defer f.Close()
	f.Write(append(b, '\n'))
}
