package gameday

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	injlocal "github.com/chaosgate/chaosgate/engine/inject/local"
	"github.com/chaosgate/chaosgate/engine/probe/logs"
	"github.com/chaosgate/chaosgate/engine/target/local/arms"
)

// Target is where a game day's arms run and how faults reach them: the
// local target (clusters of the reference aggregator the game day starts,
// the default) or a backend that finds the user's running workloads, such
// as engine/target/k8s's pods. Everything else — the load, the probes, the
// judge's windows, the step controller, the report and the evidence — is
// the game day's, the same for every target.
type Target interface {
	engine.Topology
	// Name says what the target is, for messages and the baseline
	// history's service key ("local", "kubernetes").
	Name() string
	// Service names the judged service in the baseline history: A/A
	// windows of one service are each other's noise.
	Service() string
	// LoadArms are the arms that take load and are observed: canary and
	// control, and engine.ArmCalibration when the target runs a third
	// cluster of the control's build to measure A/A noise.
	LoadArms() []engine.Arm
	// ClientAddrs are the addresses the load dials for an arm.
	ClientAddrs(arm engine.Arm) []string
	// DirectAddrs map each node of an arm to its own HTTP API (metrics
	// scrapes, the evidence's targets).
	DirectAddrs(arm engine.Arm) map[string]string
	// Partitions is the aggregator's partition count.
	Partitions() int
	// Healthy is nil once every arm serves: every node ready and every
	// partition with a leader the nodes agree on.
	Healthy(ctx context.Context) error
	// Injectors apply the faults of an experiment to the arms.
	Injectors() map[engine.FaultKind]engine.Injector
	// Close releases what the target holds (the local target stops its
	// clusters).
	Close()
}

// FaultRecords is implemented by a target whose injector keeps its own
// records of a fault (Chaos Mesh's per-pod records); the evidence binds
// them in the injection's detail.
type FaultRecords interface {
	FaultRecords(faultID string) any
}

// LogStreams is implemented by a target whose nodes' logs reach a log
// server through the cluster's own agent (Promtail, Grafana Alloy, Vector,
// vlagent…) rather than through the game day's shipper: per arm, the
// streams that hold the arm's lines as that agent labels them. The log
// guards ask the server for those streams; the game day ships nothing.
type LogStreams interface {
	LogStreams(arm engine.Arm) logs.Streams
}

// TrafficSplitter is implemented by a target that moves real requests
// between the arms (a traffic section's route object on Kubernetes): each
// canary step's weight is set on it, a rollback sets 0. It returns what
// the route object holds afterwards, read back ("" when it routes
// nothing). JournaledSplit is what the game day journals before it first
// sends requests to the canary, so that the reaper restores the route if
// chaosgate crashes mid-rollout (false when the target routes nothing).
type TrafficSplitter interface {
	SetCanaryWeight(ctx context.Context, weight int) (string, error)
	JournaledSplit() (engine.Applied, bool)
}

// SettleTimeout is implemented by a target whose arms may take longer
// than DefaultSettleTimeout to be healthy again after a fault (on
// Kubernetes a killed pod is rescheduled, pulled, started and must pass
// its readiness probe): how long the game day waits for every arm to be
// healthy and serving before a steady window, before judging anyway.
type SettleTimeout interface {
	SettleTimeout() time.Duration
}

// RecoverTimeout is implemented by a target whose faults may take longer
// than DefaultRecoverTimeout to recover (on Kubernetes, Chaos Mesh must
// delete its objects and report them recovered): how long the fault
// runner's recovery of a step's faults may take before it counts as
// failed (and stops the run, leaving the journal to the reaper).
type RecoverTimeout interface {
	RecoverTimeout() time.Duration
}

// DefaultRecoverTimeout bounds the recovery of a step's faults on a
// target that does not say (the local proxies and processes).
const DefaultRecoverTimeout = 10 * time.Second

// DefaultSettleTimeout is how long the game day waits for the arms to
// settle after the faults of a step on a target that does not say.
const DefaultSettleTimeout = 20 * time.Second

// localTarget is the local target: the game day's own clusters.
type localTarget struct {
	a     *arms.Arms
	inj   *injlocal.Injector
	parts int
	name  string
	zones map[string][]string // zone → nodes, the same on every arm
}

// ZoneNodes implements engine.ZoneTopology from the target's zones.
func (l *localTarget) ZoneNodes(_ context.Context, arm engine.Arm, zone string) ([]string, error) {
	nodes, ok := l.zones[zone]
	if !ok {
		return nil, fmt.Errorf("the local target has no zone %q (zones: %v)", zone, slices.Sorted(maps.Keys(l.zones)))
	}
	return append([]string(nil), nodes...), nil
}

var _ Target = (*localTarget)(nil)

func (l *localTarget) Name() string    { return "local" }
func (l *localTarget) Service() string { return "local/" + l.name }
func (l *localTarget) LoadArms() []engine.Arm {
	return []engine.Arm{engine.ArmCanary, engine.ArmControl, engine.ArmCalibration}
}
func (l *localTarget) Nodes(arm engine.Arm) []string                { return l.a.Nodes(arm) }
func (l *localTarget) ClientAddrs(arm engine.Arm) []string          { return l.a.ClientAddrs(arm) }
func (l *localTarget) DirectAddrs(arm engine.Arm) map[string]string { return l.a.DirectAddrs(arm) }
func (l *localTarget) Partitions() int                              { return l.parts }
func (l *localTarget) Healthy(ctx context.Context) error            { return l.a.Healthy(ctx, l.parts) }
func (l *localTarget) Close()                                       { l.a.Close() }
func (l *localTarget) Leader(ctx context.Context, arm engine.Arm, partition *int) (string, error) {
	return l.a.Leader(ctx, arm, partition)
}

// Injectors maps every fault kind the local injector implements to it.
func (l *localTarget) Injectors() map[engine.FaultKind]engine.Injector {
	m := map[engine.FaultKind]engine.Injector{}
	for _, k := range []engine.FaultKind{engine.PodKill, engine.PodPause, engine.NetworkDelay, engine.Partition, engine.SplitBrain,
		engine.BrokerOutage, engine.ConsumerRebalance, engine.Backlog, engine.SlowDependency, engine.ClockSkew, engine.Overload, engine.CPUStress, engine.MemoryStress, engine.Bandwidth, engine.PacketLoss, engine.Corrupt, engine.ZoneOutage} {
		m[k] = l.inj
	}
	return m
}

// hasArm reports whether the target runs arm.
func hasArm(t Target, arm engine.Arm) bool {
	for _, a := range t.LoadArms() {
		if a == arm {
			return true
		}
	}
	return false
}
