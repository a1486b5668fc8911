// Package proxy runs user-space TCP fault proxies (Toxiproxy embedded as a
// library), one per directed edge of the system under test (client→node
// and node→node), and applies latency, jitter and black holes to them.
package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/chaosgate/chaosgate/engine"
)

// Set is a collection of named proxies, each listening on 127.0.0.1 with a
// free port and forwarding to one upstream.
type Set struct {
	mu        sync.Mutex
	srv       *toxiproxy.ApiServer
	proxies   map[string]*toxiproxy.Proxy
	listeners map[string]*listener
}

// NewSet returns an empty proxy set.
func NewSet() *Set {
	registerToxics()
	m := toxiproxy.NewMetricsContainer(prometheus.NewRegistry())
	return &Set{srv: toxiproxy.NewServer(m, zerolog.Nop()), proxies: map[string]*toxiproxy.Proxy{}, listeners: map[string]*listener{}}
}

// EdgeName is the conventional proxy name of a directed edge within a
// cluster: "cluster/from->to" (from is "client" for client edges).
func EdgeName(cluster, from, to string) string { return cluster + "/" + from + "->" + to }

// Add creates and starts a proxy named name in front of upstream and
// returns the address to dial instead of upstream. Adding an existing name
// returns its address.
func (s *Set) Add(name, upstream string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.proxies[name]; ok {
		return p.Listen, nil
	}
	p := toxiproxy.NewProxy(s.srv, name, "127.0.0.1:0", upstream)
	l, err := listen(s.srv, p)
	if err != nil {
		return "", engine.E(engine.KindUnavailable, "start proxy "+name, err)
	}
	s.proxies[name] = p
	s.listeners[name] = l
	return p.Listen, nil
}

// Addr returns the listen address of a proxy.
func (s *Set) Addr(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.proxies[name]
	if !ok {
		return "", false
	}
	return p.Listen, true
}

// Names lists the proxies, sorted.
func (s *Set) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.proxies))
	for n := range s.proxies {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (s *Set) get(name string) (*toxiproxy.Proxy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.proxies[name]
	if !ok {
		return nil, engine.E(engine.KindNotFound, "proxy", fmt.Errorf("no proxy %q", name))
	}
	return p, nil
}

// Toxic is an active toxic on a proxy.
type Toxic struct {
	Proxy      string         `json:"proxy"`
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Stream     string         `json:"stream"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

type toxicJSON struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Stream     string         `json:"stream"`
	Toxicity   float32        `json:"toxicity"`
	Attributes map[string]any `json:"attributes"`
}

func (s *Set) addToxic(p *toxiproxy.Proxy, t toxicJSON) error {
	if p.Toxics.GetToxic(t.Name) != nil {
		return nil // idempotent
	}
	b, _ := json.Marshal(t)
	if _, err := p.Toxics.AddToxicJson(bytes.NewReader(b)); err != nil {
		if errors.Is(err, toxiproxy.ErrToxicAlreadyExists) {
			return nil
		}
		return engine.E(engine.KindInternal, "add toxic "+t.Name+" to "+p.Name, err)
	}
	return nil
}

// Delay is a latency toxic's settings.
type Delay struct {
	Latency time.Duration
	Jitter  time.Duration
	// Correlation (0..1) ties each jitter sample to the previous one, as
	// netem does.
	Correlation float64
	// Response delays the data flowing back from the upstream instead of
	// the data flowing to it.
	Response bool
}

// AddDelay adds a latency toxic named toxic; adding it twice is a no-op.
// Without correlation it is Toxiproxy's latency toxic, with correlation
// the CorrelatedLatency toxic.
func (s *Set) AddDelay(proxyName, toxic string, d Delay) error {
	p, err := s.get(proxyName)
	if err != nil {
		return err
	}
	stream := "upstream"
	if d.Response {
		stream = "downstream"
	}
	t := toxicJSON{Name: toxic, Type: "latency", Stream: stream, Toxicity: 1,
		Attributes: map[string]any{"latency": d.Latency.Milliseconds(), "jitter": d.Jitter.Milliseconds()}}
	if d.Correlation > 0 {
		t.Type = correlatedLatencyType
		t.Attributes["correlation"] = d.Correlation
	}
	return s.addToxic(p, t)
}

// AddLatency delays the data flowing to the upstream (the request path)
// by latency ± jitter.
func (s *Set) AddLatency(proxyName, toxic string, latency, jitter time.Duration) error {
	return s.AddDelay(proxyName, toxic, Delay{Latency: latency, Jitter: jitter})
}

// BlackHole cuts the edge both ways: a "timeout" toxic with timeout 0 on
// both streams drops every byte (new connections are accepted but nothing
// flows), and every existing connection is reset so no stream straddles
// the cut. The toxics are named toxic+"-up" and toxic+"-down".
func (s *Set) BlackHole(proxyName, toxic string) error {
	p, err := s.get(proxyName)
	if err != nil {
		return err
	}
	names := blackHoleNames(toxic)
	for i, dir := range []string{"upstream", "downstream"} {
		if err := s.addToxic(p, toxicJSON{Name: names[i], Type: "timeout", Stream: dir, Toxicity: 1,
			Attributes: map[string]any{"timeout": 0}}); err != nil {
			return err
		}
	}
	s.resetConnections(proxyName)
	return nil
}

// AddBandwidth caps the data flowing through every connection of the proxy
// at bytesPerSecond in each direction (Toxiproxy's bandwidth toxic, whose
// unit is 1000 bytes per second; rates are rounded to it, at least 1). The
// toxics are named toxic+"-bandwidth-up" and toxic+"-bandwidth-down".
func (s *Set) AddBandwidth(proxyName, toxic string, bytesPerSecond int64) error {
	p, err := s.get(proxyName)
	if err != nil {
		return err
	}
	kb := max(1, (bytesPerSecond+500)/1000)
	names := bandwidthNames(toxic)
	for i, dir := range []string{"upstream", "downstream"} {
		if err := s.addToxic(p, toxicJSON{Name: names[i], Type: "bandwidth", Stream: dir, Toxicity: 1,
			Attributes: map[string]any{"rate": kb}}); err != nil {
			return err
		}
	}
	return nil
}

// bandwidthNames are the toxic names AddBandwidth creates for toxic.
func bandwidthNames(toxic string) []string {
	return []string{toxic + "-bandwidth-up", toxic + "-bandwidth-down"}
}

// baseToxicName is the name a toxic was added under (AddDelay's, or the
// one BlackHole or AddBandwidth derived theirs from).
func baseToxicName(name string) string {
	for _, suf := range []string{"-bandwidth-up", "-bandwidth-down", "-loss-up", "-loss-down", "-reset", "-up", "-down"} {
		if strings.HasSuffix(name, suf) {
			return strings.TrimSuffix(name, suf)
		}
	}
	return name
}

// blackHoleNames are the toxic names BlackHole creates for toxic.
func blackHoleNames(toxic string) []string { return []string{toxic + "-up", toxic + "-down"} }

// resetConnections closes every connection through the named proxy; it
// keeps listening on the same address.
func (s *Set) resetConnections(name string) {
	s.mu.Lock()
	l := s.listeners[name]
	s.mu.Unlock()
	if l != nil {
		l.reset()
	}
}

// Heal removes the toxic named toxic (and the pairs a BlackHole or an
// AddBandwidth or AddLoss of that name made) from a proxy. When a black hole is removed, the connections that
// lived through it (and lost data) are reset. Healing what is not there is
// a no-op; a proxy that no longer exists is already healed.
func (s *Set) Heal(ctx context.Context, proxyName, toxic string) error {
	p, err := s.get(proxyName)
	if err != nil {
		if engine.KindOf(err) == engine.KindNotFound {
			return nil
		}
		return err
	}
	removedHole := false
	holes := blackHoleNames(toxic)
	for _, n := range append(append(append([]string{toxic}, holes...), bandwidthNames(toxic)...), append(lossNames(toxic), resetName(toxic))...) {
		if p.Toxics.GetToxic(n) == nil {
			continue
		}
		if err := p.Toxics.RemoveToxic(ctx, n); err != nil && !errors.Is(err, toxiproxy.ErrToxicNotFound) {
			return engine.E(engine.KindInternal, "remove toxic "+n, err)
		}
		if n == holes[0] || n == holes[1] {
			removedHole = true
		}
	}
	if removedHole {
		s.resetConnections(proxyName)
	}
	return nil
}

// HealAll removes every toxic from every proxy.
func (s *Set) HealAll(ctx context.Context) error {
	var errs []error
	for _, t := range s.Toxics() {
		errs = append(errs, s.Heal(ctx, t.Proxy, baseToxicName(t.Name)))
	}
	return errors.Join(errs...)
}

// Toxics lists the active toxics of every proxy.
func (s *Set) Toxics() []Toxic {
	var out []Toxic
	for _, name := range s.Names() {
		p, err := s.get(name)
		if err != nil {
			continue
		}
		for _, t := range p.Toxics.GetToxicArray() {
			b, _ := json.Marshal(t)
			var tj toxicJSON
			json.Unmarshal(b, &tj)
			out = append(out, Toxic{Proxy: name, Name: tj.Name, Type: tj.Type, Stream: tj.Stream, Attributes: tj.Attributes})
		}
	}
	return out
}

// Close stops every proxy and closes their connections.
func (s *Set) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, l := range s.listeners {
		l.close()
		delete(s.listeners, n)
		delete(s.proxies, n)
	}
	return nil
}

// Dial dials addr over TCP, honouring ctx.
func Dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// AddResponseLatency delays the data flowing back from the upstream (the
// response path) by latency ± jitter.
func (s *Set) AddResponseLatency(proxyName, toxic string, latency, jitter time.Duration) error {
	return s.AddDelay(proxyName, toxic, Delay{Latency: latency, Jitter: jitter, Response: true})
}
