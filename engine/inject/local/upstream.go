package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/proxy"
	"github.com/chaosgate/chaosgate/scenarios"
)

// Broker is an upstream broker of a local run.
type Broker interface {
	// Kind is nats, kafka or mqtt.
	Kind() string
	// Address is where clients reach it directly (HOST:PORT).
	Address() string
	// Pid is its process (0: not a process this run controls; a kill
	// outage is then refused).
	Pid() int
	// Kill stops it with SIGKILL; Start starts it again on the same
	// address with the same data (idempotent).
	Kill() error
	Start() error
}

// BrokerEdgeName is the fault proxy on node's edge to an upstream's broker:
// the node's --upstream dials it instead of the broker.
func BrokerEdgeName(cluster, node, upstream string) string {
	return proxy.EdgeName(cluster, node, "broker:"+upstream)
}

// upstreamState is one node's view of an upstream (GET /v1/upstreams).
type upstreamState struct {
	Name     string  `json:"name"`
	Kind     string  `json:"kind"`
	State    string  `json:"state"`
	Breaker  string  `json:"breaker"`
	Assigned []int32 `json:"assigned"`
	Attached bool    `json:"attached"`
	Offsets  map[string]struct {
		Committed int64 `json:"committed"`
		End       int64 `json:"end"`
		Lag       int64 `json:"lag"`
	} `json:"offsets"`
}

func (s upstreamState) lag() int64 {
	var n int64
	for _, o := range s.Offsets {
		n += o.Lag
	}
	return n
}

var upstreamClient = &http.Client{Timeout: 30 * time.Second}

func (in *Injector) nodeHTTP(arm engine.Arm, node string) (string, error) {
	if in.cfg.NodeHTTP == nil {
		return "", engine.E(engine.KindInvalid, "upstream fault", errors.New("no node addresses configured"))
	}
	return in.cfg.NodeHTTP(arm, node)
}

// upstreamOf asks a node for its view of upstream name.
func (in *Injector) upstreamOf(ctx context.Context, arm engine.Arm, node, name string) (upstreamState, error) {
	addr, err := in.nodeHTTP(arm, node)
	if err != nil {
		return upstreamState{}, err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/upstreams", nil)
	resp, err := upstreamClient.Do(req)
	if err != nil {
		return upstreamState{}, engine.E(engine.KindUnavailable, "upstreams of "+node, err)
	}
	defer resp.Body.Close()
	var body struct {
		Upstreams []upstreamState `json:"upstreams"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return upstreamState{}, engine.E(engine.KindUnavailable, "upstreams of "+node, err)
	}
	for _, u := range body.Upstreams {
		if u.Name == name {
			return u, nil
		}
	}
	return upstreamState{}, engine.E(engine.KindNotFound, "upstream", fmt.Errorf("node %s/%s has no upstream %q", arm, node, name))
}

// upstreamAction posts pause, resume, leave or join to a node's upstream.
func (in *Injector) upstreamAction(ctx context.Context, arm engine.Arm, node, name, action string) error {
	addr, err := in.nodeHTTP(arm, node)
	if err != nil {
		return err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/upstreams/"+name+"/"+action, nil)
	resp, err := upstreamClient.Do(req)
	if err != nil {
		return engine.E(engine.KindUnavailable, action+" "+name+" on "+node, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		kind := engine.KindUnavailable
		if resp.StatusCode == http.StatusNotFound {
			kind = engine.KindNotFound
		}
		return engine.E(kind, action+" "+name+" on "+node, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b)))
	}
	return nil
}

// members picks the nodes of a consumerRebalance or slowDependency.
func members(f engine.Fault, nodes []string) []string {
	if f.Mode == scenarios.ModeFixed && len(f.Nodes) > 0 {
		return append([]string(nil), f.Nodes...)
	}
	if len(nodes) == 0 {
		return nil
	}
	return []string{nodes[pick(seed(f), len(nodes))]}
}

// prepareUpstream fills the Undo of an upstream fault.
func (in *Injector) prepareUpstream(t engine.Target, f engine.Fault, a *engine.Applied, u *Undo) error {
	cl := in.cfg.Cluster(t.Arm)
	u.Upstream = f.Upstream
	switch f.Kind {
	case engine.BrokerOutage:
		if f.Outage == scenarios.OutageKill {
			b, err := in.broker(t.Arm, f.Upstream)
			if err != nil {
				return err
			}
			if b.Pid() == 0 {
				return engine.E(engine.KindInvalid, "prepare", fmt.Errorf("the %s broker of upstream %s is not a process of this run: it cannot be killed (hint: mode: partition)", b.Kind(), f.Upstream))
			}
			p, err := engine.ProcOf(b.Pid())
			if err != nil {
				return err
			}
			u.Proc = &p
			a.Detail = fmt.Sprintf("SIGKILL the %s broker of upstream %s (pid %d); started again at recovery", b.Kind(), f.Upstream, p.Pid)
		} else {
			for _, n := range t.Nodes {
				u.Toxics = append(u.Toxics, ToxicRef{Proxy: BrokerEdgeName(cl, n, f.Upstream), Toxic: f.ID, Kind: "blackhole"})
			}
			a.Detail = fmt.Sprintf("black-holed the edges of %d nodes to the broker of upstream %s", len(t.Nodes), f.Upstream)
		}
		a.Affected = []string{"broker:" + f.Upstream}
	case engine.ConsumerRebalance:
		u.Nodes = members(f, t.Nodes)
		a.Affected = u.Nodes
		a.Detail = fmt.Sprintf("consumer %v of upstream %s leaves its group (its partitions are revoked and reassigned); it joins again at recovery", u.Nodes, f.Upstream)
	case engine.Backlog:
		u.Nodes = append([]string(nil), t.Nodes...)
		a.Detail = fmt.Sprintf("consumption of upstream %s paused on every node; the backlog is released at recovery", f.Upstream)
	case engine.SlowDependency:
		u.Nodes = members(f, t.Nodes)
		for _, n := range u.Nodes {
			refs, err := delayEdges(cl, t.Nodes, engine.Fault{ID: f.ID, Edges: engine.Edges{OutOf: n}})
			if err != nil {
				return err
			}
			u.Toxics = append(u.Toxics, refs...)
		}
		a.Affected = u.Nodes
		var what []string
		if f.Latency > 0 {
			what = append(what, fmt.Sprintf("latency %s ± %s", f.Latency, f.Jitter))
		}
		if f.ResetRatio > 0 {
			what = append(what, fmt.Sprintf("%.3g%% of the connections reset by the peer", 100*f.ResetRatio))
		}
		a.Detail = fmt.Sprintf("%s on the downstream edges of %v (replication and forwarding to partition leaders)", strings.Join(what, " and "), u.Nodes)
	}
	return nil
}

func (in *Injector) broker(arm engine.Arm, name string) (Broker, error) {
	if in.cfg.Brokers == nil {
		return nil, engine.E(engine.KindInvalid, "upstream fault", errors.New("no brokers configured"))
	}
	b, err := in.cfg.Brokers(arm, name)
	if err != nil {
		return nil, engine.E(engine.KindNotFound, "broker of upstream "+name, err)
	}
	return b, nil
}

// injectUpstream applies a prepared upstream fault.
func (in *Injector) injectUpstream(ctx context.Context, t engine.Target, f engine.Fault, u Undo) error {
	switch f.Kind {
	case engine.BrokerOutage:
		if u.Proc != nil {
			b, err := in.broker(t.Arm, f.Upstream)
			if err != nil {
				return err
			}
			if b.Pid() == u.Proc.Pid {
				return b.Kill()
			}
			return nil // already killed by an earlier attempt
		}
		for _, r := range u.Toxics {
			if err := in.proxies().BlackHole(r.Proxy, r.Toxic); err != nil {
				return err
			}
		}
	case engine.ConsumerRebalance:
		for _, n := range u.Nodes {
			if err := in.upstreamAction(ctx, t.Arm, n, f.Upstream, "leave"); err != nil {
				return err
			}
		}
	case engine.Backlog:
		if s, err := in.upstreamOf(ctx, t.Arm, t.Nodes[0], f.Upstream); err == nil {
			in.mu.Lock()
			in.lagAt[f.ID] = s.lag()
			in.mu.Unlock()
		}
		for _, n := range u.Nodes {
			if err := in.upstreamAction(ctx, t.Arm, n, f.Upstream, "pause"); err != nil {
				return err
			}
		}
	case engine.SlowDependency:
		if f.Latency > 0 {
			delay := f
			delay.Kind = engine.NetworkDelay
			if err := in.injectDelay(ctx, delay, u.Toxics); err != nil {
				return err
			}
		}
		if f.ResetRatio > 0 {
			for _, r := range u.Toxics {
				err := in.proxies().AddReset(r.Proxy, r.Toxic, f.ResetRatio)
				if err != nil && !(r.Optional && engine.KindOf(err) == engine.KindNotFound) {
					return err
				}
			}
		}
	}
	return nil
}

// recoverUpstream undoes an upstream fault from its Undo alone.
func (in *Injector) recoverUpstream(ctx context.Context, a engine.Applied, u Undo) error {
	switch a.Kind {
	case engine.BrokerOutage:
		if u.Proc != nil {
			if in.cfg.Brokers == nil {
				// The reaper after a crash: the arm's brokers were the
				// crashed run's children and went with it (the orphan
				// reaper kills any left); nothing to restart.
				return nil
			}
			b, err := in.broker(u.Arm, u.Upstream)
			if err != nil {
				return err
			}
			return b.Start()
		}
	case engine.ConsumerRebalance, engine.Backlog:
		if in.cfg.NodeHTTP == nil {
			// The reaper after a crash: the nodes that left the group or
			// paused were the crashed run's children and went with it.
			return nil
		}
	}
	switch a.Kind {
	case engine.ConsumerRebalance:
		var errs []error
		for _, n := range u.Nodes {
			errs = append(errs, in.upstreamAction(ctx, u.Arm, n, u.Upstream, "join"))
		}
		return errors.Join(errs...)
	case engine.Backlog:
		var errs []error
		for _, n := range u.Nodes {
			errs = append(errs, in.upstreamAction(ctx, u.Arm, n, u.Upstream, "resume"))
		}
		in.mu.Lock()
		delete(in.lagAt, a.ID)
		in.mu.Unlock()
		return errors.Join(errs...)
	}
	var errs []error
	for _, r := range u.Toxics {
		errs = append(errs, in.proxies().Heal(ctx, r.Proxy, r.Toxic))
	}
	in.mu.Lock()
	delete(in.before, a.ID)
	in.mu.Unlock()
	return errors.Join(errs...)
}

// confirmUpstream checks an upstream fault took effect.
func (in *Injector) confirmUpstream(ctx context.Context, a engine.Applied, u Undo) engine.ConfirmResult {
	switch a.Kind {
	case engine.BrokerOutage:
		b, err := in.broker(u.Arm, u.Upstream)
		if err != nil {
			return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: err.Error()}
		}
		if u.Proc != nil {
			if u.Proc.Alive() {
				return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: fmt.Sprintf("broker pid %d is still running", u.Proc.Pid)}
			}
			if err := BrokerReachable(ctx, b.Kind(), b.Address(), time.Second); err == nil {
				return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: fmt.Sprintf("broker pid %d is gone but %s answers", u.Proc.Pid, b.Address())}
			}
			return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: fmt.Sprintf("broker pid %d is gone; %s refuses clients", u.Proc.Pid, b.Address())}
		}
		present := in.presentToxics(u.Toxics)
		if present < len(u.Toxics) {
			return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: fmt.Sprintf("black holes on %d of %d broker edges", present, len(u.Toxics))}
		}
		m := fmt.Sprintf("black holes on all %d broker edges", present)
		if len(u.Toxics) == 0 {
			return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: "no broker edge"}
		}
		addr := in.addr(u.Toxics[0].Proxy)
		if err := BrokerReachable(ctx, b.Kind(), addr, time.Second); err != nil {
			return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: m + fmt.Sprintf("; a %s client through %s: %v", b.Kind(), u.Toxics[0].Proxy, shortErr(err))}
		}
		return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: m + fmt.Sprintf("; but a %s client still gets through %s", b.Kind(), u.Toxics[0].Proxy)}
	case engine.ConsumerRebalance:
		// the group needs a rebalance to hand the partitions over: poll
		deadline := time.Now().Add(20 * time.Second)
		for {
			c := in.confirmRebalance(ctx, a, u)
			if c.Outcome != engine.Mismatch || time.Now().After(deadline) || ctx.Err() != nil {
				return c
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	case engine.Backlog:
		// the backlog builds at the producers' rate: poll for its growth
		deadline := time.Now().Add(10 * time.Second)
		for {
			c := in.confirmBacklog(ctx, a, u)
			if c.Outcome == engine.Confirmed || c.Outcome == engine.Mismatch || time.Now().After(deadline) || ctx.Err() != nil {
				return c
			}
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	case engine.SlowDependency:
		var cs []engine.ConfirmResult
		if a.Fault.Latency > 0 {
			cs = append(cs, in.confirmDelay(ctx, a, u))
		}
		if a.Fault.ResetRatio > 0 {
			cs = append(cs, in.confirmResets(ctx, a, u))
		}
		return joinConfirmations(cs)
	}
	return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: "unknown fault kind"}
}

// confirmRebalance checks that the members left and, for Kafka, that the
// others hold every partition.
func (in *Injector) confirmRebalance(ctx context.Context, a engine.Applied, u Undo) engine.ConfirmResult {
	var parts []string
	left := map[string]bool{}
	for _, n := range u.Nodes {
		s, err := in.upstreamOf(ctx, u.Arm, n, u.Upstream)
		if err != nil {
			return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: err.Error()}
		}
		if s.State != "left" || len(s.Assigned) > 0 {
			return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: fmt.Sprintf("%s is %s holding %v", n, s.State, s.Assigned)}
		}
		left[n] = true
	}
	var kind string
	held := map[int32]bool{}
	for _, n := range a.Target.Nodes {
		if left[n] {
			continue
		}
		s, err := in.upstreamOf(ctx, u.Arm, n, u.Upstream)
		if err != nil {
			continue
		}
		kind = s.Kind
		for _, p := range s.Assigned {
			held[p] = true
		}
		switch {
		case s.Kind == "nats":
			parts = append(parts, fmt.Sprintf("%s %s (attached %v)", n, s.State, s.Attached))
		case s.Kind == "mqtt":
			parts = append(parts, fmt.Sprintf("%s holds shards %v", n, s.Assigned))
		default:
			parts = append(parts, fmt.Sprintf("%s holds %v", n, s.Assigned))
		}
	}
	m := fmt.Sprintf("%v left the group; %s", u.Nodes, strings.Join(parts, ", "))
	switch kind {
	case "nats":
		m += " (a shared JetStream consumer: the others take its share; its unacknowledged messages are redelivered)"
	case "mqtt":
		m += " (MQTT shards stay with their node: its shards wait in its session until it rejoins)"
	}
	if kind == "kafka" {
		s, err := in.upstreamOf(ctx, u.Arm, a.Target.Nodes[0], u.Upstream)
		if err == nil && len(s.Offsets) > 0 && len(held) < len(s.Offsets) {
			return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: m + fmt.Sprintf("; %d of %d partitions reassigned", len(held), len(s.Offsets))}
		}
	}
	return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: m}
}

// confirmBacklog checks that every node paused and the lag grew.
func (in *Injector) confirmBacklog(ctx context.Context, a engine.Applied, u Undo) engine.ConfirmResult {
	lag := int64(-1)
	for _, n := range u.Nodes {
		s, err := in.upstreamOf(ctx, u.Arm, n, u.Upstream)
		if err != nil {
			return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: err.Error()}
		}
		if s.State != "paused" {
			return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: fmt.Sprintf("%s is %s, not paused", n, s.State)}
		}
		if lag < 0 && len(s.Offsets) > 0 {
			lag = s.lag()
		}
	}
	in.mu.Lock()
	before, ok := in.lagAt[a.ID]
	in.mu.Unlock()
	switch {
	case lag < 0 || !ok:
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: fmt.Sprintf("every node paused; the upstream reports no lag (%d)", lag)}
	case lag > before:
		return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: fmt.Sprintf("every node paused; lag rose from %d to %d", before, lag)}
	}
	return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: fmt.Sprintf("every node paused; lag %d did not grow (no producer traffic?)", lag)}
}

func (in *Injector) presentToxics(refs []ToxicRef) int {
	toxics := in.proxies().Toxics()
	n := 0
	for _, r := range refs {
		for _, t := range toxics {
			if t.Proxy == r.Proxy && strings.HasPrefix(t.Name, r.Toxic) {
				n++
				break
			}
		}
	}
	return n
}

func shortErr(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}

// BrokerReachable connects a real client of kind (nats, kafka, mqtt) to
// addr and completes its handshake within timeout.
func BrokerReachable(ctx context.Context, kind, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch kind {
	case "nats":
		nc, err := nats.Connect("nats://"+addr, nats.Timeout(timeout), nats.NoReconnect())
		if err != nil {
			return err
		}
		defer nc.Close()
		return nc.FlushWithContext(ctx)
	case "kafka":
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DialTimeout(timeout), kgo.RequestRetries(0))
		if err != nil {
			return err
		}
		defer cl.Close()
		return cl.Ping(ctx)
	case "mqtt":
		cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("chaosgate-probe-%d", time.Now().UnixNano())).
			SetConnectTimeout(timeout).SetAutoReconnect(false))
		tok := cl.Connect()
		if !tok.WaitTimeout(timeout) {
			cl.Disconnect(0)
			return errors.New("no CONNACK")
		}
		if err := tok.Error(); err != nil {
			return err
		}
		cl.Disconnect(0)
		return nil
	}
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// confirmResets counts the round trips that fail through an edge whose
// connections are reset, against the share reset.
func (in *Injector) confirmResets(ctx context.Context, a engine.Applied, u Undo) engine.ConfirmResult {
	p := in.measurable(u.Toxics)
	if p == "" {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: fmt.Sprintf("resets on %d edges; none can be measured", len(u.Toxics))}
	}
	s := proxy.Measure(ctx, in.cfg.RoundTripFor(p), in.addr(p), proxy.ResetRoundTrips(a.Fault.ResetRatio), 2*time.Second)
	c := proxy.ConfirmResets(s, a.Fault.ResetRatio)
	c.Measurement = p + ": " + c.Measurement
	return c
}

// joinConfirmations is one outcome for the effects of one fault: a
// mismatch if any effect is missing, confirmed when every one is seen,
// inconclusive otherwise; the measurements joined.
func joinConfirmations(cs []engine.ConfirmResult) engine.ConfirmResult {
	if len(cs) == 0 {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: "nothing to measure"}
	}
	out := engine.ConfirmResult{Outcome: engine.Confirmed}
	var ms []string
	for _, c := range cs {
		ms = append(ms, c.Measurement)
		switch {
		case c.Outcome == engine.Mismatch:
			out.Outcome = engine.Mismatch
		case c.Outcome != engine.Confirmed && out.Outcome == engine.Confirmed:
			out.Outcome = c.Outcome
		}
	}
	out.Measurement = strings.Join(ms, "; ")
	return out
}
