package scenarios

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Limits of the values a scenario may hold.
const (
	MaxNodes          = 15
	MaxPartitions     = 1024
	MaxDuration       = time.Hour
	MaxLatency        = time.Minute
	DefaultPartitions = 8
)

var (
	nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// subdomainRE is a Kubernetes object name (RFC 1123 subdomain).
	subdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
	labelKeyRE  = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelValRE  = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
)

// abortMetrics lists the metrics each probe offers to abort conditions.
var abortMetrics = map[string][]string{
	ProbeAvailability: {"success_ratio", "p99_ms", "throughput"},
	ProbeConsistency:  {"violations"},
	ProbeMetrics:      {"error_rate", "gc_pause_max_ms", "goroutines", "rss_bytes"},
	ProbeLogs:         {"matches"},
}

var probeNames = []string{ProbeAvailability, ProbeConsistency, ProbeMetrics, ProbeLogs}

// validator checks a decoded document and reports errors at the recorded
// positions of the offending fields.
type validator struct {
	file string
	pos  map[string]position
	errs Errors
}

func (v *validator) at(path, msg, hint string) {
	p := path
	for {
		if pp, ok := v.pos[p]; ok {
			v.errs = append(v.errs, &Error{File: v.file, Line: pp.line, Column: pp.col, Path: path, Msg: msg, Hint: hint})
			return
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			v.errs = append(v.errs, &Error{File: v.file, Line: 1, Column: 1, Path: path, Msg: msg, Hint: hint})
			return
		}
		p = p[:i]
	}
}

// NodeCount is the number of replicas per arm the target declares.
func (t Target) NodeCount() int {
	switch {
	case t.Local != nil:
		return t.Local.Nodes
	case t.Kubernetes != nil:
		return t.Kubernetes.Replicas
	}
	return 0
}

// NodeNames returns the replica names of one arm of a local target (n1..nN).
func NodeNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("n%d", i+1)
	}
	return out
}

// ArmNames returns the arms that receive the faults (default both).
func (t Target) ArmNames() []string {
	if len(t.Arms) == 0 {
		return []string{ArmCanary, ArmControl}
	}
	return t.Arms
}

// Kind returns the fault's kind name (podKill, podPause, networkDelay,
// partition, splitBrain) or "" when none is set.
func (f Fault) Kind() string {
	k := f.kinds()
	if len(k) != 1 {
		return ""
	}
	return k[0]
}

func (f Fault) kinds() []string {
	var k []string
	if f.PodKill != nil {
		k = append(k, "podKill")
	}
	if f.PodPause != nil {
		k = append(k, "podPause")
	}
	if f.NetworkDelay != nil {
		k = append(k, "networkDelay")
	}
	if f.Partition != nil {
		k = append(k, "partition")
	}
	if f.SplitBrain != nil {
		k = append(k, "splitBrain")
	}
	if f.BrokerOutage != nil {
		k = append(k, "brokerOutage")
	}
	if f.ConsumerRebalance != nil {
		k = append(k, "consumerRebalance")
	}
	if f.Backlog != nil {
		k = append(k, "backlog")
	}
	if f.SlowDependency != nil {
		k = append(k, "slowDependency")
	}
	if f.ClockSkew != nil {
		k = append(k, "clockSkew")
	}
	if f.Overload != nil {
		k = append(k, "overload")
	}
	if f.CPUStress != nil {
		k = append(k, "cpuStress")
	}
	if f.MemoryStress != nil {
		k = append(k, "memoryStress")
	}
	if f.Bandwidth != nil {
		k = append(k, "bandwidth")
	}
	if f.PacketLoss != nil {
		k = append(k, "packetLoss")
	}
	if f.Corrupt != nil {
		k = append(k, "corrupt")
	}
	if f.ZoneOutage != nil {
		k = append(k, "zoneOutage")
	}
	return k
}

// FaultKinds lists the fault kind names.
var FaultKinds = []string{"podKill", "podPause", "networkDelay", "partition", "splitBrain", "brokerOutage", "consumerRebalance", "backlog", "slowDependency", "clockSkew", "overload", "cpuStress", "memoryStress", "bandwidth", "packetLoss", "corrupt", "zoneOutage"}

// Shapes lists the partition shapes.
var Shapes = []string{ShapeIsolateOne, ShapeHalves, ShapeMajoritiesRing, ShapeBridge}

// ShapeMinNodes is the fewest replicas each partition shape can cut.
var ShapeMinNodes = map[string]int{ShapeIsolateOne: 2, ShapeHalves: 2, ShapeMajoritiesRing: 5, ShapeBridge: 3}

// Quorum is the majority of n replicas.
func Quorum(n int) int { return n/2 + 1 }

// ShapeImpact is the number of replicas a partition shape cuts off from a
// majority (or, for majorities-ring, the most peers any replica loses). When
// the larger side is no majority either — halves of an even cluster, one
// node isolated from a pair — every replica is cut off from one.
func ShapeImpact(shape string, n int) int {
	switch shape {
	case ShapeIsolateOne:
		if n-1 < Quorum(n) {
			return n
		}
		return 1
	case ShapeHalves:
		if n-n/2 < Quorum(n) {
			return n
		}
		return n / 2
	case ShapeMajoritiesRing:
		return n - Quorum(n)
	case ShapeBridge:
		return (n - 1) / 2
	}
	return n
}

// Impact is the number of an arm's n replicas the fault impairs: the
// quantity the blast-radius budget bounds.
func (f Fault) Impact(n int) int {
	switch {
	case f.PodKill != nil:
		return f.PodKill.count()
	case f.PodPause != nil:
		return f.PodPause.count()
	case f.NetworkDelay != nil, f.Bandwidth != nil, f.PacketLoss != nil, f.Corrupt != nil:
		return 1
	case f.ZoneOutage != nil:
		// The zone's size is the target's (ZoneImpact); 1 at least.
		return 1
	case f.Partition != nil:
		return ShapeImpact(f.Partition.Shape, n)
	case f.SplitBrain != nil:
		return 1
	case f.ClockSkew != nil:
		return 1
	case f.Overload != nil:
		// A burst loads every replica but cuts, stops or skews none.
		return 0
	case f.CPUStress != nil:
		return NodeFault{Mode: f.CPUStress.Mode, Nodes: f.CPUStress.Nodes}.count()
	case f.MemoryStress != nil:
		return NodeFault{Mode: f.MemoryStress.Mode, Nodes: f.MemoryStress.Nodes}.count()
	}
	if n, ok := f.upstreamImpact(); ok {
		return n
	}
	return 0
}

func (nf NodeFault) count() int {
	if nf.Mode == ModeFixed {
		return len(nf.Nodes)
	}
	return 1
}

// Allows reports whether impairing impaired of n replicas fits the budget,
// and why not when it does not.
func (b BlastRadius) Allows(impaired, n int) (bool, string) {
	if !b.AllowQuorum && impaired >= Quorum(n) {
		return false, fmt.Sprintf("impairs %d of %d replicas, a quorum (%d)", impaired, n, Quorum(n))
	}
	if b.MaxReplicas > 0 && impaired > b.MaxReplicas {
		return false, fmt.Sprintf("impairs %d replicas, more than maxReplicas %d", impaired, b.MaxReplicas)
	}
	if b.MaxShare.Value > 0 && float64(impaired) > b.MaxShare.Value*float64(n)+1e-9 {
		return false, fmt.Sprintf("impairs %d of %d replicas, more than maxShare %.0f%%", impaired, n, b.MaxShare.Value*100)
	}
	return true, ""
}

// StepsOrDefault returns the canary weights: the listed steps, then the
// increment's up to 100; the defaults when neither is set.
func (c Canary) StepsOrDefault() []int {
	inc := int(math.Round(c.Increment.Value * 100))
	if len(c.Steps) == 0 && inc <= 0 {
		return append([]int(nil), DefaultSteps...)
	}
	out := append([]int(nil), c.Steps...)
	if inc > 0 {
		last := 0
		if len(out) > 0 {
			last = out[len(out)-1]
		}
		if last < 100 {
			for w := last + inc; w < 100; w += inc {
				out = append(out, w)
			}
			out = append(out, 100)
		}
	}
	return out
}

func (v *validator) document(doc *Document) {
	if doc.APIVersion != APIVersion {
		v.at("apiVersion", fmt.Sprintf("unsupported apiVersion %s", quote(doc.APIVersion)), "write apiVersion: "+APIVersion)
	}
	kinds := []string{KindExperiment, KindGameDay}
	if doc.Kind != KindExperiment && doc.Kind != KindGameDay {
		v.at("kind", fmt.Sprintf("unknown kind %s", quote(doc.Kind)), oneOfHint(doc.Kind, kinds))
	}
	if !nameRE.MatchString(doc.Metadata.Name) {
		v.at("metadata.name", fmt.Sprintf("bad name %s", quote(doc.Metadata.Name)), "use lower-case letters, digits and '-', at most 63 characters")
	}
	for k, val := range doc.Metadata.Labels {
		v.label("metadata.labels."+k, k, val)
	}
	s := doc.Spec
	n := v.target(s.Target)
	if s.Traffic != nil {
		v.traffic(s.Traffic, s.Target)
	}
	switch doc.Kind {
	case KindExperiment:
		if len(s.Experiments) > 0 {
			v.at("spec.experiments", "an Experiment has no experiments list", "use kind: GameDay to run several experiments, or list faults")
		}
		if len(s.Faults) == 0 {
			v.at("spec.faults", "an Experiment needs at least one fault", "add a fault such as podKill: {}")
		}
	case KindGameDay:
		if len(s.Faults) > 0 {
			v.at("spec.faults", "a GameDay lists experiments, not faults", "move the faults into an Experiment and reference it under experiments")
		}
		if len(s.Experiments) == 0 {
			v.at("spec.experiments", "a GameDay needs at least one experiment", "reference library experiments, e.g. - ref: pod-kill")
		}
	}
	for i, f := range s.Faults {
		v.fault(fmt.Sprintf("spec.faults[%d]", i), f, s, n)
	}
	for i, e := range s.Experiments {
		p := fmt.Sprintf("spec.experiments[%d]", i)
		if strings.TrimSpace(e.Ref) == "" {
			v.at(p+".ref", "empty reference", "name a library experiment (chaosgate scenarios list) or a file")
		}
		if e.Duration.Duration > MaxDuration {
			v.at(p+".duration", "duration is longer than 1h", "")
		}
		steps := s.Canary.StepsOrDefault()
		for j, w := range e.Steps {
			if !containsInt(steps, w) {
				v.at(fmt.Sprintf("%s.steps[%d]", p, j), fmt.Sprintf("weight %d is not a canary step", w), fmt.Sprintf("canary steps are %v", steps))
			}
		}
	}
	if s.SteadyState.Duration > 10*time.Minute {
		v.at("spec.steadyState", "steady-state window is longer than 10m", "use a window of a few seconds to a few minutes")
	}
	v.probes(s.Probes)
	for i, a := range s.Abort {
		v.abort(fmt.Sprintf("spec.abort[%d]", i), a)
	}
	v.canary(s.Canary)
	if p := s.Decision.Policy; p != "" && p != "default" && !strings.HasSuffix(p, ".yaml") && !strings.HasSuffix(p, ".yml") && !strings.HasSuffix(p, ".json") {
		v.at("spec.decision.policy", fmt.Sprintf("unknown policy %s", quote(p)), `write "default" or the path of a decision config file (.yaml, .yml or .json)`)
	}
	if s.BlastRadius.MaxReplicas < 0 {
		v.at("spec.blastRadius.maxReplicas", "maxReplicas is negative", "")
	}
	if n > 0 && s.BlastRadius.MaxReplicas >= Quorum(n) && !s.BlastRadius.AllowQuorum {
		v.at("spec.blastRadius.maxReplicas", fmt.Sprintf("maxReplicas %d reaches a quorum of %d replicas", s.BlastRadius.MaxReplicas, n), "set allowQuorum: true to opt in explicitly")
	}
}

func (v *validator) label(path, k, val string) {
	if !labelKeyRE.MatchString(k) {
		v.at(path, fmt.Sprintf("bad label key %s", quote(k)), "use [prefix/]name with letters, digits, '-', '_' and '.'")
	}
	if !labelValRE.MatchString(val) {
		v.at(path, fmt.Sprintf("bad label value %s", quote(val)), "at most 63 letters, digits, '-', '_' and '.', starting and ending alphanumeric")
	}
}

func (v *validator) target(t Target) int {
	switch {
	case t.Local != nil && t.Kubernetes != nil:
		v.at("spec.target", "both local and kubernetes targets are set", "choose one target")
	case t.Local == nil && t.Kubernetes == nil:
		v.at("spec.target", "no target", "set target.local: {nodes: 3} or target.kubernetes")
	}
	seen := map[string]bool{}
	for i, a := range t.Arms {
		p := fmt.Sprintf("spec.target.arms[%d]", i)
		if a != ArmCanary && a != ArmControl {
			v.at(p, fmt.Sprintf("unknown arm %s", quote(a)), oneOfHint(a, []string{ArmCanary, ArmControl}))
		}
		if seen[a] {
			v.at(p, fmt.Sprintf("arm %s is listed twice", quote(a)), "")
		}
		seen[a] = true
	}
	n := 0
	if l := t.Local; l != nil {
		n = l.Nodes
		if l.Nodes < 1 || l.Nodes > MaxNodes {
			v.at("spec.target.local.nodes", fmt.Sprintf("nodes %d is outside 1..%d", l.Nodes, MaxNodes), "3 or 5 replicas per arm are typical")
		}
		v.localUpstreams(l.Upstreams)
		v.zones(l.Zones, l.Nodes)
		if l.Partitions < 0 || l.Partitions > MaxPartitions {
			v.at("spec.target.local.partitions", fmt.Sprintf("partitions %d is outside 1..%d", l.Partitions, MaxPartitions), "")
		}
		if d := l.MaxClockOffset.Duration; d < 0 || (d > 0 && d < 10*time.Millisecond) || d > time.Minute {
			v.at("spec.target.local.maxClockOffset", fmt.Sprintf("maxClockOffset %s is outside 10ms..1m", d), `e.g. maxClockOffset: 2s (the aggregator's default is 500ms)`)
		}
	}
	if k := t.Kubernetes; k != nil {
		n = k.Replicas
		if !nameRE.MatchString(k.Namespace) {
			v.at("spec.target.kubernetes.namespace", fmt.Sprintf("bad namespace %s", quote(k.Namespace)), "a DNS label: lower-case letters, digits and '-'")
		}
		if k.Replicas < 1 || k.Replicas > 1000 {
			v.at("spec.target.kubernetes.replicas", fmt.Sprintf("replicas %d is outside 1..1000", k.Replicas), "")
		}
		if k.Rollout != "" {
			if !subdomainRE.MatchString(k.Rollout) {
				v.at("spec.target.kubernetes.rollout", fmt.Sprintf("bad Rollout name %s", quote(k.Rollout)), "a DNS subdomain: lower-case letters, digits, '-' and '.'")
			}
			for _, arm := range []struct {
				name string
				sel  Selector
			}{{"canary", k.Canary}, {"control", k.Control}} {
				if len(arm.sel.MatchLabels) > 0 {
					v.at("spec.target.kubernetes."+arm.name, "a Rollout chooses both arms", "drop canary and control, or drop rollout")
				}
			}
		}
		for _, arm := range []struct {
			name string
			sel  Selector
		}{{"canary", k.Canary}, {"control", k.Control}} {
			if k.Rollout != "" {
				break
			}
			p := "spec.target.kubernetes." + arm.name + ".matchLabels"
			if len(arm.sel.MatchLabels) == 0 {
				v.at(p, "empty selector", "an empty selector would match every pod; name at least one label, or set rollout to an Argo Rollout")
			}
			for key, val := range arm.sel.MatchLabels {
				v.label(p+"."+key, key, val)
			}
		}
		if k.Rollout == "" && len(k.Canary.MatchLabels) > 0 && equalLabels(k.Canary.MatchLabels, k.Control.MatchLabels) {
			v.at("spec.target.kubernetes.control.matchLabels", "canary and control select the same pods", "tell the arms apart with a label such as track: canary / track: stable")
		}
	}
	if n < 1 || n > 1000 {
		return 0
	}
	return n
}

func equalLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func (v *validator) node(path, name string, n int, local bool) {
	if name == "" {
		v.at(path, "empty node name", "")
		return
	}
	if !local || n == 0 {
		return
	}
	names := NodeNames(n)
	for _, x := range names {
		if x == name {
			return
		}
	}
	v.at(path, fmt.Sprintf("no node %s in a %d-node cluster", quote(name), n), oneOfHint(name, names))
}

func (v *validator) fault(p string, f Fault, s Spec, n int) {
	local := s.Target.Local != nil
	kinds := f.kinds()
	switch {
	case len(kinds) == 0:
		v.at(p, "the fault names no kind", "set one of "+strings.Join(FaultKinds, ", "))
		return
	case len(kinds) > 1:
		v.at(p, "the fault sets several kinds: "+strings.Join(kinds, ", "), "one kind per fault; list several faults instead")
		return
	}
	if f.Name != "" && !nameRE.MatchString(f.Name) {
		v.at(p+".name", fmt.Sprintf("bad fault name %s", quote(f.Name)), "use lower-case letters, digits and '-'")
	}
	if f.Duration.Duration <= 0 {
		v.at(p+".duration", "duration must be positive", `e.g. duration: 10s`)
	} else if f.Duration.Duration > MaxDuration {
		v.at(p+".duration", "duration is longer than 1h", "split long faults into several experiments")
	}
	nodeFault := func(q string, nf *NodeFault) {
		switch nf.Mode {
		case "", ModeOne, ModeLeader:
			if len(nf.Nodes) > 0 {
				v.at(q+".nodes", "nodes are only used with mode: fixed", "set mode: fixed or remove nodes")
			}
		case ModeFixed:
			if len(nf.Nodes) == 0 {
				v.at(q+".nodes", "mode fixed needs nodes", "list the nodes, e.g. nodes: [n2]")
			}
			seen := map[string]bool{}
			for i, x := range nf.Nodes {
				v.node(fmt.Sprintf("%s.nodes[%d]", q, i), x, n, local)
				if seen[x] {
					v.at(fmt.Sprintf("%s.nodes[%d]", q, i), fmt.Sprintf("node %s is listed twice", quote(x)), "")
				}
				seen[x] = true
			}
		default:
			v.at(q+".mode", fmt.Sprintf("unknown mode %s", quote(nf.Mode)), oneOfHint(nf.Mode, []string{ModeOne, ModeLeader, ModeFixed}))
		}
	}
	switch kinds[0] {
	case "podKill":
		nodeFault(p+".podKill", f.PodKill)
	case "podPause":
		nodeFault(p+".podPause", f.PodPause)
	case "networkDelay":
		q := p + ".networkDelay"
		d := f.NetworkDelay
		if d.Latency.Duration <= 0 {
			v.at(q+".latency", "latency must be positive", "e.g. latency: 100ms")
		} else if d.Latency.Duration > MaxLatency {
			v.at(q+".latency", "latency is longer than 1m", "a delay that long is a partition; use partition instead")
		}
		if d.Jitter.Duration > d.Latency.Duration {
			v.at(q+".jitter", fmt.Sprintf("jitter %s is larger than latency %s", d.Jitter, d.Latency), "jitter is ± around latency; keep it at most the latency")
		}
		if d.Correlation.Value > 0 && d.Jitter.Duration == 0 {
			v.at(q+".correlation", "correlation without jitter has no effect", "set jitter, or remove correlation")
		}
		v.edges(q+".edges", d.Edges, n, local)
	case "bandwidth":
		q := p + ".bandwidth"
		b := f.Bandwidth
		if b.Rate.BytesPerSecond < MinBandwidth || b.Rate.BytesPerSecond > MaxBandwidth {
			v.at(q+".rate", fmt.Sprintf("rate %s is outside 1kbps (1000 bytes/s) .. 10gbit", b.Rate.String()),
				`e.g. rate: 1mbit (125000 bytes/s) or rate: 64kbps (64000 bytes/s); to cut an edge, use partition`)
		}
		v.edges(q+".edges", b.Edges, n, local)
	case "packetLoss":
		v.lossShare(p+".packetLoss", "loss", f.PacketLoss.Loss)
		v.edges(p+".packetLoss.edges", f.PacketLoss.Edges, n, local)
	case "corrupt":
		v.lossShare(p+".corrupt", "corrupt", f.Corrupt.Corrupt)
		v.edges(p+".corrupt.edges", f.Corrupt.Edges, n, local)
	case "zoneOutage":
		q := p + ".zoneOutage.zone"
		z := f.ZoneOutage.Zone
		switch {
		case z == "":
			v.at(q, "zone is empty", "name a zone of the target, e.g. zone: b")
		case local:
			zones := s.Target.Local.Zones
			if _, ok := zones[z]; !ok {
				if len(zones) == 0 {
					v.at(q, fmt.Sprintf("zone %s: the local target has no zones", quote(z)), "label the nodes with zones in spec.target.local.zones, e.g. zones: {a: [n1, n2], b: [n3, n4], c: [n5]}")
				} else {
					v.at(q, fmt.Sprintf("no zone %s in the target", quote(z)), oneOfHint(z, sortedKeys(zones)))
				}
			}
		case !labelValueRE.MatchString(z):
			v.at(q, fmt.Sprintf("zone %s is not a label value", quote(z)), "on Kubernetes a zone is the pods' topology.kubernetes.io/zone label: letters, digits, '-', '_' and '.'")
		}
	case "partition":
		q := p + ".partition.shape"
		shape := f.Partition.Shape
		min, ok := ShapeMinNodes[shape]
		if !ok {
			v.at(q, fmt.Sprintf("unknown partition shape %s", quote(shape)), oneOfHint(shape, Shapes))
			return
		}
		if n > 0 && n < min {
			v.at(q, fmt.Sprintf("shape %s needs at least %d nodes, the target has %d", shape, min, n), "choose another shape or more nodes")
		}
	case "splitBrain":
		if n > 0 && n < 3 {
			v.at(p+".splitBrain", fmt.Sprintf("splitBrain needs at least 3 nodes, the target has %d", n), "a leader can only be cut from a majority of 3 or more")
		}
		if pi := f.SplitBrain.Partition; pi != nil {
			parts := DefaultPartitions
			if s.Target.Local != nil && s.Target.Local.Partitions > 0 {
				parts = s.Target.Local.Partitions
			}
			if *pi < 0 || (local && *pi >= parts) {
				v.at(p+".splitBrain.partition", fmt.Sprintf("partition %d is outside 0..%d", *pi, parts-1), "")
			}
		}
	case "brokerOutage", "consumerRebalance", "backlog", "slowDependency":
		v.upstreamFault(p, kinds[0], f, n, s.Target.Local)
	case "cpuStress":
		nodeFault(p+".cpuStress", &NodeFault{Mode: f.CPUStress.Mode, Nodes: f.CPUStress.Nodes})
		v.stressFault(p, kinds[0], f, n, s.Target)
	case "memoryStress":
		nodeFault(p+".memoryStress", &NodeFault{Mode: f.MemoryStress.Mode, Nodes: f.MemoryStress.Nodes})
		v.stressFault(p, kinds[0], f, n, s.Target)
	case "clockSkew", "overload":
		v.stressFault(p, kinds[0], f, n, s.Target)
	}
	if n > 0 {
		if ok, why := s.BlastRadius.Allows(ZoneImpact(f, n, s.Target), n); !ok {
			v.at(p+"."+kinds[0], "blast radius exceeded: the fault "+why, "impair fewer replicas, or opt in with blastRadius: {allowQuorum: true}")
		}
	}
}

func (v *validator) probes(pr Probes) {
	if a := pr.Availability; a != nil {
		if a.Sources < 0 || a.Sources > 10000 {
			v.at("spec.probes.availability.sources", "sources is outside 1..10000", "")
		}
		if a.Rate < 0 || a.Rate > 1000000 {
			v.at("spec.probes.availability.rate", "rate is outside 1..1000000 messages per second", "")
		}
	}
	if m := pr.Metrics; m != nil {
		v.metricsProbe(*m)
	}
	if l := pr.Logs; l != nil {
		if len(l.Patterns) == 0 {
			v.at("spec.probes.logs.patterns", "no patterns", "list regular expressions, e.g. [\"dropped\"]")
		}
		for i, pat := range l.Patterns {
			if _, err := regexp.Compile(pat); err != nil {
				v.at(fmt.Sprintf("spec.probes.logs.patterns[%d]", i), fmt.Sprintf("bad regular expression: %v", err), "use Go RE2 syntax")
			}
		}
		if l.Server != "" && !logServerRE.MatchString(l.Server) {
			v.at("spec.probes.logs.server", fmt.Sprintf("%s is not KIND=URL", quote(l.Server)), "victorialogs=http://HOST:9428 or loki=http://HOST:3100")
		}
	}
}

func (v *validator) metricsProbe(m MetricsProbe) {
	if m.Interval.Duration > 0 && m.Interval.Duration < 100*time.Millisecond {
		v.at("spec.probes.metrics.interval", "scrape interval is shorter than 100ms", "use 1s or more")
	}
	switch m.Source {
	case "", MetricsEmbedded:
		for field, set := range map[string]bool{"address": m.Address != "", "queries": m.Queries != ""} {
			if set {
				v.at("spec.probes.metrics."+field, field+" is for the prometheus source", "add source: prometheus, or remove "+field)
			}
		}
	case MetricsPrometheus:
	default:
		hint := "embedded (chaosgate scrapes the nodes) or prometheus (PromQL)"
		if s := suggest(m.Source, []string{MetricsEmbedded, MetricsPrometheus}); s != "" {
			hint = fmt.Sprintf("did you mean %s?", quote(s))
		}
		v.at("spec.probes.metrics.source", fmt.Sprintf("unknown metrics source %s", quote(m.Source)), hint)
	}
	if m.Address != "" {
		if u, err := url.Parse(m.Address); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.at("spec.probes.metrics.address", fmt.Sprintf("%s is not an http(s) URL", quote(m.Address)), "the Prometheus base URL, e.g. http://prometheus.monitoring:9090")
		}
	}
}

// logServerRE is the shape of probes.logs.server (the full check is the
// log client's, when the run starts).
var logServerRE = regexp.MustCompile(`^(victorialogs|loki)=https?://[^/\s]+\S*$`)

func (v *validator) abort(p string, a AbortCondition) {
	metrics, ok := abortMetrics[a.Probe]
	if !ok {
		v.at(p+".probe", fmt.Sprintf("unknown probe %s", quote(a.Probe)), oneOfHint(a.Probe, probeNames))
	} else if !contains(metrics, a.Metric) {
		v.at(p+".metric", fmt.Sprintf("probe %s has no metric %s", short(a.Probe), quote(a.Metric)), oneOfHint(a.Metric, metrics))
	}
	if a.Arm != "" && a.Arm != ArmCanary && a.Arm != ArmControl && a.Arm != ArmAny {
		v.at(p+".arm", fmt.Sprintf("unknown arm %s", quote(a.Arm)), oneOfHint(a.Arm, []string{ArmCanary, ArmControl, ArmAny}))
	}
	if (a.Below == nil) == (a.Above == nil) {
		v.at(p, "set exactly one of below and above", `e.g. below: "95%"`)
	}
	if a.For.Duration > MaxDuration {
		v.at(p+".for", "for is longer than 1h", "")
	}
}

func (v *validator) canary(c Canary) {
	prev := 0
	for i, w := range c.Steps {
		q := fmt.Sprintf("spec.canary.steps[%d]", i)
		if w < 1 || w > 100 {
			v.at(q, fmt.Sprintf("step weight %d is outside 1..100", w), "weights are percent of traffic, e.g. [5, 10, 25, 50, 100]")
			continue
		}
		if w <= prev {
			v.at(q, fmt.Sprintf("step weight %d does not increase (previous %d)", w, prev), "list weights in increasing order, e.g. [5, 10, 25, 50, 100]")
		}
		prev = w
	}
	if inc := c.Increment.Value * 100; inc != 0 {
		switch {
		case inc < 1 || inc != math.Round(inc):
			v.at("spec.canary.increment", fmt.Sprintf("increment %s is not a whole percent of at least 1%%", c.Increment), "weights are whole percents, e.g. increment: 5%")
		case prev == 100:
			v.at("spec.canary.increment", "increment after a last step of 100 adds no step", "end the listed steps below 100, e.g. steps: [1, 10, 50] with increment: 5%")
		}
	}
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func containsInt(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// lossShare checks the share of packets a packetLoss or corrupt fault
// hits: above 0, at most MaxPacketLoss.
func (v *validator) lossShare(q, field string, p Percent) {
	switch {
	case p.Value <= 0:
		v.at(q+"."+field, field+" is 0% or missing", fmt.Sprintf(`e.g. %s: "5%%" (a share of the packets, above 0%%)`, field))
	case p.Value > MaxPacketLoss:
		v.at(q+"."+field, fmt.Sprintf("%s %s is above 50%%", field, p), "past half the packets a TCP connection all but stops; to cut an edge, use partition")
	}
}

// edges checks an edge selection of networkDelay, bandwidth, packetLoss
// or corrupt at q.
func (v *validator) edges(q string, e Edges, n int, local bool) {
	set := 0
	if e.Into != "" {
		set++
		v.node(q+".into", e.Into, n, local)
	}
	if e.OutOf != "" {
		set++
		v.node(q+".outOf", e.OutOf, n, local)
	}
	if len(e.Between) > 0 {
		set++
		if len(e.Between) != 2 {
			v.at(q+".between", fmt.Sprintf("between names %d nodes", len(e.Between)), "name exactly two nodes, e.g. between: [n1, n2]")
		} else if e.Between[0] == e.Between[1] {
			v.at(q+".between", "between names the same node twice", "name two different nodes")
		}
		for i, x := range e.Between {
			v.node(fmt.Sprintf("%s.between[%d]", q, i), x, n, local)
		}
	}
	if set != 1 {
		v.at(q, "edges must set exactly one of into, outOf, between", "e.g. edges: {into: n2}")
	}
	if e.Clients && len(e.Between) > 0 {
		v.at(q+".clients", "clients applies to into or outOf, not between", "")
	}
}

// ZoneImpact is Fault.Impact with a zone outage counted as its zone's
// nodes on a local target (on Kubernetes the zone's pods are only known
// at run time, where the engine's budget counts them).
func ZoneImpact(f Fault, n int, t Target) int {
	if f.ZoneOutage != nil && t.Local != nil {
		if nodes := t.Local.Zones[f.ZoneOutage.Zone]; len(nodes) > 0 {
			return len(nodes)
		}
	}
	return f.Impact(n)
}

// labelValueRE is a Kubernetes label value (not empty).
var labelValueRE = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)

// zoneNameRE is a zone name of the local target.
var zoneNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// zones checks a local target's zones: names, nodes that exist, no node
// in two zones.
func (v *validator) zones(zones map[string][]string, n int) {
	owner := map[string]string{}
	for _, z := range sortedKeys(zones) {
		q := "spec.target.local.zones." + z
		if !zoneNameRE.MatchString(z) {
			v.at(q, fmt.Sprintf("bad zone name %s", quote(z)), "a DNS label: lower-case letters, digits and '-', e.g. a or eu-west-1a")
		}
		if len(zones[z]) == 0 {
			v.at(q, fmt.Sprintf("zone %s has no nodes", quote(z)), "list its nodes, e.g. [n1, n2]")
		}
		for i, x := range zones[z] {
			p := fmt.Sprintf("%s[%d]", q, i)
			v.node(p, x, n, true)
			if o, ok := owner[x]; ok {
				v.at(p, fmt.Sprintf("node %s is in zone %s and zone %s", x, o, z), "a node lives in one zone")
			}
			owner[x] = z
		}
	}
}

// localTraffic checks a traffic section for a local target: chaosgate's
// own router in front of the arms, with an optional header match and
// sticky header; route objects and Services are the Kubernetes
// providers'.
func (v *validator) localTraffic(tr *Traffic, t Target) {
	const q = "spec.traffic"
	if t.Kubernetes != nil {
		v.at(q+".provider", "provider router is chaosgate's own router in front of a local target", "on Kubernetes name the cluster's route: gatewayAPI, istio or smi")
		return
	}
	if tr.Provider != TrafficRouter {
		v.at(q+".provider", fmt.Sprintf("a local target's traffic goes through chaosgate's own router, not %s", quote(tr.Provider)), `provider: router`)
		return
	}
	for _, f := range []struct{ path, val string }{{".route", tr.Route}, {".gateway", tr.Gateway}, {".apexService", tr.ApexService},
		{".stableService", tr.StableService}, {".canaryService", tr.CanaryService}} {
		if f.val != "" {
			v.at(q+f.path, fmt.Sprintf("%s names a Kubernetes route object or Service; the local router has none", f.path[1:]), "remove it: the router's upstreams are the arms' nodes")
		}
	}
	if len(tr.Hosts) > 0 || tr.Port != 0 {
		v.at(q, "hosts and port name a Kubernetes route; the local router has none", "remove them")
	}
	if h := tr.Header; h != nil {
		if !headerNameRE.MatchString(h.Name) {
			v.at(q+".header.name", fmt.Sprintf("bad header name %s", quote(h.Name)), "an HTTP header name, e.g. x-canary")
		}
		if h.Value == "" {
			v.at(q+".header.value", "the header value is empty", `e.g. value: "always"`)
		}
		if strings.EqualFold(h.Name, RouterPinHeader) {
			v.at(q+".header.name", fmt.Sprintf("%s pins the game day's own load to its arms", RouterPinHeader), "match another header, e.g. x-canary")
		}
	}
	if s := tr.StickyHeader; s != "" {
		if !headerNameRE.MatchString(s) {
			v.at(q+".stickyHeader", fmt.Sprintf("bad header name %s", quote(s)), "an HTTP header name, e.g. x-session-id")
		}
		if strings.EqualFold(s, RouterPinHeader) {
			v.at(q+".stickyHeader", fmt.Sprintf("%s pins the game day's own load to its arms", RouterPinHeader), "hash another header, e.g. x-session-id")
		}
	}
}

// RouterPinHeader is the header whose value (canary, control,
// calibration) pins a local game day's load to its arm at the router.
const RouterPinHeader = "x-deployment-id"

// headerNameRE is an HTTP header name (RFC 9110 token).
var headerNameRE = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$")

// traffic checks a traffic section: a Kubernetes target only, a known
// provider and what it needs.
func (v *validator) traffic(tr *Traffic, t Target) {
	const q = "spec.traffic"
	if t.Kubernetes == nil || tr.Provider == TrafficRouter {
		v.localTraffic(tr, t)
		return
	}
	switch tr.Provider {
	case TrafficGatewayAPI:
		if tr.Gateway == "" {
			v.at(q+".gateway", "gatewayAPI needs the Gateway the HTTPRoute attaches to", "e.g. gateway: public")
		}
	case TrafficIstio:
		if len(tr.Hosts) == 0 {
			v.at(q+".hosts", "istio needs the VirtualService's hosts", "e.g. hosts: [aggregator.shop.svc.cluster.local]")
		}
	case TrafficSMI:
		if tr.ApexService == "" {
			v.at(q+".apexService", "smi needs the apex Service the TrafficSplit divides", "the Service clients address, e.g. apexService: aggregator")
		}
		if tr.Header != nil {
			v.at(q+".header", "an SMI TrafficSplit splits by weight only", "remove header, or route with provider gatewayAPI or istio, which match headers")
		}
	default:
		v.at(q+".provider", fmt.Sprintf("unknown traffic provider %s", quote(tr.Provider)), oneOfHint(tr.Provider, []string{TrafficGatewayAPI, TrafficIstio, TrafficSMI}))
	}
	if tr.ApexService != "" && tr.Provider != TrafficSMI {
		v.at(q+".apexService", "apexService belongs to an SMI TrafficSplit", "remove it, or use provider smi")
	}
	if tr.StickyHeader != "" {
		v.at(q+".stickyHeader", "stickyHeader belongs to chaosgate's own router (provider router, local target)", "on Kubernetes the cluster's gateway or mesh routes; remove stickyHeader")
	}
	for _, f := range []struct{ path, val string }{{".route", tr.Route}, {".apexService", tr.ApexService}, {".stableService", tr.StableService}, {".canaryService", tr.CanaryService}, {".gateway", tr.Gateway}} {
		if f.val != "" && !nameRE.MatchString(f.val) {
			v.at(q+f.path, fmt.Sprintf("bad name %s", quote(f.val)), "a DNS label: lower-case letters, digits and '-'")
		}
	}
	if tr.StableService != "" && tr.StableService == tr.CanaryService {
		v.at(q+".canaryService", fmt.Sprintf("canaryService and stableService are both %s", quote(tr.CanaryService)), "each arm has its own Service")
	}
	for _, f := range []struct{ path, val string }{{".route", tr.Route}, {".stableService", tr.StableService}, {".canaryService", tr.CanaryService}} {
		if f.val == "" {
			v.at(q+f.path, fmt.Sprintf("%s is required with provider %s", f.path[1:], tr.Provider), "name the route object and the Service of each arm")
		}
	}
	if tr.Port < 1 || tr.Port > 65535 {
		v.at(q+".port", fmt.Sprintf("port %d is outside 1..65535", tr.Port), "the Services' port, e.g. 7001")
	}
	if h := tr.Header; h != nil {
		if !headerNameRE.MatchString(h.Name) {
			v.at(q+".header.name", fmt.Sprintf("bad header name %s", quote(h.Name)), "an HTTP header name, e.g. x-canary")
		}
		if h.Value == "" {
			v.at(q+".header.value", "the header value is empty", `e.g. value: "always"`)
		}
	}
}
