package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/chaosgate/chaosgate/aggregator/partition"
	"github.com/chaosgate/chaosgate/internal/traceparent"
)

// Handler is the node's HTTP API (API.md).
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/messages", n.guard("messages", n.handleMessages))
	mux.HandleFunc("GET /v1/stream/{partition}", n.guard("stream", n.handleStream))
	mux.HandleFunc("GET /v1/state/{key}", n.guard("state_get", n.handleGetState))
	mux.HandleFunc("PUT /v1/state/{key}", n.guard("state_put", n.handlePutState))
	mux.HandleFunc("GET /v1/ws", n.handleWebSocket)
	n.upstreamRoutes(mux)
	n.adminRoutes(mux)
	mux.HandleFunc("GET /v1/cluster", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, n.Cluster()) })
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ok, why := n.Ready()
		w.Header().Set("Content-Type", "text/plain")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = io.WriteString(w, why+"\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	if n.cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(c int) {
	s.code = c
	s.ResponseWriter.WriteHeader(c)
}

// guard bounds concurrent requests (the worker pool): beyond the bound a
// request is refused with 429 at once instead of queueing.
func (n *Node) guard(route string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		defer func() { n.metrics.httpRequests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc() }()
		n.observeHeader(r.Header.Get(hlcHeader))
		sw.Header().Set(hlcHeader, n.clock.Last().String())
		if tp, ok := requestTrace(r); ok {
			// The request log of sampled W3C traces: a trace id the
			// caller recorded is found here, whatever the answer — a
			// request shed with 429 below is logged too.
			r = r.WithContext(context.WithValue(r.Context(), traceKey{}, tp))
			start := time.Now()
			defer func() {
				n.log.Info("http request", "route", route, "method", r.Method, "path", r.URL.Path, "status", sw.code,
					"duration_ms", float64(time.Since(start).Microseconds())/1000, "trace_id", tp.TraceIDString(), "parent_id", tp.SpanIDString(),
					"forwarded", r.Header.Get(forwardHeader) == "1")
			}()
		}
		if !n.cfg.Defects.Has(DefectUnboundedQueue) {
			select {
			case n.reqSem <- struct{}{}:
				defer func() { <-n.reqSem }()
			default:
				n.metrics.rejects.WithLabelValues("requests").Inc()
				writeErr(sw, errorf(KindOverload, "overloaded: %d requests in flight", n.cfg.MaxRequests))
				return
			}
		}
		n.inflightReq.Add(1)
		defer n.inflightReq.Add(-1)
		h(sw, r)
	}
}

// traceKey is the context key of a request's W3C trace parent.
type traceKey struct{}

// requestTrace is the request's traceparent when it is valid and sampled.
func requestTrace(r *http.Request) (traceparent.TraceParent, bool) {
	h := r.Header.Get(traceparent.Header)
	if h == "" {
		return traceparent.TraceParent{}, false
	}
	tp, err := traceparent.Parse(h)
	if err != nil || !tp.Sampled() {
		return traceparent.TraceParent{}, false
	}
	return tp, true
}

// propagateTrace gives a node-to-node request the trace of the request
// that caused it (same trace id, a new span id), so the leader's request
// log carries the caller's trace id too.
func propagateTrace(ctx context.Context, req *http.Request) {
	tp, ok := ctx.Value(traceKey{}).(traceparent.TraceParent)
	if !ok {
		return
	}
	child := traceparent.New()
	child.TraceID, child.Flags = tp.TraceID, tp.Flags
	req.Header.Set(traceparent.Header, child.String())
}

func (n *Node) handleMessages(w http.ResponseWriter, r *http.Request) {
	if !n.cfg.Defects.Has(DefectUnboundedQueue) {
		if n.overMemory() {
			n.metrics.rejects.WithLabelValues("memory").Inc()
			writeErr(w, errorf(KindOverload, "overloaded: memory %d MiB is above 80%% of the %d MiB cap", n.memBytes.Load()>>20, n.cfg.RSSCap>>20))
			return
		}
		size := r.ContentLength
		if size < 0 || size > MaxBodyBytes {
			size = MaxBodyBytes
		}
		size = max(size, 4096)
		if !n.bodyBudget.TryAcquire(size) {
			n.metrics.rejects.WithLabelValues("body_bytes").Inc()
			writeErr(w, errorf(KindOverload, "overloaded: too many request bytes in flight"))
			return
		}
		defer n.bodyBudget.Release(size)
	}
	buf := bytes.NewBuffer(make([]byte, 0, min(max(r.ContentLength, 0), MaxBodyBytes+1)+bytes.MinRead)) // room for EOF: no regrowth
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, MaxBodyBytes+1)); err != nil {
		writeErr(w, errorf(KindInvalid, "reading body: %v", err))
		return
	}
	body := buf.Bytes()
	msgs, err := DecodeMessages(body)
	if err != nil {
		writeErr(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	res := n.Ingest(ctx, msgs, IngestOptions{Forwarded: r.Header.Get(forwardHeader) == "1", Conn: r.RemoteAddr})
	code, retry := ingestStatus(res)
	if retry > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(max(1, (retry+999)/1000), 10))
	}
	writeJSON(w, code, IngestResponse{Results: res})
}

// ingestStatus maps results to the HTTP status of API.md.
func ingestStatus(res []Result) (int, int64) {
	var rejected, stale, noLeader, failed bool
	var retry int64
	for _, r := range res {
		switch r.Status {
		case StatusRejected:
			rejected = true
			retry = max(retry, r.RetryAfterMs)
		case StatusStaleEpoch:
			stale = true
		case StatusError:
			if r.ErrorKind == "no_leader" || r.ErrorKind == "not_leader" || r.ErrorKind == "unavailable" || r.ErrorKind == "unknown_outcome" {
				noLeader = true
			} else {
				failed = true
			}
		}
	}
	switch {
	case rejected:
		return http.StatusTooManyRequests, max(retry, 1)
	case stale:
		return http.StatusConflict, 0
	case noLeader:
		return http.StatusServiceUnavailable, 0
	case failed:
		return http.StatusInternalServerError, 0
	}
	return http.StatusOK, 0
}

// leaderOrForward serves locally when this node leads partition p (or the
// stale-read defect is on) and otherwise forwards the request to the leader.
func (n *Node) leaderOrForward(w http.ResponseWriter, r *http.Request, p int) bool {
	g, err := n.group(p)
	if err != nil {
		writeErr(w, err)
		return false
	}
	if g.isLeader() || n.cfg.Defects.Has(DefectStaleRead) {
		return true
	}
	leader := g.leader()
	if leader == "" || leader == n.cfg.ID || r.Header.Get(forwardHeader) == "1" {
		writeErr(w, errorf(KindUnavailable, "partition %d: no leader reachable from %s (leader %q); retry", p, n.cfg.ID, leader))
		return false
	}
	n.forwardGet(w, r, leader)
	return false
}

func (n *Node) handleStream(w http.ResponseWriter, r *http.Request) {
	p, err := strconv.Atoi(r.PathValue("partition"))
	if err != nil {
		writeErr(w, errorf(KindNotFound, "partition %q is not a number (partitions 0..%d)", r.PathValue("partition"), n.cfg.Partitions-1))
		return
	}
	q := r.URL.Query()
	from, limit := uint64(0), 1000
	if s := q.Get("from"); s != "" {
		if from, err = strconv.ParseUint(s, 10, 64); err != nil {
			writeErr(w, errorf(KindInvalid, "from=%q: want a non-negative offset", s))
			return
		}
	}
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 10000 {
			writeErr(w, errorf(KindInvalid, "limit=%q: want 1..10000", s))
			return
		}
	}
	if !n.leaderOrForward(w, r, p) {
		return
	}
	page, err := n.ReadStream(r.Context(), p, from, limit)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (n *Node) handleGetState(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if !n.leaderOrForward(w, r, partition.Of(key, n.cfg.Partitions)) {
		return
	}
	ks, err := n.GetState(r.Context(), key)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ks)
}

func (n *Node) handlePutState(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		writeErr(w, errorf(KindInvalid, "reading body: %v", err))
		return
	}
	var req PutStateRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErr(w, jsonError(body, "$", err))
		return
	}
	if err := validatePut(key, req); err != nil {
		writeErr(w, err)
		return
	}
	g, err := n.group(partition.Of(key, n.cfg.Partitions))
	if err != nil {
		writeErr(w, err)
		return
	}
	if !g.isLeader() {
		leader := g.leader()
		if leader == "" || leader == n.cfg.ID || r.Header.Get(forwardHeader) == "1" {
			writeErr(w, errorf(KindUnavailable, "partition %d: no leader reachable from %s; retry", g.id, n.cfg.ID))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		n.forwardGet(w, r, leader)
		return
	}
	ks, err := n.PutState(r.Context(), key, req)
	if err != nil {
		if k := KindOf(err); k == KindConflict || k == KindIllegal {
			w.Header().Set("Content-Type", "application/json")
			code := http.StatusConflict
			if k == KindIllegal {
				code = http.StatusUnprocessableEntity
			}
			writeJSON(w, code, struct {
				KeyState
				Error string `json:"error"`
				Kind  string `json:"kind"`
			}{ks, err.Error(), kindName(k)})
			return
		}
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ks)
}

func kindName(k ErrKind) string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindNotFound:
		return "not_found"
	case KindUnavailable:
		return "unavailable"
	case KindOverload:
		return "overload"
	case KindConflict:
		return "conflict"
	case KindGone:
		return "gone"
	case KindIllegal:
		return "illegal_transition"
	}
	return "internal"
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeErr maps an error to its HTTP status and a JSON body.
func writeErr(w http.ResponseWriter, err error) {
	var ie *InputError
	if errors.As(err, &ie) {
		code := http.StatusBadRequest
		if ie.TooBig {
			code = http.StatusRequestEntityTooLarge
		}
		writeJSON(w, code, ErrorBody{Error: ie.Error(), Kind: "invalid", Path: ie.Path, Hint: ie.Hint})
		return
	}
	k := KindOf(err)
	code := map[ErrKind]int{KindInvalid: 400, KindNotFound: 404, KindUnavailable: 503, KindOverload: 429, KindConflict: 409, KindGone: 410, KindIllegal: 422}[k]
	if code == 0 {
		code = 500
	}
	body := ErrorBody{Error: err.Error(), Kind: kindName(k)}
	if k == KindOverload {
		body.RetryAfterMs = 100
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, code, body)
}
