package gameday

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/decision/windows"
	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/engine/probe/availability"
	"github.com/chaosgate/chaosgate/engine/probe/metrics"
	"github.com/chaosgate/chaosgate/engine/report"
	"github.com/chaosgate/chaosgate/evidence"
)

// Caps of the raw evidence a run binds by digest (docs/evidence-v1.md).
const (
	// MaxHistoryWindows is the most A/A history windows windows.json keeps
	// per judged window (the newest; the judge's own cap is the
	// baseline's 7 days).
	MaxHistoryWindows = 1000
	// MaxLogMatches is the most log-guard lines log-matches.jsonl keeps.
	MaxLogMatches = 1000
	// MaxScrapesPerNode is the most scrapes per node metrics.json keeps
	// (evenly thinned), and MaxChunksPerArm the most load chunks per arm.
	MaxScrapesPerNode = 600
	MaxChunksPerArm   = 600
	// MaxAgreementLines is the most PromQL result lines metrics.json keeps.
	MaxAgreementLines = 200
	// IndexedTraceIDs is how many of each arm's sampled trace ids the
	// predicate's trace_ids carries (evenly spread), so that `ledger
	// search --trace-id` and the explorer find the run from a node's log.
	IndexedTraceIDs = 10
)

// Blob names and media types of a run's raw evidence.
const (
	BlobWindows    = "windows.json"
	BlobVerdicts   = "verdicts.jsonl"
	BlobLogMatches = "log-matches.jsonl"
	BlobMetrics    = "metrics.json"
	BlobFaults     = "faults.json"
	MediaJSON      = "application/json"
	mediaJSONL     = "application/jsonl"
)

// BlobTraces is the name of an arm's trace sample blob.
func BlobTraces(arm engine.Arm) string { return "traces-" + arm.String() + ".json" }

// judgedWindow is one judgement of the step controller with its input.
type judgedWindow struct {
	Weight, Extension int
	Input             decision.Input
	Verdict           decision.Verdict
}

// WindowsBlob is windows.json: the judge's input of every judged window,
// each a complete windows/v1 document that `chaosgate decide --input`
// accepts.
type WindowsBlob struct {
	RunID string        `json:"run_id"`
	Steps []WindowsStep `json:"steps"`
}

// WindowsStep is one judged window.
type WindowsStep struct {
	Weight int `json:"weight"`
	// Window counts the step's windows from 1 (more than 1 after a hold).
	Window int `json:"window"`
	// HistoryTotal is how many A/A history windows the judge had;
	// HistoryKept how many Input holds (the newest MaxHistoryWindows).
	HistoryTotal int             `json:"history_total"`
	HistoryKept  int             `json:"history_kept"`
	Input        json.RawMessage `json:"input"`
}

// VerdictLine is one line of verdicts.jsonl.
type VerdictLine struct {
	Weight  int               `json:"weight"`
	Window  int               `json:"window"`
	Verdict *decision.Verdict `json:"verdict,omitempty"`
	Error   string            `json:"error,omitempty"`
}

// TracesBlob is traces-<arm>.json: the W3C trace ids of an evenly spread
// sample of the arm's answered load requests; each is in the request log
// (trace_id=...) of the node that served it.
type TracesBlob struct {
	Arm string `json:"arm"`
	load.Traces
}

// LogMatchesHeader is the first line of log-matches.jsonl; every other
// line is a LogMatchLine.
type LogMatchesHeader struct {
	Guards  []LogGuard `json:"guards"`
	Matches int        `json:"matches"`
	Kept    int        `json:"kept"`
}

// LogGuard names one guard pattern.
type LogGuard struct {
	Name    string `json:"name"`
	Pattern string `json:"pattern"`
}

// LogMatchLine is one guarded log line.
type LogMatchLine struct {
	Arm   string    `json:"arm"`
	Node  string    `json:"node"`
	T     time.Time `json:"t"`
	Guard string    `json:"guard"`
	Line  string    `json:"line"`
}

// MetricsBlob is metrics.json: the raw samples behind each dimension.
type MetricsBlob struct {
	// Source is "embedded" (the scraper) or "promql" (PromQL decided the
	// process metrics; the embedded scrapes are kept for comparison).
	Source    string  `json:"source"`
	IntervalS float64 `json:"interval_s"`
	// Dimensions maps each dimension to the fields it is computed from.
	Dimensions map[string][]string   `json:"dimensions"`
	Arms       map[string]MetricsArm `json:"arms"`
	// PromQL holds the per-window PromQL results (with the embedded
	// scraper's values of the same window) when PromQL is the source.
	PromQL []json.RawMessage `json:"promql,omitempty"`
}

// MetricsArm is one arm's scrapes per node and load chunks.
type MetricsArm struct {
	Scrapes      map[string][]Scrape       `json:"scrapes"`
	ScrapesTotal int                       `json:"scrapes_total"`
	Chunks       []availability.ChunkStats `json:"chunks"`
	ChunksTotal  int                       `json:"chunks_total"`
}

// Scrape is one scrape of one node's /metrics.
type Scrape struct {
	T             time.Time `json:"t"`
	StartTime     float64   `json:"process_start_time_s"`
	HTTPTotal     float64   `json:"http_total"`
	HTTP5xx       float64   `json:"http_5xx"`
	HTTP503       float64   `json:"http_503"`
	GCCount       float64   `json:"gc_count"`
	GCSumS        float64   `json:"gc_sum_s"`
	GCMaxS        float64   `json:"gc_max_s"`
	Goroutines    float64   `json:"goroutines"`
	RSSBytes      float64   `json:"rss_bytes"`
	Forwards      float64   `json:"forwards"`
	ForwardErrors float64   `json:"forward_errors"`
}

// FaultsBlob is faults.json: every fault with its confirmation, recovery
// and the arm's availability through it, and the resilience per kind and
// arm (report/v1 faults[] and resilience[]).
type FaultsBlob struct {
	Faults     []FaultLine             `json:"faults"`
	Resilience []report.KindResilience `json:"resilience"`
}

// FaultLine is one fault.
type FaultLine struct {
	Kind        string     `json:"kind"`
	Arm         string     `json:"arm"`
	Target      string     `json:"target"`
	Applied     bool       `json:"applied"`
	AppliedAt   time.Time  `json:"applied_at,omitzero"`
	Confirmed   string     `json:"confirmed"`
	Recovered   bool       `json:"recovered"`
	RecoveredAt *time.Time `json:"recovered_at,omitempty"`
	// DurationS is how long the fault was in place (applied to removed).
	DurationS *float64 `json:"duration_s,omitempty"`
	// RecoveryS is how long after its removal the arm served load
	// cleanly again (null: the arm carries no measured load, or it was
	// not seen recovering within the run).
	RecoveryS    *float64                  `json:"recovery_s"`
	Availability *report.FaultAvailability `json:"availability,omitempty"`
}

// rawBlobs builds every raw evidence blob of the run and stores it;
// a blob that cannot be built or stored is logged and left out (the run's
// other evidence is still recorded).
func (r *Run) rawBlobs(l *evidence.Ledger, rep report.Report) []evidence.BlobRef {
	type blob struct {
		name, media string
		build       func() ([]byte, error)
	}
	blobs := []blob{
		{BlobWindows, MediaJSON, r.windowsBlob},
		{BlobVerdicts, mediaJSONL, r.verdictsBlob},
		{BlobTraces(engine.ArmCanary), MediaJSON, func() ([]byte, error) { return r.tracesBlob(engine.ArmCanary) }},
		{BlobTraces(engine.ArmControl), MediaJSON, func() ([]byte, error) { return r.tracesBlob(engine.ArmControl) }},
		{BlobLogMatches, mediaJSONL, r.logMatchesBlob},
		{BlobMetrics, MediaJSON, r.metricsBlob},
		{BlobFaults, MediaJSON, func() ([]byte, error) { return FaultsBlobOf(rep) }},
	}
	var out []evidence.BlobRef
	for _, b := range blobs {
		data, err := b.build()
		if err == nil && len(data) == 0 {
			err = fmt.Errorf("nothing to record")
		}
		if err != nil {
			r.cfg.Log.Warn("evidence blob left out", "blob", b.name, "err", err)
			continue
		}
		ref, err := l.PutBlob(b.name, b.media, data)
		if err != nil {
			r.cfg.Log.Warn("evidence blob left out", "blob", b.name, "err", err)
			continue
		}
		out = append(out, ref)
	}
	return out
}

func (r *Run) judgedWindows() []judgedWindow {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]judgedWindow(nil), r.judged...)
}

func (r *Run) windowsBlob() ([]byte, error) {
	doc := WindowsBlob{RunID: r.runID, Steps: []WindowsStep{}}
	for _, j := range r.judgedWindows() {
		in := j.Input
		st := WindowsStep{Weight: j.Weight, Window: j.Extension + 1, HistoryTotal: len(in.History)}
		if len(in.History) > MaxHistoryWindows {
			h := append([]decision.HistoryWindow(nil), in.History...)
			sort.SliceStable(h, func(a, b int) bool { return h[a].At.Before(h[b].At) })
			in.History = h[len(h)-MaxHistoryWindows:]
		}
		st.HistoryKept = len(in.History)
		enc, err := windows.Encode(in)
		if err != nil {
			return nil, fmt.Errorf("window %d%% #%d: %w", j.Weight, j.Extension+1, err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, enc); err != nil {
			return nil, err
		}
		st.Input = compact.Bytes()
		doc.Steps = append(doc.Steps, st)
	}
	return json.Marshal(doc)
}

func (r *Run) verdictsBlob() ([]byte, error) {
	var buf bytes.Buffer
	for _, j := range r.judgedWindows() {
		v := j.Verdict
		line := VerdictLine{Weight: j.Weight, Window: j.Extension + 1, Verdict: &v}
		b, err := json.Marshal(line)
		if err != nil {
			// A value JSON cannot carry: keep the line, say why.
			b, _ = json.Marshal(VerdictLine{Weight: j.Weight, Window: j.Extension + 1, Error: "verdict not encodable: " + err.Error()})
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}

func (r *Run) tracesBlob(arm engine.Arm) ([]byte, error) {
	g := r.gens[arm]
	if g == nil {
		return nil, fmt.Errorf("no load generator for %s", arm)
	}
	tr := g.Traces()
	if len(tr.Sample) == 0 {
		return nil, fmt.Errorf("no answered request on %s", arm)
	}
	return json.Marshal(TracesBlob{Arm: arm.String(), Traces: tr})
}

// indexedTraceIDs are the trace ids the run's statement lists for the
// ledger's trace index: IndexedTraceIDs of each arm's sample.
func (r *Run) indexedTraceIDs() []string {
	var out []string
	for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		if g := r.gens[arm]; g != nil {
			for _, t := range thin(g.Traces().Sample, IndexedTraceIDs) {
				out = append(out, t.TraceID)
			}
		}
	}
	return out
}

func (r *Run) logMatchesBlob() ([]byte, error) {
	if r.logsp == nil {
		return nil, fmt.Errorf("no log guards")
	}
	_ = r.logsp.Scan()
	h := LogMatchesHeader{}
	name := map[string]string{}
	for i, p := range r.logsp.Patterns() {
		g := LogGuard{Name: fmt.Sprintf("guard-%d", i+1), Pattern: p}
		h.Guards = append(h.Guards, g)
		name[p] = g.Name
	}
	var lines []LogMatchLine
	end := time.Now()
	for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		ms := r.logsp.Matches(arm, r.start, end)
		if n := r.logsp.MatchCount(arm, r.start, end); n > len(ms) {
			h.Matches += n - len(ms) // a log server returns at most MaxLines per guard
		}
		for _, m := range ms {
			h.Matches++
			if len(lines) < MaxLogMatches {
				lines = append(lines, LogMatchLine{Arm: arm.String(), Node: m.Node, T: m.At, Guard: name[m.Pattern], Line: m.Line})
			}
		}
	}
	h.Kept = len(lines)
	var buf bytes.Buffer
	b, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	buf.Write(append(b, '\n'))
	for _, l := range lines {
		b, err := json.Marshal(l)
		if err != nil {
			return nil, err
		}
		buf.Write(append(b, '\n'))
	}
	return buf.Bytes(), nil
}

// thin keeps at most n of xs, evenly spread, the first and last included.
func thin[T any](xs []T, n int) []T {
	if len(xs) <= n || n < 2 {
		return xs
	}
	out := make([]T, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, xs[i*(len(xs)-1)/(n-1)])
	}
	return out
}

func (r *Run) metricsBlob() ([]byte, error) {
	if r.mets == nil || r.avail == nil {
		return nil, fmt.Errorf("no metrics probe")
	}
	doc := MetricsBlob{Source: "embedded", IntervalS: 1, Arms: map[string]MetricsArm{},
		Dimensions: map[string][]string{
			string(decision.ErrorRate):           {"scrapes.http_total", "scrapes.http_5xx", "scrapes.http_503"},
			string(decision.GCPause):             {"scrapes.gc_count", "scrapes.gc_sum_s", "scrapes.gc_max_s"},
			string(decision.DependencySLA):       {"scrapes.forwards", "scrapes.forward_errors"},
			string(decision.MemoryGrowth):        {"scrapes.rss_bytes"},
			string(decision.LatencyP99):          {"chunks.p50_ms", "chunks.p99_ms", "chunks.messages"},
			string(decision.SessionInterruption): {"chunks.requests", "chunks.timeouts"},
		}}
	if d := r.cfg.Doc.Spec.Probes.Metrics; d != nil && d.Interval.Duration > 0 {
		doc.IntervalS = d.Interval.Duration.Seconds()
	}
	for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		ma := MetricsArm{Scrapes: map[string][]Scrape{}}
		for node, ss := range r.mets.Samples(arm) {
			ma.ScrapesTotal += len(ss)
			for _, s := range thin(ss, MaxScrapesPerNode) {
				ma.Scrapes[node] = append(ma.Scrapes[node], scrapeOf(s))
			}
		}
		cs := r.avail.Chunks(arm)
		ma.ChunksTotal = len(cs)
		ma.Chunks = thin(cs, MaxChunksPerArm)
		doc.Arms[arm.String()] = ma
	}
	if r.prom != nil {
		doc.Source = "promql"
		doc.PromQL = readJSONLines(filepath.Join(r.dir, "metrics-agreement.jsonl"), MaxAgreementLines)
	}
	return json.Marshal(doc)
}

// finite keeps a JSON number JSON-encodable.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func scrapeOf(s metrics.Sample) Scrape {
	return Scrape{T: s.At.UTC(), StartTime: finite(s.StartTime), HTTPTotal: finite(s.HTTPTotal), HTTP5xx: finite(s.HTTP5xx), HTTP503: finite(s.HTTP503),
		GCCount: finite(s.GCCount), GCSumS: finite(s.GCSum), GCMaxS: finite(s.GCMax), Goroutines: finite(s.Goroutines), RSSBytes: finite(s.RSS),
		Forwards: finite(s.Forwards), ForwardErrors: finite(s.ForwardErrs)}
}

// readJSONLines reads at most n valid JSON lines of a file (none when it
// is missing).
func readJSONLines(path string, n int) []json.RawMessage {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []json.RawMessage
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() && len(out) < n {
		if b := bytes.TrimSpace(sc.Bytes()); json.Valid(b) && len(b) > 0 {
			out = append(out, append(json.RawMessage(nil), b...))
		}
	}
	return out
}

// FaultsBlobOf builds faults.json from a report's faults and resilience;
// every target (local or Kubernetes) records it.
func FaultsBlobOf(rep report.Report) ([]byte, error) {
	doc := FaultsBlob{Faults: []FaultLine{}, Resilience: rep.Resilience}
	if doc.Resilience == nil {
		doc.Resilience = []report.KindResilience{}
	}
	for _, f := range rep.Faults {
		fl := FaultLine{Kind: f.Kind, Arm: f.Arm, Target: f.Target, Applied: !f.AppliedAt.IsZero(), AppliedAt: f.AppliedAt,
			Confirmed: f.Confirmed, RecoveredAt: f.RecoveredAt, Recovered: f.RecoveredAt != nil, Availability: f.Availability}
		if f.RecoveredAt != nil && !f.AppliedAt.IsZero() {
			d := math.Round(f.RecoveredAt.Sub(f.AppliedAt).Seconds()*10) / 10
			fl.DurationS = &d
		}
		if f.Availability != nil {
			fl.RecoveryS = f.Availability.RecoveryS
		}
		doc.Faults = append(doc.Faults, fl)
	}
	return json.Marshal(doc)
}
