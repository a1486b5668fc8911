// Package k8s injects faults into pods on Kubernetes through Chaos Mesh
// (PodChaos, NetworkChaos, TimeChaos), or, for podKill when Chaos Mesh is absent, by
// deleting the pod directly.
//
// Every object carries owner labels (run id, experiment, chaosgate version)
// and a spec.duration so it expires on its own even if chaosgate dies; the
// duration is a safety net sized past the fault's own duration, because
// chaosgate counts the fault's time from when Chaos Mesh reports it injected
// (not from creation) and recovers it itself. Objects are checked with the
// Chaos Mesh api module's webhook rules (Default, ValidateCreate) before they
// are sent.
package k8s

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cm "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"
	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/geometry"
)

// Owner labels and annotations on every object chaosgate creates.
const (
	LabelManagedBy  = "app.kubernetes.io/managed-by"
	ManagedBy       = "chaosgate"
	LabelRun        = "chaosgate.io/run-id"
	LabelExperiment = "chaosgate.io/experiment"
	LabelVersion    = "chaosgate.io/version"
	LabelArm        = "chaosgate.io/arm"
	LabelFault      = "chaosgate.io/fault-id"
	LabelKind       = "chaosgate.io/fault-kind"
	// AnnotationFaultID holds the full fault id (label values are capped at 63).
	AnnotationFaultID = "chaosgate.io/fault-id"
	// AnnotationDuration is the fault's own duration; spec.duration is the
	// safety-net expiry.
	AnnotationDuration = "chaosgate.io/fault-duration"
)

// OwnedSelector selects every object chaosgate created.
const OwnedSelector = LabelManagedBy + "=" + ManagedBy

// Chaos Mesh resources.
var (
	PodChaosGVR     = schema.GroupVersionResource{Group: "chaos-mesh.org", Version: "v1alpha1", Resource: "podchaos"}
	NetworkChaosGVR = schema.GroupVersionResource{Group: "chaos-mesh.org", Version: "v1alpha1", Resource: "networkchaos"}
	TimeChaosGVR    = schema.GroupVersionResource{Group: "chaos-mesh.org", Version: "v1alpha1", Resource: "timechaos"}
	StressChaosGVR  = schema.GroupVersionResource{Group: "chaos-mesh.org", Version: "v1alpha1", Resource: "stresschaos"}
)

// Methods of injection recorded in the undo information.
const (
	MethodChaosMesh = "chaos-mesh"
	MethodPodDelete = "pod-delete"
)

// Owner identifies the run that owns the objects.
type Owner struct {
	RunID      string `json:"run_id"`
	Experiment string `json:"experiment"`
	Version    string `json:"version"`
}

// PlanOptions are what object building needs besides the fault.
type PlanOptions struct {
	Owner Owner
	// Namespace of the pods of each arm (and of the objects).
	Namespaces map[engine.Arm]string
	// ChaosMesh says whether the PodChaos and NetworkChaos CRDs exist.
	ChaosMesh bool
	// Expiry is added to the fault's duration to get spec.duration: the
	// safety net that ends the fault if chaosgate dies. Default 2m.
	Expiry time.Duration
	// Leaders returns aggregator partition → leader pod of an arm (from the
	// aggregator's GET /v1/cluster), for splitBrain when the fault names no
	// pods.
	Leaders func(ctx context.Context, arm engine.Arm) (map[int]string, error)
	// Zones returns the pods of an arm in a zone, for a dry run's
	// zoneOutage (a run asks the target's topology); nil: a dry run
	// cannot place a zone outage.
	Zones func(ctx context.Context, arm engine.Arm, zone string) ([]string, error)
}

// Plan is what one fault on one target creates.
type Plan struct {
	Method string `json:"method"`
	// Objects are typed *v1alpha1.PodChaos / *v1alpha1.NetworkChaos,
	// defaulted and validated.
	Objects []runtime.Object `json:"-"`
	// Pods are the pods a direct delete (or a pod-kill) acts on.
	Pods []string `json:"pods,omitempty"`
	// Namespace of the pods and objects.
	Namespace string `json:"namespace"`
	// OneShot is true for pod kills: applied means done.
	OneShot bool `json:"one_shot,omitempty"`
}

// Refs returns the object references of the plan.
func (p Plan) Refs() []ObjectRef {
	out := make([]ObjectRef, 0, len(p.Objects))
	for _, o := range p.Objects {
		m := o.(metav1.Object)
		out = append(out, ObjectRef{Kind: o.GetObjectKind().GroupVersionKind().Kind, Namespace: m.GetNamespace(), Name: m.GetName()})
	}
	return out
}

// ObjectRef names one Chaos Mesh object.
type ObjectRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// String is "Kind namespace/name".
func (r ObjectRef) String() string { return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name) }

func (r ObjectRef) gvr() schema.GroupVersionResource {
	switch r.Kind {
	case "NetworkChaos":
		return NetworkChaosGVR
	case "TimeChaos":
		return TimeChaosGVR
	case "StressChaos":
		return StressChaosGVR
	}
	return PodChaosGVR
}

// BuildPlan builds (without sending) the objects one fault on one target
// creates. It is pure except for opts.Leader.
func BuildPlan(ctx context.Context, opts PlanOptions, t engine.Target, f engine.Fault) (Plan, error) {
	op := fmt.Sprintf("plan %s on %s", f.Kind, t.Name())
	ns := opts.Namespaces[t.Arm]
	if ns == "" {
		return Plan{}, engine.E(engine.KindInvalid, op, fmt.Errorf("no namespace for arm %s", t.Arm))
	}
	if f.ID == "" {
		return Plan{}, engine.E(engine.KindInvalid, op, errors.New("fault has no id"))
	}
	if f.Duration <= 0 {
		return Plan{}, engine.E(engine.KindInvalid, op, fmt.Errorf("duration %s must be positive", f.Duration))
	}
	t, f, err := mapNodeNames(t, f)
	if err != nil {
		return Plan{}, engine.E(engine.KindInvalid, op, err)
	}
	b := builder{opts: opts, t: t, f: f, ns: ns}
	p := Plan{Namespace: ns, Method: MethodChaosMesh}
	switch f.Kind {
	case engine.PodKill, engine.PodPause:
		p.Pods, err = nodePods(t, f)
		if err != nil {
			return Plan{}, engine.E(engine.KindInvalid, op, err)
		}
		p.OneShot = f.Kind == engine.PodKill
		if !opts.ChaosMesh {
			if f.Kind == engine.PodPause {
				return Plan{}, missingChaosMesh(op, "PodChaos (pod-failure)")
			}
			p.Method = MethodPodDelete
			return p, nil
		}
		action := cm.PodKillAction
		if f.Kind == engine.PodPause {
			action = cm.PodFailureAction
		}
		p.Objects = append(p.Objects, b.podChaos(0, action, p.Pods))
	case engine.CPUStress, engine.MemoryStress:
		// Chaos Mesh's StressChaos runs a stress-ng worker inside the pod:
		// a CPU worker at the load competes with the application for the
		// pod's CPU limit, as the local CFS quota does for the node's
		// process; a memory worker holds the size within the pod's memory
		// limit, as the local tmpfs pages do under the fault's cgroup.
		if !opts.ChaosMesh {
			return Plan{}, missingChaosMesh(op, "StressChaos ("+map[engine.FaultKind]string{engine.CPUStress: "cpu", engine.MemoryStress: "memory"}[f.Kind]+")")
		}
		if f.Kind == engine.CPUStress && (f.Load <= 0 || f.Load >= 1) {
			return Plan{}, engine.E(engine.KindInvalid, op, fmt.Errorf("cpuStress load %g is outside (0, 1)", f.Load))
		}
		if f.Kind == engine.MemoryStress && f.MemoryBytes <= 0 {
			return Plan{}, engine.E(engine.KindInvalid, op, fmt.Errorf("memoryStress size %d bytes must be positive", f.MemoryBytes))
		}
		p.Pods, err = nodePods(t, f)
		if err != nil {
			return Plan{}, engine.E(engine.KindInvalid, op, err)
		}
		p.Objects = append(p.Objects, b.stress(p.Pods))
	case engine.NetworkDelay, engine.Bandwidth, engine.PacketLoss, engine.Corrupt:
		// One NetworkChaos from the pods that send on the chosen edges:
		// delay, bandwidth (Chaos Mesh shapes the senders' egress with
		// a token bucket, tc tbf, filtered to the target pods when there
		// are any), loss or corrupt (netem in the senders).
		action, build := "NetworkChaos (delay)", b.delay
		switch f.Kind {
		case engine.Bandwidth:
			action, build = "NetworkChaos (bandwidth)", b.bandwidth
		case engine.PacketLoss, engine.Corrupt:
			action, build = "NetworkChaos ("+f.Kind.String()+")", b.loss
			if f.LossRatio <= 0 || f.LossRatio > 1 {
				return Plan{}, engine.E(engine.KindInvalid, op, fmt.Errorf("%s share %g is outside (0, 1]", f.Kind, f.LossRatio))
			}
		}
		if !opts.ChaosMesh {
			return Plan{}, missingChaosMesh(op, action)
		}
		if f.Kind == engine.NetworkDelay && f.Latency <= 0 {
			return Plan{}, engine.E(engine.KindInvalid, op, fmt.Errorf("latency %s must be positive", f.Latency))
		}
		if f.Kind == engine.Bandwidth && f.BytesPerSecond <= 0 {
			return Plan{}, engine.E(engine.KindInvalid, op, fmt.Errorf("bandwidth rate %d bytes/s must be positive", f.BytesPerSecond))
		}
		from, to, dir, err := delayEdges(t, f)
		if err != nil {
			return Plan{}, engine.E(engine.KindInvalid, op, err)
		}
		if len(from) == 0 {
			return Plan{}, engine.E(engine.KindInvalid, op, fmt.Errorf("no pod sends on the chosen edges (the arm has %d pods)", len(t.Nodes)))
		}
		p.Pods = from
		p.Objects = append(p.Objects, build(from, to, dir))
	case engine.ZoneOutage:
		// The zone's pods fail for the fault's duration (PodChaos
		// pod-failure: they stay down, as the nodes of a lost zone do,
		// instead of being replaced at once) and are cut from the rest
		// of the arm both ways.
		if !opts.ChaosMesh {
			return Plan{}, missingChaosMesh(op, "PodChaos (pod-failure) and NetworkChaos (partition)")
		}
		if len(t.Group) == 0 {
			return Plan{}, engine.E(engine.KindInvalid, op, fmt.Errorf("zone %q has no pods", f.Zone))
		}
		zone := sortedCopy(t.Group)
		rest := minus(t.Nodes, zone)
		p.Pods = zone
		p.Objects = append(p.Objects, b.podChaos(0, cm.PodFailureAction, zone))
		if len(rest) > 0 {
			p.Objects = append(p.Objects, b.partition(1, zone, rest, cm.Both))
		}
	case engine.Partition:
		if !opts.ChaosMesh {
			return Plan{}, missingChaosMesh(op, "NetworkChaos (partition)")
		}
		sides, err := Cut(f.Shape, t.Nodes, t.Node)
		if err != nil {
			return Plan{}, engine.E(engine.KindInvalid, op, err)
		}
		for i, s := range sides {
			p.Objects = append(p.Objects, b.partition(i, s.From, s.To, cm.To))
		}
		p.Pods = sortedCopy(t.Nodes)
	case engine.SplitBrain:
		if !opts.ChaosMesh {
			return Plan{}, missingChaosMesh(op, "NetworkChaos (partition)")
		}
		leaders := append([]string(nil), f.Nodes...)
		if len(leaders) == 0 && t.Node != "" {
			leaders = []string{t.Node}
		}
		if len(leaders) == 0 && opts.Leaders != nil {
			m, err := opts.Leaders(ctx, t.Arm)
			if err != nil {
				return Plan{}, engine.E(engine.KindUnavailable, op+": find leader", err)
			}
			l, err := ChooseLeader(m, f.Partition)
			if err != nil {
				return Plan{}, engine.E(engine.KindUnavailable, op, err)
			}
			leaders = []string{l}
		}
		if len(leaders) == 0 {
			return Plan{}, engine.E(engine.KindInvalid, op, errors.New("no leader pod: name it in the fault's nodes or configure a leader lookup"))
		}
		rest := minus(t.Nodes, leaders)
		if len(rest) == 0 {
			return Plan{}, engine.E(engine.KindInvalid, op, fmt.Errorf("the leaders %v are every pod of the arm: nothing to cut them from", leaders))
		}
		p.Pods = sortedCopy(leaders)
		p.Objects = append(p.Objects, b.partition(0, sortedCopy(leaders), rest, cm.Both))
	case engine.ClockSkew:
		// Chaos Mesh's TimeChaos moves the pod's CLOCK_REALTIME by the
		// offset (its daemon injects into the container's vDSO). A
		// leadership handover is not part of it: on Kubernetes the
		// skewed pod takes a partition over when its leader is killed or
		// moved by the cluster.
		if !opts.ChaosMesh {
			return Plan{}, missingChaosMesh(op, "TimeChaos")
		}
		if f.Offset == 0 {
			return Plan{}, engine.E(engine.KindInvalid, op, errors.New("clock skew of 0"))
		}
		pod := t.Node
		if len(f.Nodes) > 0 {
			pod = f.Nodes[0]
		}
		if pod == "" {
			pods := sortedCopy(t.Nodes)
			if len(pods) == 0 {
				return Plan{}, engine.E(engine.KindInvalid, op, errors.New("the arm has no pods"))
			}
			pod = pods[pickIndex(f.Seed+f.ID, len(pods))]
		}
		p.Pods = []string{pod}
		p.Objects = append(p.Objects, b.timeChaos(pod))
	case engine.SlowDependency:
		// Latency on the chosen pods' downstream edges — what each sends
		// to the rest of its arm (replication, forwarding to partition
		// leaders): one NetworkChaos delay per pod, from it to the others
		// (direction to), as the local target delays the proxies out of
		// the node. Chaos Mesh has no connection-reset action, so the
		// fault's errors have no form here.
		if !opts.ChaosMesh {
			return Plan{}, missingChaosMesh(op, "NetworkChaos (delay)")
		}
		if f.ResetRatio > 0 {
			return Plan{}, engine.E(engine.KindInvalid, op, fmt.Errorf(
				"slowDependency errors (%.3g%% of the connections reset) have no Kubernetes form: Chaos Mesh's NetworkChaos has no reset action (the local target resets them on its proxies); hint: give only latency for --target k8s, or add a packetLoss fault on the same edges", 100*f.ResetRatio))
		}
		if f.Latency <= 0 {
			return Plan{}, engine.E(engine.KindInvalid, op, fmt.Errorf("latency %s must be positive", f.Latency))
		}
		members, err := dependencyPods(t, f)
		if err != nil {
			return Plan{}, engine.E(engine.KindInvalid, op, err)
		}
		for i, m := range members {
			rest := minus(t.Nodes, []string{m})
			if len(rest) == 0 {
				return Plan{}, engine.E(engine.KindInvalid, op, fmt.Errorf("pod %s is the arm's only pod: it has no downstream edge to slow", m))
			}
			nc := b.delay([]string{m}, rest, cm.To)
			nc.ObjectMeta = b.meta(i)
			p.Objects = append(p.Objects, nc)
		}
		p.Pods = members
	case engine.Overload:
		return Plan{}, engine.E(engine.KindInvalid, op, errors.New("overload has no Chaos Mesh object: the game day plays it, a burst from chaosgate's own load generator against the arm's pods"))
	case engine.BrokerOutage, engine.ConsumerRebalance, engine.Backlog:
		return Plan{}, engine.E(engine.KindInvalid, op, fmt.Errorf("%s has no Kubernetes form: the local target plays it (%s); run the file on the local target, or remove the fault for --target k8s", f.Kind, localOnly[f.Kind]))
	default:
		return Plan{}, engine.E(engine.KindInvalid, op, fmt.Errorf("unknown fault kind %d", int(f.Kind)))
	}
	for _, o := range p.Objects {
		if err := Validate(ctx, o); err != nil {
			return Plan{}, engine.E(engine.KindInvalid, op, err)
		}
		// The webhook defaults partitionBehavior to "drop", which is what
		// every Chaos Mesh release does with a partition; released CRDs do
		// not know the field (the API server would prune it with a
		// warning), so it is left out.
		if nc, ok := o.(*cm.NetworkChaos); ok && nc.Spec.PartitionBehavior == cm.DropPartitionBehavior {
			nc.Spec.PartitionBehavior = ""
		}
	}
	return p, nil
}

var localName = regexp.MustCompile(`^n([1-9][0-9]*)$`)

// mapNodeNames lets the same experiment files name nodes as on the local
// target: "nI" is the I-th pod of the arm in name order, unless a pod is
// really called that. Any other name must be a pod of the arm.
func mapNodeNames(t engine.Target, f engine.Fault) (engine.Target, engine.Fault, error) {
	pods := sortedCopy(t.Nodes)
	one := func(name string) (string, error) {
		if name == "" || contains(pods, name) {
			return name, nil
		}
		if m := localName.FindStringSubmatch(name); m != nil {
			i, _ := strconv.Atoi(m[1])
			if i <= len(pods) {
				return pods[i-1], nil
			}
			return "", fmt.Errorf("node %q: the arm has only %d pods", name, len(pods))
		}
		return "", fmt.Errorf("node %q is not a pod of the arm (%s); hint: name a pod, or n1..n%d for the pods in name order", name, strings.Join(pods, ", "), len(pods))
	}
	many := func(names []string) ([]string, error) {
		if names == nil {
			return nil, nil
		}
		out := make([]string, len(names))
		for i, n := range names {
			v, err := one(n)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}
	var err error
	if t.Node, err = one(t.Node); err != nil {
		return t, f, err
	}
	if f.Nodes, err = many(f.Nodes); err != nil {
		return t, f, err
	}
	if f.Edges.Into, err = one(f.Edges.Into); err != nil {
		return t, f, err
	}
	if f.Edges.OutOf, err = one(f.Edges.OutOf); err != nil {
		return t, f, err
	}
	if f.Edges.Between, err = many(f.Edges.Between); err != nil {
		return t, f, err
	}
	return t, f, nil
}

func missingChaosMesh(op, what string) error {
	return engine.E(engine.KindUnavailable, op, fmt.Errorf(
		"Chaos Mesh is not installed: the API server serves no chaos-mesh.org/v1alpha1 %s; this fault needs Chaos Mesh's CRDs and controller (helm install chaos-mesh chaos-mesh/chaos-mesh -n chaos-mesh)", what))
}

func nodePods(t engine.Target, f engine.Fault) ([]string, error) {
	if t.Node != "" {
		return []string{t.Node}, nil
	}
	if len(f.Nodes) > 0 {
		return sortedCopy(f.Nodes), nil
	}
	return nil, errors.New("no pod chosen: the target names no node and the fault lists none")
}

// dependencyPods are the pods whose downstream edges a slowDependency
// slows: the fault's pods (mode fixed), the target's pod, or one pod
// chosen from the fault's seed — the same choice on every arm of one
// size.
func dependencyPods(t engine.Target, f engine.Fault) ([]string, error) {
	switch {
	case f.Mode == "fixed" && len(f.Nodes) > 0:
		return sortedCopy(f.Nodes), nil
	case t.Node != "":
		return []string{t.Node}, nil
	}
	pods := sortedCopy(t.Nodes)
	if len(pods) == 0 {
		return nil, errors.New("the arm has no pods")
	}
	seed := f.Seed
	if seed == "" {
		seed = f.ID
	}
	return []string{pods[pickIndex(seed, len(pods))]}, nil
}

// delayEdges maps the engine's edges onto a NetworkChaos selector (from),
// target (to) and direction.
func delayEdges(t engine.Target, f engine.Fault) (from, to []string, dir cm.Direction, err error) {
	e := f.Edges
	switch {
	case len(e.Between) > 0:
		if len(e.Between) != 2 {
			return nil, nil, "", fmt.Errorf("edges.between names %d pods, want 2", len(e.Between))
		}
		return []string{e.Between[0]}, []string{e.Between[1]}, cm.Both, nil
	case e.Into != "":
		if e.Clients {
			// Every packet the pod sends, responses to clients included.
			return []string{e.Into}, nil, cm.To, nil
		}
		return minus(t.Nodes, []string{e.Into}), []string{e.Into}, cm.To, nil
	case e.OutOf != "":
		if e.Clients {
			return []string{e.OutOf}, nil, cm.To, nil
		}
		return []string{e.OutOf}, minus(t.Nodes, []string{e.OutOf}), cm.To, nil
	case t.Node != "":
		return []string{t.Node}, nil, cm.To, nil
	}
	return sortedCopy(t.Nodes), nil, cm.To, nil
}

// Side is one side of a partition: the pods in From cannot send to To.
type Side struct {
	From []string `json:"from"`
	To   []string `json:"to"`
}

// Cut computes the sides of a partition shape over nodes through the
// geometry both fault backends share (engine/geometry): the pods sorted by
// name, rotated so that isolate (when given) comes first — the pod
// isolate-one isolates, where halves and bridge begin. Senders that lose the
// same receivers share one side; every side becomes one NetworkChaos with
// direction "to", so each side's object blocks what that side sends across
// the cut.
func Cut(shape string, nodes []string, isolate string) ([]Side, error) {
	ring := sortedCopy(nodes)
	if isolate != "" {
		i := slices.Index(ring, isolate)
		if i < 0 {
			return nil, fmt.Errorf("pod %q is not one of the arm's pods %v", isolate, ring)
		}
		ring = append(ring[i:], ring[:i]...)
	}
	c, err := geometry.Partition(shape, ring)
	if err != nil {
		return nil, err
	}
	var sides []Side
	for _, g := range c.Groups() {
		sides = append(sides, Side{From: g.From, To: g.To})
	}
	return sides, nil
}

// ChooseLeader picks the pod to cut off in a split brain: the leader of
// partition when given, else the pod that leads the most partitions (ties:
// the lowest name) — geometry.SplitBrainLeader.
func ChooseLeader(leaders map[int]string, partition *int) (string, error) {
	l, _, err := geometry.SplitBrainLeader(leaders, partition)
	if partition != nil && err != nil {
		return "", fmt.Errorf("aggregator %w", err)
	}
	if err != nil {
		return "", errors.New("no aggregator partition has a leader")
	}
	return l, nil
}

type builder struct {
	opts PlanOptions
	t    engine.Target
	f    engine.Fault
	ns   string
}

var nameUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// ObjectName is the deterministic name of the i-th object of a fault: the
// same fault id always yields the same names, which makes Inject idempotent
// and lets Recover work from an intent record alone.
func ObjectName(faultID string, kind engine.FaultKind, i int) string {
	h := sha256.Sum256([]byte(faultID))
	base := strings.Trim(nameUnsafe.ReplaceAllString(strings.ToLower(faultID), "-"), "-")
	if len(base) > 40 {
		base = strings.Trim(base[:40], "-")
	}
	return fmt.Sprintf("cg-%s-%s-%d-%s", strings.ToLower(kind.String()), base, i, hex.EncodeToString(h[:3]))
}

var labelUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// LabelValue makes s a valid label value (at most 63 characters of
// [A-Za-z0-9._-], alphanumeric at both ends).
func LabelValue(s string) string {
	v := labelUnsafe.ReplaceAllString(s, "-")
	if len(v) > 63 {
		v = v[:63]
	}
	return strings.Trim(v, "-_.")
}

func (b builder) meta(i int) metav1.ObjectMeta {
	o := b.opts.Owner
	return metav1.ObjectMeta{
		Name:      ObjectName(b.f.ID, b.f.Kind, i),
		Namespace: b.ns,
		Labels: map[string]string{
			LabelManagedBy:  ManagedBy,
			LabelRun:        LabelValue(o.RunID),
			LabelExperiment: LabelValue(o.Experiment),
			LabelVersion:    LabelValue(o.Version),
			LabelArm:        b.t.Arm.String(),
			LabelFault:      LabelValue(b.f.ID),
			LabelKind:       b.f.Kind.String(),
		},
		Annotations: map[string]string{
			AnnotationFaultID:  b.f.ID,
			AnnotationDuration: b.f.Duration.String(),
		},
	}
}

// expiry is the safety-net spec.duration.
func (b builder) expiry() *string {
	e := b.opts.Expiry
	if e <= 0 {
		e = 2 * time.Minute
	}
	s := (b.f.Duration + e).Round(time.Second).String()
	return &s
}

func (b builder) selector(pods []string) cm.PodSelector {
	return cm.PodSelector{
		Mode:     cm.AllMode,
		Selector: cm.PodSelectorSpec{Pods: map[string][]string{b.ns: sortedCopy(pods)}},
	}
}

func (b builder) podChaos(i int, action cm.PodChaosAction, pods []string) *cm.PodChaos {
	return &cm.PodChaos{
		TypeMeta:   metav1.TypeMeta{APIVersion: "chaos-mesh.org/v1alpha1", Kind: "PodChaos"},
		ObjectMeta: b.meta(i),
		Spec: cm.PodChaosSpec{
			ContainerSelector: cm.ContainerSelector{PodSelector: b.selector(pods)},
			Action:            action,
			Duration:          b.expiry(),
		},
	}
}

func (b builder) delay(from, to []string, dir cm.Direction) *cm.NetworkChaos {
	nc := &cm.NetworkChaos{
		TypeMeta:   metav1.TypeMeta{APIVersion: "chaos-mesh.org/v1alpha1", Kind: "NetworkChaos"},
		ObjectMeta: b.meta(0),
		Spec: cm.NetworkChaosSpec{
			PodSelector: b.selector(from),
			Action:      cm.DelayAction,
			Duration:    b.expiry(),
			Direction:   dir,
			TcParameter: cm.TcParameter{Delay: &cm.DelaySpec{
				Latency:     durationString(b.f.Latency),
				Jitter:      durationString(b.f.Jitter),
				Correlation: percentString(b.f.Correlation),
			}},
		},
	}
	if len(to) > 0 {
		sel := b.selector(to)
		nc.Spec.Target = &sel
	}
	return nc
}

// Token-bucket sizes of a bandwidth NetworkChaos: the queue in bytes that
// may wait for tokens, and the bucket (burst) in bytes, those of Chaos
// Mesh's documented example, the bucket at least a hundredth of a second
// of the rate.
const (
	bandwidthLimitBytes  = 20 << 20
	bandwidthBufferBytes = 10000
)

func (b builder) bandwidth(from, to []string, dir cm.Direction) *cm.NetworkChaos {
	nc := b.delay(from, to, dir)
	nc.Spec.Action = cm.BandwidthAction
	nc.Spec.TcParameter = cm.TcParameter{Bandwidth: &cm.BandwidthSpec{
		Rate:   fmt.Sprintf("%dbps", b.f.BytesPerSecond),
		Limit:  bandwidthLimitBytes,
		Buffer: uint32(max(bandwidthBufferBytes, min(b.f.BytesPerSecond/100, math.MaxUint32))),
	}}
	return nc
}

// loss is a NetworkChaos loss or corrupt action on the senders' egress,
// its share in Chaos Mesh's percent string ("5").
func (b builder) loss(from, to []string, dir cm.Direction) *cm.NetworkChaos {
	nc := b.delay(from, to, dir)
	pct := strconv.FormatFloat(100*b.f.LossRatio, 'f', -1, 64)
	if b.f.Kind == engine.Corrupt {
		nc.Spec.Action = cm.CorruptAction
		nc.Spec.TcParameter = cm.TcParameter{Corrupt: &cm.CorruptSpec{Corrupt: pct, Correlation: "0"}}
	} else {
		nc.Spec.Action = cm.LossAction
		nc.Spec.TcParameter = cm.TcParameter{Loss: &cm.LossSpec{Loss: pct, Correlation: "0"}}
	}
	return nc
}

func (b builder) partition(i int, from, to []string, dir cm.Direction) *cm.NetworkChaos {
	sel := b.selector(to)
	return &cm.NetworkChaos{
		TypeMeta:   metav1.TypeMeta{APIVersion: "chaos-mesh.org/v1alpha1", Kind: "NetworkChaos"},
		ObjectMeta: b.meta(i),
		Spec: cm.NetworkChaosSpec{
			PodSelector: b.selector(from),
			Action:      cm.PartitionAction,
			Duration:    b.expiry(),
			Direction:   dir,
			Target:      &sel,
		},
	}
}

func (b builder) timeChaos(pod string) *cm.TimeChaos {
	return &cm.TimeChaos{
		TypeMeta:   metav1.TypeMeta{APIVersion: "chaos-mesh.org/v1alpha1", Kind: "TimeChaos"},
		ObjectMeta: b.meta(0),
		Spec: cm.TimeChaosSpec{
			ContainerSelector: cm.ContainerSelector{PodSelector: b.selector([]string{pod})},
			TimeOffset:        b.f.Offset.String(),
			ClockIds:          []string{"CLOCK_REALTIME"},
			Duration:          b.expiry(),
		},
	}
}

// stress is a StressChaos with one worker: a CPU worker at the load, or a
// memory worker holding the size (in bytes, which the webhook reads as B).
func (b builder) stress(pods []string) *cm.StressChaos {
	st := &cm.Stressors{}
	if b.f.Kind == engine.MemoryStress {
		st.MemoryStressor = &cm.MemoryStressor{Stressor: cm.Stressor{Workers: 1}, Size: strconv.FormatInt(b.f.MemoryBytes, 10) + "B"}
	} else {
		load := max(1, min(100, int(math.Round(b.f.Load*100))))
		st.CPUStressor = &cm.CPUStressor{Stressor: cm.Stressor{Workers: 1}, Load: &load}
	}
	return &cm.StressChaos{
		TypeMeta:   metav1.TypeMeta{APIVersion: "chaos-mesh.org/v1alpha1", Kind: "StressChaos"},
		ObjectMeta: b.meta(0),
		Spec: cm.StressChaosSpec{
			ContainerSelector: cm.ContainerSelector{PodSelector: b.selector(pods)},
			Stressors:         st,
			Duration:          b.expiry(),
		},
	}
}

// pickIndex chooses an index in [0,n) from a seed (the same on every arm).
func pickIndex(seed string, n int) int {
	h := sha256.Sum256([]byte(seed))
	return int((uint32(h[0])<<24 | uint32(h[1])<<16 | uint32(h[2])<<8 | uint32(h[3])) % uint32(n))
}

// durationString renders a duration the way tc (and Chaos Mesh) reads it.
func durationString(d time.Duration) string {
	if d <= 0 {
		return "0ms"
	}
	if d%time.Millisecond == 0 {
		return fmt.Sprintf("%dms", d/time.Millisecond)
	}
	return fmt.Sprintf("%dus", d/time.Microsecond)
}

// percentString renders a correlation given as a fraction (0.25) or a
// percentage (25) as Chaos Mesh's percentage string ("25").
func percentString(v float64) string {
	if v > 0 && v <= 1 {
		v *= 100
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.4f", v), "0"), ".")
}

var quietWebhookLog sync.Once

// Validate applies the Chaos Mesh admission webhook's defaulting and
// validation (the api module's Default and ValidateCreate) to obj, as the
// real webhook would, and names the object and field when it fails.
func Validate(ctx context.Context, obj runtime.Object) error {
	quietWebhookLog.Do(func() { ctrllog.SetLogger(logr.Discard()) })
	name := obj.(metav1.Object).GetName()
	var err error
	switch o := obj.(type) {
	case *cm.PodChaos:
		if err = o.Default(ctx, o); err == nil {
			_, err = o.ValidateCreate(ctx, o)
		}
	case *cm.NetworkChaos:
		if err = o.Default(ctx, o); err == nil {
			_, err = o.ValidateCreate(ctx, o)
		}
	case *cm.TimeChaos:
		if err = o.Default(ctx, o); err == nil {
			_, err = o.ValidateCreate(ctx, o)
		}
	case *cm.StressChaos:
		if err = o.Default(ctx, o); err == nil {
			_, err = o.ValidateCreate(ctx, o)
		}
	default:
		return fmt.Errorf("cannot validate %T", obj)
	}
	if err != nil {
		return fmt.Errorf("%s %s rejected by the Chaos Mesh webhook rules: %w", obj.GetObjectKind().GroupVersionKind().Kind, name, err)
	}
	return nil
}

// WriteYAML writes objects as a YAML stream (documents separated by ---).
func WriteYAML(w io.Writer, objs []runtime.Object) error {
	for _, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, "---\n"); err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func minus(all, drop []string) []string {
	var out []string
	for _, v := range sortedCopy(all) {
		if !contains(drop, v) {
			out = append(out, v)
		}
	}
	return out
}

// localOnly says how the local target plays the fault kinds that have no
// Chaos Mesh object.
var localOnly = map[engine.FaultKind]string{
	engine.BrokerOutage:      "its upstream message brokers, which it starts itself",
	engine.ConsumerRebalance: "its nodes' consumer groups on the upstreams it starts",
	engine.Backlog:           "a backlog published to the upstreams it starts",
}
