package engine

import (
	"fmt"
	"time"

	"github.com/chaosgate/chaosgate/scenarios"
)

// Plan is what a run does: at each canary weight, each experiment that runs
// at it applies its faults one after the other to every arm.
type Plan struct {
	Name        string
	Weights     []int
	Arms        []Arm
	Experiments []Experiment
	Budget      scenarios.BlastRadius
}

// Experiment is one experiment of a plan.
type Experiment struct {
	Name        string
	SteadyState time.Duration
	Faults      []Fault
	// RunAt lists the weights at which it runs (empty: every weight).
	RunAt []int
	// Abort lists the conditions that stop the run during its faults.
	Abort []AbortRule
}

// RunsAt reports whether the experiment runs at canary weight w.
func (e Experiment) RunsAt(w int) bool {
	if len(e.RunAt) == 0 {
		return true
	}
	for _, x := range e.RunAt {
		if x == w {
			return true
		}
	}
	return false
}

// AbortRule stops the run early when a probe metric crosses a threshold
// for at least For (zero: at the first observation).
type AbortRule struct {
	Probe  string        `json:"probe"`
	Metric string        `json:"metric"`
	Arm    Arm           `json:"arm,omitempty"` // 0: any arm
	Below  *float64      `json:"below,omitempty"`
	Above  *float64      `json:"above,omitempty"`
	For    time.Duration `json:"for,omitempty"`
}

// String describes the rule for people.
func (r AbortRule) String() string {
	arm := "any arm"
	if r.Arm != 0 {
		arm = r.Arm.String()
	}
	if r.Below != nil {
		return fmt.Sprintf("%s.%s below %g on %s for %s", r.Probe, r.Metric, *r.Below, arm, r.For)
	}
	return fmt.Sprintf("%s.%s above %g on %s for %s", r.Probe, r.Metric, *r.Above, arm, r.For)
}

// PlanFromDocument turns a validated scenario document (an Experiment or a
// GameDay) into a plan.
func PlanFromDocument(doc *scenarios.Document) (Plan, error) {
	exps, err := scenarios.Resolve(doc)
	if err != nil {
		return Plan{}, E(KindInvalid, "plan", err)
	}
	p := Plan{Name: doc.Metadata.Name, Weights: doc.Spec.Canary.StepsOrDefault(), Budget: doc.Spec.BlastRadius}
	for _, a := range doc.Spec.Target.ArmNames() {
		arm, err := ParseArm(a)
		if err != nil {
			return Plan{}, err
		}
		p.Arms = append(p.Arms, arm)
	}
	for _, e := range exps {
		x := Experiment{Name: e.Metadata.Name, SteadyState: e.Spec.SteadyState.Duration, RunAt: e.RunAt}
		for _, f := range e.Spec.Faults {
			x.Faults = append(x.Faults, FaultFromSpec(f))
		}
		for _, a := range e.Spec.Abort {
			r := AbortRule{Probe: a.Probe, Metric: a.Metric, For: a.For.Duration}
			if a.Arm != "" && a.Arm != scenarios.ArmAny {
				arm, err := ParseArm(a.Arm)
				if err != nil {
					return Plan{}, err
				}
				r.Arm = arm
			}
			if a.Below != nil {
				v := a.Below.Value
				r.Below = &v
			}
			if a.Above != nil {
				v := a.Above.Value
				r.Above = &v
			}
			x.Abort = append(x.Abort, r)
		}
		p.Experiments = append(p.Experiments, x)
	}
	return p, nil
}

// FaultFromSpec converts a scenario fault to an engine fault (without ID).
func FaultFromSpec(f scenarios.Fault) Fault {
	out := Fault{Name: f.Name, Duration: f.Duration.Duration}
	nodeFault := func(nf *scenarios.NodeFault) {
		out.Mode = nf.Mode
		out.Nodes = append([]string(nil), nf.Nodes...)
		if out.Mode == "" {
			out.Mode = scenarios.ModeOne
		}
	}
	switch {
	case f.PodKill != nil:
		out.Kind = PodKill
		nodeFault(f.PodKill)
	case f.PodPause != nil:
		out.Kind = PodPause
		nodeFault(f.PodPause)
	case f.NetworkDelay != nil:
		d := f.NetworkDelay
		out.Kind = NetworkDelay
		out.Latency, out.Jitter, out.Correlation = d.Latency.Duration, d.Jitter.Duration, d.Correlation.Value
		out.Edges = edgesOf(d.Edges)
	case f.Partition != nil:
		out.Kind = Partition
		out.Shape = f.Partition.Shape
	case f.SplitBrain != nil:
		out.Kind = SplitBrain
		if f.SplitBrain.Partition != nil {
			v := *f.SplitBrain.Partition
			out.Partition = &v
		}
	case f.BrokerOutage != nil:
		out.Kind, out.Upstream, out.Outage = BrokerOutage, f.BrokerOutage.Upstream, f.BrokerOutage.Mode
		if out.Outage == "" {
			out.Outage = scenarios.OutagePartition
		}
	case f.ConsumerRebalance != nil:
		out.Kind, out.Upstream = ConsumerRebalance, f.ConsumerRebalance.Upstream
		nodeFault(&scenarios.NodeFault{Mode: f.ConsumerRebalance.Mode, Nodes: f.ConsumerRebalance.Nodes})
	case f.Backlog != nil:
		out.Kind, out.Upstream = Backlog, f.Backlog.Upstream
	case f.SlowDependency != nil:
		d := f.SlowDependency
		out.Kind, out.Latency, out.Jitter, out.ResetRatio = SlowDependency, d.Latency.Duration, d.Jitter.Duration, d.Errors.Value
		nodeFault(&scenarios.NodeFault{Mode: d.Mode, Nodes: d.Nodes})
	case f.ClockSkew != nil:
		d := f.ClockSkew
		out.Kind, out.Offset, out.Handover = ClockSkew, d.Offset.Duration, d.Handover
		nodeFault(&scenarios.NodeFault{Mode: d.Mode, Nodes: d.Nodes})
	case f.Overload != nil:
		out.Kind, out.Rate, out.Batch, out.Payload = Overload, f.Overload.Rate.Value, f.Overload.Batch, f.Overload.Payload
	case f.Bandwidth != nil:
		b := f.Bandwidth
		out.Kind, out.BytesPerSecond, out.RateText = Bandwidth, b.Rate.BytesPerSecond, b.Rate.String()
		out.Edges = edgesOf(b.Edges)
	case f.PacketLoss != nil:
		out.Kind, out.LossRatio = PacketLoss, f.PacketLoss.Loss.Value
		out.Edges = edgesOf(f.PacketLoss.Edges)
	case f.Corrupt != nil:
		out.Kind, out.LossRatio = Corrupt, f.Corrupt.Corrupt.Value
		out.Edges = edgesOf(f.Corrupt.Edges)
	case f.ZoneOutage != nil:
		out.Kind, out.Zone = ZoneOutage, f.ZoneOutage.Zone
	case f.CPUStress != nil:
		out.Kind, out.Load = CPUStress, f.CPUStress.Load.Value
		nodeFault(&scenarios.NodeFault{Mode: f.CPUStress.Mode, Nodes: f.CPUStress.Nodes})
	case f.MemoryStress != nil:
		m := f.MemoryStress
		out.Kind, out.MemoryBytes, out.MemoryText, out.MemoryLimit = MemoryStress, m.Size.Bytes, m.Size.String(), m.LimitOrDefault()
		nodeFault(&scenarios.NodeFault{Mode: m.Mode, Nodes: m.Nodes})
	}
	return out
}

// edgesOf is an experiment file's edge selection as the engine's.
func edgesOf(e scenarios.Edges) Edges {
	return Edges{Into: e.Into, OutOf: e.OutOf, Between: append([]string(nil), e.Between...), Clients: e.Clients}
}

// Impact is the number of an arm's n replicas one application of f on
// target t impairs (the quantity the blast-radius budget bounds).
func Impact(f Fault, t Target) int {
	n := len(t.Nodes)
	switch f.Kind {
	case PodKill, PodPause, NetworkDelay, SplitBrain, ClockSkew, Bandwidth, PacketLoss, Corrupt:
		return 1
	case CPUStress, MemoryStress:
		// Each application stresses one node (the runner expands fixed
		// nodes into one target each).
		return 1
	case Partition:
		return scenarios.ShapeImpact(f.Shape, n)
	case ZoneOutage:
		return len(t.Group)
	case SlowDependency:
		if f.Mode == scenarios.ModeFixed {
			return len(f.Nodes)
		}
		return 1
	}
	return 0 // broker and consumer-group faults and overload bursts impair no replica
}
