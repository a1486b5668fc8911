// Package engine runs chaos experiments: plan → steady state before →
// inject → observe → recover → steady state after → verify → judge →
// record evidence. It owns the domain types (Target, Fault, Applied, Phase),
// the crash-safe journal, the reaper of faults left by a crashed run, the
// abort and pause controls and the blast-radius budget. Fault backends
// (Injector), probes, the judge and the evidence writer plug in through
// small interfaces and functions.
package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Arm is one side of a canary comparison.
type Arm int

// Arms.
const (
	ArmCanary Arm = 1 + iota
	ArmControl
	// ArmCalibration is a second cluster of the control's build that
	// mirrors the canary — the canary's share of traffic, the canary's
	// faults — so that calibration−control is an A/A pair measured under
	// exactly the conditions of canary−control: how far two healthy
	// clusters drift apart right now, on this host, under these faults.
	ArmCalibration
)

var armNames = map[Arm]string{ArmCanary: "canary", ArmControl: "control", ArmCalibration: "calibration"}

// String names the arm (canary, control, calibration).
func (a Arm) String() string { return enumString(armNames, a) }

// MarshalText writes the arm's name.
func (a Arm) MarshalText() ([]byte, error) { return enumMarshal(armNames, a) }

// UnmarshalText reads an arm's name.
func (a *Arm) UnmarshalText(b []byte) error { return enumUnmarshal(armNames, a, b, "arm") }

// ParseArm reads an arm's name.
func ParseArm(s string) (Arm, error) {
	var a Arm
	err := a.UnmarshalText([]byte(s))
	return a, err
}

// FaultKind names a kind of fault.
type FaultKind int

// Fault kinds.
const (
	PodKill FaultKind = 1 + iota
	PodPause
	NetworkDelay
	Partition
	SplitBrain
	// BrokerOutage takes an upstream broker away (partitioned or killed).
	BrokerOutage
	// ConsumerRebalance makes a consumer-group member leave and rejoin.
	ConsumerRebalance
	// Backlog pauses an upstream's consumption, then releases the backlog.
	Backlog
	// SlowDependency adds latency on a consuming node's downstream edges.
	SlowDependency
	// ClockSkew offsets one node's physical clock (locally through the
	// reference aggregator's admin API, on Kubernetes with a Chaos Mesh
	// TimeChaos), optionally handing the skewed node the leadership of a
	// partition it follows.
	ClockSkew
	// Overload sends a burst far above the sustainable rate to an arm.
	Overload
	// CPUStress takes a share of one CPU away from a node (locally a CFS
	// quota in a cgroup of the node's own, on Kubernetes a Chaos Mesh
	// StressChaos CPU stressor in the pod).
	CPUStress
	// Bandwidth caps the throughput of chosen edges (locally Toxiproxy's
	// bandwidth toxic on the proxies, on Kubernetes a Chaos Mesh
	// NetworkChaos bandwidth action).
	Bandwidth
	// ZoneOutage cuts every node of one zone from the rest of the arm and
	// from its clients, and kills them, at once.
	ZoneOutage
	// PacketLoss loses a share of the packets on chosen edges (locally
	// the proxies play each lost TCP segment as a retransmission timeout,
	// on Kubernetes a Chaos Mesh NetworkChaos loss action).
	PacketLoss
	// Corrupt corrupts a share of the packets on chosen edges (locally
	// played as the same share of segment loss — a TCP receiver drops a
	// corrupted segment on its checksum — on Kubernetes a NetworkChaos
	// corrupt action).
	Corrupt
	// MemoryStress takes memory from a node (locally tmpfs pages charged
	// to a memory cgroup the node is moved into, under a limit; on
	// Kubernetes a Chaos Mesh StressChaos memory stressor in the pod).
	MemoryStress
	// TrafficSplit is not a fault an experiment names: it is the canary's
	// share of real requests that a game day set on a route object. The
	// game day journals it like a fault so that, when chaosgate crashes
	// mid-rollout, the reaper "recovers" it by sending every request back
	// to the stable arm.
	TrafficSplit
)

var kindNames = map[FaultKind]string{PodKill: "podKill", PodPause: "podPause", NetworkDelay: "networkDelay", Partition: "partition", SplitBrain: "splitBrain",
	BrokerOutage: "brokerOutage", ConsumerRebalance: "consumerRebalance", Backlog: "backlog", SlowDependency: "slowDependency",
	ClockSkew: "clockSkew", Overload: "overload", CPUStress: "cpuStress", Bandwidth: "bandwidth", ZoneOutage: "zoneOutage",
	TrafficSplit: "trafficSplit", PacketLoss: "packetLoss", Corrupt: "corrupt",
	MemoryStress: "memoryStress"}

// String names the kind (podKill, ...).
func (k FaultKind) String() string { return enumString(kindNames, k) }

// MarshalText writes the kind's name (podKill, ...).
func (k FaultKind) MarshalText() ([]byte, error) { return enumMarshal(kindNames, k) }

// UnmarshalText reads a kind's name.
func (k *FaultKind) UnmarshalText(b []byte) error {
	return enumUnmarshal(kindNames, k, b, "fault kind")
}

// Phase is a step of the run lifecycle.
type Phase int

// Phases, in lifecycle order.
const (
	PhasePlan Phase = 1 + iota
	PhaseSteadyBefore
	PhaseInject
	PhaseObserve
	PhaseRecover
	PhaseSteadyAfter
	PhaseVerify
	PhaseJudge
	PhaseRecord
)

var phaseNames = map[Phase]string{PhasePlan: "plan", PhaseSteadyBefore: "steady-before", PhaseInject: "inject", PhaseObserve: "observe",
	PhaseRecover: "recover", PhaseSteadyAfter: "steady-after", PhaseVerify: "verify", PhaseJudge: "judge", PhaseRecord: "record"}

// String names the phase (plan, steady-before, ...).
func (p Phase) String() string { return enumString(phaseNames, p) }

// MarshalText writes the phase's name.
func (p Phase) MarshalText() ([]byte, error) { return enumMarshal(phaseNames, p) }

// UnmarshalText reads a phase's name.
func (p *Phase) UnmarshalText(b []byte) error { return enumUnmarshal(phaseNames, p, b, "phase") }

// Confirmation says whether a fault was checked to have taken effect.
type Confirmation int

// Confirmation outcomes.
const (
	Confirmed Confirmation = 1 + iota
	Mismatch
	Inconclusive
)

var confNames = map[Confirmation]string{Confirmed: "confirmed", Mismatch: "mismatch", Inconclusive: "inconclusive"}

// String names the outcome (confirmed, mismatch, inconclusive).
func (c Confirmation) String() string { return enumString(confNames, c) }

// MarshalText writes the outcome's name.
func (c Confirmation) MarshalText() ([]byte, error) { return enumMarshal(confNames, c) }

// UnmarshalText reads an outcome's name.
func (c *Confirmation) UnmarshalText(b []byte) error {
	return enumUnmarshal(confNames, c, b, "confirmation")
}

func enumString[T ~int](names map[T]string, v T) string {
	if s, ok := names[v]; ok {
		return s
	}
	return fmt.Sprintf("invalid(%d)", v)
}

func enumMarshal[T ~int](names map[T]string, v T) ([]byte, error) {
	if s, ok := names[v]; ok {
		return []byte(s), nil
	}
	return nil, E(KindInternal, "marshal", fmt.Errorf("invalid value %d", v))
}

func enumUnmarshal[T ~int](names map[T]string, v *T, b []byte, what string) error {
	for k, s := range names {
		if s == string(b) {
			*v = k
			return nil
		}
	}
	return E(KindInvalid, "parse "+what, fmt.Errorf("unknown %s %q", what, b))
}

// Target is the one thing an Injector acts on: an arm's cluster, and for
// node faults one node of it.
type Target struct {
	Arm Arm `json:"arm"`
	// Nodes are all the replicas of the arm.
	Nodes []string `json:"nodes"`
	// Node is the replica a node fault acts on; empty for faults on the
	// arm's network as a whole.
	Node string `json:"node,omitempty"`
	// Group is the replicas a zone outage takes down (the zone's nodes).
	Group []string `json:"group,omitempty"`
}

// Name is "arm/node" or "arm".
func (t Target) Name() string {
	if t.Node == "" {
		return t.Arm.String()
	}
	return t.Arm.String() + "/" + t.Node
}

// Edges chooses directed edges of an arm's network.
type Edges struct {
	Into    string   `json:"into,omitempty"`
	OutOf   string   `json:"out_of,omitempty"`
	Between []string `json:"between,omitempty"`
	// Clients adds the client→node edges of the chosen node.
	Clients bool `json:"clients,omitempty"`
}

// Fault is one fault to apply to one target.
type Fault struct {
	// ID identifies one application of a fault; the runner sets it and
	// backends derive the names of what they create from it.
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Seed is the same for every arm's application of one fault at one
	// canary step, so that choices made from it (which node to isolate)
	// are the same on the canary and the control.
	Seed     string        `json:"seed,omitempty"`
	Kind     FaultKind     `json:"kind"`
	Duration time.Duration `json:"duration"`
	// Mode and Nodes select nodes of node faults (one, leader, fixed).
	Mode  string   `json:"mode,omitempty"`
	Nodes []string `json:"nodes,omitempty"`
	// Network delay.
	Latency     time.Duration `json:"latency,omitempty"`
	Jitter      time.Duration `json:"jitter,omitempty"`
	Correlation float64       `json:"correlation,omitempty"`
	Edges       Edges         `json:"edges,omitzero"`
	// Shape is the partition shape.
	Shape string `json:"shape,omitempty"`
	// Partition restricts a split brain to one aggregator partition's leader.
	Partition *int `json:"partition,omitempty"`
	// Upstream names the aggregator upstream of an upstream fault
	// (brokerOutage, consumerRebalance, backlog); Outage is a broker
	// outage's mode (partition or kill).
	Upstream string `json:"upstream,omitempty"`
	Outage   string `json:"outage,omitempty"`
	// Offset is a clock skew's signed offset of the physical clock;
	// Handover hands the skewed node the leadership of a partition it
	// follows once the skew is in force.
	Offset   time.Duration `json:"offset,omitempty"`
	Handover bool          `json:"handover,omitempty"`
	// Rate is an overload burst's offered load (messages per second, per
	// arm), Batch its messages per request and Payload their payload size
	// in bytes.
	Rate    float64 `json:"rate,omitempty"`
	Batch   int     `json:"batch,omitempty"`
	Payload int     `json:"payload,omitempty"`
	// Load is a cpuStress's share of one CPU taken away (0..1).
	Load float64 `json:"load,omitempty"`
	// BytesPerSecond is a bandwidth fault's cap per direction, with
	// RateText the rate as written ("1mbit").
	BytesPerSecond int64  `json:"bytes_per_second,omitempty"`
	RateText       string `json:"rate_text,omitempty"`
	// Zone is a zone outage's zone.
	Zone string `json:"zone,omitempty"`
	// MemoryBytes is a memoryStress's size, MemoryText the size as
	// written ("256MiB"), MemoryLimit the local target's limit.
	MemoryBytes int64  `json:"memory_bytes,omitempty"`
	MemoryText  string `json:"memory_text,omitempty"`
	MemoryLimit int64  `json:"memory_limit,omitempty"`
	// ResetRatio is a slowDependency's share of connections reset by the
	// peer (0..1).
	ResetRatio float64 `json:"reset_ratio,omitempty"`
	// LossRatio is a packetLoss's or corrupt's share of the packets
	// (0..1).
	LossRatio float64 `json:"loss_ratio,omitempty"`
}

// Applied is what an Injector did: enough to report it and to undo it from
// the journal alone after a crash.
type Applied struct {
	ID      string    `json:"id"`
	Kind    FaultKind `json:"kind"`
	Target  Target    `json:"target"`
	Fault   Fault     `json:"fault"`
	Backend string    `json:"backend"`
	// At is when the fault took effect (zero in an intent record).
	At time.Time `json:"at,omitzero"`
	// Undo is the backend's serialised undo information.
	Undo json.RawMessage `json:"undo,omitempty"`
	// Affected are the nodes the fault impaired (the isolated side of a
	// partition, the delayed node), for reports.
	Affected []string `json:"affected,omitempty"`
	// Detail describes what was done, for people.
	Detail string `json:"detail,omitempty"`
}

// Injector applies and recovers faults of one backend on one target per
// call. Both methods are idempotent; Recover is safe after a crash (it
// works from Applied alone).
type Injector interface {
	Inject(ctx context.Context, t Target, f Fault) (Applied, error)
	Recover(ctx context.Context, a Applied) error
}

// Preparer is implemented by injectors that can say what they will do (and
// how to undo it) before acting; the runner journals that intent before it
// calls Inject, so a crash between the two can still be undone.
type Preparer interface {
	Prepare(ctx context.Context, t Target, f Fault) (Applied, error)
}

// ConfirmResult is a fault-confirmation outcome with its measurement.
type ConfirmResult struct {
	Outcome     Confirmation `json:"outcome"`
	Measurement string       `json:"measurement"`
}

// Confirmer is implemented by injectors that can check a fault took effect.
type Confirmer interface {
	Confirm(ctx context.Context, a Applied) ConfirmResult
}

// Window is the time span and phase a probe observes.
type Window struct {
	Phase      Phase     `json:"phase"`
	Weight     int       `json:"weight"`
	Experiment string    `json:"experiment,omitempty"`
	Fault      string    `json:"fault,omitempty"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
}

// Metrics are one arm's named probe values.
type Metrics map[string]float64

// Observation is what a probe saw in a window, per arm.
type Observation struct {
	Probe  string          `json:"probe"`
	Window Window          `json:"window"`
	Arms   map[Arm]Metrics `json:"arms"`
	// Detail is the probe's own payload (e.g. a consistency check report).
	Detail any `json:"detail,omitempty"`
}

// Probe observes the system under test. A probe that could not run
// returns an error: never a pass and never a system failure.
type Probe interface {
	Name() string
	Observe(ctx context.Context, w Window) (Observation, error)
}

// Clock is the engine's time source: every wait of a Runner and every
// timestamp it writes goes through it. Production uses SystemClock; the
// scripted lifecycle test drives a simulated clock whose After advances
// the time at once, so a run of minutes replays in milliseconds, the same
// way every time.
type Clock interface {
	Now() time.Time
	// After delivers the time on the channel once d has passed.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }

// After is time.After.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
