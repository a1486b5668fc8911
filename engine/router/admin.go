package router

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/chaosgate/chaosgate/engine"
)

// SplitState is what GET /split answers: the weight in force, the rules
// and what was counted since the last reset.
type SplitState struct {
	CanaryWeight int           `json:"canary_weight"`
	Headers      []HeaderMatch `json:"headers,omitempty"`
	StickyHeader string        `json:"sticky_header,omitempty"`
	Counts       Counts        `json:"counts"`
	// MeasuredCanaryPercent is the canary's share of the counted requests.
	MeasuredCanaryPercent float64 `json:"measured_canary_percent"`
}

// SplitChange is the body of PUT /split.
type SplitChange struct {
	// CanaryWeight is the new weight (0..100).
	CanaryWeight *int `json:"canary_weight"`
	// ResetCounts starts the counts afresh with the new weight.
	ResetCounts bool `json:"reset_counts,omitempty"`
}

// ParseSplitChange decodes a PUT /split body strictly: one JSON object,
// no unknown fields, canary_weight present and within 0..100. Errors name
// the JSON path and say what is expected.
func ParseSplitChange(b []byte) (SplitChange, error) {
	var c SplitChange
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return c, fmt.Errorf("$.%s: %s is not a %s (hint: {\"canary_weight\": 10})", te.Field, te.Value, te.Type)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return c, fmt.Errorf("$: %s (hint: the fields are canary_weight and reset_counts)", strings.TrimPrefix(err.Error(), "json: "))
		default:
			return c, fmt.Errorf("$: not a JSON object: %v (hint: {\"canary_weight\": 10})", err)
		}
	}
	if dec.More() {
		return c, errors.New("$: more than one JSON value (hint: send one object)")
	}
	if c.CanaryWeight == nil {
		return c, errors.New("$.canary_weight: missing (hint: {\"canary_weight\": 10})")
	}
	if *c.CanaryWeight < 0 || *c.CanaryWeight > 100 {
		return c, fmt.Errorf("$.canary_weight: %d is outside 0..100", *c.CanaryWeight)
	}
	return c, nil
}

// State is the split in force and what was counted.
func (r *Router) State() SplitState {
	c := r.Counts()
	return SplitState{CanaryWeight: r.Weight(), Headers: r.cfg.Headers, StickyHeader: r.cfg.StickyHeader, Counts: c, MeasuredCanaryPercent: c.CanaryShare()}
}

// Admin is the router's admin API, to serve on a listener of its own (the
// routed traffic must not be able to move the weight):
//
//	GET /split     the weight, the rules and the counts (SplitState)
//	PUT /split     {"canary_weight": 10, "reset_counts": true}
//	GET /metrics   Prometheus metrics (chaosgate_router_*)
func (r *Router) Admin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /split", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, r.State())
	})
	mux.HandleFunc("PUT /split", func(w http.ResponseWriter, req *http.Request) {
		b, err := io.ReadAll(io.LimitReader(req.Body, 64<<10))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		c, err := ParseSplitChange(b)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		if c.ResetCounts {
			r.ResetCounts()
		}
		_ = r.SetWeight(*c.CanaryWeight) // checked by ParseSplitChange
		writeJSON(w, http.StatusOK, r.State())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// ParseHeaderMatch reads NAME=VALUE (the form of `chaosgate router
// --header`): requests whose header NAME equals VALUE go to the canary.
func ParseHeaderMatch(s string) (HeaderMatch, error) {
	name, value, ok := strings.Cut(s, "=")
	if !ok {
		return HeaderMatch{}, fmt.Errorf("header match %q: want NAME=VALUE (hint: --header x-canary=always)", s)
	}
	name = strings.TrimSpace(name)
	if err := validHeaderName(name); err != nil {
		return HeaderMatch{}, fmt.Errorf("header match %q: %w (hint: --header x-canary=always)", s, err)
	}
	if value == "" {
		return HeaderMatch{}, fmt.Errorf("header match %q: empty value (hint: --header x-canary=always)", s)
	}
	return HeaderMatch{Name: name, Value: value, Arm: engine.ArmCanary}, nil
}
