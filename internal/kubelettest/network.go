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

// inboundProxy returns the address of the cluster's proxy in front of
// port on the node the pod of ordinal i runs on, creating it: a pod's
// peers dial it instead of the pod, so that the harness can make a
// network fault take real effect (the kernel here has no netem, so Chaos
// Mesh's tc rules cannot be played).
func (c *Cluster) inboundProxy(pod string, i, port int) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proxies == nil {
		c.proxies = proxy.NewSet()
		c.inbound = map[string][]string{}
	}
	name := fmt.Sprintf("%s:%d", pod, port)
	addr, err := c.proxies.Add(name, c.PodAddr(i, port))
	if err != nil {
		return "", err
	}
	for _, n := range c.inbound[pod] {
		if n == name {
			return addr, nil
		}
	}
	c.inbound[pod] = append(c.inbound[pod], name)
	return addr, nil
}

// InboundAddr returns the address of the proxy in front of a pod's port
// (an Aggregator with ThroughProxies), if there is one.
func (c *Cluster) InboundAddr(pod string, port int) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proxies == nil {
		return "", false
	}
	return c.proxies.Addr(fmt.Sprintf("%s:%d", pod, port))
}

// NetworkEffect plays Chaos Mesh's daemon for NetworkChaos delay on the
// cluster's inbound proxies (an Aggregator with ThroughProxies): the
// object's latency and jitter are added to every proxy in front of the
// pods it delays traffic to — spec.target's pods when it has a target,
// else the selected pods. What flows between the pods (raft, forwarded
// requests) is delayed; the load dials the pods directly. Other actions
// (partition, loss) have no effect here. Pass it to
// k8senv.ChaosController.SetEffect.
func (c *Cluster) NetworkEffect() *NetworkEffect { return &NetworkEffect{c: c} }

// NetworkEffect is the harness's network-fault effect (see
// Cluster.NetworkEffect).
type NetworkEffect struct{ c *Cluster }

// Apply implements k8senv.Effect.
func (e *NetworkEffect) Apply(ctx context.Context, obj *unstructured.Unstructured) error {
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
