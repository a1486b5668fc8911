package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/chaosgate/chaosgate/internal/waitctx"
)

// Options are what a node gives its upstream manager.
type Options struct {
	// Node is this node's id; Nodes every node's id (MQTT shards are split
	// by a node's index among them).
	Node  string
	Nodes []string
	// DataDir holds the dead-letter queue (DataDir/dlq.jsonl).
	DataDir string
	// DLQMax bounds the letters held (default 100000).
	DLQMax int
	// Registerer receives the metrics; Logger the logs.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Offsets are one upstream partition's position.
type Offsets struct {
	// Committed is the next offset the group consumes from; End the
	// broker's high watermark; Lag = End - Committed.
	Committed int64 `json:"committed"`
	End       int64 `json:"end"`
	Lag       int64 `json:"lag"`
}

// adapter is one broker client.
type adapter interface {
	// consume takes deliveries and hands them to the pipeline until ctx
	// ends; it then leaves its group and returns.
	consume(ctx context.Context) error
	// offsets measures the group's position per upstream partition
	// ("all" for a consumer without partitions).
	offsets(ctx context.Context) (map[string]Offsets, error)
	// assigned lists the upstream partitions this member holds now.
	assigned() []int32
	// close releases what offsets opened.
	close()
	// ready reports whether the consumer is attached: subscribed (MQTT),
	// bound to its durable consumer (NATS), in its group (Kafka).
	ready() bool
}

// running is one upstream with its consumption state.
type running struct {
	cfg Config
	p   *pipeline
	ad  adapter

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	member bool
	lastOf map[string]Offsets
	alert  bool
}

// Manager runs a node's upstreams and its dead-letter queue.
type Manager struct {
	opts Options
	sink Sink
	dlq  *DLQ
	m    *upMetrics
	log  *slog.Logger
	ups  []*running

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	handlerOnce sync.Once
	handler     http.Handler
}

// New opens the dead-letter queue and prepares the upstreams; Start begins
// consuming. It registers the metrics with opts.Registerer.
func New(opts Options, sink Sink, cfgs []Config) (*Manager, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	seen := map[string]bool{}
	for i := range cfgs {
		cfgs[i].Defaults()
		if err := cfgs[i].Validate(); err != nil {
			return nil, err
		}
		if seen[cfgs[i].Name] {
			return nil, fmt.Errorf("two upstreams are named %q (hint: add ?name=... to one of them)", cfgs[i].Name)
		}
		seen[cfgs[i].Name] = true
	}
	dlq, err := OpenDLQ(filepath.Join(opts.DataDir, "dlq.jsonl"), opts.DLQMax)
	if err != nil {
		return nil, err
	}
	m := &Manager{opts: opts, sink: sink, dlq: dlq, m: newUpMetrics(), log: opts.Logger}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	for _, cfg := range cfgs {
		r := &running{cfg: cfg, lastOf: map[string]Offsets{}}
		r.p = newPipeline(cfg, opts.Node, sink, dlq, m.m, opts.Logger)
		switch cfg.Kind {
		case KindNATS:
			r.ad = newNATSAdapter(cfg, r.p, opts)
		case KindKafka:
			r.ad = newKafkaAdapter(cfg, r.p, opts)
		case KindMQTT:
			r.ad, err = newMQTTAdapter(cfg, r.p, opts)
			if err != nil {
				dlq.Close()
				return nil, err
			}
		}
		m.ups = append(m.ups, r)
	}
	if opts.Registerer != nil {
		for _, c := range m.collectors() {
			if err := opts.Registerer.Register(c); err != nil {
				dlq.Close()
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *Manager) collectors() []prometheus.Collector {
	cs := m.m.collectors()
	cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chaosgate_aggregator_dlq_letters",
		Help: "Letters held in this node's dead-letter queue."}, func() float64 { return float64(m.dlq.Len()) }))
	cs = append(cs, &stateCollector{m: m})
	return cs
}

var (
	descBreaker = prometheus.NewDesc("chaosgate_aggregator_upstream_breaker_state",
		"Circuit breaker of an upstream's downstream path: 0 closed, 1 half-open, 2 open (consumption paused).", []string{"upstream"}, nil)
	descConsuming = prometheus.NewDesc("chaosgate_aggregator_upstream_consuming",
		"1 when this node consumes the upstream (a group member, not paused, breaker not open).", []string{"upstream"}, nil)
	descAlert = prometheus.NewDesc("chaosgate_aggregator_upstream_lag_alert",
		"1 while the upstream's lag has stayed above its lag_alert for lag_alert_for.", []string{"upstream"}, nil)
	descAssigned = prometheus.NewDesc("chaosgate_aggregator_upstream_assigned_partitions",
		"Upstream partitions this node's consumer holds.", []string{"upstream"}, nil)
)

type stateCollector struct{ m *Manager }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBreaker, descConsuming, descAlert, descAssigned} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.m.ups {
		st := r.p.breakerState()
		paused, _ := r.p.isPaused()
		r.mu.Lock()
		member, alert := r.member, r.alert
		r.mu.Unlock()
		b := func(v bool) float64 {
			if v {
				return 1
			}
			return 0
		}
		ch <- prometheus.MustNewConstMetric(descBreaker, prometheus.GaugeValue, float64(st), r.cfg.Name)
		ch <- prometheus.MustNewConstMetric(descConsuming, prometheus.GaugeValue, b(member && !paused && st != gobreaker.StateOpen), r.cfg.Name)
		ch <- prometheus.MustNewConstMetric(descAlert, prometheus.GaugeValue, b(alert), r.cfg.Name)
		ch <- prometheus.MustNewConstMetric(descAssigned, prometheus.GaugeValue, float64(len(r.ad.assigned())), r.cfg.Name)
	}
}

// Start begins consuming every upstream and measuring its lag.
func (m *Manager) Start() {
	for _, r := range m.ups {
		m.join(r)
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.lagLoop(r)
		}()
	}
}

// join starts r's consumer (a group member again).
func (m *Manager) join(r *running) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.member || m.ctx.Err() != nil {
		return false
	}
	ctx, cancel := context.WithCancel(m.ctx)
	done := make(chan struct{})
	r.cancel, r.done, r.member = cancel, done, true
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(done)
		for ctx.Err() == nil {
			err := r.ad.consume(ctx)
			if ctx.Err() != nil {
				return
			}
			m.log.Warn("upstream consumer stopped; restarting", "upstream", r.cfg.Name, "err", err)
			_ = waitctx.Sleep(ctx, time.Second)
		}
	}()
	m.log.Info("upstream consumer joined", "upstream", r.cfg.Name, "kind", r.cfg.Kind, "brokers", r.cfg.Brokers)
	return true
}

// leave stops r's consumer: it finishes what it holds, commits it and
// leaves its group, so its partitions move to the other members.
func (m *Manager) leave(r *running) bool {
	r.mu.Lock()
	if !r.member {
		r.mu.Unlock()
		return false
	}
	cancel, done := r.cancel, r.done
	r.member = false
	r.mu.Unlock()
	cancel()
	<-done
	m.log.Info("upstream consumer left its group", "upstream", r.cfg.Name)
	return true
}

func (m *Manager) lagLoop(r *running) {
	t := time.NewTicker(r.cfg.LagInterval)
	defer t.Stop()
	var above time.Time
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(m.ctx, max(r.cfg.LagInterval, 2*time.Second))
		offs, err := r.ad.offsets(ctx)
		cancel()
		if err != nil {
			m.log.Debug("upstream lag", "upstream", r.cfg.Name, "err", err)
			continue
		}
		var worst int64
		r.mu.Lock()
		for part := range r.lastOf {
			if _, ok := offs[part]; !ok {
				m.m.lag.DeleteLabelValues(r.cfg.Name, part)
				m.m.committed.DeleteLabelValues(r.cfg.Name, part)
				m.m.endOffset.DeleteLabelValues(r.cfg.Name, part)
			}
		}
		r.lastOf = offs
		for part, o := range offs {
			m.m.lag.WithLabelValues(r.cfg.Name, part).Set(float64(o.Lag))
			m.m.committed.WithLabelValues(r.cfg.Name, part).Set(float64(o.Committed))
			m.m.endOffset.WithLabelValues(r.cfg.Name, part).Set(float64(o.End))
			worst = max(worst, o.Lag)
		}
		now := time.Now()
		if worst > r.cfg.LagAlert {
			if above.IsZero() {
				above = now
			}
		} else {
			above = time.Time{}
		}
		firing := !above.IsZero() && now.Sub(above) >= r.cfg.LagAlertFor
		if firing != r.alert {
			if firing {
				m.log.Warn("upstream lag alert firing: the next downstream failure opens the breaker", "upstream", r.cfg.Name, "lag", worst, "threshold", r.cfg.LagAlert, "for", r.cfg.LagAlertFor)
			} else {
				m.log.Info("upstream lag alert resolved", "upstream", r.cfg.Name, "lag", worst)
			}
		}
		r.alert = firing
		r.mu.Unlock()
		r.p.lagAlert.Store(firing)
	}
}

// Close stops every consumer (nothing in flight is acknowledged unless it
// was stored) and closes the dead-letter queue.
func (m *Manager) Close() error {
	m.cancel()
	m.wg.Wait()
	for _, r := range m.ups {
		r.ad.close()
	}
	return m.dlq.Close()
}

// DLQ is the node's dead-letter queue.
func (m *Manager) DLQ() *DLQ { return m.dlq }

// UpstreamStatus describes one upstream for GET /v1/upstreams.
type UpstreamStatus struct {
	Name     string             `json:"name"`
	Kind     string             `json:"kind"`
	Brokers  []string           `json:"brokers"`
	State    string             `json:"state"` // consuming, paused, left, breaker-open
	Breaker  string             `json:"breaker"`
	Assigned []int32            `json:"assigned"`
	Offsets  map[string]Offsets `json:"offsets"`
	LagAlert bool               `json:"lag_alert"`
	// Attached: subscribed (MQTT), bound to the durable consumer (NATS),
	// joined to the group (Kafka).
	Attached bool `json:"attached"`
}

// Statuses reports every upstream.
func (m *Manager) Statuses() []UpstreamStatus {
	var out []UpstreamStatus
	for _, r := range m.ups {
		st := r.p.breakerState()
		paused, _ := r.p.isPaused()
		r.mu.Lock()
		s := UpstreamStatus{Name: r.cfg.Name, Kind: r.cfg.Kind, Brokers: r.cfg.Brokers, Breaker: st.String(), Assigned: r.ad.assigned(),
			Offsets: map[string]Offsets{}, LagAlert: r.alert, Attached: r.member && r.ad.ready()}
		for k, v := range r.lastOf {
			s.Offsets[k] = v
		}
		switch {
		case !r.member:
			s.State = "left"
		case paused:
			s.State = "paused"
		case st == gobreaker.StateOpen:
			s.State = "breaker-open"
		default:
			s.State = "consuming"
		}
		r.mu.Unlock()
		if s.Assigned == nil {
			s.Assigned = []int32{}
		}
		slices.Sort(s.Assigned)
		out = append(out, s)
	}
	return out
}

func (m *Manager) find(name string) *running {
	for _, r := range m.ups {
		if r.cfg.Name == name {
			return r
		}
	}
	return nil
}

// Replay puts letter id back into the ingest path with its msg_id. A
// letter already replayed is refused unless force is set (a forced replay
// is deduplicated by the aggregator all the same).
func (m *Manager) Replay(ctx context.Context, id uint64, force bool) (Letter, Answer, error) {
	l, ok := m.dlq.Get(id)
	if !ok {
		return l, Answer{}, &APIError{Code: http.StatusNotFound, Kind: "not_found", Msg: fmt.Sprintf("no dead letter %d on node %s", id, m.opts.Node)}
	}
	if l.Replayed() && !force {
		return l, Answer{}, &APIError{Code: http.StatusConflict, Kind: "conflict",
			Msg:  fmt.Sprintf("dead letter %d was already replayed at %s (%s)", id, l.Replay.At.Format(time.RFC3339Nano), l.Replay.Result),
			Hint: "add ?force=true to replay it again (the aggregator deduplicates it by msg_id)"}
	}
	outs := m.sink.Submit(ctx, [][]byte{[]byte(l.Payload)})
	o := outs[0]
	r := Replay{At: time.Now().UTC()}
	switch o.Status {
	case Stored:
		r.Result = "stored"
		if o.Duplicate {
			r.Result = "duplicate"
		}
		r.Detail = fmt.Sprintf("partition %d epoch %d node %s", o.Partition, o.Epoch, o.Node)
	case Permanent:
		r.Result, r.Detail = "permanent", o.Reason
	default:
		r.Result, r.Detail = "transient", o.Reason
	}
	m.m.replays.WithLabelValues(r.Result).Inc()
	if r.Result == "transient" {
		// not recorded: nothing changed, the letter can be replayed later
		return l, o, &APIError{Code: http.StatusServiceUnavailable, Kind: "unavailable", Msg: "replay not stored: " + o.Reason, Hint: "retry the replay"}
	}
	if err := m.dlq.SetReplay(id, r); err != nil {
		return l, o, &APIError{Code: http.StatusInternalServerError, Kind: "internal", Msg: err.Error()}
	}
	l.Replay = &r
	m.log.Info("dead letter replayed", "dlq_id", id, "msg_id", l.MsgID, "result", r.Result, "detail", r.Detail)
	if r.Result == "permanent" {
		return l, o, &APIError{Code: http.StatusUnprocessableEntity, Kind: "invalid", Msg: "the aggregator refused the message again: " + o.Reason}
	}
	return l, o, nil
}

// APIError is an error with its HTTP status, kind and hint.
type APIError struct {
	Code int
	Kind string
	Msg  string
	Hint string
}

func (e *APIError) Error() string { return e.Msg }

// Handler serves the dead-letter queue and upstream API:
//
//	GET  /v1/dlq?from=ID&limit=N        letters of this node
//	GET  /v1/dlq/{id}                   one letter
//	POST /v1/dlq/{id}/replay[?force=true]
//	GET  /v1/upstreams                  upstream states, assignments, offsets
//	POST /v1/upstreams/{name}/{pause|resume|leave|join}
func (m *Manager) Handler() http.Handler {
	m.handlerOnce.Do(func() { m.handler = m.newHandler() })
	return m.handler
}

func (m *Manager) newHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/dlq", func(w http.ResponseWriter, r *http.Request) {
		from, limit := uint64(1), 1000
		q := r.URL.Query()
		if s := q.Get("from"); s != "" {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				writeAPIError(w, &APIError{Code: 400, Kind: "invalid", Msg: fmt.Sprintf("from=%q: want a letter id", s)})
				return
			}
			from = v
		}
		if s := q.Get("limit"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 1 || v > 10000 {
				writeAPIError(w, &APIError{Code: 400, Kind: "invalid", Msg: fmt.Sprintf("limit=%q: want 1..10000", s)})
				return
			}
			limit = v
		}
		letters, next := m.dlq.List(from, limit)
		if letters == nil {
			letters = []Letter{}
		}
		writeJSON(w, 200, map[string]any{"node": m.opts.Node, "letters": letters, "next": next, "total": m.dlq.Len()})
	})
	letterID := func(w http.ResponseWriter, r *http.Request) (uint64, bool) {
		id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
		if err != nil || id == 0 {
			writeAPIError(w, &APIError{Code: 404, Kind: "not_found", Msg: fmt.Sprintf("dead letter %q: ids are positive integers", r.PathValue("id"))})
			return 0, false
		}
		return id, true
	}
	mux.HandleFunc("GET /v1/dlq/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := letterID(w, r)
		if !ok {
			return
		}
		l, found := m.dlq.Get(id)
		if !found {
			writeAPIError(w, &APIError{Code: 404, Kind: "not_found", Msg: fmt.Sprintf("no dead letter %d on node %s", id, m.opts.Node)})
			return
		}
		writeJSON(w, 200, l)
	})
	mux.HandleFunc("POST /v1/dlq/{id}/replay", func(w http.ResponseWriter, r *http.Request) {
		id, ok := letterID(w, r)
		if !ok {
			return
		}
		force := r.URL.Query().Get("force") == "true"
		l, _, err := m.Replay(r.Context(), id, force)
		if err != nil {
			writeAPIError(w, err)
			return
		}
		writeJSON(w, 200, l)
	})
	mux.HandleFunc("GET /v1/upstreams", func(w http.ResponseWriter, r *http.Request) {
		st := m.Statuses()
		if st == nil {
			st = []UpstreamStatus{}
		}
		writeJSON(w, 200, map[string]any{"node": m.opts.Node, "upstreams": st})
	})
	mux.HandleFunc("POST /v1/upstreams/{name}/{action}", func(w http.ResponseWriter, r *http.Request) {
		up := m.find(r.PathValue("name"))
		if up == nil {
			var names []string
			for _, x := range m.ups {
				names = append(names, x.cfg.Name)
			}
			sort.Strings(names)
			writeAPIError(w, &APIError{Code: 404, Kind: "not_found", Msg: fmt.Sprintf("no upstream %q on node %s (upstreams: %v)", r.PathValue("name"), m.opts.Node, names)})
			return
		}
		changed := false
		switch r.PathValue("action") {
		case "pause":
			paused, _ := up.p.isPaused()
			up.p.setPaused(true)
			changed = !paused
		case "resume":
			paused, _ := up.p.isPaused()
			up.p.setPaused(false)
			changed = paused
		case "leave":
			changed = m.leave(up)
		case "join":
			changed = m.join(up)
		default:
			writeAPIError(w, &APIError{Code: 404, Kind: "not_found", Msg: fmt.Sprintf("unknown action %q", r.PathValue("action")), Hint: "pause, resume, leave or join"})
			return
		}
		for _, s := range m.Statuses() {
			if s.Name == up.cfg.Name {
				writeJSON(w, 200, map[string]any{"node": m.opts.Node, "changed": changed, "upstream": s})
				return
			}
		}
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeAPIError(w http.ResponseWriter, err error) {
	var ae *APIError
	if !errors.As(err, &ae) {
		ae = &APIError{Code: 500, Kind: "internal", Msg: err.Error()}
	}
	body := map[string]string{"error": ae.Msg, "kind": ae.Kind}
	if ae.Hint != "" {
		body["hint"] = ae.Hint
	}
	writeJSON(w, ae.Code, body)
}
