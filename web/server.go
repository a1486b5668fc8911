// Package web is chaosgate serve's HTTP side: the REST JSON API under
// /api/v1 (runs, live events over server-sent events, the kill switch,
// cron schedules, the decision config in use), the gate endpoints for Argo
// Rollouts (web metric provider) and Flagger (webhooks), the server-rendered
// on-call dashboard and block explorer, bearer-token auth with roles, and
// the unauthenticated /livez, /readyz and /metrics.
//
// The package runs nothing itself: a RunFunc (LocalRunner for the local
// target) executes runs; the evidence ledger is opened read-only per
// request so runs can append to it between requests.
package web

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/chaosgate/chaosgate/decision/config"
	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/evidence"
	"github.com/chaosgate/chaosgate/scenarios"
)

// Clock tells the time.
type Clock interface{ Now() time.Time }

// Options configure a Server.
type Options struct {
	// DataDir is the shared data directory (journal, ledger, keys); serve
	// keeps its run records and schedules under DATA/serve.
	DataDir string
	// Tokens are the accepted bearer tokens (required).
	Tokens *Tokens
	// Run executes runs (required).
	Run RunFunc
	// Decision is the decision config in force (nil: not shown).
	Decision *config.Store
	// DecisionSource names where the decision config comes from.
	DecisionSource string
	// Experiments is a directory of experiment files runs may name.
	Experiments string
	// Target names where runs execute (shown on the dashboard).
	Target string
	// Schedules are the schedules of the config file.
	Schedules []Schedule
	// Version is the chaosgate version, in chaosgate_build_info (default "dev").
	Version string
	// Registry receives the server's metrics (nil: a new registry).
	Registry *prometheus.Registry
	Log      *slog.Logger
	Clock    Clock
	// PublicKeys verify the ledger (the gate, the explorer, the ledger
	// API). Nil: the public keys in DATA/keys (evidence.pub,
	// checkpoint.vkey), read at every request. Never the keys recorded in
	// the ledger itself: a ledger signed with other keys answers nothing.
	PublicKeys *evidence.PublicKeys
	// SecureCookie marks the login cookie Secure even on plain HTTP, for a
	// server behind a proxy that terminates TLS (with TLS of its own the
	// cookie is always Secure).
	SecureCookie bool
	// MaxStreams bounds the live event streams open at once (default 64);
	// more are refused with 503.
	MaxStreams int
	// WebhookTrustedNets: a Flagger webhook request that carries no token
	// is answered as a viewer's when its TCP peer is in one of these
	// networks. Flagger's webhook spec has no headers and no Secret
	// reference, so the only token it can send sits in plain text in the
	// Canary resource; instead, restrict who can reach serve (a
	// NetworkPolicy admitting Flagger's namespace) and trust the peer
	// address. X-Forwarded-For is never read. Empty: every webhook needs a
	// token.
	WebhookTrustedNets []netip.Prefix
	// Namespaces are the Kubernetes namespaces runs may act in (target
	// k8s); a document whose target names another is refused. Empty: no
	// check (the local target).
	Namespaces []string
	// OnRunEnd, when set, is called with the saved record of each of
	// serve's own runs once it has ended and the server accepts the next
	// run; Close waits for it to return. It must not modify the record.
	OnRunEnd func(*RunRecord)
}

// Server is chaosgate serve's HTTP handler and run manager.
type Server struct {
	opt     Options
	log     *slog.Logger
	mux     *http.ServeMux
	runs    *runStore
	sched   *scheduler
	metrics *metrics
	reg     *prometheus.Registry

	base     context.Context
	stopBase context.CancelFunc
	wg       sync.WaitGroup

	mu     sync.Mutex
	cur    *active
	closed bool

	streams chan struct{} // one slot per open event stream

	// ledgerSeen is the largest signed tree size the gate has read: a
	// ledger that later holds fewer entries was rolled back.
	ledgerSeen atomic.Uint64
}

type metrics struct {
	crossOrigin  prometheus.Counter
	runsStarted  prometheus.Counter
	runsFinished *prometheus.CounterVec
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	buildInfo    *prometheus.GaugeVec
	gate         *prometheus.CounterVec
}

// New builds a server and starts its scheduler. Close stops it.
func New(opt Options) (*Server, error) {
	if opt.Tokens == nil || opt.Tokens.Len() == 0 {
		return nil, errors.New("web: no bearer tokens configured")
	}
	if opt.Run == nil {
		return nil, errors.New("web: no run function")
	}
	if opt.DataDir == "" {
		return nil, errors.New("web: no data dir")
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Clock == nil {
		opt.Clock = engine.SystemClock{}
	}
	if opt.Registry == nil {
		opt.Registry = prometheus.NewRegistry()
	}
	if opt.MaxStreams <= 0 {
		opt.MaxStreams = 64
	}
	s := &Server{opt: opt, log: opt.Log, mux: http.NewServeMux(), reg: opt.Registry,
		runs: &runStore{dir: filepath.Join(opt.DataDir, "serve", "runs")}, streams: make(chan struct{}, opt.MaxStreams)}
	if err := os.MkdirAll(s.runs.dir, 0o700); err != nil {
		return nil, fmt.Errorf("web: data dir: %w", err)
	}
	s.metrics = &metrics{
		crossOrigin:  prometheus.NewCounter(prometheus.CounterOpts{Name: "chaosgate_serve_cross_origin_refused_total", Help: "Requests that would change something, refused because a browser sent them from another origin."}),
		runsStarted:  prometheus.NewCounter(prometheus.CounterOpts{Name: "chaosgate_serve_runs_started_total", Help: "Runs started by serve."}),
		runsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chaosgate_serve_runs_finished_total", Help: "Runs ended, by status and verdict."}, []string{"status", "verdict"}),
		requests:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chaosgate_serve_http_requests_total", Help: "HTTP requests by route and status code."}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "chaosgate_serve_http_request_duration_seconds",
			Help: "Time to answer an HTTP request, by route and status code (an event stream counts until it ends).", Buckets: prometheus.DefBuckets}, []string{"route", "code"}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "chaosgate_build_info",
			Help: "Always 1: the chaosgate version serving, and the Go version it was built with."}, []string{"version", "goversion"}),
		gate: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chaosgate_serve_gate_answers_total", Help: "Gate answers by endpoint and verdict."}, []string{"endpoint", "verdict"}),
	}
	s.metrics.buildInfo.WithLabelValues(cmp.Or(opt.Version, "dev"), runtime.Version()).Set(1)
	for _, c := range []prometheus.Collector{s.metrics.crossOrigin, s.metrics.runsStarted, s.metrics.runsFinished, s.metrics.requests, s.metrics.duration, s.metrics.buildInfo, s.metrics.gate} {
		if err := s.reg.Register(c); err != nil {
			return nil, fmt.Errorf("web: metrics: %w", err)
		}
	}
	s.base, s.stopBase = context.WithCancel(context.Background())
	if err := s.markStale(); err != nil {
		return nil, fmt.Errorf("web: run records: %w", err)
	}
	sc, err := newScheduler(s, filepath.Join(opt.DataDir, "serve", "schedules.json"), opt.Schedules)
	if err != nil {
		s.stopBase()
		return nil, err
	}
	s.sched = sc
	s.routes()
	return s, nil
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.crossOrigin(s.mux) }

// HTTPServer returns an *http.Server for h with the timeouts serve needs
// against slow or idle clients: request headers within 10 s, a whole
// request within 30 s, a response within 60 s (event streams extend their
// own deadline at every event), idle connections closed after 2 minutes,
// headers of at most 64 KiB.
func HTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
}

// Close stops the scheduler, cancels the run in progress (its faults are
// recovered by the runner) and waits for it to end or ctx to expire.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.sched.stop()
	s.stopBase()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("web: run still stopping: %w", ctx.Err())
	}
}

func (s *Server) now() time.Time { return s.opt.Clock.Now() }

// handle registers pattern, instrumented through promhttp: the request
// counter and the request-duration histogram, by route and status code.
func (s *Server) handle(pattern string, h http.HandlerFunc) {
	route := prometheus.Labels{"route": pattern}
	s.mux.Handle(pattern, promhttp.InstrumentHandlerCounter(s.metrics.requests.MustCurryWith(route),
		promhttp.InstrumentHandlerDuration(s.metrics.duration.MustCurryWith(route), h)))
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(staticFS())))

	// API.
	s.handle("GET /api/v1/runs", s.require(RoleViewer, s.apiListRuns))
	s.handle("POST /api/v1/runs", s.require(RoleOperator, s.apiStartRun))
	s.handle("GET /api/v1/runs/{id}", s.require(RoleViewer, s.apiGetRun))
	s.handle("GET /api/v1/runs/{id}/events", s.require(RoleViewer, s.apiEvents))
	s.handle("GET /api/v1/runs/{id}/report", s.require(RoleViewer, s.apiRunReport))
	s.handle("POST /api/v1/abort", s.require(RoleOperator, s.apiAbort))
	s.handle("GET /api/v1/schedules", s.require(RoleViewer, s.apiListSchedules))
	s.handle("POST /api/v1/schedules", s.require(RoleOperator, s.apiCreateSchedule))
	s.handle("DELETE /api/v1/schedules/{name}", s.require(RoleOperator, s.apiDeleteSchedule))
	s.handle("GET /api/v1/decision", s.require(RoleViewer, s.apiDecision))
	s.handle("GET /api/v1/scenarios", s.require(RoleViewer, s.apiScenarios))
	s.handle("GET /api/v1/gate/{revision...}", s.require(RoleViewer, s.apiGate))
	for _, step := range []string{"confirm-promotion", "pre-rollout", "rollout", "rollback"} {
		s.handle("POST /api/v1/gate/flagger/"+step, s.flagger(step))
	}
	s.handle("GET /api/v1/ledger/", s.require(RoleAuditor, s.ledgerAPI))
	s.handle("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, "not_found", fmt.Sprintf("no API endpoint %s %s", r.Method, r.URL.Path), "the endpoints are listed in the README's chaosgate serve section")
	})

	// Pages.
	s.handle("GET /login", s.pageLogin)
	s.handle("POST /login", s.postLogin)
	s.handle("POST /logout", s.postLogout)
	s.handle("GET /{$}", s.require(RoleViewer, s.pageDashboard))
	s.handle("GET /runs/{id}", s.require(RoleViewer, s.pageRun))
	s.handle("GET /runs/{id}/charts", s.require(RoleViewer, s.fragmentCharts))
	s.handle("GET /compare", s.require(RoleViewer, s.pageCompare))
	s.handle("POST /ui/abort", s.require(RoleOperator, s.uiAbort))
	s.handle("POST /ui/runs", s.require(RoleOperator, s.uiStartRun))
	s.handle("POST /ui/schedules", s.require(RoleOperator, s.uiCreateSchedule))
	s.handle("POST /ui/schedules/{name}/delete", s.require(RoleOperator, s.uiDeleteSchedule))
	s.handle("GET /explorer", s.require(RoleAuditor, s.pageExplorer))
	s.handle("GET /explorer/entries/{index}", s.require(RoleAuditor, s.pageEntry))
	s.handle("GET /explorer/entries/{index}/blobs/sha256/{hex}", s.require(RoleAuditor, s.pageBlob))
	s.handle("/", s.require(RoleViewer, func(w http.ResponseWriter, r *http.Request) {
		s.notFound(w, r, "No page "+r.URL.Path+".", "Start from the dashboard.")
	}))
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if _, err := os.Stat(s.runs.dir); err != nil {
		http.Error(w, "run records: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ok\n"))
}

// resolveScenario finds a scenario by name: a file in the experiments
// directory (NAME, NAME.yaml or NAME.yml, read through os.Root: nothing
// outside the directory, symbolic links included), else the built-in
// library.
func (s *Server) resolveScenario(name string) (*scenarios.Document, error) {
	if name == "" {
		return nil, errors.New("no scenario named")
	}
	if s.opt.Experiments != "" && validID(name) {
		if root, err := os.OpenRoot(s.opt.Experiments); err == nil {
			defer root.Close()
			for _, f := range []string{name, name + ".yaml", name + ".yml"} {
				if st, err := root.Stat(f); err == nil && st.Mode().IsRegular() {
					return scenarios.LoadFileIn(s.opt.Experiments, f)
				}
			}
		}
	}
	return scenarios.Library(name)
}
