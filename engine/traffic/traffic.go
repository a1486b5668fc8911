// Package traffic moves real requests between a canary and its stable
// control on Kubernetes: it sets the split on the route object the
// cluster's gateway or mesh already serves — a Gateway API HTTPRoute's
// backend weights, an Istio VirtualService's route weights or an SMI
// TrafficSplit's backend weights (Linkerd, Open Service Mesh) — with an
// optional header match that sends every request carrying it to the
// canary (HTTPRoute and VirtualService; a TrafficSplit splits by weight
// only). chaosgate owns the route object (server-side apply with its own
// field manager), so each step's split is one apply that the API server
// checks against the route's real CRD schema.
//
// Argo Rollouts and Flagger users keep their controller moving traffic and
// ask chaosgate's gate endpoints for the verdict instead.
package traffic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/chaosgate/chaosgate/engine"
)

// Providers of a traffic split.
const (
	GatewayAPI = "gatewayAPI" // a Gateway API HTTPRoute (gateway.networking.k8s.io/v1)
	Istio      = "istio"      // an Istio VirtualService (networking.istio.io/v1)
	SMI        = "smi"        // an SMI TrafficSplit (split.smi-spec.io/v1alpha2)
)

// Resources of the route objects.
var (
	HTTPRouteGVR      = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	VirtualServiceGVR = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
	// TrafficSplitGVR is SMI's v1alpha2, the version Linkerd's SMI
	// extension and Open Service Mesh serve and store.
	TrafficSplitGVR = schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha2", Resource: "trafficsplits"}
)

// FieldManager is the server-side apply manager of the route objects.
const FieldManager = "chaosgate"

// HeaderMatch sends every request whose header Name equals Value to the
// canary, whatever the weight (the seeds' x-deployment-id, x-canary).
type HeaderMatch struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Config names the route object and the two Services it splits between.
type Config struct {
	Provider  string `json:"provider"`
	Namespace string `json:"namespace"`
	// Route is the HTTPRoute, VirtualService or TrafficSplit name.
	Route string `json:"route"`
	// ApexService is the Service clients address that a TrafficSplit
	// divides between the arms' Services (smi only).
	ApexService string `json:"apex_service,omitempty"`
	// Gateway is the Gateway an HTTPRoute attaches to (its parentRef).
	Gateway string `json:"gateway,omitempty"`
	// Hosts are an HTTPRoute's hostnames (optional) or a VirtualService's
	// hosts (required).
	Hosts []string `json:"hosts,omitempty"`
	// StableService and CanaryService are the Services of each arm, on
	// Port.
	StableService string `json:"stable_service"`
	CanaryService string `json:"canary_service"`
	Port          int    `json:"port"`
	// Header, optional, sends matching requests to the canary.
	Header *HeaderMatch `json:"header,omitempty"`
}

// Validate checks the configuration before anything is sent.
func (c Config) Validate() error {
	var errs []error
	switch c.Provider {
	case GatewayAPI:
		if c.Gateway == "" {
			errs = append(errs, errors.New("gatewayAPI needs the Gateway the HTTPRoute attaches to (gateway)"))
		}
	case Istio:
		if len(c.Hosts) == 0 {
			errs = append(errs, errors.New("istio needs the VirtualService's hosts"))
		}
	case SMI:
		if c.ApexService == "" {
			errs = append(errs, errors.New("smi needs the apex Service the TrafficSplit divides (apexService)"))
		}
		if c.Header != nil {
			errs = append(errs, errors.New("an SMI TrafficSplit (v1alpha2) splits by weight only; a header match needs gatewayAPI or istio"))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown traffic provider %q (want %s, %s or %s)", c.Provider, GatewayAPI, Istio, SMI))
	}
	if c.Namespace == "" || c.Route == "" || c.StableService == "" || c.CanaryService == "" {
		errs = append(errs, errors.New("namespace, route, stableService and canaryService are required"))
	}
	if c.StableService == c.CanaryService && c.StableService != "" {
		errs = append(errs, fmt.Errorf("stableService and canaryService are both %q", c.StableService))
	}
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d is outside 1..65535", c.Port))
	}
	if h := c.Header; h != nil && (h.Name == "" || h.Value == "") {
		errs = append(errs, errors.New("a header match needs a name and a value"))
	}
	return errors.Join(errs...)
}

// Router sets the split on the route object.
type Router struct {
	dyn dynamic.Interface
	cfg Config
}

// New returns a router for a validated configuration.
func New(dyn dynamic.Interface, cfg Config) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Router{dyn: dyn, cfg: cfg}, nil
}

func (r *Router) gvr() schema.GroupVersionResource {
	switch r.cfg.Provider {
	case Istio:
		return VirtualServiceGVR
	case SMI:
		return TrafficSplitGVR
	}
	return HTTPRouteGVR
}

// Describe names the route object ("HTTPRoute shop/aggregator").
func (r *Router) Describe() string {
	k := "HTTPRoute"
	switch r.cfg.Provider {
	case Istio:
		k = "VirtualService"
	case SMI:
		k = "TrafficSplit"
	}
	return k + " " + r.cfg.Namespace + "/" + r.cfg.Route
}

// SetWeight sends canaryPercent of the requests (0..100) to the canary and
// the rest to the stable Service, by applying the whole route object; the
// API server validates it against the route's CRD.
func (r *Router) SetWeight(ctx context.Context, canaryPercent int) error {
	if canaryPercent < 0 || canaryPercent > 100 {
		return fmt.Errorf("canary weight %d is outside 0..100", canaryPercent)
	}
	obj := r.Object(canaryPercent)
	_, err := r.dyn.Resource(r.gvr()).Namespace(r.cfg.Namespace).Apply(ctx, r.cfg.Route, obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("set %s to %d%% canary: %w", r.Describe(), canaryPercent, err)
	}
	return nil
}

// Object builds the route object for a canary weight.
func (r *Router) Object(canaryPercent int) *unstructured.Unstructured {
	c := r.cfg
	meta := map[string]any{"name": c.Route, "namespace": c.Namespace,
		"labels": map[string]any{"app.kubernetes.io/managed-by": "chaosgate"}}
	if c.Provider == SMI {
		backend := func(svc string, w int) map[string]any { return map[string]any{"service": svc, "weight": int64(w)} }
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "split.smi-spec.io/v1alpha2", "kind": "TrafficSplit", "metadata": meta,
			"spec": map[string]any{"service": c.ApexService, "backends": []any{backend(c.StableService, 100-canaryPercent), backend(c.CanaryService, canaryPercent)}},
		}}
	}
	if c.Provider == Istio {
		dest := func(svc string, w int) map[string]any {
			return map[string]any{"destination": map[string]any{"host": svc, "port": map[string]any{"number": int64(c.Port)}}, "weight": int64(w)}
		}
		var routes []any
		if h := c.Header; h != nil {
			routes = append(routes, map[string]any{
				"name":  "canary-by-header",
				"match": []any{map[string]any{"headers": map[string]any{h.Name: map[string]any{"exact": h.Value}}}},
				"route": []any{dest(c.CanaryService, 100)},
			})
		}
		routes = append(routes, map[string]any{"name": "split", "route": []any{dest(c.StableService, 100-canaryPercent), dest(c.CanaryService, canaryPercent)}})
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": meta,
			"spec": map[string]any{"hosts": toAny(c.Hosts), "http": routes},
		}}
	}
	backend := func(svc string, w int) map[string]any {
		return map[string]any{"name": svc, "port": int64(c.Port), "weight": int64(w)}
	}
	var rules []any
	if h := c.Header; h != nil {
		rules = append(rules, map[string]any{
			"matches":     []any{map[string]any{"headers": []any{map[string]any{"type": "Exact", "name": h.Name, "value": h.Value}}}},
			"backendRefs": []any{backend(c.CanaryService, 1)},
		})
	}
	rules = append(rules, map[string]any{"backendRefs": []any{backend(c.StableService, 100-canaryPercent), backend(c.CanaryService, canaryPercent)}})
	spec := map[string]any{"parentRefs": []any{map[string]any{"name": c.Gateway}}, "rules": rules}
	if len(c.Hosts) > 0 {
		spec["hostnames"] = toAny(c.Hosts)
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": meta, "spec": spec,
	}}
}

// Split is the split a route object holds, read back.
type Split struct {
	// Weights maps each backend Service of the weighted rule to its
	// weight.
	Weights map[string]int64 `json:"weights"`
	// CanaryPercent is the canary's share of the weighted rule (0..100).
	CanaryPercent float64 `json:"canary_percent"`
	// Header is the header match that sends requests to the canary, if
	// any.
	Header *HeaderMatch `json:"header,omitempty"`
}

// Read returns the split the route object holds now.
func (r *Router) Read(ctx context.Context) (Split, error) {
	u, err := r.dyn.Resource(r.gvr()).Namespace(r.cfg.Namespace).Get(ctx, r.cfg.Route, metav1.GetOptions{})
	if err != nil {
		return Split{}, fmt.Errorf("read %s: %w", r.Describe(), err)
	}
	s := Split{Weights: map[string]int64{}}
	switch r.cfg.Provider {
	case SMI:
		backends, _, _ := unstructured.NestedSlice(u.Object, "spec", "backends")
		for _, b := range backends {
			bm, _ := b.(map[string]any)
			svc, _, _ := unstructured.NestedString(bm, "service")
			s.Weights[svc] = weightOf(bm["weight"])
		}
	case Istio:
		routes, _, _ := unstructured.NestedSlice(u.Object, "spec", "http")
		for _, x := range routes {
			rt, _ := x.(map[string]any)
			dests, _, _ := unstructured.NestedSlice(rt, "route")
			if m, ok, _ := unstructured.NestedSlice(rt, "match"); ok && len(m) > 0 {
				if hs, ok, _ := unstructured.NestedMap(m[0].(map[string]any), "headers"); ok && len(hs) > 0 {
					for k, v := range hs {
						val, _, _ := unstructured.NestedString(v.(map[string]any), "exact")
						s.Header = &HeaderMatch{Name: k, Value: val}
					}
					continue
				}
			}
			for _, d := range dests {
				dm, _ := d.(map[string]any)
				host, _, _ := unstructured.NestedString(dm, "destination", "host")
				w, _, _ := unstructured.NestedInt64(dm, "weight")
				s.Weights[host] = w
			}
		}
	default:
		rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
		for _, x := range rules {
			rl, _ := x.(map[string]any)
			refs, _, _ := unstructured.NestedSlice(rl, "backendRefs")
			// The API server gives a rule without matches a default
			// path match: the header rule is the one matching a header.
			if m, ok, _ := unstructured.NestedSlice(rl, "matches"); ok && len(m) > 0 {
				if hs, ok, _ := unstructured.NestedSlice(m[0].(map[string]any), "headers"); ok && len(hs) > 0 {
					h := hs[0].(map[string]any)
					name, _, _ := unstructured.NestedString(h, "name")
					val, _, _ := unstructured.NestedString(h, "value")
					s.Header = &HeaderMatch{Name: name, Value: val}
					continue
				}
			}
			for _, ref := range refs {
				rm, _ := ref.(map[string]any)
				name, _, _ := unstructured.NestedString(rm, "name")
				w, ok, _ := unstructured.NestedInt64(rm, "weight")
				if !ok {
					w = 1 // the Gateway API default
				}
				s.Weights[name] = w
			}
		}
	}
	var total int64
	for _, w := range s.Weights {
		total += w
	}
	if total > 0 {
		s.CanaryPercent = 100 * float64(s.Weights[r.cfg.CanaryService]) / float64(total)
	}
	return s, nil
}

// weightOf reads a TrafficSplit backend's weight, a JSON number: the API
// server hands back an integer as int64, a fraction (another writer's) as
// float64, rounded here.
func weightOf(v any) int64 {
	switch w := v.(type) {
	case int64:
		return w
	case float64:
		return int64(math.Round(w))
	}
	return 0
}

func toAny(xs []string) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}

// ServiceNames lists the Services of a split, sorted.
func (s Split) ServiceNames() []string {
	out := make([]string, 0, len(s.Weights))
	for k := range s.Weights {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// SplitID is the journal ID of a game day's traffic split.
const SplitID = "traffic-split"

// Journaled is what a game day journals before it first moves requests to
// the canary: a TrafficSplit entry whose undo information is this router's
// configuration, so that the reaper can send every request back to the
// stable Service after a crash (Restorer).
func (r *Router) Journaled() engine.Applied {
	undo, _ := json.Marshal(r.cfg) // a struct of strings and ints: cannot fail
	return engine.Applied{ID: SplitID, Kind: engine.TrafficSplit, Target: engine.Target{Arm: engine.ArmCanary}, Fault: engine.Fault{ID: SplitID, Kind: engine.TrafficSplit},
		Backend: "k8s", Undo: undo, Detail: r.Describe()}
}

// Restorer is the reaper's injector for TrafficSplit entries: recovering
// one applies the route object with 0 % canary and without the header
// match, so that no request reaches a canary whose rollout was cut short
// (Flagger's rollback does the same). Nothing injects a split
// through it; the game day's steps set it.
type Restorer struct {
	Dyn dynamic.Interface
}

// Inject refuses: a split is set by a game day's steps, not injected.
func (Restorer) Inject(context.Context, engine.Target, engine.Fault) (engine.Applied, error) {
	return engine.Applied{}, engine.E(engine.KindInvalid, "traffic", errors.New("a traffic split is set by a game day's canary steps, not injected as a fault"))
}

// Recover sends every request of the journaled route back to the stable
// Service, and reads the route back to check it.
func (r Restorer) Recover(ctx context.Context, a engine.Applied) error {
	var c Config
	if err := json.Unmarshal(a.Undo, &c); err != nil {
		return engine.E(engine.KindInvalid, "traffic", fmt.Errorf("journaled traffic split %s: undo information: %w", a.ID, err))
	}
	c.Header = nil
	rt, err := New(r.Dyn, c)
	if err != nil {
		return engine.E(engine.KindInvalid, "traffic", fmt.Errorf("journaled traffic split %s: %w", a.ID, err))
	}
	if err := rt.SetWeight(ctx, 0); err != nil {
		return engine.E(engine.KindUnavailable, "traffic", err)
	}
	s, err := rt.Read(ctx)
	if err != nil {
		return engine.E(engine.KindUnavailable, "traffic", err)
	}
	if s.CanaryPercent != 0 || s.Header != nil {
		return engine.E(engine.KindUnavailable, "traffic", fmt.Errorf("%s still sends requests to the canary (%.1f%%, header match %v) after it was restored", rt.Describe(), s.CanaryPercent, s.Header != nil))
	}
	return nil
}
