package gameday

// A local game day's load through chaosgate's own L7 router.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/router"
	"github.com/chaosgate/chaosgate/scenarios"
)

// l7Router is chaosgate's router in front of a local target's arms
// (experiment files: traffic: {provider: router}). Every request of the
// load — messages, state reads and writes, the drain — goes through it,
// pinned to its arm by scenarios.RouterPinHeader: a load source's messages
// are sequenced per cluster, so a source never changes arms, as a session
// behind sticky routing does not. Requests without the pin (a user's own,
// sent to the router's address during the game day) are split by the
// step's canary weight, or by the file's header match and sticky header.
type l7Router struct {
	rt   *router.Router
	srv  *http.Server
	addr string
	done chan struct{}
}

// startRouter starts the router when the experiment file asks for it; the
// arms' client addresses (the proxies of the client edges, so that faults
// on those edges still apply) are its upstreams.
func (r *Run) startRouter() error {
	tr := r.cfg.Doc.Spec.Traffic
	if tr == nil || tr.Provider != scenarios.TrafficRouter {
		return nil
	}
	cfg := router.Config{StickyHeader: tr.StickyHeader}
	for _, arm := range r.target.LoadArms() {
		var ups []*url.URL
		for _, a := range r.target.ClientAddrs(arm) {
			ups = append(ups, &url.URL{Scheme: "http", Host: a})
		}
		switch arm {
		case engine.ArmCanary:
			cfg.Canary = ups
		case engine.ArmControl:
			cfg.Control = ups
		case engine.ArmCalibration:
			cfg.Calibration = ups
		}
		cfg.Headers = append(cfg.Headers, router.HeaderMatch{Name: scenarios.RouterPinHeader, Value: arm.String(), Arm: arm})
	}
	if h := tr.Header; h != nil {
		cfg.Headers = append(cfg.Headers, router.HeaderMatch{Name: h.Name, Value: h.Value, Arm: engine.ArmCanary})
	}
	// The load's own deadline (2 s per request, then a retry) bounds a
	// round trip; the router's is a backstop.
	cfg.Timeout = 30 * time.Second
	rt, err := router.New(cfg)
	if err != nil {
		return engine.E(engine.KindInvalid, "router", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return engine.E(engine.KindUnavailable, "router", err)
	}
	l := &l7Router{rt: rt, addr: ln.Addr().String(), done: make(chan struct{}),
		srv: &http.Server{Handler: rt, ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		defer close(l.done)
		if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.emit(engine.EventInfo, "", 0, "router stopped: "+err.Error())
		}
	}()
	r.l7 = l
	r.emit(engine.EventInfo, "setup", 0, fmt.Sprintf("router: http://%s in front of the arms; the load is pinned to its arm by %s; other requests split by the canary weight%s",
		l.addr, scenarios.RouterPinHeader, routerRules(tr)))
	return nil
}

func routerRules(tr *scenarios.Traffic) string {
	var s []string
	if h := tr.Header; h != nil {
		s = append(s, fmt.Sprintf("%s: %s → canary", h.Name, h.Value))
	}
	if tr.StickyHeader != "" {
		s = append(s, "sticky by "+tr.StickyHeader)
	}
	if len(s) == 0 {
		return ""
	}
	return " (" + strings.Join(s, "; ") + ")"
}

// setWeight logs what the router carried since the last weight change,
// per arm and reason, and moves its weight.
func (l *l7Router) setWeight(r *Run, weight int) error {
	l.logCounts(r)
	l.rt.ResetCounts()
	return l.rt.SetWeight(weight)
}

// logCounts logs what the router carried at its weight since the counts
// were last reset, if anything.
func (l *l7Router) logCounts(r *Run) {
	if c := l.rt.Counts(); c.Canary+c.Control+c.Calibration > 0 {
		r.emit(engine.EventInfo, "traffic", l.rt.Weight(), "router: at "+fmt.Sprint(l.rt.Weight())+"% "+describeCounts(c))
	}
}

// describeCounts: "canary 1234, control 5678, calibration 1200 requests
// (canary/header 1234, …)".
func describeCounts(c router.Counts) string {
	keys := make([]string, 0, len(c.By))
	for k := range c.By {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var by []string
	for _, k := range keys {
		by = append(by, fmt.Sprintf("%s %d", k, c.By[k]))
	}
	return fmt.Sprintf("canary %d, control %d, calibration %d requests (%s)", c.Canary, c.Control, c.Calibration, strings.Join(by, ", "))
}

// close logs the last counts and stops the router once the load stopped.
func (l *l7Router) close(r *Run) {
	l.logCounts(r)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.srv.Shutdown(ctx); err != nil {
		l.srv.Close()
	}
	<-l.done
}
