package k8s

import (
	"context"
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/chaosgate/chaosgate/engine"
)

// ZoneLabel is the pod label that places a pod in a zone for zoneOutage.
const ZoneLabel = "topology.kubernetes.io/zone"

// ZoneNodes implements engine.ZoneTopology: the arm's running pods whose
// topology.kubernetes.io/zone label is zone.
func (a *Arms) ZoneNodes(ctx context.Context, arm engine.Arm, zone string) ([]string, error) {
	a.mu.Lock()
	w := a.pair.Arm(arm)
	a.mu.Unlock()
	if w == nil {
		return nil, fmt.Errorf("no %s workload", arm)
	}
	return ZonePods(ctx, a.resolver.client, w, zone)
}

// ZonePods lists the running pods of a workload whose zone label is zone,
// sorted by name; none is an error that says which label was looked for.
func ZonePods(ctx context.Context, client kubernetes.Interface, w *Workload, zone string) ([]string, error) {
	sel := w.PodSelector
	if sel != "" {
		sel += ","
	}
	l, err := client.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel + ZoneLabel + "=" + zone})
	if err != nil {
		return nil, fmt.Errorf("list the pods of %s in zone %s: %w", w.Ref(), zone, err)
	}
	var out []string
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p.Name)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("no pod of %s has the label %s=%s", w.Ref(), ZoneLabel, zone)
	}
	return out, nil
}

// JournaledSplit implements gameday.TrafficSplitter: the traffic section's
// route, journaled so that the reaper can restore it after a crash.
func (a *Arms) JournaledSplit() (engine.Applied, bool) {
	if a.router == nil {
		return engine.Applied{}, false
	}
	return a.router.Journaled(), true
}

// SetCanaryWeight implements gameday.TrafficSplitter: with a traffic
// section the weight is applied to its route object and read back; without
// one the route is left alone and nothing is said ("").
func (a *Arms) SetCanaryWeight(ctx context.Context, weight int) (string, error) {
	if a.router == nil {
		return "", nil
	}
	if err := a.router.SetWeight(ctx, weight); err != nil {
		return "", err
	}
	s, err := a.router.Read(ctx)
	if err != nil {
		return "", err
	}
	if s.CanaryPercent != float64(weight) {
		return "", fmt.Errorf("%s holds %.1f%% canary after it was set to %d%%", a.router.Describe(), s.CanaryPercent, weight)
	}
	var parts []string
	for _, n := range s.ServiceNames() {
		parts = append(parts, fmt.Sprintf("%s %d", n, s.Weights[n]))
	}
	msg := fmt.Sprintf("%s: %d%% canary (%s)", a.router.Describe(), weight, strings.Join(parts, ", "))
	if s.Header != nil {
		msg += fmt.Sprintf("; %s: %s → canary", s.Header.Name, s.Header.Value)
	}
	return msg, nil
}
