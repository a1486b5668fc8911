package scenarios

import (
	"fmt"
	"regexp"
	"time"
)

// Broker outage modes.
const (
	OutagePartition = "partition" // the cluster's edges to the broker are black-holed
	OutageKill      = "kill"      // the broker process is killed and started again at recovery
)

// BrokerOutageFault takes an upstream broker away from the cluster: its
// consumers cannot fetch, acknowledge or commit until it is back.
type BrokerOutageFault struct {
	// Upstream names the aggregator's upstream (its --upstream name).
	Upstream string `yaml:"upstream" json:"upstream"`
	// Mode is partition (default) or kill.
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
}

// ConsumerRebalanceFault makes consumer-group members leave mid-stream
// (their partitions are revoked and reassigned to the others) and join
// again at recovery (a second rebalance).
type ConsumerRebalanceFault struct {
	Upstream string `yaml:"upstream" json:"upstream"`
	// Mode is one (a member chosen by the engine, default) or fixed.
	Mode  string   `yaml:"mode,omitempty" json:"mode,omitempty"`
	Nodes []string `yaml:"nodes,omitempty" json:"nodes,omitempty"`
}

// BacklogFault pauses consumption of an upstream on every node for the
// fault's duration, so the producers' messages pile up in the broker, then
// releases the backlog at once: a burst far above the sustainable rate.
type BacklogFault struct {
	Upstream string `yaml:"upstream" json:"upstream"`
}

// SlowDependencyFault adds latency on the downstream edges of consuming
// nodes: every edge out of the node to its peers (replication and
// forwarding to partition leaders), so committing what it consumes slows.
//
// Errors makes the dependency fail as well as (or instead of) slow down:
// that share of the connections on those edges is reset by the peer, so
// a forwarded write or a replication round fails and must be retried.
type SlowDependencyFault struct {
	Latency Duration `yaml:"latency,omitempty" json:"latency,omitempty"`
	Jitter  Duration `yaml:"jitter,omitempty" json:"jitter,omitempty"`
	Errors  Percent  `yaml:"errors,omitempty" json:"errors,omitzero"`
	// Mode is one (default) or fixed.
	Mode  string   `yaml:"mode,omitempty" json:"mode,omitempty"`
	Nodes []string `yaml:"nodes,omitempty" json:"nodes,omitempty"`
}

// LocalUpstream is a broker a local target runs for each arm.
type LocalUpstream struct {
	// Name is the aggregator's upstream name, used by the faults.
	Name string `yaml:"name" json:"name"`
	// Kind is nats (nats-server with JetStream) or mqtt (Mosquitto).
	Kind string `yaml:"kind" json:"kind"`
}

// LocalUpstreamKinds are the brokers a local target can run.
var LocalUpstreamKinds = []string{"nats", "mqtt"}

func (v *validator) localUpstreams(ups []LocalUpstream) {
	seen := map[string]bool{}
	for i, u := range ups {
		p := fmt.Sprintf("spec.target.local.upstreams[%d]", i)
		v.upstreamName(p+".name", u.Name)
		if seen[u.Name] {
			v.at(p+".name", fmt.Sprintf("upstream %s is listed twice", quote(u.Name)), "")
		}
		seen[u.Name] = true
		if u.Kind != "nats" && u.Kind != "mqtt" {
			hint := oneOfHint(u.Kind, LocalUpstreamKinds)
			if u.Kind == "kafka" {
				hint = "no Kafka broker is packaged for a local run: point the aggregator's --upstream at a real Kafka and use a kubernetes target, or use nats or mqtt"
			}
			v.at(p+".kind", fmt.Sprintf("unknown local broker %s", quote(u.Kind)), hint)
		}
	}
}

// UpstreamFaultKinds are the fault kinds that act on upstreams.
var UpstreamFaultKinds = []string{"brokerOutage", "consumerRebalance", "backlog", "slowDependency"}

var upstreamNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func (v *validator) upstreamName(path, name string) {
	if name == "" {
		v.at(path, "upstream is required", "name the aggregator's upstream, e.g. upstream: kafka (its --upstream name)")
		return
	}
	if !upstreamNameRE.MatchString(name) {
		v.at(path, fmt.Sprintf("bad upstream name %s", quote(name)), "1..64 letters, digits, '.', '_' or '-'")
	}
}

// upstreamFault validates the fields of an upstream fault kind.
func (v *validator) upstreamFault(p, kind string, f Fault, n int, lt *LocalTarget) {
	local := lt != nil
	declared := func(path, name string) {
		if lt == nil || len(lt.Upstreams) == 0 || name == "" {
			return
		}
		var names []string
		for _, u := range lt.Upstreams {
			if u.Name == name {
				return
			}
			names = append(names, u.Name)
		}
		v.at(path, fmt.Sprintf("no upstream %s in spec.target.local.upstreams", quote(name)), oneOfHint(name, names))
	}
	members := func(q, mode string, nodes []string) {
		switch mode {
		case "", ModeOne:
			if len(nodes) > 0 {
				v.at(q+".nodes", "nodes are only used with mode: fixed", "set mode: fixed or remove nodes")
			}
		case ModeFixed:
			if len(nodes) == 0 {
				v.at(q+".nodes", "mode fixed needs nodes", "list the nodes, e.g. nodes: [n2]")
			}
			seen := map[string]bool{}
			for i, x := range nodes {
				v.node(fmt.Sprintf("%s.nodes[%d]", q, i), x, n, local)
				if seen[x] {
					v.at(fmt.Sprintf("%s.nodes[%d]", q, i), fmt.Sprintf("node %s is listed twice", quote(x)), "")
				}
				seen[x] = true
			}
		default:
			v.at(q+".mode", fmt.Sprintf("unknown mode %s", quote(mode)), oneOfHint(mode, []string{ModeOne, ModeFixed}))
		}
	}
	switch kind {
	case "brokerOutage":
		q := p + ".brokerOutage"
		v.upstreamName(q+".upstream", f.BrokerOutage.Upstream)
		declared(q+".upstream", f.BrokerOutage.Upstream)
		if m := f.BrokerOutage.Mode; m != "" && m != OutagePartition && m != OutageKill {
			v.at(q+".mode", fmt.Sprintf("unknown broker outage mode %s", quote(m)), oneOfHint(m, []string{OutagePartition, OutageKill}))
		}
	case "consumerRebalance":
		q := p + ".consumerRebalance"
		v.upstreamName(q+".upstream", f.ConsumerRebalance.Upstream)
		declared(q+".upstream", f.ConsumerRebalance.Upstream)
		members(q, f.ConsumerRebalance.Mode, f.ConsumerRebalance.Nodes)
		if n > 0 && f.ConsumerRebalance.Mode == ModeFixed && len(f.ConsumerRebalance.Nodes) >= n {
			v.at(q+".nodes", "every member would leave: nobody would take the partitions", "leave at least one node out")
		}
	case "backlog":
		v.upstreamName(p+".backlog.upstream", f.Backlog.Upstream)
		declared(p+".backlog.upstream", f.Backlog.Upstream)
	case "slowDependency":
		q := p + ".slowDependency"
		d := f.SlowDependency
		if d.Latency.Duration < 0 || (d.Latency.Duration == 0 && d.Errors.IsZero()) {
			v.at(q+".latency", "latency must be positive, or errors set", "e.g. latency: 200ms, or errors: \"10%\" for a failing dependency")
		} else if d.Latency.Duration > time.Minute {
			v.at(q+".latency", "latency is longer than 1m", "a dependency that slow is down; use brokerOutage or partition instead")
		}
		if d.Jitter.Duration > d.Latency.Duration {
			v.at(q+".jitter", fmt.Sprintf("jitter %s is larger than latency %s", d.Jitter, d.Latency), "jitter is ± around latency; keep it at most the latency")
		}
		if d.Errors.Value == 1 {
			v.at(q+".errors", "errors 100% resets every connection: the dependency is down", "use brokerOutage or partition for a dependency that is down, or a share below 100%")
		}
		members(q, d.Mode, d.Nodes)
	}
}

// upstreamImpact is how many replicas an upstream fault impairs: the nodes
// whose downstream a slowDependency delays; the other kinds act on the
// broker or the consumer group, not on replicas.
func (f Fault) upstreamImpact() (int, bool) {
	switch {
	case f.SlowDependency != nil:
		if f.SlowDependency.Mode == ModeFixed {
			return len(f.SlowDependency.Nodes), true
		}
		return 1, true
	case f.BrokerOutage != nil, f.ConsumerRebalance != nil, f.Backlog != nil:
		return 0, true
	}
	return 0, false
}

// DescribeUpstream says what an upstream fault does, for people; ok is
// false for the other kinds.
func (f Fault) DescribeUpstream() (string, bool) {
	who := func(mode string, nodes []string) string {
		if mode == ModeFixed {
			return fmt.Sprintf("%v", nodes)
		}
		return "one node"
	}
	switch {
	case f.BrokerOutage != nil:
		if f.BrokerOutage.Mode == OutageKill {
			return "broker of upstream " + f.BrokerOutage.Upstream + " killed (SIGKILL), started again at recovery", true
		}
		return "broker of upstream " + f.BrokerOutage.Upstream + " cut off from every node (black-holed edges)", true
	case f.ConsumerRebalance != nil:
		c := f.ConsumerRebalance
		return "consumer " + who(c.Mode, c.Nodes) + " leaves the group of upstream " + c.Upstream + " (a rebalance), rejoins at recovery", true
	case f.Backlog != nil:
		return "consumption of upstream " + f.Backlog.Upstream + " paused on every node, the backlog released at once at recovery", true
	case f.SlowDependency != nil:
		d := f.SlowDependency
		return fmt.Sprintf("latency %s ± %s on the downstream edges of %s (its commits slow)", d.Latency, d.Jitter, who(d.Mode, d.Nodes)), true
	}
	return "", false
}
