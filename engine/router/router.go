// Package router is chaosgate's own L7 router: a reverse proxy in front of
// a canary and its stable control that sends each request to one arm —
// by a header match (x-canary: always), by a sticky hash of a header
// (x-deployment-id: each value always reaches the same arm, and the values
// split by the canary weight), or by the weight alone (exactly w of every
// 100 requests). It says which arm served each request in the response
// header X-Chaosgate-Arm, counts every request by arm, reason and status
// (Prometheus metrics on its admin handler), and takes a new weight at any
// time through its admin API or SetWeight.
//
// It is the router for a service that has no gateway or mesh of its own
// (`chaosgate router` in front of a user's two deployments); on
// Kubernetes chaosgate sets the split on the cluster's own HTTPRoute or
// VirtualService instead (engine/traffic).
package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaosgate/chaosgate/engine"
)

// ArmHeader is the response header that names the arm that served a
// request ("canary" or "control").
const ArmHeader = "X-Chaosgate-Arm"

// Reasons a request went to its arm.
const (
	ReasonHeader = "header" // a header match
	ReasonSticky = "sticky" // the hash of the sticky header's value
	ReasonWeight = "weight" // the weight alone
)

// HeaderMatch sends every request whose header Name equals Value to Arm,
// whatever the weight. Name is matched case-insensitively, Value exactly.
type HeaderMatch struct {
	Name  string     `json:"name"`
	Value string     `json:"value"`
	Arm   engine.Arm `json:"arm"`
}

// Config is what the router routes between and how.
type Config struct {
	// Canary and Control are the arms' upstreams (base URLs, one per
	// replica); each arm's requests go round-robin over its upstreams, and
	// to the next one when an upstream refuses the connection.
	Canary  []*url.URL
	Control []*url.URL
	// Calibration, optional, is a third arm that only a header match
	// reaches (a game day's A/A control, whose load is pinned to it the
	// way the other arms' is); the weight never sends requests there.
	Calibration []*url.URL
	// CanaryWeight is the canary's share of the requests no header match
	// claims, in percent (0..100).
	CanaryWeight int
	// Headers are checked in order; the first match decides.
	Headers []HeaderMatch
	// StickyHeader, when set, splits the requests carrying it by a hash of
	// its value, so that one value (a deployment id, a session) always
	// reaches the same arm while the weight holds, and a higher weight only
	// moves values from the control to the canary.
	StickyHeader string
	// Timeout bounds one upstream round trip (default 30 s).
	Timeout time.Duration
}

// Validate checks the configuration before the router starts.
func (c Config) Validate() error {
	var errs []error
	if len(c.Canary) == 0 {
		errs = append(errs, errors.New("no canary upstream"))
	}
	if len(c.Control) == 0 {
		errs = append(errs, errors.New("no control upstream"))
	}
	for _, u := range append(append(append([]*url.URL{}, c.Canary...), c.Control...), c.Calibration...) {
		if u == nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("upstream %v is not an http(s) URL with a host", u))
		}
	}
	if c.CanaryWeight < 0 || c.CanaryWeight > 100 {
		errs = append(errs, fmt.Errorf("canary weight %d is outside 0..100", c.CanaryWeight))
	}
	for i, h := range c.Headers {
		if err := validHeaderName(h.Name); err != nil {
			errs = append(errs, fmt.Errorf("header match %d: %w", i, err))
		}
		switch {
		case h.Arm == engine.ArmCalibration && len(c.Calibration) == 0:
			errs = append(errs, fmt.Errorf("header match %d (%s): no calibration upstream to send it to", i, h.Name))
		case h.Arm != engine.ArmCanary && h.Arm != engine.ArmControl && h.Arm != engine.ArmCalibration:
			errs = append(errs, fmt.Errorf("header match %d (%s): arm must be canary, control or calibration", i, h.Name))
		}
	}
	if c.StickyHeader != "" {
		if err := validHeaderName(c.StickyHeader); err != nil {
			errs = append(errs, fmt.Errorf("sticky header: %w", err))
		}
	}
	return errors.Join(errs...)
}

// validHeaderName accepts an HTTP field name (RFC 9110 token).
func validHeaderName(n string) error {
	if n == "" {
		return errors.New("empty header name")
	}
	for _, r := range n {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return fmt.Errorf("header name %q has the character %q, which HTTP does not allow in a field name", n, r)
		}
	}
	return nil
}

// Router is the reverse proxy. Its zero value is not usable; call New.
type Router struct {
	cfg    Config
	weight atomic.Int64
	// seq numbers the weight-routed requests: request n goes to the canary
	// when ⌊(n+1)·w/100⌋ > ⌊n·w/100⌋, so every 100 consecutive ones hold
	// exactly w canary requests.
	seq   atomic.Uint64
	next  [3]atomic.Uint64 // round-robin cursor per arm (canary, control, calibration)
	proxy *httputil.ReverseProxy

	mu     sync.Mutex
	counts map[countKey]uint64

	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	weightG  prometheus.Gauge
}

type countKey struct {
	arm    engine.Arm
	reason string
}

type routeKey struct{}

// route is what the router decided for one request.
type route struct {
	arm    engine.Arm
	reason string
	start  time.Time
	// replica is the index of the arm's upstream the request goes to
	// first; a refused connection moves it on to the next.
	replica uint64
}

// New builds a router for a valid configuration.
func New(cfg Config) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	r := &Router{cfg: cfg, counts: map[countKey]uint64{}, reg: prometheus.NewRegistry()}
	r.weight.Store(int64(cfg.CanaryWeight))
	r.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chaosgate_router_requests_total",
		Help: "Requests the router sent to each arm, by the reason it chose the arm and the response status code."}, []string{"arm", "reason", "code"})
	r.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "chaosgate_router_upstream_seconds",
		Help: "Time from the request to the upstream's response headers, by arm.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"arm"})
	r.weightG = prometheus.NewGauge(prometheus.GaugeOpts{Name: "chaosgate_router_canary_weight",
		Help: "The canary's share of the weight-routed requests, in percent."})
	r.weightG.Set(float64(cfg.CanaryWeight))
	r.reg.MustRegister(r.requests, r.latency, r.weightG)

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.ResponseHeaderTimeout = cfg.Timeout
	// Keep the upstream connections: a connection closed for want of an
	// idle slot is a new one at the next request, and behind fault
	// proxies every new connection costs a proxy link. DefaultTransport's
	// cap of 100 idle connections across all upstreams is far below what
	// a few arms with several replicas each keep busy.
	transport.MaxIdleConns = 0
	transport.MaxIdleConnsPerHost = 256
	r.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			rt := pr.In.Context().Value(routeKey{}).(*route)
			pr.SetURL(r.upstreamAt(rt.arm, rt.replica))
			pr.SetXForwarded()
			pr.Out.Header.Set(ArmHeader, rt.arm.String())
		},
		Transport: &retryTransport{base: transport, r: r},
		ModifyResponse: func(resp *http.Response) error {
			rt := resp.Request.Context().Value(routeKey{}).(*route)
			resp.Header.Set(ArmHeader, rt.arm.String())
			r.observe(rt, resp.StatusCode)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			rt := req.Context().Value(routeKey{}).(*route)
			w.Header().Set(ArmHeader, rt.arm.String())
			r.observe(rt, http.StatusBadGateway)
			http.Error(w, fmt.Sprintf("chaosgate router: the %s arm did not answer: %v", rt.arm, err), http.StatusBadGateway)
		},
	}
	return r, nil
}

// retryTransport sends a request whose upstream refused the connection to
// the arm's next upstream (a killed replica), once per upstream; a request
// whose body was already sent is never retried.
type retryTransport struct {
	base http.RoundTripper
	r    *Router
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := req.Context().Value(routeKey{}).(*route)
	tries := len(t.r.upstreams(rt.arm))
	var err error
	for i := 0; i < tries; i++ {
		if i > 0 {
			next := req.Clone(req.Context())
			if req.Body != nil && req.Body != http.NoBody {
				if req.GetBody == nil {
					break
				}
				body, gerr := req.GetBody()
				if gerr != nil {
					break
				}
				next.Body = body
			}
			u := t.r.upstreamAt(rt.arm, rt.replica+uint64(i))
			next.URL.Scheme, next.URL.Host, next.Host = u.Scheme, u.Host, ""
			req = next
		}
		var resp *http.Response
		resp, err = t.base.RoundTrip(req)
		if err == nil || !refused(err) {
			return resp, err
		}
	}
	return nil, err
}

// refused reports a connection that never reached the upstream.
func refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH)
}

func (r *Router) upstreams(a engine.Arm) []*url.URL {
	switch a {
	case engine.ArmCanary:
		return r.cfg.Canary
	case engine.ArmCalibration:
		return r.cfg.Calibration
	}
	return r.cfg.Control
}

// nextReplica is the arm's next upstream index, round-robin.
func (r *Router) nextReplica(a engine.Arm) uint64 {
	i := 1
	switch a {
	case engine.ArmCanary:
		i = 0
	case engine.ArmCalibration:
		i = 2
	}
	return r.next[i].Add(1) - 1
}

// upstreamAt is the arm's upstream n (modulo their number).
func (r *Router) upstreamAt(a engine.Arm, n uint64) *url.URL {
	ups := r.upstreams(a)
	return ups[n%uint64(len(ups))]
}

func (r *Router) observe(rt *route, code int) {
	r.requests.WithLabelValues(rt.arm.String(), rt.reason, strconv.Itoa(code)).Inc()
	r.latency.WithLabelValues(rt.arm.String()).Observe(time.Since(rt.start).Seconds())
	r.mu.Lock()
	r.counts[countKey{rt.arm, rt.reason}]++
	r.mu.Unlock()
}

// Choose decides which arm a request goes to, and why, at the current
// weight. It counts a weight-routed request (the next one may differ).
func (r *Router) Choose(h http.Header) (engine.Arm, string) {
	for _, m := range r.cfg.Headers {
		for _, v := range h.Values(m.Name) {
			if v == m.Value {
				return m.Arm, ReasonHeader
			}
		}
	}
	w := uint64(r.weight.Load())
	if r.cfg.StickyHeader != "" {
		if v := h.Get(r.cfg.StickyHeader); v != "" {
			if StickyBucket(v) < w*100 {
				return engine.ArmCanary, ReasonSticky
			}
			return engine.ArmControl, ReasonSticky
		}
	}
	n := r.seq.Add(1) - 1
	if (n+1)*w/100 > n*w/100 {
		return engine.ArmCanary, ReasonWeight
	}
	return engine.ArmControl, ReasonWeight
}

// StickyBucket maps a sticky header's value to one of 10,000 buckets; the
// canary takes the buckets below weight×100. The hash is FNV-1a with a
// 64-bit finaliser, the same in every chaosgate, so a value keeps its arm
// across router restarts.
func StickyBucket(v string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(v))
	x := h.Sum64()
	// splitmix64's finaliser: FNV's low bits alone split short,
	// similar values unevenly.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x % 10000
}

// ServeHTTP routes one request.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	arm, reason := r.Choose(req.Header)
	rt := &route{arm: arm, reason: reason, start: time.Now(), replica: r.nextReplica(arm)}
	replayable(req)
	r.proxy.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), routeKey{}, rt)))
}

// maxReplayBody is the largest request body the router keeps so that it
// can send the request again to another replica of the arm.
const maxReplayBody = 1 << 20

// replayable keeps a small request body in memory (GetBody), so that a
// request whose replica refused the connection can go to the next one;
// a larger body streams through and is not retried.
func replayable(req *http.Request) {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength > maxReplayBody {
		return
	}
	b, err := io.ReadAll(io.LimitReader(req.Body, maxReplayBody+1))
	if err != nil || len(b) > maxReplayBody {
		req.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(b), req.Body), req.Body}
		return
	}
	req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(b))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// SetWeight sends weight percent (0..100) of the requests no header match
// claims to the canary from the next request on.
func (r *Router) SetWeight(weight int) error {
	if weight < 0 || weight > 100 {
		return fmt.Errorf("canary weight %d is outside 0..100", weight)
	}
	r.weight.Store(int64(weight))
	r.weightG.Set(float64(weight))
	return nil
}

// Weight is the canary weight in force.
func (r *Router) Weight() int { return int(r.weight.Load()) }

// Counts are the requests the router answered since it started or since
// the last ResetCounts, by arm and reason.
type Counts struct {
	Canary  uint64 `json:"canary"`
	Control uint64 `json:"control"`
	// Calibration counts the requests pinned to the calibration arm;
	// they take no part in the canary's share.
	Calibration uint64            `json:"calibration,omitempty"`
	By          map[string]uint64 `json:"by_reason"` // "canary/weight" → n
}

// CanaryShare is the canary's share of the counted requests, in percent
// (0 when none were counted).
func (c Counts) CanaryShare() float64 {
	if c.Canary+c.Control == 0 {
		return 0
	}
	return 100 * float64(c.Canary) / float64(c.Canary+c.Control)
}

// Counts returns what the router counted.
func (r *Router) Counts() Counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := Counts{By: map[string]uint64{}}
	for k, n := range r.counts {
		switch k.arm {
		case engine.ArmCanary:
			c.Canary += n
		case engine.ArmCalibration:
			c.Calibration += n
		default:
			c.Control += n
		}
		c.By[k.arm.String()+"/"+k.reason] += n
	}
	return c
}

// ResetCounts starts counting afresh (each canary step measures its own
// split); the Prometheus counters are never reset.
func (r *Router) ResetCounts() {
	r.mu.Lock()
	r.counts = map[countKey]uint64{}
	r.mu.Unlock()
}

// Registry holds the router's metrics.
func (r *Router) Registry() *prometheus.Registry { return r.reg }

// Config is the configuration the router was built with; CanaryWeight is
// the weight in force.
func (r *Router) Config() Config {
	c := r.cfg
	c.CanaryWeight = r.Weight()
	return c
}
