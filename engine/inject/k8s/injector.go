package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	cm "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/chaosgate/chaosgate/engine"
)

// Backend is the engine.Applied backend name of this injector.
const Backend = "k8s"

// Options configure an Injector.
type Options struct {
	PlanOptions
	// PodSelectors is each arm's workload pod selector (label selector
	// string); a pod kill's replacement is looked for among these pods.
	PodSelectors map[engine.Arm]string
	// InjectTimeout bounds the wait for AllInjected (default 30s).
	InjectTimeout time.Duration
	// RecoverTimeout bounds the wait for AllRecovered, or for a killed
	// pod's replacement (default 60s).
	RecoverTimeout time.Duration
	// ConfirmTimeout bounds how long Confirm watches a killed pod's
	// replacement come back and become ready (default 10s).
	ConfirmTimeout time.Duration
	// Poll is the status polling interval (default 200ms).
	Poll  time.Duration
	Clock engine.Clock
	// DetectChaosMesh asks the API server whether the Chaos Mesh CRDs are
	// served (default); when false, PlanOptions.ChaosMesh is used as is.
	DetectChaosMesh bool
}

// Injector implements engine.Injector, engine.Preparer and
// engine.Confirmer for Kubernetes.
type Injector struct {
	kube kubernetes.Interface
	dyn  dynamic.Interface
	opts Options

	mu       sync.Mutex
	detected bool
	// records are the Chaos Mesh per-pod records of each fault id, as
	// observed when the fault took effect and when it was recovered.
	records map[string][]Record
}

// Records returns the Chaos Mesh per-pod records this injector observed
// for a fault id (when it took effect, then when it recovered), for the
// evidence record.
func (in *Injector) Records(faultID string) []Record {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]Record(nil), in.records[faultID]...)
}

func (in *Injector) addRecords(faultID string, rs []Record) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.records == nil {
		in.records = map[string][]Record{}
	}
	in.records[faultID] = append(in.records[faultID], rs...)
}

// New returns an injector for the cluster at cfg.
func New(cfg *rest.Config, opts Options) (*Injector, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, engine.E(engine.KindInvalid, "kubernetes client", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, engine.E(engine.KindInvalid, "kubernetes client", err)
	}
	return NewWithClients(kube, dyn, opts), nil
}

// NewWithClients returns an injector using the given clients.
func NewWithClients(kube kubernetes.Interface, dyn dynamic.Interface, opts Options) *Injector {
	if opts.InjectTimeout <= 0 {
		opts.InjectTimeout = 30 * time.Second
	}
	if opts.RecoverTimeout <= 0 {
		opts.RecoverTimeout = 60 * time.Second
	}
	if opts.Poll <= 0 {
		opts.Poll = 200 * time.Millisecond
	}
	if opts.ConfirmTimeout <= 0 {
		opts.ConfirmTimeout = 10 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = engine.SystemClock{}
	}
	return &Injector{kube: kube, dyn: dyn, opts: opts}
}

// HasChaosMesh reports whether the API server serves the PodChaos and
// NetworkChaos resources (asked once, then cached).
func (in *Injector) HasChaosMesh(ctx context.Context) (bool, error) {
	if !in.opts.DetectChaosMesh {
		return in.opts.ChaosMesh, nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.detected {
		return in.opts.ChaosMesh, nil
	}
	ok, err := DetectChaosMesh(in.kube)
	if err != nil {
		return false, err
	}
	in.opts.ChaosMesh, in.detected = ok, true
	return ok, nil
}

// DetectChaosMesh asks the API server's discovery whether chaos-mesh.org/v1alpha1
// serves podchaos and networkchaos.
func DetectChaosMesh(kube kubernetes.Interface) (bool, error) {
	rl, err := kube.Discovery().ServerResourcesForGroupVersion("chaos-mesh.org/v1alpha1")
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, engine.E(engine.KindUnavailable, "discover Chaos Mesh", err)
	}
	have := map[string]bool{}
	for _, r := range rl.APIResources {
		have[r.Name] = true
	}
	return have["podchaos"] && have["networkchaos"], nil
}

// Undo is the serialised undo information of an Applied (engine.Applied.Undo).
type Undo struct {
	Method    string      `json:"method"`
	Namespace string      `json:"namespace"`
	Objects   []ObjectRef `json:"objects,omitempty"`
	// Pods are the pods the fault acts on, with the UIDs they had before
	// (for a pod kill: the pods whose replacement recovery waits for).
	Pods        []PodRef `json:"pods,omitempty"`
	OneShot     bool     `json:"one_shot,omitempty"`
	PodSelector string   `json:"pod_selector,omitempty"`
	// LiveBefore is how many live pods PodSelector matched before a kill.
	LiveBefore int `json:"live_before,omitempty"`
	// ReadyBefore is how many of those were ready: a kill is recovered
	// when as many are ready again (with a kubelet running them).
	ReadyBefore int `json:"ready_before,omitempty"`
	// Records are Chaos Mesh's per-pod records when the fault took effect.
	Records []Record `json:"records,omitempty"`
}

// PodRef is a pod and the UID it had.
type PodRef struct {
	Name string `json:"name"`
	UID  string `json:"uid,omitempty"`
	// Ready is whether the pod was ready before the fault: a killed ready
	// pod is recovered when its replacement is ready too.
	Ready bool `json:"ready,omitempty"`
}

// Record is one Chaos Mesh per-pod record of an object, for the evidence.
type Record struct {
	Object         string `json:"object"`
	ID             string `json:"id"`
	Phase          string `json:"phase"`
	InjectedCount  int    `json:"injected_count"`
	RecoveredCount int    `json:"recovered_count"`
	Events         []struct {
		Type      string    `json:"type"`
		Operation string    `json:"operation"`
		Message   string    `json:"message,omitempty"`
		Time      time.Time `json:"time"`
	} `json:"events,omitempty"`
}

// UndoOf decodes an Applied's undo information.
func UndoOf(a engine.Applied) (Undo, error) {
	var u Undo
	if a.Backend != "" && a.Backend != Backend {
		return u, engine.E(engine.KindInvalid, "undo "+a.ID, fmt.Errorf("the fault was applied by the %q backend, not %q; hint: recover it with that backend (keep local and Kubernetes runs in separate --data-dir)", a.Backend, Backend))
	}
	if len(a.Undo) == 0 {
		return u, engine.E(engine.KindInvalid, "undo "+a.ID, errors.New("no undo information"))
	}
	if err := json.Unmarshal(a.Undo, &u); err != nil {
		return u, engine.E(engine.KindInvalid, "undo "+a.ID, fmt.Errorf("undo information: %w", err))
	}
	return u, nil
}

// Plan builds the objects for one fault on one target without sending them.
func (in *Injector) Plan(ctx context.Context, t engine.Target, f engine.Fault) (Plan, error) {
	ok, err := in.HasChaosMesh(ctx)
	if err != nil {
		return Plan{}, err
	}
	po := in.opts.PlanOptions
	po.ChaosMesh = ok
	return BuildPlan(ctx, po, t, f)
}

// Prepare says what Inject will create and how to undo it, before acting:
// the object names derive from the fault id, so the intent alone is enough
// to recover after a crash.
func (in *Injector) Prepare(ctx context.Context, t engine.Target, f engine.Fault) (engine.Applied, error) {
	p, err := in.Plan(ctx, t, f)
	if err != nil {
		return engine.Applied{}, err
	}
	u := Undo{Method: p.Method, Namespace: p.Namespace, Objects: p.Refs(), OneShot: p.OneShot, PodSelector: in.opts.PodSelectors[t.Arm]}
	for _, name := range p.Pods {
		u.Pods = append(u.Pods, PodRef{Name: name})
	}
	return in.applied(t, f, u, ""), nil
}

func (in *Injector) applied(t engine.Target, f engine.Fault, u Undo, detail string) engine.Applied {
	b, _ := json.Marshal(u)
	return engine.Applied{ID: f.ID, Kind: f.Kind, Target: t, Fault: f, Backend: Backend, Undo: b, Detail: detail}
}

// Inject creates the fault's objects (or deletes the pod directly when
// Chaos Mesh is absent), waits until Chaos Mesh reports AllInjected and
// returns when the fault took effect (Applied.At) with the per-pod records.
// Calling it again with the same fault id reuses the existing objects.
func (in *Injector) Inject(ctx context.Context, t engine.Target, f engine.Fault) (engine.Applied, error) {
	op := fmt.Sprintf("inject %s %s on %s", f.ID, f.Kind, t.Name())
	p, err := in.Plan(ctx, t, f)
	if err != nil {
		return engine.Applied{}, err
	}
	u := Undo{Method: p.Method, Namespace: p.Namespace, Objects: p.Refs(), OneShot: p.OneShot, PodSelector: in.opts.PodSelectors[t.Arm]}
	if p.OneShot || p.Method == MethodPodDelete {
		for _, name := range p.Pods {
			pod, err := in.kube.CoreV1().Pods(p.Namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return engine.Applied{}, kubeErr(op+": get pod "+p.Namespace+"/"+name, err)
			}
			u.Pods = append(u.Pods, PodRef{Name: name, UID: string(pod.UID), Ready: podReady(pod)})
		}
		if u.PodSelector != "" {
			l, err := in.kube.CoreV1().Pods(p.Namespace).List(ctx, metav1.ListOptions{LabelSelector: u.PodSelector})
			if err != nil {
				return engine.Applied{}, kubeErr(op+": list pods", err)
			}
			for i := range l.Items {
				if l.Items[i].DeletionTimestamp == nil {
					u.LiveBefore++
					if podReady(&l.Items[i]) {
						u.ReadyBefore++
					}
				}
			}
		}
	} else {
		for _, name := range p.Pods {
			u.Pods = append(u.Pods, PodRef{Name: name})
		}
	}
	if p.Method == MethodPodDelete {
		for _, pr := range u.Pods {
			grace := int64(0)
			pre := metav1.Preconditions{UID: (*types.UID)(&pr.UID)}
			err := in.kube.CoreV1().Pods(p.Namespace).Delete(ctx, pr.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace, Preconditions: &pre})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return engine.Applied{}, kubeErr(op+": delete pod "+p.Namespace+"/"+pr.Name, err)
			}
		}
		a := in.applied(t, f, u, fmt.Sprintf("deleted pod %s directly (Chaos Mesh is not installed)", podList(p.Namespace, u.Pods)))
		a.At = in.opts.Clock.Now()
		return a, nil
	}
	for i, o := range p.Objects {
		if err := in.create(ctx, o); err != nil {
			in.cleanup(p.Refs()[:i+1])
			return engine.Applied{}, engine.E(engine.KindOf(err), op, err)
		}
	}
	recs, err := in.waitInjected(ctx, p.Refs())
	if err != nil {
		in.cleanup(p.Refs())
		return engine.Applied{}, engine.E(engine.KindOf(err), op, err)
	}
	u.Records = recs
	in.addRecords(f.ID, recs)
	refs := make([]string, len(p.Refs()))
	for i, r := range p.Refs() {
		refs[i] = r.String()
	}
	a := in.applied(t, f, u, fmt.Sprintf("%s injected on %s: %s", f.Kind, podList(p.Namespace, u.Pods), strings.Join(refs, ", ")))
	a.At = in.opts.Clock.Now()
	return a, nil
}

func podList(ns string, pods []PodRef) string {
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = ns + "/" + p.Name
	}
	return strings.Join(names, ",")
}

// toSend converts o to the unstructured object a create sends (no status,
// no creation timestamp) and names it.
func toSend(o runtime.Object) (*unstructured.Unstructured, ObjectRef, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, ObjectRef{}, engine.E(engine.KindInternal, "encode", err)
	}
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return u, ObjectRef{Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName()}, nil
}

// DryRunCreate submits o to the API server as a server-side dry run with
// strict field validation — schema, defaulting, admission and validating
// webhooks all see it, nothing is persisted — and returns the object the
// server would have stored.
func (in *Injector) DryRunCreate(ctx context.Context, o runtime.Object) (*unstructured.Unstructured, error) {
	u, ref, err := toSend(o)
	if err != nil {
		return nil, err
	}
	got, err := in.dyn.Resource(ref.gvr()).Namespace(ref.Namespace).Create(ctx, u,
		metav1.CreateOptions{FieldManager: "chaosgate", DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict})
	if err != nil {
		return nil, kubeErr("dry-run create "+ref.String(), err)
	}
	return got, nil
}

// create sends one object; an existing object of the same fault is reused.
func (in *Injector) create(ctx context.Context, o runtime.Object) error {
	u, ref, err := toSend(o)
	if err != nil {
		return err
	}
	_, err = in.dyn.Resource(ref.gvr()).Namespace(ref.Namespace).Create(ctx, u, metav1.CreateOptions{FieldManager: "chaosgate"})
	if apierrors.IsAlreadyExists(err) {
		got, gerr := in.dyn.Resource(ref.gvr()).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if gerr != nil {
			return kubeErr("get "+ref.String(), gerr)
		}
		if got.GetLabels()[LabelFault] != u.GetLabels()[LabelFault] || got.GetLabels()[LabelManagedBy] != ManagedBy {
			return engine.E(engine.KindInvalid, "create "+ref.String(), errors.New("an object of that name exists and is not this fault's"))
		}
		if got.GetDeletionTimestamp() != nil {
			return engine.E(engine.KindUnavailable, "create "+ref.String(), errors.New("the object of that name is still being deleted"))
		}
		return nil
	}
	if err != nil {
		return kubeErr("create "+ref.String(), err)
	}
	return nil
}

// cleanup deletes objects after a failed inject, best effort.
func (in *Injector) cleanup(refs []ObjectRef) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, r := range refs {
		_ = in.dyn.Resource(r.gvr()).Namespace(r.Namespace).Delete(ctx, r.Name, metav1.DeleteOptions{})
	}
}

// status reads an object's Chaos Mesh status; nil when it is gone.
func (in *Injector) status(ctx context.Context, r ObjectRef) (*objStatus, error) {
	u, err := in.dyn.Resource(r.gvr()).Namespace(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, kubeErr("get "+r.String(), err)
	}
	var st struct {
		Status cm.ChaosStatus `json:"status"`
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &st); err != nil {
		return nil, engine.E(engine.KindInternal, "decode status of "+r.String(), err)
	}
	return &objStatus{ref: r, st: st.Status, deleting: u.GetDeletionTimestamp() != nil, finalizers: u.GetFinalizers()}, nil
}

type objStatus struct {
	ref        ObjectRef
	st         cm.ChaosStatus
	deleting   bool
	finalizers []string
}

func (s *objStatus) cond(t cm.ChaosConditionType) bool {
	for _, c := range s.st.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (s *objStatus) describe() string {
	var parts []string
	for _, c := range s.st.Conditions {
		parts = append(parts, fmt.Sprintf("%s=%s", c.Type, c.Status))
	}
	if len(parts) == 0 {
		parts = append(parts, "no conditions")
	}
	n, inj := 0, 0
	for _, r := range s.st.Experiment.Records {
		n++
		if r.Phase == cm.Injected {
			inj++
		}
	}
	out := fmt.Sprintf("conditions [%s], %d/%d records injected", strings.Join(parts, " "), inj, n)
	if s.deleting {
		out += fmt.Sprintf(", being deleted, finalizers %v", s.finalizers)
	}
	return out
}

func (s *objStatus) records() []Record {
	var out []Record
	for _, r := range s.st.Experiment.Records {
		rec := Record{Object: s.ref.String(), ID: r.Id, Phase: string(r.Phase), InjectedCount: r.InjectedCount, RecoveredCount: r.RecoveredCount}
		for _, e := range r.Events {
			ev := struct {
				Type      string    `json:"type"`
				Operation string    `json:"operation"`
				Message   string    `json:"message,omitempty"`
				Time      time.Time `json:"time"`
			}{Type: string(e.Type), Operation: string(e.Operation), Message: e.Message}
			if e.Timestamp != nil {
				ev.Time = e.Timestamp.Time
			}
			rec.Events = append(rec.Events, ev)
		}
		out = append(out, rec)
	}
	return out
}

// poll calls check every Poll until it returns true, the timeout passes or
// ctx ends.
func (in *Injector) poll(ctx context.Context, timeout time.Duration, check func() (bool, error)) error {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(in.opts.Poll)
	defer tick.Stop()
	for {
		done, err := check()
		if err != nil || done {
			return err
		}
		select {
		case <-tctx.Done():
			if ctx.Err() != nil {
				return engine.E(engine.KindCanceled, "wait", ctx.Err())
			}
			return errTimeout
		case <-tick.C:
		}
	}
}

var errTimeout = errors.New("timed out")

// waitInjected waits until every object reports AllInjected.
func (in *Injector) waitInjected(ctx context.Context, refs []ObjectRef) ([]Record, error) {
	var recs []Record
	for _, r := range refs {
		var last *objStatus
		err := in.poll(ctx, in.opts.InjectTimeout, func() (bool, error) {
			s, err := in.status(ctx, r)
			if err != nil {
				return false, err
			}
			if s == nil {
				return false, engine.E(engine.KindUnavailable, "wait for AllInjected", fmt.Errorf("%s disappeared before it was injected", r))
			}
			last = s
			return s.cond(cm.ConditionAllInjected), nil
		})
		if errors.Is(err, errTimeout) {
			desc := "never observed"
			if last != nil {
				desc = last.describe()
			}
			return nil, engine.E(engine.KindUnavailable, "wait for AllInjected", fmt.Errorf(
				"%s not injected after %s (%s); hint: is chaos-controller-manager running and do its selectors match the pods?", r, in.opts.InjectTimeout, desc))
		}
		if err != nil {
			return nil, err
		}
		recs = append(recs, last.records()...)
	}
	return recs, nil
}

// Recover undoes a fault from its Applied alone (safe after a crash, and
// idempotent): it deletes the fault's objects and waits until Chaos Mesh
// reports AllRecovered (the object's finalizer is released); for a pod kill
// it waits for the killed pods' replacements instead.
func (in *Injector) Recover(ctx context.Context, a engine.Applied) error {
	op := fmt.Sprintf("recover %s %s on %s", a.ID, a.Kind, a.Target.Name())
	u, err := UndoOf(a)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range u.Objects {
		err := in.dyn.Resource(r.gvr()).Namespace(r.Namespace).Delete(ctx, r.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, kubeErr("delete "+r.String(), err))
		}
	}
	if len(errs) > 0 {
		return engine.E(engine.KindOf(errs[0]), op, errors.Join(errs...))
	}
	if !u.OneShot {
		for _, r := range u.Objects {
			last, err := in.waitRecovered(ctx, r)
			if last != nil && last.cond(cm.ConditionAllRecovered) {
				in.addRecords(a.ID, last.records())
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
	} else if err := in.waitReplaced(ctx, u); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return engine.E(engine.KindOf(errs[0]), op, errors.Join(errs...))
	}
	return nil
}

// waitRecovered waits until the object is gone or reports AllRecovered; it
// returns the last status it saw.
func (in *Injector) waitRecovered(ctx context.Context, r ObjectRef) (*objStatus, error) {
	var last *objStatus
	err := in.poll(ctx, in.opts.RecoverTimeout, func() (bool, error) {
		s, err := in.status(ctx, r)
		if err != nil {
			return false, err
		}
		if s == nil {
			return true, nil
		}
		last = s
		return s.cond(cm.ConditionAllRecovered) && !s.deleting, nil
	})
	if errors.Is(err, errTimeout) || (err != nil && engine.KindOf(err) == engine.KindCanceled) {
		desc := "never observed"
		if last != nil {
			desc = last.describe()
		}
		return last, engine.E(engine.KindUnavailable, "wait for AllRecovered", fmt.Errorf(
			"%s was deleted but Chaos Mesh has not reported AllRecovered (%s); the fault may still be in effect; hint: check chaos-controller-manager; the object's spec.duration ends it on its own", r, desc))
	}
	return last, err
}

// waitReplaced waits until every killed pod is gone and replaced: a pod of
// the same name with a new UID (StatefulSet), or, with a pod selector, as
// many live pods as before none of which is a killed one. Readiness is the
// confirmation's and the steady state's to judge: under load a readiness
// probe may flap on pods the kill never touched.
func (in *Injector) waitReplaced(ctx context.Context, u Undo) error {
	var last string
	err := in.poll(ctx, in.opts.RecoverTimeout, func() (bool, error) {
		ok, desc, err := in.replaced(ctx, u)
		last = desc
		return ok, err
	})
	if errors.Is(err, errTimeout) || (err != nil && engine.KindOf(err) == engine.KindCanceled) {
		return engine.E(engine.KindUnavailable, "wait for replacement", fmt.Errorf(
			"killed pod %s not replaced (%s); hint: is the workload's controller running?", podList(u.Namespace, u.Pods), last))
	}
	return err
}

// replacement is what became of killed pods.
type replacement struct {
	// oldAlive names a killed pod still running with its old UID.
	oldAlive string
	// back counts live pods that are not killed ones; want is how many
	// there must be; ready counts the ready ones among them, wantReady how
	// many were ready before the kill.
	back, want, ready, wantReady int
	// notReady says why the first replacement that is not ready is not
	// (its phase and its container's waiting reason).
	notReady string
}

func (r replacement) done() bool { return r.oldAlive == "" && r.back >= r.want }

func (r replacement) String() string {
	if r.oldAlive != "" {
		return fmt.Sprintf("pod %s still runs with its old UID", r.oldAlive)
	}
	s := fmt.Sprintf("%d of %d pods back, %d ready", r.back, r.want, r.ready)
	if r.wantReady > 0 {
		s += fmt.Sprintf(" (%d were before the kill)", r.wantReady)
	}
	if r.notReady != "" && r.ready < r.wantReady {
		s += "; " + r.notReady
	}
	return s
}

// replaced reports whether the killed pods were replaced, and how.
func (in *Injector) replaced(ctx context.Context, u Undo) (bool, string, error) {
	r, err := in.replacementOf(ctx, u)
	if err != nil {
		return false, "", err
	}
	return r.done(), r.String(), nil
}

func (in *Injector) replacementOf(ctx context.Context, u Undo) (replacement, error) {
	killed := map[string]bool{}
	for _, p := range u.Pods {
		killed[p.UID] = true
	}
	var live []corev1.Pod
	if u.PodSelector != "" {
		l, err := in.kube.CoreV1().Pods(u.Namespace).List(ctx, metav1.ListOptions{LabelSelector: u.PodSelector})
		if err != nil {
			return replacement{}, kubeErr("list pods", err)
		}
		live = l.Items
	} else {
		for _, p := range u.Pods {
			pod, err := in.kube.CoreV1().Pods(u.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				continue
			}
			if err != nil {
				return replacement{}, kubeErr("get pod", err)
			}
			live = append(live, *pod)
		}
	}
	r := replacement{want: len(u.Pods)}
	for _, p := range u.Pods {
		if p.Ready {
			r.wantReady++
		}
	}
	if u.PodSelector != "" {
		r.want, r.wantReady = u.LiveBefore, u.ReadyBefore
	}
	for i := range live {
		p := &live[i]
		if killed[string(p.UID)] && p.DeletionTimestamp == nil {
			r.oldAlive = p.Namespace + "/" + p.Name
			continue
		}
		if killed[string(p.UID)] || p.DeletionTimestamp != nil {
			continue
		}
		r.back++
		if podReady(p) {
			r.ready++
		} else if r.notReady == "" {
			r.notReady = notReadyReason(p)
		}
	}
	return r, nil
}

// Confirm checks that the fault took effect. A pod kill is confirmed when
// the killed pod is gone and replaced (ready, or — with no kubelet — at
// least recreated: the measurement says which); a Chaos Mesh fault when
// every per-pod record is Injected.
func (in *Injector) Confirm(ctx context.Context, a engine.Applied) engine.ConfirmResult {
	u, err := UndoOf(a)
	if err != nil {
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: err.Error()}
	}
	if u.OneShot {
		return in.confirmKill(ctx, u)
	}
	total, injected := 0, 0
	for _, r := range u.Objects {
		s, err := in.status(ctx, r)
		if err != nil || s == nil {
			return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: fmt.Sprintf("cannot read %s: %v", r, err)}
		}
		for _, rec := range s.st.Experiment.Records {
			total++
			if rec.Phase == cm.Injected {
				injected++
			}
		}
	}
	m := fmt.Sprintf("Chaos Mesh records: %d/%d injected on %d object(s)", injected, total, len(u.Objects))
	switch {
	case total == 0:
		return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: m + " (no records)"}
	case injected == total:
		return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: m}
	default:
		return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: m}
	}
}

func (in *Injector) confirmKill(ctx context.Context, u Undo) engine.ConfirmResult {
	pods := podList(u.Namespace, u.Pods)
	deadline := in.opts.Clock.Now().Add(in.opts.ConfirmTimeout)
	for {
		r, err := in.replacementOf(ctx, u)
		if err != nil {
			return engine.ConfirmResult{Outcome: engine.Inconclusive, Measurement: fmt.Sprintf("cannot read the pods: %v", err)}
		}
		late := in.opts.Clock.Now().After(deadline) || ctx.Err() != nil
		switch {
		case r.done() && r.ready >= r.want:
			return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: fmt.Sprintf("killed %s; replaced, %d of %d pods ready", pods, r.ready, r.want)}
		case r.done() && late && r.wantReady == 0:
			return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: fmt.Sprintf("killed %s; recreated with a new UID, %d of %d pods ready (none was ready before the kill: no kubelet runs them)", pods, r.ready, r.want)}
		case r.done() && late:
			return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: fmt.Sprintf("killed %s; replaced, not all ready within %s (%s)", pods, in.opts.ConfirmTimeout, r)}
		case r.oldAlive == "" && late:
			return engine.ConfirmResult{Outcome: engine.Confirmed, Measurement: fmt.Sprintf("killed %s; deleted, not replaced and ready within %s (%s)", pods, in.opts.ConfirmTimeout, r)}
		case late:
			return engine.ConfirmResult{Outcome: engine.Mismatch, Measurement: r.String()}
		}
		select {
		case <-ctx.Done():
		case <-time.After(in.opts.Poll):
		}
	}
}

// notReadyReason says why a pod is not ready: its phase, where it runs and
// its first container's waiting or terminated reason.
func notReadyReason(p *corev1.Pod) string {
	s := fmt.Sprintf("%s is %s", p.Name, p.Status.Phase)
	if p.Spec.NodeName == "" {
		s += ", not scheduled"
	} else {
		s += " on " + p.Spec.NodeName
	}
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			return s + fmt.Sprintf(", container %s waiting: %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
		case cs.State.Terminated != nil:
			return s + fmt.Sprintf(", container %s terminated: %s", cs.Name, cs.State.Terminated.Reason)
		}
	}
	return s
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Pause sets (or clears) Chaos Mesh's experiment.chaos-mesh.org/pause
// annotation on every object of the fault and waits until the controller
// reports the Paused condition accordingly. A pod kill cannot be paused.
func (in *Injector) Pause(ctx context.Context, a engine.Applied, paused bool) error {
	op := fmt.Sprintf("pause %s", a.ID)
	if !paused {
		op = fmt.Sprintf("resume %s", a.ID)
	}
	u, err := UndoOf(a)
	if err != nil {
		return err
	}
	if u.OneShot || u.Method != MethodChaosMesh {
		return engine.E(engine.KindInvalid, op, fmt.Errorf("a %s cannot be paused: it is one-shot", a.Kind))
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{cm.PauseAnnotationKey: fmt.Sprint(paused)}}})
	for _, r := range u.Objects {
		if _, err := in.dyn.Resource(r.gvr()).Namespace(r.Namespace).Patch(ctx, r.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "chaosgate"}); err != nil {
			return engine.E(engine.KindOf(kubeErr("", err)), op, kubeErr("annotate "+r.String(), err))
		}
	}
	for _, r := range u.Objects {
		var last *objStatus
		err := in.poll(ctx, in.opts.InjectTimeout, func() (bool, error) {
			s, err := in.status(ctx, r)
			if err != nil || s == nil {
				return false, err
			}
			last = s
			return s.cond(cm.ConditionPaused) == paused, nil
		})
		if errors.Is(err, errTimeout) {
			desc := "never observed"
			if last != nil {
				desc = last.describe()
			}
			return engine.E(engine.KindUnavailable, op, fmt.Errorf("%s: Chaos Mesh did not report Paused=%v after %s (%s)", r, paused, in.opts.InjectTimeout, desc))
		}
		if err != nil {
			return engine.E(engine.KindOf(err), op, err)
		}
	}
	return nil
}

func kubeErr(op string, err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return engine.E(engine.KindInvalid, op, fmt.Errorf("%w; hint: grant the ServiceAccount the verbs in deploy/serve/rbac.yaml", err))
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return engine.E(engine.KindInvalid, op, err)
	case apierrors.IsNotFound(err):
		return engine.E(engine.KindNotFound, op, err)
	default:
		return engine.E(engine.KindUnavailable, op, err)
	}
}
