package kubelettest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/chaosgate/chaosgate/engine/proxy"
)

// inboundProxy returns the address peers dial to reach port of the pod of
// ordinal i, creating it: a fault proxy in front of the port on the pod's
// node, behind a source filter. A pod's peers dial it instead of the pod,
// so that the harness can make a network fault take real effect: a delay
// on the proxy, a partition on the filter (the kernel here has no netem,
// so Chaos Mesh's tc and iptables rules cannot be played).
func (c *Cluster) inboundProxy(pod string, i, port int) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proxies == nil {
		c.proxies = proxy.NewSet()
		c.inbound = map[string][]string{}
		c.filters = map[string]*sourceFilter{}
		c.podIP = map[string]string{}
	}
	name := fmt.Sprintf("%s:%d", pod, port)
	c.podIP[pod] = c.NodeOf(i).IP
	if f, ok := c.filters[name]; ok {
		return f.Addr(), nil
	}
	addr, err := c.proxies.Add(name, c.PodAddr(i, port))
	if err != nil {
		return "", err
	}
	f, err := newSourceFilter(addr)
	if err != nil {
		return "", err
	}
	c.filters[name] = f
	c.inbound[pod] = append(c.inbound[pod], name)
	return f.Addr(), nil
}

// InboundAddr returns the address peers dial to reach a pod's port (an
// Aggregator with ThroughProxies), if there is one.
func (c *Cluster) InboundAddr(pod string, port int) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.filters[fmt.Sprintf("%s:%d", pod, port)]
	if !ok {
		return "", false
	}
	return f.Addr(), true
}

// CutFrom lists the source IPs a pod's inbound port refuses now (a
// partition in force), sorted.
func (c *Cluster) CutFrom(pod string, port int) []string {
	c.mu.Lock()
	f, ok := c.filters[fmt.Sprintf("%s:%d", pod, port)]
	c.mu.Unlock()
	if !ok {
		return nil
	}
	return f.Denied()
}

// NetworkEffect plays Chaos Mesh's daemon for NetworkChaos delay and
// partition on the cluster's inbound proxies (an Aggregator with
// ThroughProxies). A delay adds the object's latency and jitter to every
// proxy in front of the pods it delays traffic to — spec.target's pods
// when it has a target, else the selected pods. A partition cuts the
// selected pods and the target pods apart: each side's inbound filters
// refuse connections from the other side's nodes and end the open ones,
// in both directions whatever spec.direction says (a TCP connection needs
// packets both ways, so a one-way drop ends it too). What flows between
// the pods (raft, forwarded requests) is affected; the load dials the
// pods directly. Other actions (loss, bandwidth, corrupt) have no effect
// here. Pass it to k8senv.ChaosController.SetEffect.
func (c *Cluster) NetworkEffect() *NetworkEffect { return &NetworkEffect{c: c} }

// NetworkEffect is the harness's network-fault effect (see
// Cluster.NetworkEffect).
type NetworkEffect struct{ c *Cluster }

// Apply implements k8senv.Effect.
func (e *NetworkEffect) Apply(ctx context.Context, obj *unstructured.Unstructured) error {
	if cuts, ok := e.partitioned(obj); ok {
		for _, cut := range cuts {
			cut.filter.Cut(obj.GetName(), cut.from)
		}
		return nil
	}
	names, d, ok, err := e.delayed(obj)
	if !ok || err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		errs = append(errs, e.c.proxies.AddDelay(n, obj.GetName(), d))
	}
	return errors.Join(errs...)
}

// Revert implements k8senv.Effect.
func (e *NetworkEffect) Revert(ctx context.Context, obj *unstructured.Unstructured) error {
	if cuts, ok := e.partitioned(obj); ok {
		for _, cut := range cuts {
			cut.filter.Heal(obj.GetName(), cut.from)
		}
		return nil
	}
	names, _, ok, err := e.delayed(obj)
	if !ok || err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		errs = append(errs, e.c.proxies.Heal(ctx, n, obj.GetName()))
	}
	return errors.Join(errs...)
}

// filterCut is what a partition does to one inbound filter: refuse the
// source IPs from.
type filterCut struct {
	filter *sourceFilter
	from   []string
}

// partitioned returns, for a NetworkChaos partition, the cut of every
// inbound filter of the pods on either side; ok is false for any other
// object.
func (e *NetworkEffect) partitioned(obj *unstructured.Unstructured) ([]filterCut, bool) {
	if obj.GetKind() != "NetworkChaos" {
		return nil, false
	}
	if a, _, _ := unstructured.NestedString(obj.Object, "spec", "action"); a != "partition" {
		return nil, false
	}
	ns := obj.GetNamespace()
	side, _, _ := unstructured.NestedStringSlice(obj.Object, "spec", "selector", "pods", ns)
	other, _, _ := unstructured.NestedStringSlice(obj.Object, "spec", "target", "selector", "pods", ns)
	e.c.mu.Lock()
	defer e.c.mu.Unlock()
	ipsOf := func(pods []string) []string {
		var ips []string
		for _, p := range pods {
			if ip, ok := e.c.podIP[p]; ok {
				ips = append(ips, ip)
			}
		}
		return ips
	}
	var cuts []filterCut
	add := func(pods, from []string) {
		ips := ipsOf(from)
		for _, p := range pods {
			for _, n := range e.c.inbound[p] {
				cuts = append(cuts, filterCut{filter: e.c.filters[n], from: ips})
			}
		}
	}
	add(side, other)
	add(other, side)
	return cuts, true
}

// delayed returns the proxies a delay object acts on and its delay; ok is
// false for any other object.
func (e *NetworkEffect) delayed(obj *unstructured.Unstructured) ([]string, proxy.Delay, bool, error) {
	var d proxy.Delay
	if obj.GetKind() != "NetworkChaos" {
		return nil, d, false, nil
	}
	if a, _, _ := unstructured.NestedString(obj.Object, "spec", "action"); a != "delay" {
		return nil, d, false, nil
	}
	lat, _, _ := unstructured.NestedString(obj.Object, "spec", "delay", "latency")
	jit, _, _ := unstructured.NestedString(obj.Object, "spec", "delay", "jitter")
	var err error
	if d.Latency, err = time.ParseDuration(lat); err != nil {
		return nil, d, false, fmt.Errorf("NetworkChaos %s: latency %q: %w", obj.GetName(), lat, err)
	}
	if jit != "" {
		if d.Jitter, err = time.ParseDuration(jit); err != nil {
			return nil, d, false, fmt.Errorf("NetworkChaos %s: jitter %q: %w", obj.GetName(), jit, err)
		}
	}
	ns := obj.GetNamespace()
	pods, ok, _ := unstructured.NestedStringSlice(obj.Object, "spec", "target", "selector", "pods", ns)
	if !ok || len(pods) == 0 {
		pods, _, _ = unstructured.NestedStringSlice(obj.Object, "spec", "selector", "pods", ns)
	}
	e.c.mu.Lock()
	defer e.c.mu.Unlock()
	var names []string
	for _, p := range pods {
		names = append(names, e.c.inbound[p]...)
	}
	sort.Strings(names)
	return names, d, true, nil
}
