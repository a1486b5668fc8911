package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/gameday"
	k8sinject "github.com/chaosgate/chaosgate/engine/inject/k8s"
	"github.com/chaosgate/chaosgate/engine/inject/overload"
	k8starget "github.com/chaosgate/chaosgate/engine/target/k8s"
	"github.com/chaosgate/chaosgate/engine/traffic"
	"github.com/chaosgate/chaosgate/scenarios"
)

// Default arm selectors: the labels of deploy/aggregator.
const (
	defaultCanarySelector  = "app.kubernetes.io/name=aggregator,track=canary"
	defaultControlSelector = "app.kubernetes.io/name=aggregator,track=stable"
)

// The --dry-run modes, as kubectl's.
const (
	dryRunNone   = "none"
	dryRunClient = "client"
	dryRunServer = "server"
)

// k8sOpts are the flags of `run|gate|demo --target k8s`.
type k8sOpts struct {
	kubeconfig, namespace                        string
	canarySelector, controlSel                   string
	calibrationSel                               string
	rollout                                      string // an Argo Rollout whose canary and stable ReplicaSets are the arms
	podsFile                                     string
	overrides                                    clientcmd.ConfigOverrides // kubectl's connection flags: --context, --as, --request-timeout, ...
	dryRun                                       string                    // none, client or server
	injectTimeout, recoverTimeout, settleTimeout time.Duration
	confirmTimeout                               time.Duration
	aggregatorPort                               int
	logLabels                                    k8starget.LogLabels // the stream labels the cluster's log agent gives pods' lines
	qps                                          float32             // client-side rate limit of API requests
	burst                                        int
}

// flags registers the Kubernetes flags on cmd: kubectl's connection flags
// (client-go's clientcmd override flags, as kubectl binds them: --context,
// --cluster, --user, -n/--namespace, --as, --as-group, --as-uid,
// --request-timeout, -s/--server, --token, TLS files) and chaosgate's own.
func (k *k8sOpts) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file for --target k8s (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
	f.StringVarP(&k.namespace, "namespace", "n", "", "namespace of the canary and control workloads (overrides the file's spec.target.kubernetes.namespace)")
	kf := clientcmd.RecommendedConfigOverrideFlags("")
	// chaosgate binds the namespace itself (the file's namespace is the
	// default, not the kubeconfig context's); kubectl no longer offers
	// basic-auth flags.
	kf.ContextOverrideFlags.Namespace = clientcmd.FlagInfo{}
	kf.AuthOverrideFlags.Username, kf.AuthOverrideFlags.Password = clientcmd.FlagInfo{}, clientcmd.FlagInfo{}
	clientcmd.BindOverrideFlags(&k.overrides, f, kf)
	f.StringVar(&k.canarySelector, "canary-selector", "", "label selector of the canary pods (default: the file's, else "+defaultCanarySelector+")")
	f.StringVar(&k.controlSel, "control-selector", "", "label selector of the control pods (default: the file's, else "+defaultControlSelector+")")
	f.StringVar(&k.calibrationSel, "calibration-selector", "", "label selector of an optional calibration workload running the control's build (Kayenta's baseline): it takes the canary's share and faults, and its windows against the control are the A/A noise σ̂ comes from (default: the file's spec.target.kubernetes.calibration, else none)")
	f.StringVar(&k.rollout, "rollout", "", "an Argo Rollout (in --namespace) whose canary ReplicaSet (status.currentPodHash) is the canary and whose stable ReplicaSet (status.stableRS) is the control, instead of the selectors (default: the file's spec.target.kubernetes.rollout)")
	f.StringVar(&k.podsFile, "pods", "", "with --dry-run: read the target pods from this file instead of the cluster (works offline)")
	f.StringVar(&k.dryRun, "dry-run", dryRunNone, "none, client (print every object the run would create, YAML stream with -o yaml; --dry-run alone) or server (also submit each to the API server as a dry run: schema, admission and webhooks check it, nothing is persisted)")
	f.Lookup("dry-run").NoOptDefVal = dryRunClient
	f.DurationVar(&k.injectTimeout, "inject-timeout", 30*time.Second, "how long to wait for Chaos Mesh to report AllInjected")
	f.DurationVar(&k.recoverTimeout, "recover-timeout", 60*time.Second, "how long to wait for AllRecovered, or for a killed pod's replacement")
	f.DurationVar(&k.settleTimeout, "settle-timeout", 60*time.Second, "how long a step waits, after its faults, for every pod of the measured arms to be ready and serving again before its fault-free steady window")
	f.DurationVar(&k.confirmTimeout, "confirm-timeout", 10*time.Second, "how long a podKill's confirmation watches the replacement pod become ready")
	f.IntVar(&k.aggregatorPort, "aggregator-port", 7001, "HTTP port of the aggregator pods whose containers name no \"http\" port (load, probes, leader lookup for splitBrain)")
	f.StringVar(&k.logLabels.Namespace, "log-namespace-label", "namespace", "with --log-server on --target k8s: the label your log agent (Promtail, Alloy, Vector, vlagent) gives a pod's lines for its namespace")
	f.StringVar(&k.logLabels.Pod, "log-pod-label", "pod", "with --log-server on --target k8s: the label your log agent gives a pod's lines for the pod's name")
	// client-go's own default (5/s, bursts of 10) throttles a game day
	// that creates, watches and recovers Chaos Mesh objects on three arms
	// by seconds; controllers raise it likewise (Argo Rollouts 40/80).
	f.Float32Var(&k.qps, "kube-api-qps", defaultKubeQPS, "requests per second to the Kubernetes API server (client-side limit)")
	f.IntVar(&k.burst, "kube-api-burst", defaultKubeBurst, "burst of requests to the Kubernetes API server above --kube-api-qps")
}

// The client-side limit of API requests unless --kube-api-qps and
// --kube-api-burst say otherwise.
const (
	defaultKubeQPS   = 50
	defaultKubeBurst = 100
)

// restConfig loads the connection as kubectl does: the kubeconfig
// (--kubeconfig, $KUBECONFIG, ~/.kube/config) with the override flags
// applied (--context, --cluster, --user, --as…, --request-timeout, --server,
// --token), or the in-cluster configuration.
func (k *k8sOpts) restConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if k.kubeconfig != "" {
		rules.ExplicitPath = k.kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &k.overrides).ClientConfig()
	if err != nil {
		return nil, engine.E(engine.KindInvalid, "kubeconfig", fmt.Errorf("%w; hint: pass --kubeconfig FILE (and --context NAME)", err))
	}
	if k.qps < 0 || k.burst < 0 {
		return nil, engine.E(engine.KindInvalid, "--kube-api-qps", fmt.Errorf("--kube-api-qps %g and --kube-api-burst %d must be positive (hint: the defaults are %d and %d)", k.qps, k.burst, defaultKubeQPS, defaultKubeBurst))
	}
	cfg.QPS, cfg.Burst = defaultKubeQPS, defaultKubeBurst
	if k.qps > 0 {
		cfg.QPS = k.qps
	}
	if k.burst > 0 {
		cfg.Burst = k.burst
	}
	return cfg, nil
}

// rolloutTarget returns the Argo Rollout whose ReplicaSets are the arms:
// --rollout, else the file's spec.target.kubernetes.rollout; ok is false
// when neither names one. A Rollout and label selectors are exclusive.
func (k *k8sOpts) rolloutTarget(doc *scenarios.Document) (namespace, name string, ok bool, err error) {
	var kt *scenarios.KubernetesTarget
	if doc != nil && doc.Spec.Target.Kubernetes != nil {
		kt = doc.Spec.Target.Kubernetes
	}
	name = k.rollout
	if name == "" && kt != nil {
		name = kt.Rollout
	}
	if name == "" {
		return "", "", false, nil
	}
	if k.canarySelector != "" || k.controlSel != "" {
		return "", "", false, engine.E(engine.KindInvalid, "--rollout", errors.New("a Rollout chooses both arms: drop --canary-selector and --control-selector"))
	}
	namespace = k.namespace
	if namespace == "" && kt != nil {
		namespace = kt.Namespace
	}
	if namespace == "" {
		return "", "", false, engine.E(engine.KindInvalid, "--rollout", errors.New("no namespace; hint: pass --namespace NS or set spec.target.kubernetes.namespace"))
	}
	return namespace, name, true, nil
}

// selectors returns each arm's workload selector: flags, else the file's
// spec.target.kubernetes, else the deploy/aggregator labels.
func (k *k8sOpts) selectors(doc *scenarios.Document) (canary, control k8starget.Selector, err error) {
	var kt *scenarios.KubernetesTarget
	if doc != nil && doc.Spec.Target.Kubernetes != nil {
		kt = doc.Spec.Target.Kubernetes
	}
	ns := k.namespace
	if ns == "" && kt != nil {
		ns = kt.Namespace
	}
	if ns == "" {
		return canary, control, engine.E(engine.KindInvalid, "--target k8s", errors.New("no namespace; hint: pass --namespace NS or set spec.target.kubernetes.namespace"))
	}
	pick := func(flag, def string, fromFile map[string]string) (map[string]string, error) {
		if flag != "" {
			return labelMap(flag)
		}
		if len(fromFile) > 0 {
			return fromFile, nil
		}
		return labelMap(def)
	}
	var cf, sf map[string]string
	if kt != nil {
		cf, sf = kt.Canary.MatchLabels, kt.Control.MatchLabels
	}
	cl, err := pick(k.canarySelector, defaultCanarySelector, cf)
	if err != nil {
		return canary, control, engine.E(engine.KindInvalid, "--canary-selector", err)
	}
	sl, err := pick(k.controlSel, defaultControlSelector, sf)
	if err != nil {
		return canary, control, engine.E(engine.KindInvalid, "--control-selector", err)
	}
	return k8starget.Selector{Namespace: ns, MatchLabels: cl}, k8starget.Selector{Namespace: ns, MatchLabels: sl}, nil
}

// calibrationSelector returns the calibration workload's selector
// (--calibration-selector, else the file's
// spec.target.kubernetes.calibration), or nil when the run has none.
func (k *k8sOpts) calibrationSelector(doc *scenarios.Document, ns string) (*k8starget.Selector, error) {
	var m map[string]string
	switch {
	case k.calibrationSel != "":
		var err error
		if m, err = labelMap(k.calibrationSel); err != nil {
			return nil, engine.E(engine.KindInvalid, "--calibration-selector", err)
		}
	case doc != nil && doc.Spec.Target.Kubernetes != nil && doc.Spec.Target.Kubernetes.Calibration != nil:
		m = doc.Spec.Target.Kubernetes.Calibration.MatchLabels
	default:
		return nil, nil
	}
	return &k8starget.Selector{Namespace: ns, MatchLabels: m}, nil
}

// labelMap parses "a=b,c=d" (equality only: a workload's template labels
// are matched exactly).
func labelMap(s string) (map[string]string, error) {
	sel, err := labels.ConvertSelectorToLabelsMap(s)
	if err != nil {
		return nil, fmt.Errorf("%q: %w; hint: key=value,key=value", s, err)
	}
	return sel, nil
}

// k8sBackend is everything a Kubernetes run needs, resolved from the
// cluster: the canary and control workloads, the injector and the topology.
type k8sBackend struct {
	pair     k8starget.Pair
	injector *k8sinject.Injector
	kube     kubernetes.Interface
	resolver *k8starget.Resolver
	port     int
	hc       *http.Client
	log      *slog.Logger

	mu sync.Mutex // guards the pods of pair

	// router sets each step's split on the traffic section's route
	// object (nil: no traffic section).
	router *traffic.Router
	// dyn restores a crashed run's traffic split (traffic.Restorer).
	dyn dynamic.Interface
}

// newK8sBackend connects, resolves both arms and builds the injector owned
// by runID.
func newK8sBackend(ctx context.Context, k *k8sOpts, doc *scenarios.Document, runID string) (*k8sBackend, error) {
	cfg, err := k.restConfig()
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, engine.E(engine.KindInvalid, "kubernetes client", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, engine.E(engine.KindInvalid, "kubernetes client", err)
	}
	resolver := k8starget.NewResolver(kube, dyn)
	var pair k8starget.Pair
	if ns, name, ok, err := k.rolloutTarget(doc); err != nil {
		return nil, err
	} else if ok {
		pair, err = resolver.ResolveRollout(ctx, ns, name)
		if err != nil {
			return nil, err
		}
	} else {
		cs, ss, err := k.selectors(doc)
		if err != nil {
			return nil, err
		}
		if pair, err = resolver.ResolvePair(ctx, cs, ss); err != nil {
			return nil, err
		}
	}
	if cal, err := k.calibrationSelector(doc, pair.Control.Namespace); err != nil {
		return nil, err
	} else if cal != nil {
		if err := resolver.AddCalibration(ctx, &pair, *cal); err != nil {
			return nil, err
		}
	}
	b := &k8sBackend{pair: pair, kube: kube, dyn: dyn, resolver: resolver, port: k.aggregatorPort,
		hc: &http.Client{Timeout: 3 * time.Second}, log: slog.New(slog.DiscardHandler)}
	opts := k8sinject.Options{
		PlanOptions: k8sinject.PlanOptions{
			Owner:      k8sinject.Owner{RunID: runID, Experiment: doc.Metadata.Name, Version: version},
			Namespaces: map[engine.Arm]string{engine.ArmCanary: pair.Canary.Namespace, engine.ArmControl: pair.Control.Namespace},
			Leaders:    b.leaders,
		},
		PodSelectors:    map[engine.Arm]string{engine.ArmCanary: pair.Canary.PodSelector, engine.ArmControl: pair.Control.PodSelector},
		InjectTimeout:   k.injectTimeout,
		RecoverTimeout:  k.recoverTimeout,
		ConfirmTimeout:  k.confirmTimeout,
		DetectChaosMesh: true,
	}
	if c := pair.Calibration; c != nil {
		opts.Namespaces[engine.ArmCalibration], opts.PodSelectors[engine.ArmCalibration] = c.Namespace, c.PodSelector
	}
	in, err := k8sinject.New(cfg, opts)
	if err != nil {
		return nil, err
	}
	b.injector = in
	// A local-target file run on Kubernetes (default-gameday --target
	// k8s) may name chaosgate's own router: that router fronts the local
	// target's clusters; on Kubernetes the cluster routes unless the file
	// names its route object.
	if tr := doc.Spec.Traffic; tr != nil && tr.Provider != scenarios.TrafficRouter {
		tc := traffic.Config{Provider: tr.Provider, Namespace: pair.Canary.Namespace, Route: tr.Route, ApexService: tr.ApexService, Gateway: tr.Gateway,
			Hosts: tr.Hosts, StableService: tr.StableService, CanaryService: tr.CanaryService, Port: tr.Port}
		if h := tr.Header; h != nil {
			tc.Header = &traffic.HeaderMatch{Name: h.Name, Value: h.Value}
		}
		if b.router, err = traffic.New(dyn, tc); err != nil {
			return nil, engine.E(engine.KindInvalid, "traffic", err)
		}
	}
	return b, nil
}

// Injectors maps every Chaos Mesh fault kind to the Kubernetes injector, a
// journaled traffic split to the restorer that sends it back to stable,
// and an overload to an injector with no load generator: the game day
// plays each burst with its own (gameday.Run), and a crashed run's burst
// died with it, so the reaper has nothing to undo.
func (b *k8sBackend) Injectors() map[engine.FaultKind]engine.Injector {
	return map[engine.FaultKind]engine.Injector{engine.PodKill: b.injector, engine.PodPause: b.injector,
		engine.NetworkDelay: b.injector, engine.Partition: b.injector, engine.SplitBrain: b.injector, engine.ClockSkew: b.injector, engine.CPUStress: b.injector, engine.MemoryStress: b.injector, engine.Bandwidth: b.injector, engine.PacketLoss: b.injector, engine.Corrupt: b.injector, engine.ZoneOutage: b.injector,
		engine.SlowDependency: b.injector, engine.Overload: overload.New(overload.Config{}),
		engine.TrafficSplit: traffic.Restorer{Dyn: b.dyn}}
}

// Nodes implements engine.Topology: the arm's pods by name, listed afresh
// (a killed Deployment pod comes back under a new name); on a listing
// error, the pods seen last.
func (b *k8sBackend) Nodes(arm engine.Arm) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.pair.Arm(arm); w != nil && b.resolver != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.resolver.RefreshPods(ctx, w); err != nil {
			b.log.Warn("listing pods failed; using the pods seen last", "workload", w.Ref(), "err", err)
		}
	}
	return b.pair.Target(arm).Nodes
}

// Leader implements engine.Topology from the aggregator's GET /v1/cluster.
func (b *k8sBackend) Leader(ctx context.Context, arm engine.Arm, partition *int) (string, error) {
	m, err := b.leaders(ctx, arm)
	if err != nil {
		return "", err
	}
	return k8sinject.ChooseLeader(m, partition)
}

// Addrs returns the HTTP address (pod IP and --aggregator-port) of each
// pod of an arm that has an IP: what probes dial when chaosgate runs in the
// cluster (outside it, point them at a Service or a port-forward).
func (b *k8sBackend) Addrs(arm engine.Arm) map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]string{}
	if w := b.pair.Arm(arm); w != nil {
		for _, p := range w.Pods {
			if p.IP != "" {
				out[p.Name] = net.JoinHostPort(p.IP, strconv.Itoa(b.port))
			}
		}
	}
	return out
}

// leaders asks the arm's pods (by pod IP) for partition → leader.
func (b *k8sBackend) leaders(ctx context.Context, arm engine.Arm) (map[int]string, error) {
	b.mu.Lock()
	w := *b.pair.Arm(arm)
	w.Pods = append([]k8starget.Pod(nil), w.Pods...)
	b.mu.Unlock()
	return k8starget.Leaders(ctx, b.hc, &w, b.port)
}

// k8sDryRun prints every object a run of doc would create, creating
// nothing. With --pods it needs no cluster at all.
func k8sDryRun(ctx context.Context, w io.Writer, k *k8sOpts, doc *scenarios.Document, runID, output string) error {
	if output != "yaml" {
		return withExitCode(exitUsage, fmt.Errorf("--dry-run prints a YAML stream: pass -o yaml (got -o %s)", output))
	}
	if k.dryRun == dryRunServer && k.podsFile != "" {
		return withExitCode(exitUsage, errors.New("--dry-run=server submits the objects to the cluster: it cannot read the pods from --pods (use --dry-run=client offline)"))
	}
	var backend *k8sBackend
	plan, err := engine.PlanFromDocument(doc)
	if err != nil {
		return withExitCode(exitUsage, err)
	}
	po := k8sinject.PlanOptions{Owner: k8sinject.Owner{RunID: runID, Experiment: doc.Metadata.Name, Version: version}}
	arms := map[engine.Arm][]string{}
	var header []string
	if k.podsFile != "" {
		pf, err := k8sinject.ReadPodsFile(k.podsFile)
		if err != nil {
			return withExitCode(exitUsage, err)
		}
		po.Namespaces = map[engine.Arm]string{engine.ArmCanary: pf.Canary.Namespace, engine.ArmControl: pf.Control.Namespace}
		arms[engine.ArmCanary], arms[engine.ArmControl] = pf.Canary.Pods, pf.Control.Pods
		po.Zones = func(_ context.Context, arm engine.Arm, zone string) ([]string, error) {
			if arm == engine.ArmCanary {
				return pf.Canary.ZonePods(zone)
			}
			return pf.Control.ZonePods(zone)
		}
		// Offline: assume Chaos Mesh is installed (what a cluster run would use).
		po.ChaosMesh = true
		header = append(header, "# target pods from "+k.podsFile+"; Chaos Mesh assumed installed")
	} else {
		b, err := newK8sBackend(ctx, k, doc, runID)
		if err != nil {
			return withExitCode(exitUsage, err)
		}
		backend = b
		ok, err := b.injector.HasChaosMesh(ctx)
		if err != nil {
			return withExitCode(exitUsage, err)
		}
		po.ChaosMesh = ok
		po.Namespaces = map[engine.Arm]string{engine.ArmCanary: b.pair.Canary.Namespace, engine.ArmControl: b.pair.Control.Namespace}
		arms[engine.ArmCanary], arms[engine.ArmControl] = b.pair.Canary.PodNames(), b.pair.Control.PodNames()
		po.Zones = func(ctx context.Context, arm engine.Arm, zone string) ([]string, error) {
			w := b.pair.Arm(arm)
			if w == nil {
				return nil, fmt.Errorf("no %s workload", arm)
			}
			return k8starget.ZonePods(ctx, b.kube, w, zone)
		}
		header = append(header,
			fmt.Sprintf("# canary: %s revision %s", b.pair.Canary.Ref(), b.pair.Canary.RevisionString()),
			fmt.Sprintf("# control: %s revision %s", b.pair.Control.Ref(), b.pair.Control.RevisionString()),
			fmt.Sprintf("# Chaos Mesh installed: %v", ok))
	}
	rs, err := k8sinject.RenderRun(ctx, plan, runID, po, arms)
	if err != nil {
		return withExitCode(exitUsage, err)
	}
	mode := "client-side"
	if k.dryRun == dryRunServer {
		// Every object goes to the API server as a dry run; what is
		// printed is what the server would store (defaults filled in).
		mode = "server-side"
		for i := range rs {
			if rs[i].Object == nil {
				continue
			}
			got, err := backend.injector.DryRunCreate(ctx, rs[i].Object)
			if err != nil {
				return withExitCode(exitUsage, fmt.Errorf("server-side dry run of the object for %s: %w", rs[i].Note, err))
			}
			rs[i].Object = got
		}
	}
	fmt.Fprintf(w, "# chaosgate %s %s dry run of %s (run id %s): %d objects, nothing created\n", version, mode, doc.Metadata.Name, runID, countObjects(rs))
	if k.dryRun == dryRunServer {
		fmt.Fprintln(w, "# every object was accepted by the API server's dry run (schema, admission, webhooks)")
	}
	for _, h := range header {
		fmt.Fprintln(w, h)
	}
	if err := k8sinject.WriteRendered(w, rs); err != nil {
		return withExitCode(exitUsage, err)
	}
	return nil
}

func countObjects(rs []k8sinject.Rendered) int {
	n := 0
	for _, r := range rs {
		if r.Object != nil {
			n++
		}
	}
	return n
}

func newK8sRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102t150405") + "-" + hex.EncodeToString(b[:])
}

// k8sTargetSetup resolves the canary and control workloads, recovers what a
// crashed run left on the cluster (faults in its journals, chaosgate-owned
// Chaos Mesh objects no live run owns), and returns the game day's
// Kubernetes target with the evidence subject: the canary workload at its
// image digest, answering at the gate for its other names too (digest,
// pod-template hash) and for revision (--revision) when given.
func k8sTargetSetup(ctx context.Context, k *k8sOpts, doc *scenarios.Document, runID, dataDir, revision string, log *slog.Logger) (targetSetup, error) {
	var ts targetSetup
	b, err := newK8sBackend(ctx, k, doc, runID)
	if err != nil {
		return ts, err
	}
	b.log = log
	reaped, err := engine.Reap(ctx, dataDir, b.Injectors(), log)
	for _, r := range reaped {
		ts.Reaped = append(ts.Reaped, fmt.Sprint(r))
	}
	if err != nil {
		return ts, err
	}
	live, err := k8sinject.LiveRuns(dataDir, runID)
	if err != nil {
		return ts, err
	}
	orphans, err := b.injector.ReapOrphans(ctx, live)
	for _, r := range orphans {
		ts.Reaped = append(ts.Reaped, fmt.Sprint(r))
	}
	if err != nil {
		return ts, err
	}
	arms, err := k8starget.NewArms(ctx, k8starget.ArmsConfig{Pair: b.pair, Resolver: b.resolver, Injectors: b.Injectors(), Port: k.aggregatorPort, LogLabels: k.logLabels,
		Settle: k.settleTimeout, Recover: k.recoverTimeout, Router: b.router,
		FaultRecords: func(id string) any {
			if rs := b.injector.Records(id); len(rs) > 0 {
				return rs
			}
			return nil
		}})
	if err != nil {
		return ts, err
	}
	ts.Target, ts.Revision = arms, b.pair.Canary.RevisionString()
	ts.GateKeys = b.pair.Canary.GateKeys()
	if revision != "" {
		ts.GateKeys = append(ts.GateKeys, revision)
	}
	ts.Versions = map[string]string{"target": "k8s", "control": b.pair.Control.RevisionString()}
	return ts, nil
}

// The Kubernetes target is a game day target whose pods' logs reach a log
// server through the cluster's own agent.
var (
	_ gameday.Target          = (*k8starget.Arms)(nil)
	_ gameday.LogStreams      = (*k8starget.Arms)(nil)
	_ gameday.TrafficSplitter = (*k8starget.Arms)(nil)
	_ engine.ZoneTopology     = (*k8starget.Arms)(nil)
)

// runOnKubernetes is the `--target k8s` path of run and gate: with
// --dry-run it prints every object the run would create (-o yaml) and
// creates nothing; otherwise it runs the file against the workloads and
// returns an error carrying the verdict's exit code.
func runOnKubernetes(cmd *cobra.Command, k *k8sOpts, doc *scenarios.Document, o gamedayOpts) error {
	ctx := cmd.Context()
	switch k.dryRun { // true and false: the boolean flag of earlier releases
	case "true":
		k.dryRun = dryRunClient
	case "false":
		k.dryRun = dryRunNone
	}
	switch k.dryRun {
	case dryRunNone:
	case dryRunClient, dryRunServer:
		return k8sDryRun(ctx, cmd.OutOrStdout(), k, doc, newK8sRunID(), o.output)
	default:
		return withExitCode(exitUsage, fmt.Errorf("--dry-run=%q: want none, client or server", k.dryRun))
	}
	// The game day's pipeline — load, probes, judge, step controller,
	// report, evidence — on the Kubernetes workloads.
	o.target = func(ctx context.Context, runID, dataDir string, log *slog.Logger) (targetSetup, error) {
		return k8sTargetSetup(ctx, k, doc, runID, dataDir, o.revision, log)
	}
	_, err := runGameday(cmd, o)
	return err
}
