package k8s

import (
	"context"
	"errors"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/chaosgate/chaosgate/engine"
)

// Owned lists every PodChaos, NetworkChaos, TimeChaos and StressChaos chaosgate created, across
// all namespaces — or, when chaosgate may not list cluster-wide (the
// least-privilege Role of deploy/serve is bound in the target namespace
// only), in the namespaces of its arms. A cluster without Chaos Mesh has
// none.
func (in *Injector) Owned(ctx context.Context) ([]unstructured.Unstructured, error) {
	ok, err := in.HasChaosMesh(ctx)
	if err != nil || !ok {
		return nil, err
	}
	var out []unstructured.Unstructured
	for _, gvr := range []struct {
		r    ObjectRef
		name string
	}{{ObjectRef{Kind: "PodChaos"}, "podchaos"}, {ObjectRef{Kind: "NetworkChaos"}, "networkchaos"}, {ObjectRef{Kind: "TimeChaos"}, "timechaos"}, {ObjectRef{Kind: "StressChaos"}, "stresschaos"}} {
		l, err := in.dyn.Resource(gvr.r.gvr()).Namespace(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: OwnedSelector})
		if apierrors.IsForbidden(err) && len(in.opts.Namespaces) > 0 {
			items, nerr := in.ownedIn(ctx, gvr.r, gvr.name)
			if nerr != nil {
				return nil, nerr
			}
			out = append(out, items...)
			continue
		}
		if err != nil && (gvr.name == "timechaos" || gvr.name == "stresschaos") && apierrors.IsNotFound(err) {
			continue // a Chaos Mesh install without that CRD: nothing of it to reap
		}
		if err != nil {
			return nil, kubeErr("list "+gvr.name, err)
		}
		out = append(out, l.Items...)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.GetNamespace() != b.GetNamespace() {
			return a.GetNamespace() < b.GetNamespace()
		}
		return a.GetName() < b.GetName()
	})
	return out, nil
}

// ownedIn lists chaosgate-owned objects of one kind in each arm's
// namespace.
func (in *Injector) ownedIn(ctx context.Context, r ObjectRef, name string) ([]unstructured.Unstructured, error) {
	seen := map[string]bool{}
	var out []unstructured.Unstructured
	for _, ns := range in.opts.Namespaces {
		if ns == "" || seen[ns] {
			continue
		}
		seen[ns] = true
		l, err := in.dyn.Resource(r.gvr()).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: OwnedSelector})
		if err != nil {
			return nil, kubeErr("list "+name+" in "+ns, err)
		}
		out = append(out, l.Items...)
	}
	return out, nil
}

// ReapOrphans deletes every chaosgate-owned Chaos Mesh object whose run is
// not live (live(runID) false) and waits, up to the recover timeout, until
// Chaos Mesh has recovered it. It is the cluster-side twin of engine.Reap:
// it also finds objects whose journal is gone (another machine, a lost
// disk). live may be nil: then every owned object is an orphan.
func (in *Injector) ReapOrphans(ctx context.Context, live func(runID string) bool) ([]engine.Reaped, error) {
	objs, err := in.Owned(ctx)
	if err != nil {
		return nil, err
	}
	var out []engine.Reaped
	var errs []error
	var pending []ObjectRef
	var idx []int
	for _, o := range objs {
		run := o.GetLabels()[LabelRun]
		if live != nil && live(run) {
			continue
		}
		ref := ObjectRef{Kind: o.GetKind(), Namespace: o.GetNamespace(), Name: o.GetName()}
		r := engine.Reaped{Run: run, What: "fault", ID: o.GetAnnotations()[AnnotationFaultID], Kind: o.GetLabels()[LabelKind], Target: ref.String()}
		err := in.dyn.Resource(ref.gvr()).Namespace(ref.Namespace).Delete(ctx, ref.Name, metav1.DeleteOptions{})
		switch {
		case apierrors.IsNotFound(err):
			r.Result = "gone"
		case err != nil:
			r.Result = "failed: " + err.Error()
			errs = append(errs, kubeErr("delete "+ref.String(), err))
		default:
			pending = append(pending, ref)
			idx = append(idx, len(out))
		}
		out = append(out, r)
	}
	for i, ref := range pending {
		if _, err := in.waitRecovered(ctx, ref); err != nil {
			out[idx[i]].Result = "failed: " + err.Error()
			errs = append(errs, err)
			continue
		}
		out[idx[i]].Result = "recovered"
	}
	if len(errs) > 0 {
		return out, engine.E(engine.KindOf(errs[0]), "reap orphaned Chaos Mesh objects", errors.Join(errs...))
	}
	return out, nil
}

// LiveRuns returns a live(runID) function for ReapOrphans from the runs
// holding their journal lock in dataDir, plus the caller's own run.
func LiveRuns(dataDir, self string) (func(string) bool, error) {
	runs, err := engine.ActiveRuns(dataDir)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	if self != "" {
		set[LabelValue(self)] = true
	}
	for _, r := range runs {
		set[LabelValue(r.Run)] = true
	}
	return func(run string) bool { return set[run] }, nil
}
