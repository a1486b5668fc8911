package k8s

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/chaosgate/chaosgate/engine"
)

// ResolveRollout resolves an Argo Rollout into the run's two arms: the
// canary is the ReplicaSet of status.currentPodHash (the revision being
// rolled out), the control the ReplicaSet of status.stableRS (the revision
// serving before it) — the same two Argo Rollouts' analysis calls Latest
// and Stable. Both must be ReplicaSets the Rollout owns. A Rollout that is
// not in the middle of an update (both hashes equal) has no canary to
// judge, and says so.
func (r *Resolver) ResolveRollout(ctx context.Context, namespace, name string) (Pair, error) {
	op := fmt.Sprintf("resolve Rollout %s/%s", namespace, name)
	if namespace == "" || name == "" {
		return Pair{}, engine.E(engine.KindInvalid, op, errors.New("a Rollout needs a namespace and a name; hint: --namespace NS --rollout NAME"))
	}
	if r.dynamic == nil {
		return Pair{}, engine.E(engine.KindInvalid, op, errors.New("no dynamic client to read rollouts.argoproj.io"))
	}
	ro, err := r.dynamic.Resource(RolloutResource).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return Pair{}, engine.E(engine.KindNotFound, op, fmt.Errorf("%w; hint: check the name (kubectl get rollouts.argoproj.io -n %s) and that Argo Rollouts' CRDs are installed", err, namespace))
		}
		return Pair{}, apiErr(op, err)
	}
	current, _, _ := unstructured.NestedString(ro.Object, "status", "currentPodHash")
	stable, _, _ := unstructured.NestedString(ro.Object, "status", "stableRS")
	if current == "" || stable == "" {
		return Pair{}, engine.E(engine.KindInvalid, op, fmt.Errorf("status has no currentPodHash and stableRS yet (current %q, stable %q); hint: wait until the Argo Rollouts controller has reconciled the Rollout", current, stable))
	}
	if current == stable {
		return Pair{}, engine.E(engine.KindInvalid, op, fmt.Errorf("not being updated: its current and stable ReplicaSets are both %s, so there is no canary to compare; hint: run while an update is in progress (a canary step, e.g. from the Rollout's analysis)", current))
	}
	rsl, err := r.client.AppsV1().ReplicaSets(namespace).List(ctx, metav1.ListOptions{LabelSelector: fmt.Sprintf("%s in (%s,%s)", RolloutHashLabel, current, stable)})
	if err != nil {
		return Pair{}, apiErr(op+": list replicasets", err)
	}
	ref := fmt.Sprintf("Rollout/%s/%s", namespace, name)
	byHash := map[string]*appsv1.ReplicaSet{}
	for i := range rsl.Items {
		rs := &rsl.Items[i]
		if ownedBy(rs.OwnerReferences, "Rollout", name, string(ro.GetUID())) {
			byHash[rs.Labels[RolloutHashLabel]] = rs
		}
	}
	var pair Pair
	for _, arm := range []struct {
		arm  engine.Arm
		hash string
		dst  **Workload
	}{{engine.ArmCanary, current, &pair.Canary}, {engine.ArmControl, stable, &pair.Control}} {
		rs := byHash[arm.hash]
		if rs == nil {
			return Pair{}, engine.E(engine.KindNotFound, op, fmt.Errorf("no ReplicaSet owned by %s carries %s=%s (its %s); hint: the controller may have scaled it away — rerun on the next update", ref, RolloutHashLabel, arm.hash, arm.arm))
		}
		w := fromRolloutReplicaSet(arm.arm, rs, ref)
		pods, err := r.client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: w.PodSelector})
		if err != nil {
			return Pair{}, apiErr(op+": list pods", err)
		}
		w.Pods, w.Digests = podsOf(pods.Items, w.Kind, w.Images)
		*arm.dst = w
	}
	return pair, nil
}

func ownedBy(refs []metav1.OwnerReference, kind, name, uid string) bool {
	for _, o := range refs {
		if o.Kind == kind && o.Name == name && (uid == "" || string(o.UID) == uid) {
			return true
		}
	}
	return false
}

func fromRolloutReplicaSet(arm engine.Arm, rs *appsv1.ReplicaSet, rollout string) *Workload {
	w := &Workload{Arm: arm, Kind: ReplicaSet, Namespace: rs.Namespace, Name: rs.Name, Rollout: rollout,
		Replicas: 1, ReadyReplicas: rs.Status.ReadyReplicas, Revision: rs.Annotations[RolloutRevisionAnnotation]}
	if rs.Spec.Replicas != nil {
		w.Replicas = *rs.Spec.Replicas
	}
	if w.Revision == "" {
		w.Revision = rs.Labels[RolloutHashLabel]
	}
	w.PodSelector = selectorString(rs.Spec.Selector)
	w.Images = templateImages(&rs.Spec.Template)
	return w
}
