package k8s

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	sigyaml "sigs.k8s.io/yaml"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/inject/overload"
)

// Rendered is one object a run would create, with what it is for.
type Rendered struct {
	// Note says which step, experiment, fault and arm it belongs to, and
	// any assumption a dry run had to make.
	Note   string
	Object runtime.Object
	// Pods a direct pod delete would remove (Chaos Mesh absent): no object.
	DeletePods []string
	// Played says what plays a fault that creates no object (an overload
	// burst from chaosgate's load generator).
	Played    string
	Namespace string
}

// RenderRun plans every object a run of plan would create — every canary
// step, every experiment that runs at it, every fault on every arm —
// without sending anything. arms gives each arm's pods (from the cluster or
// a --pods file). Node faults in mode "one" or "leader" are chosen at run
// time; the dry run shows a deterministic choice and says so. The objects
// are defaulted and validated like real ones.
func RenderRun(ctx context.Context, plan engine.Plan, runID string, opts PlanOptions, arms map[engine.Arm][]string) ([]Rendered, error) {
	var out []Rendered
	seq := 0
	for _, w := range plan.Weights {
		for _, e := range plan.Experiments {
			if !e.RunsAt(w) {
				continue
			}
			for _, f := range e.Faults {
				for _, arm := range plan.Arms {
					nodes := sortedCopy(arms[arm])
					if len(nodes) == 0 {
						return nil, engine.E(engine.KindInvalid, "dry run", fmt.Errorf("arm %s has no pods", arm))
					}
					targets, assumed, err := dryTargets(ctx, arm, nodes, f, runID, opts)
					if err != nil {
						return nil, err
					}
					for _, t := range targets {
						seq++
						ff := f
						ff.ID = fmt.Sprintf("%s-%03d-%s", shortID(runID), seq, arm)
						if t.Node != "" {
							ff.ID += "-" + t.Node
						}
						if ff.Kind == engine.SplitBrain && len(ff.Nodes) == 0 && opts.Leaders == nil {
							ff.Nodes = []string{nodes[0]}
							assumed = fmt.Sprintf("the leader is found at run time; shown: %s", nodes[0])
						}
						note := fmt.Sprintf("step %d%%, experiment %s, fault %s (%s) on %s", w, e.Name, faultName(f), f.Kind, t.Name())
						if assumed != "" {
							note += "; " + assumed
						}
						if ff.Kind == engine.Overload {
							out = append(out, Rendered{Note: note, Namespace: opts.Namespaces[arm],
								Played: fmt.Sprintf("no object: chaosgate's load generator sends a burst of %.0f msg/s (%d per request) for %s straight to the pods %s", ff.Rate, overload.BatchOf(ff), ff.Duration, strings.Join(nodes, ", "))})
							continue
						}
						p, err := BuildPlan(ctx, opts, t, ff)
						if err != nil {
							return nil, err
						}
						if ff.Kind == engine.SlowDependency && ff.Mode != "fixed" && t.Node == "" {
							note += "; one pod is chosen at run time; shown: " + strings.Join(p.Pods, ", ")
						}
						if p.Method == MethodPodDelete {
							out = append(out, Rendered{Note: note + "; Chaos Mesh absent: the pod is deleted directly", DeletePods: p.Pods, Namespace: p.Namespace})
							continue
						}
						for _, o := range p.Objects {
							out = append(out, Rendered{Note: note, Object: o, Namespace: p.Namespace})
						}
					}
				}
			}
		}
	}
	return out, nil
}

func faultName(f engine.Fault) string {
	if f.Name != "" {
		return f.Name
	}
	return f.Kind.String()
}

// dryTargets mirrors the runner's choice of targets.
func dryTargets(ctx context.Context, arm engine.Arm, nodes []string, f engine.Fault, runID string, opts PlanOptions) ([]engine.Target, string, error) {
	base := engine.Target{Arm: arm, Nodes: nodes}
	switch f.Kind {
	case engine.PodKill, engine.PodPause, engine.CPUStress, engine.MemoryStress:
	case engine.ZoneOutage:
		if opts.Zones == nil {
			return nil, "", engine.E(engine.KindInvalid, "dry run", fmt.Errorf("zone %q of %s: no zones are known; hint: give each arm's zones in the --pods file (canary: {namespace: NS, pods: [...], zones: {%s: [POD, ...]}})", f.Zone, arm, f.Zone))
		}
		group, err := opts.Zones(ctx, arm, f.Zone)
		if err != nil {
			return nil, "", engine.E(engine.KindInvalid, "dry run", fmt.Errorf("zone %q of %s: %w", f.Zone, arm, err))
		}
		base.Group = group
		return []engine.Target{base}, "", nil
	default:
		return []engine.Target{base}, "", nil
	}
	switch f.Mode {
	case "fixed":
		var out []engine.Target
		for _, n := range f.Nodes {
			t := base
			t.Node = n
			out = append(out, t)
		}
		return out, "", nil
	case "leader":
		if opts.Leaders != nil {
			if m, err := opts.Leaders(ctx, arm); err == nil {
				if l, err := ChooseLeader(m, nil); err == nil {
					base.Node = l
					return []engine.Target{base}, "", nil
				}
			}
		}
		base.Node = nodes[0]
		return []engine.Target{base}, fmt.Sprintf("the leader is found at run time; shown: %s", nodes[0]), nil
	default:
		h := fnv.New32a()
		h.Write([]byte(runID + "/" + f.Name))
		base.Node = nodes[int(h.Sum32()%uint32(len(nodes)))]
		return []engine.Target{base}, fmt.Sprintf("one pod is chosen at run time; shown: %s", base.Node), nil
	}
}

func shortID(run string) string {
	h := fnv.New32a()
	h.Write([]byte(run))
	return fmt.Sprintf("%08x", h.Sum32())
}

// WriteRendered writes the plan as a YAML stream: each object preceded by
// a comment saying what it is for; a direct pod delete (no object) is a
// comment only.
func WriteRendered(w io.Writer, rs []Rendered) error {
	for _, r := range rs {
		if _, err := fmt.Fprintf(w, "---\n# %s\n", r.Note); err != nil {
			return err
		}
		if r.Played != "" {
			if _, err := fmt.Fprintf(w, "# %s\n", r.Played); err != nil {
				return err
			}
			continue
		}
		if r.Object == nil {
			if _, err := fmt.Fprintf(w, "# would delete pods %s in namespace %s\n", strings.Join(r.DeletePods, ", "), r.Namespace); err != nil {
				return err
			}
			continue
		}
		b, err := sigyaml.Marshal(r.Object)
		if err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// PodsFile is the --pods file of an offline dry run (YAML or JSON): the
// namespace and pod names of each arm.
//
//	canary:  {namespace: shop, pods: [web-canary-0, web-canary-1]}
//	control: {namespace: shop, pods: [web-0, web-1, web-2]}
type PodsFile struct {
	Canary  ArmPods `json:"canary"`
	Control ArmPods `json:"control"`
}

// ArmPods are one arm's pods, and optionally which of them are in each
// zone (for a zoneOutage; a cluster run reads the pods'
// topology.kubernetes.io/zone label).
type ArmPods struct {
	Namespace string              `json:"namespace"`
	Pods      []string            `json:"pods"`
	Zones     map[string][]string `json:"zones,omitempty"`
}

// ZonePods returns the pods of the arm in zone, from the file's zones.
func (a ArmPods) ZonePods(zone string) ([]string, error) {
	if len(a.Zones) == 0 {
		return nil, fmt.Errorf("the --pods file gives no zones for this arm; hint: zones: {%s: [POD, ...]}", zone)
	}
	pods, ok := a.Zones[zone]
	if !ok || len(pods) == 0 {
		names := make([]string, 0, len(a.Zones))
		for z := range a.Zones {
			names = append(names, z)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("the --pods file has no pod in zone %q (zones: %s)", zone, strings.Join(names, ", "))
	}
	return sortedCopy(pods), nil
}

// ReadPodsFile reads and checks a --pods file; errors name the file and
// the field.
func ReadPodsFile(path string) (PodsFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return PodsFile{}, engine.E(engine.KindInvalid, "read --pods", err)
	}
	return ParsePodsFile(path, b)
}

// ParsePodsFile parses a --pods file's contents.
func ParsePodsFile(name string, b []byte) (PodsFile, error) {
	var pf PodsFile
	if err := sigyaml.UnmarshalStrict(b, &pf); err != nil {
		return PodsFile{}, engine.E(engine.KindInvalid, "parse "+name, fmt.Errorf("%w; hint: canary: {namespace: NS, pods: [NAME, ...]}, control: {...}", err))
	}
	for _, a := range []struct {
		name string
		p    *ArmPods
	}{{"canary", &pf.Canary}, {"control", &pf.Control}} {
		if a.p.Namespace == "" {
			return PodsFile{}, engine.E(engine.KindInvalid, "parse "+name, fmt.Errorf("%s.namespace is empty", a.name))
		}
		if len(a.p.Pods) == 0 {
			return PodsFile{}, engine.E(engine.KindInvalid, "parse "+name, fmt.Errorf("%s.pods is empty", a.name))
		}
		seen := map[string]bool{}
		for i, p := range a.p.Pods {
			if p == "" || seen[p] {
				return PodsFile{}, engine.E(engine.KindInvalid, "parse "+name, fmt.Errorf("%s.pods[%d]: empty or repeated pod name %q", a.name, i, p))
			}
			seen[p] = true
		}
		for z, pods := range a.p.Zones {
			for i, p := range pods {
				if !seen[p] {
					return PodsFile{}, engine.E(engine.KindInvalid, "parse "+name, fmt.Errorf("%s.zones.%s[%d]: %q is not one of %s.pods", a.name, z, i, p, a.name))
				}
			}
		}
		sort.Strings(a.p.Pods)
	}
	return pf, nil
}
