package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/probe/logs"
	"github.com/chaosgate/chaosgate/engine/traffic"
)

// Arms is the Kubernetes target of a game day (engine/gameday.Target): the
// canary and control workloads' running pods, reached by pod IP and their
// container port named "http" — chaosgate runs inside the cluster (the
// chart's serve, or a CI job's pod), where pod IPs route, as Flagger's and
// Argo Rollouts' own load testers do. The load, the probes and the judge
// are the game day's; this type says where the pods are, whether they
// serve, who leads each partition, and which injector applies each fault.
// A calibration workload (the control's build, e.g. track=calibration) is
// optional: with it, each step records an A/A window of the step's
// conditions before the canary is judged, as the local target's third
// cluster does; without it σ̂ comes from the service's baseline history
// (the judge's priors while it is thin).
type Arms struct {
	pair      Pair
	resolver  *Resolver
	injectors map[engine.FaultKind]engine.Injector
	port      int
	parts     int
	hc        *http.Client
	records   func(faultID string) any
	logLabels LogLabels
	settle    time.Duration
	recover   time.Duration
	router    *traffic.Router

	mu sync.Mutex // guards the pods of pair; serialises writes of clients
	// clients holds each arm's pod addresses in name order, replaced as a
	// whole when the pods are listed again. The load asks for them at
	// every request, so they are read without a lock: a pod listing that
	// the API server's client-side throttling keeps waiting for a second
	// (under a.mu) must not stall the load, nor every request of an open
	// loop queue on one mutex.
	clients atomic.Pointer[map[engine.Arm][]string]
}

// ArmsConfig configures NewArms.
type ArmsConfig struct {
	// Router, optional, sets each canary step's split on a route object
	// (the experiment's traffic section).
	Router   *traffic.Router
	Pair     Pair
	Resolver *Resolver
	// Injectors apply each fault kind (the Chaos Mesh injector).
	Injectors map[engine.FaultKind]engine.Injector
	// Port is the HTTP port of pods whose containers name no "http" port.
	Port int
	// Partitions is the aggregator's partition count; 0 asks a pod
	// (GET /v1/cluster).
	Partitions int
	// FaultRecords, when set, returns the injector's own records of a
	// fault (Chaos Mesh's per-pod records) for the evidence.
	FaultRecords func(faultID string) any
	// LogLabels name the labels the cluster's log agent gives a pod's
	// lines on the log server (default namespace and pod).
	LogLabels LogLabels
	// Settle is how long the game day waits for every arm to be healthy
	// again after a step's faults (0: the game day's default, 20 s): a
	// killed pod's replacement must be scheduled, started and pass its
	// readiness probe.
	Settle time.Duration
	// Recover is how long the injector waits for Chaos Mesh to report a
	// fault recovered (--recover-timeout; 0: the game day's default): the
	// game day's fault runner gives every recovery that long, plus a
	// margin for the API calls themselves.
	Recover time.Duration
}

// LogLabels name the stream labels a cluster's log agent gives a pod's
// lines: Promtail's and Grafana Alloy's Kubernetes examples use namespace
// and pod; vlagent and Vector name them as configured.
type LogLabels struct {
	Namespace, Pod string
}

// NewArms builds the target and, unless given, reads the partition count
// from a canary pod.
func NewArms(ctx context.Context, c ArmsConfig) (*Arms, error) {
	if c.Pair.Canary == nil || c.Pair.Control == nil || c.Resolver == nil {
		return nil, engine.E(engine.KindInvalid, "kubernetes target", errors.New("canary, control and a resolver are required"))
	}
	a := &Arms{pair: c.Pair, resolver: c.Resolver, injectors: c.Injectors, port: c.Port, parts: c.Partitions, hc: &http.Client{Timeout: 3 * time.Second},
		records: c.FaultRecords, logLabels: c.LogLabels, settle: c.Settle, recover: c.Recover, router: c.Router}
	if a.logLabels.Namespace == "" {
		a.logLabels.Namespace = "namespace"
	}
	if a.logLabels.Pod == "" {
		a.logLabels.Pod = "pod"
	}
	clients := map[engine.Arm][]string{}
	for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl, engine.ArmCalibration} {
		clients[arm] = a.addrsLocked(arm)
	}
	a.clients.Store(&clients)
	if a.parts == 0 {
		ci, err := a.cluster(ctx, engine.ArmCanary)
		if err != nil {
			return nil, engine.E(engine.KindUnavailable, "kubernetes target", fmt.Errorf("partition count: %w", err))
		}
		a.parts = ci.PartitionCount
	}
	return a, nil
}

// Name implements gameday.Target.
func (a *Arms) Name() string { return "kubernetes" }

// Service keys the baseline history by the control workload: every canary
// of one service is judged against the same A/A history.
func (a *Arms) Service() string {
	return fmt.Sprintf("k8s/%s/%s", a.pair.Control.Namespace, a.pair.Control.Name)
}

// LoadArms implements gameday.Target: canary and control, and the
// calibration workload when the run has one.
func (a *Arms) LoadArms() []engine.Arm {
	if a.pair.Calibration != nil {
		return []engine.Arm{engine.ArmCanary, engine.ArmControl, engine.ArmCalibration}
	}
	return []engine.Arm{engine.ArmCanary, engine.ArmControl}
}

// Partitions implements gameday.Target.
func (a *Arms) Partitions() int { return a.parts }

// Injectors implements gameday.Target.
func (a *Arms) Injectors() map[engine.FaultKind]engine.Injector { return a.injectors }

// Close implements gameday.Target (nothing to release: the workloads are
// the user's).
func (a *Arms) Close() {}

// FaultRecords implements gameday.FaultRecords.
func (a *Arms) FaultRecords(faultID string) any {
	if a.records == nil {
		return nil
	}
	return a.records(faultID)
}

// PromSelector implements gameday.PromSelectors: the arm's series in a
// Prometheus that labels them by namespace and pod (deploy/prometheus's
// kubernetes_sd_configs relabelling, kube-prometheus' pod monitors): the
// workload's namespace and the prefix its controller gives its pods'
// names — NAME-ORDINAL for a StatefulSet, NAME-HASH-… for a Deployment's
// current ReplicaSet, RS-… for a ReplicaSet — so that a replaced pod is
// still matched, and two revisions of one Deployment are told apart.
func (a *Arms) PromSelector(arm engine.Arm) string {
	ns, prefix, ok := a.podPrefix(arm)
	if !ok {
		return ""
	}
	return fmt.Sprintf("namespace=%q,pod=~%q", ns, regexp.QuoteMeta(prefix)+".+")
}

// LogStreams implements gameday.LogStreams: the arm's lines as the
// cluster's log agent labels them — the workload's namespace and its pods'
// name prefix, as for PromSelector, so that a replaced pod's lines count.
func (a *Arms) LogStreams(arm engine.Arm) logs.Streams {
	ns, prefix, ok := a.podPrefix(arm)
	if !ok {
		return logs.Streams{Labels: map[string]string{a.logLabels.Namespace: "", a.logLabels.Pod: ""}}
	}
	return logs.Streams{
		Labels:     map[string]string{a.logLabels.Namespace: ns},
		LabelRegex: map[string]string{a.logLabels.Pod: "^" + regexp.QuoteMeta(prefix) + ".+$"},
		NodeLabel:  a.logLabels.Pod,
	}
}

// podPrefix returns the arm's namespace and the prefix its controller
// gives its pods' names.
func (a *Arms) podPrefix(arm engine.Arm) (namespace, prefix string, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.pair.Arm(arm)
	if w == nil {
		return "", "", false
	}
	prefix = w.Name + "-"
	if w.Kind == Deployment {
		for _, p := range w.Pods {
			if p.Revision != "" {
				prefix = w.Name + "-" + p.Revision + "-"
				break
			}
		}
	}
	return w.Namespace, prefix, true
}

// Pair returns the workloads as resolved (pods as last listed).
func (a *Arms) Pair() Pair {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pair
}

// refresh lists an arm's pods again (a killed Deployment pod comes back
// under a new name, a replaced one with a new IP); on an error the pods
// seen last stay.
func (a *Arms) refresh(ctx context.Context, arm engine.Arm) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.pair.Arm(arm)
	if w == nil {
		return fmt.Errorf("no %s workload", arm)
	}
	err := a.resolver.RefreshPods(ctx, w)
	clients := maps.Clone(*a.clients.Load())
	clients[arm] = a.addrsLocked(arm)
	a.clients.Store(&clients)
	return err
}

// addrsLocked lists the arm's pod addresses in pod name order; a.mu held.
func (a *Arms) addrsLocked(arm engine.Arm) []string {
	w := a.pair.Arm(arm)
	if w == nil {
		return nil
	}
	pods := append([]Pod(nil), w.Pods...)
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	var out []string
	for _, p := range pods {
		if p.IP != "" {
			out = append(out, net.JoinHostPort(p.IP, strconv.Itoa(a.podPort(p))))
		}
	}
	return out
}

// Nodes implements engine.Topology: the arm's pods by name, listed afresh.
func (a *Arms) Nodes(arm engine.Arm) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = a.refresh(ctx, arm)
	a.mu.Lock()
	defer a.mu.Unlock()
	if w := a.pair.Arm(arm); w != nil {
		return w.PodNames()
	}
	return nil
}

// DirectAddrs implements gameday.Target: each pod with an IP, at its HTTP
// port.
func (a *Arms) DirectAddrs(arm engine.Arm) map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]string{}
	if w := a.pair.Arm(arm); w != nil {
		for _, p := range w.Pods {
			if p.IP != "" {
				out[p.Name] = net.JoinHostPort(p.IP, strconv.Itoa(a.podPort(p)))
			}
		}
	}
	return out
}

// ClientAddrs implements gameday.Target: the pods' HTTP addresses, in pod
// name order, as last listed (the load spreads over them; a pod that is
// not the leader forwards).
func (a *Arms) ClientAddrs(arm engine.Arm) []string {
	return (*a.clients.Load())[arm]
}

func (a *Arms) podPort(p Pod) int {
	if p.HTTPPort != 0 {
		return p.HTTPPort
	}
	return a.port
}

// clusterInfo is the part of the aggregator's GET /v1/cluster the target
// reads.
type clusterInfo struct {
	PartitionCount int `json:"partition_count"`
	Partitions     []struct {
		ID     int    `json:"id"`
		Leader string `json:"leader"`
	} `json:"partitions"`
}

// getCluster asks one pod for its view of the cluster.
func getCluster(ctx context.Context, hc *http.Client, addr string) (clusterInfo, error) {
	var ci clusterInfo
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/cluster", nil)
	if err != nil {
		return ci, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return ci, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ci, fmt.Errorf("GET /v1/cluster: HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ci); err != nil {
		return ci, fmt.Errorf("GET /v1/cluster: %w", err)
	}
	return ci, nil
}

// cluster asks the arm's pods, in name order, until one answers.
func (a *Arms) cluster(ctx context.Context, arm engine.Arm) (clusterInfo, error) {
	a.mu.Lock()
	w := a.pair.Arm(arm)
	var pods []Pod
	if w != nil {
		pods = append(pods, w.Pods...)
	}
	a.mu.Unlock()
	return clusterOfPods(ctx, a.hc, arm.String(), pods, a.port)
}

// clusterOfPods asks pods, in name order, for GET /v1/cluster until one
// answers; a pod is dialled at its port named http, else port.
func clusterOfPods(ctx context.Context, hc *http.Client, what string, pods []Pod, port int) (clusterInfo, error) {
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	var errs []error
	for _, p := range pods {
		if p.IP == "" {
			continue
		}
		pp := p.HTTPPort
		if pp == 0 {
			pp = port
		}
		ci, err := getCluster(ctx, hc, net.JoinHostPort(p.IP, strconv.Itoa(pp)))
		if err == nil {
			return ci, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
	}
	if len(errs) == 0 {
		return clusterInfo{}, fmt.Errorf("no pod of %s has an IP (not scheduled or not started)", what)
	}
	return clusterInfo{}, fmt.Errorf("no pod of %s answered GET /v1/cluster: %w", what, errors.Join(errs...))
}

// Leaders asks a workload's pods (by pod IP, at their port named http or
// port) which pod leads each aggregator partition.
func Leaders(ctx context.Context, hc *http.Client, w *Workload, port int) (map[int]string, error) {
	ci, err := clusterOfPods(ctx, hc, w.Ref(), append([]Pod(nil), w.Pods...), port)
	if err != nil {
		return nil, err
	}
	return ci.leaders(), nil
}

func (ci clusterInfo) leaders() map[int]string {
	out := map[int]string{}
	for _, p := range ci.Partitions {
		if p.Leader != "" {
			out[p.ID] = p.Leader
		}
	}
	return out
}

// Leaders returns partition → leader as the arm's pods report it.
func (a *Arms) Leaders(ctx context.Context, arm engine.Arm) (map[int]string, error) {
	ci, err := a.cluster(ctx, arm)
	if err != nil {
		return nil, err
	}
	return ci.leaders(), nil
}

// Leader implements engine.Topology: the leader of partition, or (nil)
// the pod that leads the most partitions.
func (a *Arms) Leader(ctx context.Context, arm engine.Arm, partition *int) (string, error) {
	m, err := a.Leaders(ctx, arm)
	if err != nil {
		return "", err
	}
	if partition != nil {
		if l, ok := m[*partition]; ok {
			return l, nil
		}
		return "", fmt.Errorf("partition %d of the %s arm has no leader", *partition, arm)
	}
	count := map[string]int{}
	for _, l := range m {
		count[l]++
	}
	best := ""
	for l, n := range count {
		if n > count[best] || n == count[best] && l < best {
			best = l
		}
	}
	if best == "" {
		return "", fmt.Errorf("no partition of the %s arm has a leader", arm)
	}
	return best, nil
}

// Healthy implements gameday.Target: every pod of both arms Ready (as the
// kubelet's readiness probes say), as many as the workload wants, and every
// pod knowing a leader for every partition, all of them the same. Every
// arm is checked and every unhealthy one named: a host that starves all
// the arms must not read as a canary that alone is down.
func (a *Arms) Healthy(ctx context.Context) error {
	var why []string
	for _, arm := range a.LoadArms() {
		if err := a.armHealthy(ctx, arm); err != nil {
			why = append(why, err.Error())
		}
	}
	if len(why) > 0 {
		return engine.E(engine.KindUnavailable, "healthy", errors.New(strings.Join(why, "; ")))
	}
	return nil
}

// armHealthy is Healthy for one arm: why it is not healthy, or nil.
func (a *Arms) armHealthy(ctx context.Context, arm engine.Arm) error {
	if err := a.refresh(ctx, arm); err != nil {
		return err
	}
	a.mu.Lock()
	w := a.pair.Arm(arm)
	want, ready, pods := int(w.Replicas), 0, len(w.Pods)
	var notReady []string
	for _, p := range w.Pods {
		if p.Ready {
			ready++
		} else {
			notReady = append(notReady, p.Name)
		}
	}
	ref := w.Ref()
	a.mu.Unlock()
	if ready < max(want, pods) {
		return fmt.Errorf("%s: %d of %d pods ready (not ready: %v)", ref, ready, max(want, pods), notReady)
	}
	var first map[int]string
	for name, addr := range a.DirectAddrs(arm) {
		ci, err := getCluster(ctx, a.hc, addr)
		if err != nil {
			return fmt.Errorf("%s pod %s: %w", ref, name, err)
		}
		view := ci.leaders()
		if len(view) < a.parts {
			return fmt.Errorf("%s pod %s: %d of %d partitions have a known leader", ref, name, len(view), a.parts)
		}
		if first == nil {
			first = view
			continue
		}
		for id, l := range view {
			if first[id] != l {
				return fmt.Errorf("%s: the pods do not agree yet on who leads partition %d", ref, id)
			}
		}
	}
	return nil
}

// SettleTimeout is how long the game day waits for the arms to be healthy
// after a step's faults (ArmsConfig.Settle; 0 is the game day's default).
func (a *Arms) SettleTimeout() time.Duration { return a.settle }

// RecoverTimeout is how long the game day's fault runner gives the
// recovery of a step's faults (ArmsConfig.Recover plus 5 s for the API
// calls; 0 is the game day's default).
func (a *Arms) RecoverTimeout() time.Duration {
	if a.recover <= 0 {
		return 0
	}
	return a.recover + 5*time.Second
}
