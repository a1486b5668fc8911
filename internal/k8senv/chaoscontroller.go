package k8senv

import (
	"context"
	"sync"
	"time"

	cm "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

var (
	podChaosGVR     = schema.GroupVersionResource{Group: "chaos-mesh.org", Version: "v1alpha1", Resource: "podchaos"}
	networkChaosGVR = schema.GroupVersionResource{Group: "chaos-mesh.org", Version: "v1alpha1", Resource: "networkchaos"}
	stressChaosGVR  = schema.GroupVersionResource{Group: "chaos-mesh.org", Version: "v1alpha1", Resource: "stresschaos"}
)

// chaosFinalizer is the finalizer Chaos Mesh puts on every chaos object so
// that deleting it waits for recovery.
const chaosFinalizer = "chaos-mesh/records"

// ChaosController is a small test controller that plays Chaos Mesh's
// chaos-controller-manager on one namespace of the real
// API server: it adds the records finalizer, selects the pods named in
// selector.pods, writes per-pod records and the AllInjected / Paused /
// AllRecovered conditions with a plain update (these CRDs have no status
// subresource), kills pods for pod-kill, and on deletion recovers and
// releases the finalizer. It also plays the StatefulSet controller: a
// killed pod is recreated under the same name with a new UID.
type ChaosController struct {
	dyn  dynamic.Interface
	kube kubernetes.Interface
	ns   string

	mu sync.Mutex
	// neverInject leaves new objects without AllInjected.
	neverInject bool
	// neverRecover ignores deletions (the finalizer stays forever).
	neverRecover bool
	// noReplace does not recreate killed pods.
	noReplace bool
	// effect makes injected objects take real effect (nil: status only).
	effect Effect

	stop chan struct{}
	done chan struct{}
}

// StartChaosController starts the test controller on namespace ns; call Stop
// (or pass a Cleanup-capable t) to end it.
func StartChaosController(t interface{ Cleanup(func()) }, dyn dynamic.Interface, kube kubernetes.Interface, ns string) *ChaosController {
	f := &ChaosController{dyn: dyn, kube: kube, ns: ns, stop: make(chan struct{}), done: make(chan struct{})}
	go f.loop()
	if t != nil {
		t.Cleanup(f.Stop)
	}
	return f
}

// Set changes the controller's behaviour under its lock.
func (f *ChaosController) Set(neverInject, neverRecover, noReplace bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.neverInject, f.neverRecover, f.noReplace = neverInject, neverRecover, noReplace
}

// Effect is the part of Chaos Mesh's daemon a test harness can play: it
// makes an injected chaos object take real effect on the pods it selects
// (Apply) and undoes it (Revert, on recovery or pause). Either may be
// called again for the same object; it must be idempotent.
type Effect interface {
	Apply(ctx context.Context, obj *unstructured.Unstructured) error
	Revert(ctx context.Context, obj *unstructured.Unstructured) error
}

// SetEffect makes the controller apply e to every object it injects (and
// revert it on recovery and pause).
func (f *ChaosController) SetEffect(e Effect) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.effect = e
}

// Stop ends the controller loop and waits for it.
func (f *ChaosController) Stop() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
}

func (f *ChaosController) loop() {
	defer close(f.done)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-tick.C:
		}
		// A loaded API server (a 2-core CI host running other packages'
		// tests) can take seconds per request: a short deadline would cut
		// a reconcile between its effect and its status update, and the
		// object would never report AllInjected.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		for _, gvr := range []schema.GroupVersionResource{podChaosGVR, networkChaosGVR, stressChaosGVR} {
			l, err := f.dyn.Resource(gvr).Namespace(f.ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			for i := range l.Items {
				f.reconcile(ctx, gvr, &l.Items[i])
			}
		}
		cancel()
	}
}

func (f *ChaosController) reconcile(ctx context.Context, gvr schema.GroupVersionResource, u *unstructured.Unstructured) {
	f.mu.Lock()
	neverInject, neverRecover, noReplace, effect := f.neverInject, f.neverRecover, f.noReplace, f.effect
	f.mu.Unlock()
	action, _, _ := unstructured.NestedString(u.Object, "spec", "action")
	apply := func(on bool) {
		if effect == nil || action == string(cm.PodKillAction) {
			return
		}
		if on {
			_ = effect.Apply(ctx, u)
		} else {
			_ = effect.Revert(ctx, u)
		}
	}

	pods := map[string][]string{}
	if p, ok, _ := unstructured.NestedStringSlice(u.Object, "spec", "selector", "pods", f.ns); ok {
		pods[f.ns] = p
	}
	var st cm.ChaosStatus
	if m, ok, _ := unstructured.NestedMap(u.Object, "status"); ok {
		_ = runtime.DefaultUnstructuredConverter.FromUnstructured(m, &st)
	}
	now := metav1.Now()
	setCond := func(t cm.ChaosConditionType, v bool) {
		s := corev1.ConditionFalse
		if v {
			s = corev1.ConditionTrue
		}
		for i := range st.Conditions {
			if st.Conditions[i].Type == t {
				st.Conditions[i].Status = s
				return
			}
		}
		st.Conditions = append(st.Conditions, cm.ChaosCondition{Type: t, Status: s})
	}
	setPhase := func(p cm.Phase, op cm.RecordEventOperation) {
		for _, r := range st.Experiment.Records {
			if r.Phase == p {
				continue
			}
			r.Phase = p
			if p == cm.Injected {
				r.InjectedCount++
			} else {
				r.RecoveredCount++
			}
			r.Events = append(r.Events, cm.RecordEvent{Type: cm.TypeSucceeded, Operation: op, Timestamp: &now})
		}
	}
	changed := false
	switch {
	case u.GetDeletionTimestamp() != nil:
		if neverRecover {
			return
		}
		apply(false)
		setPhase(cm.NotInjected, cm.Recover)
		setCond(cm.ConditionAllInjected, false)
		setCond(cm.ConditionAllRecovered, true)
		var fins []string
		for _, x := range u.GetFinalizers() {
			if x != chaosFinalizer {
				fins = append(fins, x)
			}
		}
		u.SetFinalizers(fins)
		changed = true
	case len(st.Experiment.Records) == 0:
		if neverInject {
			if !hasFinalizer(u) {
				u.SetFinalizers(append(u.GetFinalizers(), chaosFinalizer))
				changed = true
			}
			break
		}
		if !hasFinalizer(u) {
			u.SetFinalizers(append(u.GetFinalizers(), chaosFinalizer))
		}
		for _, p := range pods[f.ns] {
			st.Experiment.Records = append(st.Experiment.Records, &cm.Record{Id: f.ns + "/" + p, SelectorKey: ".", Phase: cm.NotInjected})
		}
		st.Experiment.DesiredPhase = cm.RunningPhase
		setPhase(cm.Injected, cm.Apply)
		setCond(cm.ConditionSelected, true)
		setCond(cm.ConditionAllInjected, true)
		setCond(cm.ConditionAllRecovered, false)
		setCond(cm.ConditionPaused, false)
		if action == string(cm.PodKillAction) {
			for _, p := range pods[f.ns] {
				f.killAndReplace(ctx, p, noReplace)
			}
		}
		apply(true)
		changed = true
	default:
		paused := u.GetAnnotations()[cm.PauseAnnotationKey] == "true"
		isPaused := false
		for _, c := range st.Conditions {
			if c.Type == cm.ConditionPaused && c.Status == corev1.ConditionTrue {
				isPaused = true
			}
		}
		if paused != isPaused && action != string(cm.PodKillAction) {
			apply(!paused)
			if paused {
				setPhase(cm.NotInjected, cm.Recover)
				st.Experiment.DesiredPhase = cm.StoppedPhase
			} else {
				setPhase(cm.Injected, cm.Apply)
				st.Experiment.DesiredPhase = cm.RunningPhase
			}
			setCond(cm.ConditionPaused, paused)
			setCond(cm.ConditionAllInjected, !paused)
			setCond(cm.ConditionAllRecovered, paused)
			changed = true
		}
	}
	if !changed {
		return
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st)
	if err != nil {
		return
	}
	u.Object["status"] = m
	_, _ = f.dyn.Resource(gvr).Namespace(u.GetNamespace()).Update(ctx, u, metav1.UpdateOptions{})
}

func hasFinalizer(u *unstructured.Unstructured) bool {
	for _, x := range u.GetFinalizers() {
		if x == chaosFinalizer {
			return true
		}
	}
	return false
}

// killAndReplace deletes a pod as pod-kill does and recreates it under the
// same name, as a StatefulSet controller would (no kubelet: it stays
// Pending).
func (f *ChaosController) killAndReplace(ctx context.Context, name string, noReplace bool) {
	old, err := f.kube.CoreV1().Pods(f.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return
	}
	grace := int64(0)
	if err := f.kube.CoreV1().Pods(f.ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil && !apierrors.IsNotFound(err) {
		return
	}
	if noReplace {
		return
	}
	repl := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns, Labels: old.Labels}, Spec: old.Spec}
	for range 50 {
		if _, err := f.kube.CoreV1().Pods(f.ns).Create(ctx, repl, metav1.CreateOptions{}); err == nil || !apierrors.IsAlreadyExists(err) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
