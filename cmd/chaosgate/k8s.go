package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/engine/gameday"
	k8sinject "github.com/chaosgate/chaosgate/engine/inject/k8s"
	"github.com/chaosgate/chaosgate/engine/report"
	k8starget "github.com/chaosgate/chaosgate/engine/target/k8s"
	"github.com/chaosgate/chaosgate/evidence"
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
	kubeconfig, namespace         string
	canarySelector, controlSel    string
	calibrationSel                string
	rollout                       string // an Argo Rollout whose canary and stable ReplicaSets are the arms
	podsFile                      string
	overrides                     clientcmd.ConfigOverrides // kubectl's connection flags: --context, --as, --request-timeout, ...
	dryRun                        string                    // none, client or server
	injectTimeout, recoverTimeout time.Duration
	confirmTimeout                time.Duration
	aggregatorPort                int
	logLabels                     k8starget.LogLabels // the stream labels the cluster's log agent gives pods' lines
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
	f.DurationVar(&k.confirmTimeout, "confirm-timeout", 10*time.Second, "how long a podKill's confirmation watches the replacement pod become ready")
	f.IntVar(&k.aggregatorPort, "aggregator-port", 7001, "HTTP port of the aggregator pods whose containers name no \"http\" port (load, probes, leader lookup for splitBrain)")
	f.StringVar(&k.logLabels.Namespace, "log-namespace-label", "namespace", "with --log-server on --target k8s: the label your log agent (Promtail, Alloy, Vector, vlagent) gives a pod's lines for its namespace")
	f.StringVar(&k.logLabels.Pod, "log-pod-label", "pod", "with --log-server on --target k8s: the label your log agent gives a pod's lines for the pod's name")
}

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
	b := &k8sBackend{pair: pair, kube: kube, resolver: resolver, port: k.aggregatorPort,
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
	return b, nil
}

// Injectors maps every fault kind to the Kubernetes injector.
func (b *k8sBackend) Injectors() map[engine.FaultKind]engine.Injector {
	return map[engine.FaultKind]engine.Injector{engine.PodKill: b.injector, engine.PodPause: b.injector,
		engine.NetworkDelay: b.injector, engine.Partition: b.injector, engine.SplitBrain: b.injector, engine.ClockSkew: b.injector}
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

// k8sRunResult is report/v1 plus what a Kubernetes run has to say.
type k8sRunResult struct {
	report.Report
	ControlRevision string              `json:"control_revision"`
	Subject         k8starget.Subject   `json:"subject"`
	Targets         map[string][]string `json:"targets"`
	Reaped          []engine.Reaped     `json:"reaped,omitempty"`
	Reason          string              `json:"reason,omitempty"`
	Error           string              `json:"error,omitempty"`
	faults          []engine.FaultRecord
}

// k8sRunConfig is what runK8s needs besides the Kubernetes flags.
type k8sRunConfig struct {
	DataDir string
	// RunID is the run's id (its run record's); empty: a new one.
	RunID string
	// Output is table or json (report/v1 plus the Kubernetes fields).
	Output string
	// JSONFile and JUnitFile, when set, receive the report (gate).
	JSONFile, JUnitFile string
	// Revision is --revision: recorded as one more evidence subject, so the
	// gate answers for it (a CI commit) as for the workload's own revision.
	Revision string
	// Judge decides each canary step; nil: every step holds (exit 3).
	Judge  engine.Judge
	Probes []engine.Probe
	Log    *slog.Logger
}

// runK8s runs doc against the Kubernetes target: it reaps what crashed
// runs left (journal and cluster), resolves the arms, runs the plan with
// the Chaos Mesh injector, and records evidence whose subject is the
// canary workload's revision. The error carries the exit code (0 promote,
// 1 block, 3 hold, 2 could not judge).
func runK8s(ctx context.Context, w io.Writer, k *k8sOpts, doc *scenarios.Document, rc k8sRunConfig) (*k8sRunResult, error) {
	res, err := runK8sInner(ctx, w, k, doc, rc)
	if res != nil {
		if rc.JSONFile != "" {
			if werr := writeK8sFile(rc.JSONFile, func(f io.Writer) error { return writeK8sJSON(f, res) }); werr != nil && err == nil {
				err = withExitCode(exitUsage, werr)
			}
		}
		if rc.JUnitFile != "" {
			if werr := writeK8sFile(rc.JUnitFile, func(f io.Writer) error { return report.WriteJUnit(f, res.Report) }); werr != nil && err == nil {
				err = withExitCode(exitUsage, werr)
			}
		}
	}
	return res, err
}

func writeK8sJSON(w io.Writer, res *k8sRunResult) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

func writeK8sFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func runK8sInner(ctx context.Context, w io.Writer, k *k8sOpts, doc *scenarios.Document, rc k8sRunConfig) (*k8sRunResult, error) {
	output, log := rc.Output, rc.Log
	if output != "table" && output != "json" {
		return nil, withExitCode(exitUsage, fmt.Errorf("-o %q: want table, json or yaml", output))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(rc.DataDir)
	if err != nil {
		return nil, withExitCode(exitUsage, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, withExitCode(exitUsage, fmt.Errorf("--data-dir: %w", err))
	}
	plan, err := engine.PlanFromDocument(doc)
	if err != nil {
		return nil, withExitCode(exitUsage, err)
	}
	runID := rc.RunID
	if runID == "" {
		runID = newK8sRunID()
	}
	b, err := newK8sBackend(ctx, k, doc, runID)
	if err != nil {
		return nil, withExitCode(exitUsage, err)
	}
	b.log = log
	res := k8sRunResult{Report: report.Report{Schema: report.Schema, RunID: runID, Revision: b.pair.Canary.RevisionString(), Steps: []report.Step{}, Faults: []report.Fault{}},
		ControlRevision: b.pair.Control.RevisionString(), Subject: b.pair.Canary.Subject(),
		Targets: map[string][]string{"canary": b.pair.Canary.PodNames(), "control": b.pair.Control.PodNames()}}
	// Reap first: faults in crashed runs' journals, then chaosgate-owned
	// Chaos Mesh objects that no live run owns.
	reaped, err := engine.Reap(ctx, dir, b.Injectors(), log)
	res.Reaped = append(res.Reaped, reaped...)
	if err != nil {
		return &res, withExitCode(exitUsage, err)
	}
	live, err := k8sinject.LiveRuns(dir, runID)
	if err != nil {
		return &res, withExitCode(exitUsage, err)
	}
	orphans, err := b.injector.ReapOrphans(ctx, live)
	res.Reaped = append(res.Reaped, orphans...)
	if err != nil {
		return &res, withExitCode(exitUsage, err)
	}
	started := time.Now()
	var recordedFaults []engine.FaultRecord
	record := func(ctx context.Context, r *engine.Result) (engine.EvidenceRef, error) {
		recordedFaults = r.Faults
		return recordK8sEvidence(ctx, dir, doc, b, r, started, rc.Revision)
	}
	runner, err := engine.NewRunner(engine.Options{DataDir: dir, Injectors: b.Injectors(), Topology: b, Probes: rc.Probes, Judge: rc.Judge,
		Record: record, Log: log, RunID: runID, RecoverTimeout: k.recoverTimeout + 5*time.Second})
	if err != nil {
		return &res, withExitCode(exitUsage, err)
	}
	out, runErr := runner.Run(ctx, plan)
	res.Verdict = decision.Hold.String()
	if out != nil {
		res.faults = out.Faults
		if len(res.faults) == 0 {
			res.faults = recordedFaults
		}
		res.Faults = append(res.Faults, reportFaults(res.faults)...)
		res.Resilience = report.ResilienceOf(res.Faults)
		for _, st := range out.Steps {
			o := st.Verdict.Decision
			if o == 0 {
				o = decision.Hold
			}
			res.Steps = append(res.Steps, report.Step{Weight: st.Weight, Verdict: o.String(), Score: st.Verdict.Score, Coverage: st.Verdict.Coverage, Reason: st.Verdict.Reason})
		}
		if out.Evidence != nil {
			res.Evidence = &report.Evidence{LedgerIndex: out.Evidence.LedgerIndex, TreeSize: out.Evidence.TreeSize, EnvelopeSHA256: out.Evidence.EnvelopeSHA256}
		}
		if !out.Ended.IsZero() {
			res.DurationS = out.Ended.Sub(out.Started).Seconds()
		}
		if out.Verdict.Decision != 0 {
			res.Verdict = out.Verdict.Decision.String()
		}
		res.Reason = out.Verdict.Reason
	}
	code := exitHold // no verdict reached on the cluster: hold
	if out != nil && out.Verdict.Decision != 0 {
		code = out.Verdict.Decision.ExitCode()
	}
	if runErr != nil {
		res.Error = runErr.Error()
		code = exitUsage
	}
	res.ExitCode = code
	if output == "json" {
		if err := writeK8sJSON(w, &res); err != nil {
			return &res, withExitCode(exitUsage, err)
		}
	} else {
		printK8sRun(w, res)
	}
	if runErr != nil {
		return &res, withExitCode(exitUsage, runErr)
	}
	if code != exitPromote {
		return &res, withExitCode(code, nil)
	}
	return &res, nil
}

// reportFaults are the report/v1 faults of a run's applied faults (no
// availability: the Kubernetes target carries no measured load yet).
func reportFaults(faults []engine.FaultRecord) []report.Fault {
	var out []report.Fault
	for _, f := range faults {
		if f.AppliedAt.IsZero() {
			continue
		}
		rf := report.Fault{Kind: f.Kind.String(), Arm: f.Arm.String(), Target: f.Target, AppliedAt: f.AppliedAt, Confirmed: engine.Inconclusive.String()}
		if f.Confirmed != 0 {
			rf.Confirmed = f.Confirmed.String()
		}
		if !f.RecoveredAt.IsZero() {
			t := f.RecoveredAt
			rf.RecoveredAt = &t
		}
		out = append(out, rf)
	}
	return out
}

func newK8sRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102t150405") + "-" + hex.EncodeToString(b[:])
}

// recordK8sEvidence appends the signed evidence record of a Kubernetes run
// to the ledger under dataDir. Its subject is the canary workload's revision
// (image digest when the pods run one, else the workload revision); the
// names a rollout controller may ask the gate for instead (the canary pods'
// pod-template hash, the image digest alone) and revision (--revision, when
// given) are further subjects.
func recordK8sEvidence(ctx context.Context, dataDir string, doc *scenarios.Document, b *k8sBackend, r *engine.Result, started time.Time, revision string) (engine.EvidenceRef, error) {
	ctx = context.WithoutCancel(ctx)
	l, err := evidence.OpenDataDir(ctx, dataDir, nil)
	if err != nil {
		return engine.EvidenceRef{}, err
	}
	defer l.Close()
	scen, _ := json.Marshal(doc)
	sh := sha256.Sum256(scen)
	p := &evidence.Predicate{RunID: r.RunID, Experiment: evidence.Experiment{Name: doc.Metadata.Name, ScenarioHash: "sha256:" + hex.EncodeToString(sh[:]), Kind: strings.ToLower(doc.Kind)},
		Versions: map[string]string{"chaosgate": version, "target": "k8s"}, StartedAt: started, FinishedAt: time.Now()}
	for _, arm := range []engine.Arm{engine.ArmCanary, engine.ArmControl} {
		wl := b.pair.Arm(arm)
		p.Targets = append(p.Targets, evidence.Target{Arm: arm.String(), Name: wl.Ref() + "@" + wl.Revision})
		for _, pod := range wl.Pods {
			p.Targets = append(p.Targets, evidence.Target{Arm: arm.String(), Name: pod.Namespace + "/" + pod.Name, Address: pod.IP})
		}
	}
	for _, f := range r.Faults {
		detail, _ := json.Marshal(map[string]any{"id": f.ID, "experiment": f.Experiment, "weight": f.Weight, "measurement": f.Measurement,
			"detail": f.Detail, "skipped": f.Skipped, "error": f.Error, "recover_error": f.RecoverError,
			"chaos_mesh_records": b.injector.Records(f.ID)})
		conf := "inconclusive"
		if f.Confirmed != 0 {
			conf = f.Confirmed.String()
		}
		p.Injections = append(p.Injections, evidence.Injection{Kind: f.Kind.String(), Arm: f.Arm.String(), Target: f.Target,
			AppliedAt: f.AppliedAt, RecoveredAt: f.RecoveredAt, Confirmed: conf, Detail: detail})
	}
	sort.SliceStable(p.Targets, func(i, j int) bool { return p.Targets[i].Arm < p.Targets[j].Arm })
	if len(r.Steps) > 0 {
		last := r.Steps[len(r.Steps)-1].Verdict
		v := last.Decision
		if v == 0 {
			v = decision.Hold
		}
		p.Decision = &evidence.Decision{Verdict: v.String(), Score: last.Score, Coverage: last.Coverage}
	}
	// faults.json as a game day records it: applied, took effect,
	// removed and how long each was in place. The blobs built from probes
	// (windows, verdicts, traces, metrics, log matches) need probes that
	// reach the pods, which this target does not run yet.
	rep := report.Report{Faults: reportFaults(r.Faults)}
	rep.Resilience = report.ResilienceOf(rep.Faults)
	if data, err := gameday.FaultsBlobOf(rep); err != nil {
		b.log.Warn("evidence blob left out", "blob", gameday.BlobFaults, "err", err)
	} else if ref, err := l.PutBlob(gameday.BlobFaults, gameday.MediaJSON, data); err != nil {
		b.log.Warn("evidence blob left out", "blob", gameday.BlobFaults, "err", err)
	} else {
		p.Blobs = append(p.Blobs, ref)
	}
	rc, err := l.Record(ctx, b.pair.Canary.RevisionString(), p, append(b.pair.Canary.GateKeys(), revision)...)
	if err != nil {
		return engine.EvidenceRef{}, err
	}
	return engine.EvidenceRef{LedgerIndex: rc.Index, TreeSize: rc.TreeSize, EnvelopeSHA256: rc.EnvelopeSHA256}, nil
}

func printK8sRun(w io.Writer, r k8sRunResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "run\t%s\n", r.RunID)
	fmt.Fprintf(tw, "canary revision\t%s\n", r.Revision)
	fmt.Fprintf(tw, "control revision\t%s\n", r.ControlRevision)
	for _, x := range r.Reaped {
		fmt.Fprintf(tw, "reaped\t%s\n", x)
	}
	fmt.Fprintln(tw, "")
	fmt.Fprintln(tw, "FAULT\tARM\tTARGET\tCONFIRMED\tMEASUREMENT")
	for _, f := range r.faults {
		c := "inconclusive"
		if f.Confirmed != 0 {
			c = f.Confirmed.String()
		}
		m := f.Measurement
		if f.Skipped != "" {
			c, m = "skipped", f.Skipped
		}
		if f.Error != "" {
			c, m = "error", f.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Kind, f.Arm, f.Target, c, m)
	}
	fmt.Fprintln(tw, "")
	fmt.Fprintf(tw, "verdict\t%s\t%s\n", r.Verdict, r.Reason)
	if r.Evidence != nil {
		fmt.Fprintf(tw, "evidence\tledger index %d, tree size %d, envelope sha256:%s\n", r.Evidence.LedgerIndex, r.Evidence.TreeSize, r.Evidence.EnvelopeSHA256)
	}
	if r.Error != "" {
		fmt.Fprintf(tw, "error\t%s\n", r.Error)
	}
	tw.Flush()
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
		Settle: k.recoverTimeout,
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
	_ gameday.Target     = (*k8starget.Arms)(nil)
	_ gameday.LogStreams = (*k8starget.Arms)(nil)
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
