// Package local injects faults into local clusters: signals to node
// processes (podKill, podPause), toxics on the user-space fault proxies
// in front of every client→node and node→node edge (networkDelay,
// partition, splitBrain), the reference aggregator's admin API for clock
// skews (a process cannot have its own clock moved without privileges, so
// the skew is an input of the node's physical clock), overload bursts
// through the load generator, and CFS quotas in cgroups for CPU stress. Every call acts on one target, is idempotent, and
// records in Applied.Undo what Recover needs, so recovery works from the
// journal alone after a crash.
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/geometry"
	"github.com/chaosgate/chaosgate/engine/inject/overload"
	"github.com/chaosgate/chaosgate/engine/load"
	"github.com/chaosgate/chaosgate/engine/proxy"
	"github.com/chaosgate/chaosgate/internal/pktloss"
)

// Backend is the Applied.Backend of this package.
const Backend = "local"

// Nodes is what the injector needs from the local cluster supervisor.
type Nodes interface {
	// Pid returns the current pid of a node's process.
	Pid(arm engine.Arm, node string) (int, error)
	// WaitReady blocks until the node is serving again (after a restart).
	WaitReady(ctx context.Context, arm engine.Arm, node string) error
}

// Leaders returns partition → leader node of an arm (from the
// aggregator's GET /v1/cluster).
type Leaders func(ctx context.Context, arm engine.Arm) (map[int]string, error)

// Config wires the injector. Nodes is needed for podKill/podPause, Proxies
// for the network faults, Leaders for splitBrain.
type Config struct {
	Nodes   Nodes
	Proxies *proxy.Set
	Leaders Leaders
	// Cluster names an arm's proxies (default: the arm's name), so edges are
	// proxy.EdgeName(Cluster(arm), from, to) with from "client" for client
	// edges.
	Cluster func(engine.Arm) string
	// RoundTripFor returns how to measure a round trip through a proxy (nil:
	// that edge cannot be measured). Default: HTTP GET /livez on client
	// edges and on the HTTP-forwarding twins of node→node edges
	// (proxy.HTTPEdgeName); raft edges are not measured.
	RoundTripFor func(proxyName string) proxy.RoundTrip
	// TransferFor returns how to measure the throughput of a proxy (nil:
	// it cannot be measured), for bandwidth faults. Default: HTTP GET
	// /metrics wherever RoundTripFor measures round trips.
	TransferFor func(proxyName string) proxy.Transfer
	// LossInProxies plays packetLoss and corrupt on the proxies (a
	// segment-loss toxic) even where the kernel could drop real packets
	// (nftables; root or CAP_NET_ADMIN). Without nftables they are played
	// on the proxies anyway, and the fault's detail says why.
	LossInProxies bool
	// KillTimeout bounds the wait for a killed or paused process to change
	// state (default 5s).
	KillTimeout time.Duration
	// NodeHTTP is a node's own HTTP address (not through a proxy), for the
	// upstream faults' calls to /v1/upstreams; Brokers is the broker behind
	// an arm's upstream name. Nil: the upstream faults are refused.
	NodeHTTP func(arm engine.Arm, node string) (string, error)
	Brokers  func(arm engine.Arm, upstream string) (Broker, error)
	// Admin is a node's admin API (clockSkew); nil: clock skews are
	// refused.
	Admin func(arm engine.Arm, node string) (Admin, error)
	// Burst returns the load-generator settings of an overload burst
	// against an arm — its client addresses, partitions and history, so
	// the burst's messages are checked like any others; nil: overload is
	// refused.
	Burst func(arm engine.Arm) (load.Config, error)
}

// Injector is the local fault backend. It implements engine.Injector,
// engine.Preparer and engine.Confirmer.
type Injector struct {
	cfg Config

	mu     sync.Mutex
	before map[string]proxy.Sample // RTT measured before a delay, by fault ID
	// rateBefore is the throughput measured before a bandwidth cap, by
	// fault ID.
	rateBefore map[string]proxy.Throughput
	lagAt      map[string]int64   // upstream lag when a backlog began, by fault ID
	overload   *overload.Injector // overload bursts
	handed     map[string]bool    // clock skews whose handover happened, by fault ID
}

// New returns a local injector.
func New(cfg Config) *Injector {
	if cfg.Cluster == nil {
		cfg.Cluster = func(a engine.Arm) string { return a.String() }
	}
	if cfg.RoundTripFor == nil {
		cfg.RoundTripFor = func(name string) proxy.RoundTrip {
			if strings.Contains(name, "/client->") || strings.HasSuffix(name, "/http") {
				return proxy.HTTPRoundTrip("/livez")
			}
			return nil
		}
	}
	if cfg.KillTimeout <= 0 {
		cfg.KillTimeout = 5 * time.Second
	}
	return &Injector{cfg: cfg, before: map[string]proxy.Sample{}, rateBefore: map[string]proxy.Throughput{}, lagAt: map[string]int64{}, overload: overload.New(overload.Config{Burst: cfg.Burst, NodeHTTP: cfg.NodeHTTP}), handed: map[string]bool{}}
}

// Undo is the serialised undo information of a local fault.
type Undo struct {
	Arm engine.Arm `json:"arm"`
	// Node and Proc: the process a podKill or podPause acted on.
	Node string       `json:"node,omitempty"`
	Proc *engine.Proc `json:"proc,omitempty"`
	// Toxics: the toxics to remove (a black hole is its name's pair).
	Toxics []ToxicRef `json:"toxics,omitempty"`
	// Isolated: the nodes a partition or split brain cut off, for reports.
	Isolated []string `json:"isolated,omitempty"`
	// Upstream and Nodes: an upstream fault's upstream and the nodes it
	// acts on (members that left, nodes paused or slowed).
	Upstream string   `json:"upstream,omitempty"`
	Nodes    []string `json:"nodes,omitempty"`
	// Skew: the node a clock skew acts on, its admin endpoint and the
	// partition handed to it.
	Skew *SkewUndo `json:"skew,omitempty"`
	// CPU: the cgroups of a cpuStress.
	CPU *CPUUndo `json:"cpu,omitempty"`
	// Memory: the cgroups and the tmpfs file of a memoryStress.
	Memory *MemoryUndo `json:"memory,omitempty"`
	// Zone: a zone outage's zone, nodes and killed processes.
	Zone *ZoneUndo `json:"zone,omitempty"`
	// KernelLoss: the nftables table of a packetLoss or corrupt played
	// with real dropped packets.
	KernelLoss *KernelLossUndo `json:"kernel_loss,omitempty"`
}

// ToxicRef names one toxic on one proxy.
type ToxicRef struct {
	Proxy string `json:"proxy"`
	Toxic string `json:"toxic"`
	// Kind is "latency", "response-latency", "bandwidth" or "blackhole".
	Kind string `json:"kind"`
	// Optional marks the HTTP-forwarding twin of a node→node edge: it is
	// skipped when the cluster has no such proxy.
	Optional bool `json:"optional,omitempty"`
}

// Prepare computes what Inject will do and how to undo it, without acting.
func (in *Injector) Prepare(ctx context.Context, t engine.Target, f engine.Fault) (engine.Applied, error) {
	a := engine.Applied{ID: f.ID, Kind: f.Kind, Target: t, Fault: f, Backend: Backend}
	if f.ID == "" {
		return a, engine.E(engine.KindInvalid, "prepare", errors.New("fault has no ID"))
	}
	u := Undo{Arm: t.Arm}
	cl := in.cfg.Cluster(t.Arm)
	switch f.Kind {
	case engine.PodKill, engine.PodPause:
		if in.cfg.Nodes == nil {
			return a, engine.E(engine.KindInvalid, "prepare", errors.New("no node supervisor configured"))
		}
		if t.Node == "" {
			return a, engine.E(engine.KindInvalid, "prepare", fmt.Errorf("%s needs a node", f.Kind))
		}
		pid, err := in.cfg.Nodes.Pid(t.Arm, t.Node)
		if err != nil {
			return a, engine.E(engine.KindUnavailable, "pid of "+t.Name(), err)
		}
		p, err := engine.ProcOf(pid)
		if err != nil {
			return a, err
		}
		u.Node, u.Proc = t.Node, &p
		a.Affected = []string{t.Node}
		a.Detail = fmt.Sprintf("%s pid %d of %s", map[engine.FaultKind]string{engine.PodKill: "SIGKILL", engine.PodPause: "SIGSTOP"}[f.Kind], pid, t.Name())
	case engine.NetworkDelay, engine.Bandwidth, engine.PacketLoss, engine.Corrupt:
		refs, err := delayEdges(cl, t.Nodes, f)
		if err != nil {
			return a, err
		}
		u.Toxics = refs
		a.Affected = delayedNodes(f.Edges)
		switch {
		case f.Kind == engine.Bandwidth:
			for i := range u.Toxics {
				u.Toxics[i].Kind = "bandwidth"
			}
			a.Detail = fmt.Sprintf("throughput capped at %s (%d bytes/s) each way on %s", f.RateText, f.BytesPerSecond, describeEdges(f.Edges))
		case f.Kind == engine.PacketLoss, f.Kind == engine.Corrupt:
			in.prepareLoss(t, f, &u, &a)
		case f.Correlation > 0:
			a.Detail = fmt.Sprintf("latency %s ± %s on %s, jitter correlation %.0f%%", f.Latency, f.Jitter, describeEdges(f.Edges), f.Correlation*100)
		default:
			a.Detail = fmt.Sprintf("latency %s ± %s on %s", f.Latency, f.Jitter, describeEdges(f.Edges))
		}
	case engine.ZoneOutage:
		if err := in.prepareZoneOutage(t, f, &u, &a); err != nil {
			return a, err
		}
	case engine.Partition:
		sides, err := Cut(f.Shape, t.Nodes, pick(seed(f), len(t.Nodes)))
		if err != nil {
			return a, err
		}
		for _, e := range sides.Edges {
			u.Toxics = append(u.Toxics, nodeEdgeRefs(cl, e.From, e.To, f.ID, "blackhole")...)
		}
		u.Isolated = sides.Minority
		a.Affected = sides.Minority
		if len(a.Affected) == 0 {
			a.Affected = append([]string(nil), t.Nodes...) // a ring impairs every node a little
		}
		a.Detail = fmt.Sprintf("%s: black-holed %d node→node edges; %s", f.Shape, len(sides.Edges), sides.Describe)
	case engine.SplitBrain:
		if in.cfg.Leaders == nil {
			return a, engine.E(engine.KindInvalid, "prepare", errors.New("no leader source configured"))
		}
		leaders, err := in.settledLeaders(ctx, t.Arm)
		if err != nil {
			return a, engine.E(engine.KindUnavailable, "leaders of "+t.Arm.String(), err)
		}
		iso, led, err := ChooseSplitBrain(leaders, f.Partition)
		if err != nil {
			return a, err
		}
		for _, e := range geometry.Isolate(iso, t.Nodes) {
			u.Toxics = append(u.Toxics, nodeEdgeRefs(cl, e.From, e.To, f.ID, "blackhole")...)
		}
		u.Isolated = []string{iso}
		a.Affected = []string{iso}
		a.Detail = fmt.Sprintf("isolated leader %s (partitions %v) from its peers; client edges stay open", iso, led)
	case engine.BrokerOutage, engine.ConsumerRebalance, engine.Backlog, engine.SlowDependency:
		if err := in.prepareUpstream(t, f, &a, &u); err != nil {
			return a, err
		}
	case engine.ClockSkew:
		if err := in.prepareClockSkew(ctx, t, f, &a, &u); err != nil {
			return a, err
		}
	case engine.MemoryStress:
		if err := in.prepareMemoryStress(t, f, &a, &u); err != nil {
			return a, err
		}
	case engine.CPUStress:
		if err := in.prepareCPUStress(t, f, &a, &u); err != nil {
			return a, err
		}
	case engine.Overload:
		overload.Describe(&a, t, f)
	default:
		return a, engine.E(engine.KindInvalid, "prepare", fmt.Errorf("unsupported fault kind %v", f.Kind))
	}
	b, err := json.Marshal(u)
	if err != nil {
		return a, engine.E(engine.KindInternal, "prepare", err)
	}
	a.Undo = b
	return a, nil
}

// Inject applies the fault to the target. Applying a fault whose ID is
// already applied does not apply it twice.
func (in *Injector) Inject(ctx context.Context, t engine.Target, f engine.Fault) (engine.Applied, error) {
	a, err := in.Prepare(ctx, t, f)
	if err != nil {
		return a, err
	}
	var u Undo
	json.Unmarshal(a.Undo, &u)
	switch f.Kind {
	case engine.PodKill:
		if err := u.Proc.Signal(syscall.SIGKILL); err != nil && engine.KindOf(err) != engine.KindNotFound {
			return a, err
		}
		if err := waitFor(ctx, in.cfg.KillTimeout, func() bool { return !u.Proc.Alive() }); err != nil {
			return a, engine.E(engine.KindUnavailable, "kill "+t.Name(), fmt.Errorf("pid %d still alive: %w", u.Proc.Pid, err))
		}
	case engine.PodPause:
		if err := u.Proc.Signal(syscall.SIGSTOP); err != nil {
			return a, err
		}
		if err := waitFor(ctx, in.cfg.KillTimeout, func() bool { s, _, err := engine.ProcStat(u.Proc.Pid); return err == nil && s == 'T' }); err != nil {
			return a, engine.E(engine.KindUnavailable, "pause "+t.Name(), fmt.Errorf("pid %d not stopped: %w", u.Proc.Pid, err))
		}
	case engine.NetworkDelay:
		if err := in.injectDelay(ctx, f, u.Toxics); err != nil {
			return a, err
		}
	case engine.Bandwidth:
		if err := in.injectBandwidth(ctx, f, u.Toxics); err != nil {
			return a, err
		}
	case engine.PacketLoss, engine.Corrupt:
		if err := in.injectLoss(f, u); err != nil {
			return a, err
		}
	case engine.ZoneOutage:
		if err := in.injectZoneOutage(ctx, t, u); err != nil {
			return a, err
		}
	case engine.BrokerOutage, engine.ConsumerRebalance, engine.Backlog, engine.SlowDependency:
		if err := in.injectUpstream(ctx, t, f, u); err != nil {
			return a, err
		}
	case engine.ClockSkew:
		if err := in.injectClockSkew(ctx, t, f, u); err != nil {
			return a, err
		}
	case engine.CPUStress:
		if err := injectCPUStress(u.CPU); err != nil {
			return a, err
		}
	case engine.MemoryStress:
		if err := injectMemoryStress(ctx, u.Memory); err != nil {
			return a, err
		}
	case engine.Overload:
		if err := in.overload.Start(ctx, t, f); err != nil {
			return a, err
		}
	case engine.Partition, engine.SplitBrain:
		for _, r := range u.Toxics {
			if err := in.proxies().BlackHole(r.Proxy, r.Toxic); err != nil && !(r.Optional && engine.KindOf(err) == engine.KindNotFound) {
				return a, err
			}
		}
	}
	a.At = time.Now()
	return a, nil
}

// injectDelay measures the round trip of the first measurable edge (once
// per fault) and adds the latency toxics.
func (in *Injector) injectDelay(ctx context.Context, f engine.Fault, refs []ToxicRef) error {
	if p := in.measurable(refs); p != "" {
		in.mu.Lock()
		_, done := in.before[f.ID]
		in.mu.Unlock()
		if !done {
			s := proxy.Measure(ctx, in.cfg.RoundTripFor(p), in.addr(p), 5, 2*time.Second)
			in.mu.Lock()
			in.before[f.ID] = s
			in.mu.Unlock()
		}
	}
	for _, r := range refs {
		err := in.proxies().AddDelay(r.Proxy, r.Toxic, proxy.Delay{Latency: f.Latency, Jitter: f.Jitter,
			Correlation: f.Correlation, Response: r.Kind == "response-latency"})
		if err != nil && !(r.Optional && engine.KindOf(err) == engine.KindNotFound) {
			return err
		}
	}
	return nil
}

func (in *Injector) proxies() *proxy.Set {
	if in.cfg.Proxies == nil {
		return proxy.NewSet() // empty: every proxy is "not found"
	}
	return in.cfg.Proxies
}

func (in *Injector) addr(name string) string {
	a, _ := in.proxies().Addr(name)
	return a
}

// measurable returns the first toxic's proxy that can be measured.
func (in *Injector) measurable(refs []ToxicRef) string {
	for _, r := range refs {
		if in.cfg.RoundTripFor(r.Proxy) != nil && in.addr(r.Proxy) != "" {
			return r.Proxy
		}
	}
	return ""
}

// Recover undoes an applied fault from Applied alone: SIGCONT for a pause
// (only if the pid is still the same process), a wait until a killed node
// is back, removal of every toxic. It is idempotent and safe after a crash:
// a proxy that no longer exists (it died with a crashed run) is healed.
func (in *Injector) Recover(ctx context.Context, a engine.Applied) error {
	var u Undo
	if len(a.Undo) > 0 {
		if err := json.Unmarshal(a.Undo, &u); err != nil {
			return engine.E(engine.KindInvalid, "recover "+a.ID, err)
		}
	}
	switch a.Kind {
	case engine.PodPause:
		if u.Proc == nil {
			return nil
		}
		if err := u.Proc.Signal(syscall.SIGCONT); err != nil && engine.KindOf(err) != engine.KindNotFound {
			return err
		}
	case engine.PodKill:
		// The supervisor restores a killed node, as Kubernetes restarts a
		// pod: recovery is a new process, then readiness. When ctx ends
		// after the new process started (a run shutting down), readiness
		// is left to the steady-state probes.
		if in.cfg.Nodes == nil || u.Node == "" {
			return nil
		}
		restarted := func() bool {
			pid, err := in.cfg.Nodes.Pid(u.Arm, u.Node)
			return err == nil && pid > 0 && (u.Proc == nil || pid != u.Proc.Pid) && (engine.Proc{Pid: pid}).Alive()
		}
		if err := waitFor(ctx, time.Hour, restarted); err != nil {
			return engine.E(engine.KindUnavailable, "wait for "+a.Target.Name()+" to restart", err)
		}
		if err := in.cfg.Nodes.WaitReady(ctx, u.Arm, u.Node); err != nil && ctx.Err() == nil {
			return engine.E(engine.KindUnavailable, "wait for "+a.Target.Name()+" to be ready", err)
		}
	case engine.BrokerOutage, engine.ConsumerRebalance, engine.Backlog, engine.SlowDependency:
		return in.recoverUpstream(ctx, a, u)
	case engine.ClockSkew:
		return recoverClockSkew(ctx, u.Skew)
	case engine.CPUStress:
		return recoverCPUStress(ctx, u.CPU)
	case engine.MemoryStress:
		return recoverMemoryStress(ctx, u.Memory)
	case engine.Overload:
		return in.overload.Recover(ctx, a)
	case engine.ZoneOutage:
		return in.recoverZoneOutage(ctx, a, u)
	case engine.NetworkDelay, engine.Partition, engine.SplitBrain, engine.Bandwidth, engine.PacketLoss, engine.Corrupt:
		var errs []error
		if k := u.KernelLoss; k != nil {
			if err := pktloss.Remove(k.Table); err != nil {
				errs = append(errs, engine.E(engine.KindUnavailable, "recover "+a.ID, err))
			}
		}
		for _, r := range u.Toxics {
			errs = append(errs, in.proxies().Heal(ctx, r.Proxy, r.Toxic))
		}
		in.mu.Lock()
		delete(in.before, a.ID)
		delete(in.rateBefore, a.ID)
		in.mu.Unlock()
		return errors.Join(errs...)
	}
	return nil
}

// Confirm checks that an applied fault took effect: a killed pid is gone,
// a paused pid is in state T, a delay shifted the measured round trip, a
// cut edge no longer carries round trips (and a split brain's isolated
// leader still answers its clients).
func (in *Injector) Confirm(ctx context.Context, a engine.Applied) engine.ConfirmResult {
	var u Undo
	json.Unmarshal(a.Undo, &u)
	switch a.Kind {
	case engine.PodKill:
		if u.Proc == nil {
			return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: "no process recorded"}
		}
		if u.Proc.Alive() {
			return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: fmt.Sprintf("pid %d is still running", u.Proc.Pid)}
		}
		m := fmt.Sprintf("pid %d is gone", u.Proc.Pid)
		if in.cfg.Nodes != nil {
			if pid, err := in.cfg.Nodes.Pid(u.Arm, u.Node); err == nil && pid != u.Proc.Pid && pid > 0 {
				m += fmt.Sprintf("; restarted as pid %d", pid)
			}
		}
		return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: m}
	case engine.PodPause:
		if u.Proc == nil {
			return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: "no process recorded"}
		}
		s, _, err := engine.ProcStat(u.Proc.Pid)
		if err != nil {
			return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: err.Error()}
		}
		m := fmt.Sprintf("/proc/%d/stat state %c", u.Proc.Pid, s)
		if s == 'T' {
			return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: m}
		}
		return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: m}
	case engine.NetworkDelay:
		return in.confirmDelay(ctx, a, u)
	case engine.Bandwidth:
		return in.confirmBandwidth(ctx, a, u)
	case engine.PacketLoss, engine.Corrupt:
		return in.confirmLoss(ctx, a, u)
	case engine.ZoneOutage:
		return in.confirmZoneOutage(ctx, u)
	case engine.BrokerOutage, engine.ConsumerRebalance, engine.Backlog, engine.SlowDependency:
		return in.confirmUpstream(ctx, a, u)
	case engine.ClockSkew:
		return in.confirmClockSkew(ctx, a, u)
	case engine.CPUStress:
		return confirmCPUStress(ctx, u.CPU)
	case engine.MemoryStress:
		return confirmMemoryStress(u.Memory)
	case engine.Overload:
		return in.overload.Confirm(ctx, a)
	case engine.Partition, engine.SplitBrain:
		present, want := 0, 0
		toxics := in.proxies().Toxics()
		for _, r := range u.Toxics {
			if r.Optional && in.addr(r.Proxy) == "" {
				continue
			}
			want++
			for _, t := range toxics {
				if t.Proxy == r.Proxy && strings.HasPrefix(t.Name, r.Toxic) {
					present++
					break
				}
			}
		}
		if present < want {
			return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: fmt.Sprintf("black holes on %d of %d cut proxies", present, want)}
		}
		m := fmt.Sprintf("black holes on all %d cut proxies", want)
		outcome := engine.Inconclusive
		if p := in.measurable(u.Toxics); p != "" {
			c := proxy.ConfirmCut(ctx, in.cfg.RoundTripFor(p), in.addr(p), 2, 300*time.Millisecond)
			m += "; " + p + ": " + c.Measurement
			outcome = c.Outcome
		} else {
			m += "; no cut edge can be probed"
		}
		if a.Kind == engine.SplitBrain && len(u.Isolated) == 1 {
			ce := proxy.EdgeName(in.cfg.Cluster(u.Arm), "client", u.Isolated[0])
			if rt := in.cfg.RoundTripFor(ce); rt != nil && in.addr(ce) != "" {
				s := proxy.Measure(ctx, rt, in.addr(ce), 2, time.Second)
				if s.Failed == 0 {
					m += fmt.Sprintf("; clients still reach %s (rtt %s)", u.Isolated[0], s.Median.Round(10*time.Microsecond))
					if outcome == engine.Inconclusive {
						outcome = engine.Confirmed
					}
				} else {
					m += fmt.Sprintf("; clients cannot reach %s", u.Isolated[0])
					outcome = engine.Mismatch
				}
			}
		}
		return engine.ConfirmResult{Outcome: outcome, Measurement: m}
	}
	return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: "unknown fault kind"}
}

// confirmDelay compares the round trip of a delayed edge with the one
// measured before the delay.
func (in *Injector) confirmDelay(ctx context.Context, a engine.Applied, u Undo) engine.ConfirmResult {
	p := in.measurable(u.Toxics)
	in.mu.Lock()
	before, ok := in.before[a.ID]
	in.mu.Unlock()
	if p == "" || !ok {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: fmt.Sprintf("toxics on %d edges; none can be measured", len(u.Toxics))}
	}
	after := proxy.Measure(ctx, in.cfg.RoundTripFor(p), in.addr(p), 5, 2*time.Second+2*a.Fault.Latency)
	c := proxy.ConfirmDelay(before, after, a.Fault.Latency, a.Fault.Jitter)
	c.Measurement = p + ": " + c.Measurement
	return c
}

func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// seed is what per-fault choices derive from: the same on every arm.
func seed(f engine.Fault) string {
	if f.Seed != "" {
		return f.Seed
	}
	return f.ID
}

// pick chooses an index in [0,n) deterministically from a fault ID.
func pick(id string, n int) int {
	if n == 0 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}

// nodeEdgeRefs are the toxics of one node→node edge: the raft proxy and
// its optional HTTP-forwarding twin (proxy.Mesh makes both).
func nodeEdgeRefs(cluster, from, to, toxic, kind string) []ToxicRef {
	return []ToxicRef{
		{Proxy: proxy.EdgeName(cluster, from, to), Toxic: toxic, Kind: kind},
		{Proxy: proxy.HTTPEdgeName(cluster, from, to), Toxic: toxic, Kind: kind, Optional: true},
	}
}

func delayEdges(cluster string, nodes []string, f engine.Fault) ([]ToxicRef, error) {
	has := func(x string) bool {
		for _, n := range nodes {
			if n == x {
				return true
			}
		}
		return false
	}
	var refs []ToxicRef
	add := func(from, to, kind string) {
		if from == "client" {
			refs = append(refs, ToxicRef{Proxy: proxy.EdgeName(cluster, from, to), Toxic: f.ID, Kind: kind})
			return
		}
		refs = append(refs, nodeEdgeRefs(cluster, from, to, f.ID, kind)...)
	}
	e := f.Edges
	switch {
	case e.Into != "":
		if !has(e.Into) {
			return nil, engine.E(engine.KindNotFound, "delay", fmt.Errorf("no node %q", e.Into))
		}
		for _, n := range nodes {
			if n != e.Into {
				add(n, e.Into, "latency")
			}
		}
		if e.Clients {
			add("client", e.Into, "latency")
		}
	case e.OutOf != "":
		if !has(e.OutOf) {
			return nil, engine.E(engine.KindNotFound, "delay", fmt.Errorf("no node %q", e.OutOf))
		}
		for _, n := range nodes {
			if n != e.OutOf {
				add(e.OutOf, n, "latency")
			}
		}
		if e.Clients {
			add("client", e.OutOf, "response-latency")
		}
	case len(e.Between) == 2:
		if !has(e.Between[0]) || !has(e.Between[1]) {
			return nil, engine.E(engine.KindNotFound, "delay", fmt.Errorf("no nodes %v", e.Between))
		}
		add(e.Between[0], e.Between[1], "latency")
		add(e.Between[1], e.Between[0], "latency")
	default:
		return nil, engine.E(engine.KindInvalid, "delay", errors.New("no edges chosen"))
	}
	return refs, nil
}

// Cut lays a partition shape out over the arm's nodes, rotated by start
// (which node isolate-one isolates, where halves and bridge begin), through
// the geometry both fault backends share.
func Cut(shape string, nodes []string, start int) (geometry.Cut, error) {
	ring := make([]string, len(nodes))
	for i := range ring {
		ring[i] = nodes[(start+i)%len(nodes)]
	}
	c, err := geometry.Partition(shape, ring)
	if err != nil {
		return c, engine.E(engine.KindInvalid, "partition", err)
	}
	return c, nil
}

// ChooseSplitBrain picks the leader to isolate (geometry.SplitBrainLeader);
// no leader to pick is unavailable, not invalid: leaders come back.
func ChooseSplitBrain(leaders map[int]string, partition *int) (string, []int, error) {
	node, led, err := geometry.SplitBrainLeader(leaders, partition)
	if err != nil {
		return "", nil, engine.E(engine.KindUnavailable, "split brain", err)
	}
	return node, led, nil
}

var (
	_ engine.Injector  = (*Injector)(nil)
	_ engine.Preparer  = (*Injector)(nil)
	_ engine.Confirmer = (*Injector)(nil)
)

func describeEdges(e engine.Edges) string {
	var s string
	switch {
	case e.Into != "":
		s = "every edge into " + e.Into
	case e.OutOf != "":
		s = "every edge out of " + e.OutOf
	default:
		s = "the edges between " + strings.Join(e.Between, " and ")
	}
	if e.Clients {
		s += ", clients included"
	}
	return s
}

func delayedNodes(e engine.Edges) []string {
	switch {
	case e.Into != "":
		return []string{e.Into}
	case e.OutOf != "":
		return []string{e.OutOf}
	}
	return append([]string(nil), e.Between...)
}
