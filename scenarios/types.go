// Package scenarios defines experiment and game-day files (apiVersion
// chaosgate.io/v1, kinds Experiment and GameDay), loads them strictly from
// YAML with file:line:col errors and hints, validates them against the
// budget and shape rules, and ships the built-in scenario library.
package scenarios

// APIVersion is the only accepted apiVersion of a scenario file.
const APIVersion = "chaosgate.io/v1"

// Kinds of scenario documents.
const (
	KindExperiment = "Experiment"
	KindGameDay    = "GameDay"
)

// DefaultSteps are the canary weights (percent) used when a file names none.
var DefaultSteps = []int{5, 10, 25, 50, 100}

// Document is one scenario file: an Experiment or a GameDay.
type Document struct {
	APIVersion string   `yaml:"apiVersion" json:"apiVersion"`
	Kind       string   `yaml:"kind" json:"kind"`
	Metadata   Metadata `yaml:"metadata" json:"metadata"`
	Spec       Spec     `yaml:"spec" json:"spec"`

	// Source names where the document came from (a file path or
	// "library:NAME"); it is not part of the file.
	Source string `yaml:"-" json:"-"`
	// RunAt is the set of canary weights at which a resolved game-day
	// experiment runs (empty: every step).
	RunAt []int `yaml:"-" json:"-"`

	pos map[string]position
	// refs says where a GameDay's file references may be read from.
	refs refScope
}

// refScope confines the files a GameDay may reference: root is the
// directory they are read from (through os.Root, so neither "..", an
// absolute path nor a symbolic link leads out of it) and base the game
// day's own directory inside root. An empty root allows library names
// only: a document that came from no file (an upload) reads no file.
type refScope struct {
	root string
	base string
}

// Metadata names and describes a document.
type Metadata struct {
	Name        string            `yaml:"name" json:"name"`
	Description string            `yaml:"description,omitempty" json:"description,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
}

// Spec is the body of an Experiment or a GameDay. Faults belong to an
// Experiment; Experiments (references) belong to a GameDay.
type Spec struct {
	Target      Target           `yaml:"target" json:"target"`
	Faults      []Fault          `yaml:"faults,omitempty" json:"faults,omitempty"`
	Experiments []ExperimentRef  `yaml:"experiments,omitempty" json:"experiments,omitempty"`
	SteadyState Duration         `yaml:"steadyState,omitempty" json:"steadyState,omitempty"`
	Probes      Probes           `yaml:"probes,omitempty" json:"probes,omitempty"`
	Abort       []AbortCondition `yaml:"abort,omitempty" json:"abort,omitempty"`
	Canary      Canary           `yaml:"canary,omitempty" json:"canary,omitempty"`
	Decision    Decision         `yaml:"decision,omitempty" json:"decision,omitempty"`
	BlastRadius BlastRadius      `yaml:"blastRadius,omitempty" json:"blastRadius,omitempty"`
	// Traffic, on a Kubernetes target, moves real requests: each canary
	// step's weight is set on a route object the cluster serves.
	Traffic *Traffic `yaml:"traffic,omitempty" json:"traffic,omitempty"`
}

// Traffic providers.
const (
	TrafficGatewayAPI = "gatewayAPI"
	TrafficIstio      = "istio"
	TrafficSMI        = "smi"
	// TrafficRouter puts chaosgate's own L7 router (engine/router) in
	// front of a local target's arms.
	TrafficRouter = "router"
)

// Traffic names the route object chaosgate sets each step's split on —
// a Gateway API HTTPRoute, an Istio VirtualService or an SMI TrafficSplit
// (split.smi-spec.io/v1alpha2, as Linkerd and Open Service Mesh serve it)
// — and the Services of the two arms. Header, optional, sends every
// request carrying it to the canary whatever the weight (not with smi: a
// TrafficSplit splits by weight only). On a local target the provider is
// router: chaosgate's own router in front of the arms carries the load,
// and only Header and StickyHeader apply.
type Traffic struct {
	Provider string `yaml:"provider" json:"provider"`
	// Route is the HTTPRoute, VirtualService or TrafficSplit name (in the
	// target's namespace).
	Route string `yaml:"route,omitempty" json:"route,omitempty"`
	// ApexService is the Service clients address, which a TrafficSplit
	// divides between stableService and canaryService (smi only).
	ApexService string `yaml:"apexService,omitempty" json:"apexService,omitempty"`
	// Gateway is the Gateway an HTTPRoute attaches to (gatewayAPI).
	Gateway string `yaml:"gateway,omitempty" json:"gateway,omitempty"`
	// Hosts are the HTTPRoute's hostnames (optional) or the
	// VirtualService's hosts (required for istio).
	Hosts         []string            `yaml:"hosts,omitempty" json:"hosts,omitempty"`
	StableService string              `yaml:"stableService,omitempty" json:"stableService,omitempty"`
	CanaryService string              `yaml:"canaryService,omitempty" json:"canaryService,omitempty"`
	Port          int                 `yaml:"port,omitempty" json:"port,omitempty"`
	Header        *TrafficHeaderMatch `yaml:"header,omitempty" json:"header,omitempty"`
	// StickyHeader (router only) splits the requests carrying it by a hash
	// of its value, so that each value keeps its arm while the weight
	// holds (x-deployment-id, a session).
	StickyHeader string `yaml:"stickyHeader,omitempty" json:"stickyHeader,omitempty"`
}

// TrafficHeaderMatch is a request header that routes to the canary.
type TrafficHeaderMatch struct {
	Name  string `yaml:"name" json:"name"`
	Value string `yaml:"value" json:"value"`
}

// Target says where the system under test lives: local clusters started by
// chaosgate, or Kubernetes pods chosen by label selectors. Exactly one is set.
type Target struct {
	Local      *LocalTarget      `yaml:"local,omitempty" json:"local,omitempty"`
	Kubernetes *KubernetesTarget `yaml:"kubernetes,omitempty" json:"kubernetes,omitempty"`
	// Arms lists the arms that receive the faults (default: canary and control).
	Arms []string `yaml:"arms,omitempty" json:"arms,omitempty"`
}

// LocalTarget is a pair of local clusters (canary and control) of the
// reference aggregator.
type LocalTarget struct {
	// Nodes is the number of replicas per arm (named n1..nN).
	Nodes int `yaml:"nodes" json:"nodes"`
	// Partitions is the number of partitions of the aggregator (default 8).
	Partitions int `yaml:"partitions,omitempty" json:"partitions,omitempty"`
	// MaxClockOffset is every node's --max-clock-offset, the largest lead
	// of a received HLC timestamp a node merges (default 500ms, the
	// aggregator's). A clock skew must stay below it.
	MaxClockOffset Duration `yaml:"maxClockOffset,omitempty" json:"maxClockOffset,omitempty"`
	// Zones labels nodes with a zone: zone name → its nodes (the same on
	// every arm). A zoneOutage takes one zone's nodes down at once.
	Zones map[string][]string `yaml:"zones,omitempty" json:"zones,omitempty"`
	// Upstreams are message brokers the local target runs per arm; the
	// nodes consume them (--upstream) and the load is published to them.
	Upstreams []LocalUpstream `yaml:"upstreams,omitempty" json:"upstreams,omitempty"`
}

// KubernetesTarget selects the pods of each arm by namespace and labels.
type KubernetesTarget struct {
	Namespace string `yaml:"namespace" json:"namespace"`
	// Canary and Control choose each arm's workload by labels; required
	// unless Rollout is set.
	Canary  Selector `yaml:"canary,omitempty" json:"canary,omitzero"`
	Control Selector `yaml:"control,omitempty" json:"control,omitzero"`
	// Rollout names an Argo Rollout in Namespace: its canary ReplicaSet
	// (status.currentPodHash) is the canary arm and its stable ReplicaSet
	// (status.stableRS) the control; Canary and Control are then unused.
	Rollout string `yaml:"rollout,omitempty" json:"rollout,omitempty"`
	// Calibration, optional, chooses a workload running the control's
	// build beside it (Kayenta's "baseline"): it takes the canary's share
	// of load and the canary's faults, and each step's calibration-vs-
	// control window is an A/A window of the same conditions, recorded in
	// the baseline history before the canary is judged.
	Calibration *Selector `yaml:"calibration,omitempty" json:"calibration,omitempty"`
	// Replicas is the expected number of pods per arm; it sizes the
	// blast-radius budget and the partition shapes before pods are listed.
	Replicas int `yaml:"replicas" json:"replicas"`
}

// Selector picks pods by labels.
type Selector struct {
	MatchLabels map[string]string `yaml:"matchLabels" json:"matchLabels"`
}

// Fault is one fault of an Experiment: exactly one of the kind fields is set.
type Fault struct {
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Duration is how long the fault stays in effect, counted from when it
	// took effect; for podKill, how long to observe after the kill.
	Duration     Duration         `yaml:"duration" json:"duration"`
	PodKill      *NodeFault       `yaml:"podKill,omitempty" json:"podKill,omitempty"`
	PodPause     *NodeFault       `yaml:"podPause,omitempty" json:"podPause,omitempty"`
	NetworkDelay *NetworkDelay    `yaml:"networkDelay,omitempty" json:"networkDelay,omitempty"`
	Partition    *PartitionFault  `yaml:"partition,omitempty" json:"partition,omitempty"`
	SplitBrain   *SplitBrainFault `yaml:"splitBrain,omitempty" json:"splitBrain,omitempty"`
	// Upstream faults (the aggregator's message-broker consumers).
	BrokerOutage      *BrokerOutageFault      `yaml:"brokerOutage,omitempty" json:"brokerOutage,omitempty"`
	ConsumerRebalance *ConsumerRebalanceFault `yaml:"consumerRebalance,omitempty" json:"consumerRebalance,omitempty"`
	Backlog           *BacklogFault           `yaml:"backlog,omitempty" json:"backlog,omitempty"`
	SlowDependency    *SlowDependencyFault    `yaml:"slowDependency,omitempty" json:"slowDependency,omitempty"`
	// Clock and load faults.
	ClockSkew *ClockSkewFault `yaml:"clockSkew,omitempty" json:"clockSkew,omitempty"`
	Overload  *OverloadFault  `yaml:"overload,omitempty" json:"overload,omitempty"`
	// Resource faults.
	CPUStress    *CPUStressFault    `yaml:"cpuStress,omitempty" json:"cpuStress,omitempty"`
	MemoryStress *MemoryStressFault `yaml:"memoryStress,omitempty" json:"memoryStress,omitempty"`
	// Bandwidth caps the throughput of chosen edges.
	Bandwidth *BandwidthFault `yaml:"bandwidth,omitempty" json:"bandwidth,omitempty"`
	// PacketLoss loses a share of the packets on chosen edges.
	PacketLoss *PacketLossFault `yaml:"packetLoss,omitempty" json:"packetLoss,omitempty"`
	// Corrupt corrupts a share of the packets on chosen edges.
	Corrupt *CorruptFault `yaml:"corrupt,omitempty" json:"corrupt,omitempty"`
	// ZoneOutage takes every node of one zone down at once.
	ZoneOutage *ZoneOutageFault `yaml:"zoneOutage,omitempty" json:"zoneOutage,omitempty"`
}

// ZoneOutageFault takes a whole zone away: every node of the zone is cut
// from the rest of the cluster and from its clients, and killed, at once.
// Locally the zones are the target's zones; on Kubernetes the value of
// the pods' topology.kubernetes.io/zone label.
type ZoneOutageFault struct {
	Zone string `yaml:"zone" json:"zone"`
}

// Node selection modes of a node fault.
const (
	ModeOne    = "one"    // one node, chosen by the engine
	ModeLeader = "leader" // the node that leads the most partitions
	ModeFixed  = "fixed"  // the nodes listed in nodes
)

// NodeFault chooses the nodes a podKill or podPause acts on.
type NodeFault struct {
	Mode  string   `yaml:"mode,omitempty" json:"mode,omitempty"`
	Nodes []string `yaml:"nodes,omitempty" json:"nodes,omitempty"`
}

// NetworkDelay adds latency and jitter on chosen edges.
type NetworkDelay struct {
	Latency     Duration `yaml:"latency" json:"latency"`
	Jitter      Duration `yaml:"jitter,omitempty" json:"jitter,omitempty"`
	Correlation Percent  `yaml:"correlation,omitempty" json:"correlation,omitempty"`
	Edges       Edges    `yaml:"edges" json:"edges"`
}

// Edges chooses directed edges: into a node, out of a node, or between two
// named nodes (both directions). Clients adds the client→node edges of the
// chosen node to the node→node ones.
type Edges struct {
	Into    string   `yaml:"into,omitempty" json:"into,omitempty"`
	OutOf   string   `yaml:"outOf,omitempty" json:"outOf,omitempty"`
	Between []string `yaml:"between,omitempty" json:"between,omitempty"`
	Clients bool     `yaml:"clients,omitempty" json:"clients,omitempty"`
}

// Partition shapes (Jepsen's nemeses).
const (
	ShapeIsolateOne     = "isolate-one"
	ShapeHalves         = "halves"
	ShapeMajoritiesRing = "majorities-ring"
	ShapeBridge         = "bridge"
)

// PartitionFault cuts the node→node edges that cross a shape's cut.
type PartitionFault struct {
	Shape string `yaml:"shape" json:"shape"`
}

// SplitBrainFault isolates the current leader(s) from the majority on
// node→node edges while client→node edges stay open.
type SplitBrainFault struct {
	// Partition restricts the fault to the leader of one partition
	// (default: the node that leads the most partitions).
	Partition *int `yaml:"partition,omitempty" json:"partition,omitempty"`
}

// ExperimentRef is one entry of a GameDay: a library name or a file path
// relative to the game-day file, with an optional duration override.
type ExperimentRef struct {
	Ref      string   `yaml:"ref" json:"ref"`
	Duration Duration `yaml:"duration,omitempty" json:"duration,omitempty"`
	// Steps lists the canary weights at which the experiment runs
	// (default: every step).
	Steps []int `yaml:"steps,omitempty" json:"steps,omitempty"`
}

// Probes configures the three probes.
type Probes struct {
	Availability *AvailabilityProbe `yaml:"availability,omitempty" json:"availability,omitempty"`
	Consistency  *ConsistencyProbe  `yaml:"consistency,omitempty" json:"consistency,omitempty"`
	Metrics      *MetricsProbe      `yaml:"metrics,omitempty" json:"metrics,omitempty"`
	Logs         *LogsProbe         `yaml:"logs,omitempty" json:"logs,omitempty"`
}

// AvailabilityProbe drives load as many sources.
type AvailabilityProbe struct {
	Sources int `yaml:"sources,omitempty" json:"sources,omitempty"`
	// Rate is the total offered load in messages per second.
	Rate int `yaml:"rate,omitempty" json:"rate,omitempty"`
	// RetryBudget ("20%") bounds the load's re-sends to this share of the
	// messages offered (plus 10), as a client with a retry budget (Envoy,
	// gRPC retry throttling) does: past it a message fails at once instead
	// of being re-sent up to 60 times while the arm is down. Absent or 0 %:
	// every message is retried.
	RetryBudget Percent `yaml:"retryBudget,omitempty" json:"retryBudget,omitzero"`
}

// ConsistencyProbe checks the recorded history.
type ConsistencyProbe struct {
	Linearizability bool `yaml:"linearizability,omitempty" json:"linearizability,omitempty"`
}

// MetricsProbe scrapes the nodes' metrics.
type MetricsProbe struct {
	Interval Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	// Source is where the arms' process metrics (HTTP errors, GC pauses,
	// dependency calls, memory growth) come from: embedded (the default:
	// chaosgate scrapes the nodes) or prometheus (PromQL). The command's
	// --metrics-source overrides it.
	Source string `yaml:"source,omitempty" json:"source,omitempty"`
	// Address is the base URL of the Prometheus to ask (source
	// prometheus; empty: on the local target chaosgate starts one). The
	// command's --prometheus overrides it.
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
	// Queries is a queries/v1 file, relative to this file (source
	// prometheus; empty: the reference aggregator's queries). The
	// command's --queries overrides it.
	Queries string `yaml:"queries,omitempty" json:"queries,omitempty"`
}

// Metrics sources.
const (
	MetricsEmbedded   = "embedded"
	MetricsPrometheus = "prometheus"
)

// LogsProbe guards node logs with regular expressions.
type LogsProbe struct {
	Patterns []string `yaml:"patterns" json:"patterns"`
	// Server, KIND=URL (victorialogs=http://HOST:9428 or
	// loki=http://HOST:3100), sends the nodes' logs and the decision lines
	// to a log server and asks it the guards; --log-server overrides it.
	Server string `yaml:"server,omitempty" json:"server,omitempty"`
}

// Probe names usable in abort conditions.
const (
	ProbeAvailability = "availability"
	ProbeConsistency  = "consistency"
	ProbeMetrics      = "metrics"
	ProbeLogs         = "logs"
)

// AbortCondition stops the experiment early (and recovers every fault) when
// a probe value crosses a threshold for at least For.
type AbortCondition struct {
	Probe  string `yaml:"probe" json:"probe"`
	Metric string `yaml:"metric" json:"metric"`
	// Arm is canary, control or any (default any).
	Arm   string   `yaml:"arm,omitempty" json:"arm,omitempty"`
	Below *Number  `yaml:"below,omitempty" json:"below,omitempty"`
	Above *Number  `yaml:"above,omitempty" json:"above,omitempty"`
	For   Duration `yaml:"for,omitempty" json:"for,omitempty"`
}

// Canary lists the traffic weights (percent) of the canary steps.
type Canary struct {
	Steps []int `yaml:"steps,omitempty" json:"steps,omitempty"`
	// Increment, after the last listed step, adds this much weight per
	// step until 100 % (Flagger's stepWeight, the seeds' "+5 % per
	// batch"): steps [1, 10, 50] with increment 5% run 1, 10, 50, 55, …,
	// 95, 100. Without steps it starts at the increment. Whole percents.
	Increment Percent `yaml:"increment,omitempty" json:"increment,omitzero"`
}

// Decision references the judge policy: "default" or a decision config file.
type Decision struct {
	Policy string `yaml:"policy,omitempty" json:"policy,omitempty"`
}

// BlastRadius bounds how many replicas of an arm a fault may impair. By
// default a fault never impairs a quorum; AllowQuorum opts in explicitly.
type BlastRadius struct {
	MaxReplicas int     `yaml:"maxReplicas,omitempty" json:"maxReplicas,omitempty"`
	MaxShare    Percent `yaml:"maxShare,omitempty" json:"maxShare,omitempty"`
	AllowQuorum bool    `yaml:"allowQuorum,omitempty" json:"allowQuorum,omitempty"`
}

// Arm names.
const (
	ArmCanary  = "canary"
	ArmControl = "control"
	ArmAny     = "any"
)
