package k8senv

import (
	"context"
	"fmt"
	"path/filepath"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ArgoRolloutsModuleVersion is the github.com/argoproj/argo-rollouts release
// whose manifests/crds the harness installs (the Rollout CRD).
const ArgoRolloutsModuleVersion = "v1.8.5"

// InstallArgoRolloutCRDs installs Argo Rollouts' Rollout and AnalysisRun
// CRDs, taken from the argo-rollouts module zip, and waits until they are
// established. No Argo controller runs: tests write a Rollout's status as
// the controller would.
func (e *Env) InstallArgoRolloutCRDs(ctx context.Context) error {
	dir, err := ModuleDir(ctx, "github.com/argoproj/argo-rollouts@"+ArgoRolloutsModuleVersion)
	if err != nil {
		return err
	}
	for _, f := range []string{"rollout-crd.yaml", "analysis-run-crd.yaml", "analysis-template-crd.yaml"} {
		if err := e.ApplyCRDFile(ctx, filepath.Join(dir, "manifests", "crds", f)); err != nil {
			return err
		}
	}
	return nil
}

// RolloutFixture is an Argo Rollout in the middle of an update, as the Argo
// Rollouts controller leaves it at a paused canary step: a canary
// ReplicaSet (revision 3) and a stable one (revision 2), both owned by the
// Rollout and labelled rollouts-pod-template-hash, their pods (Running and
// Ready, with the image IDs a kubelet would report), and the Rollout's
// status.currentPodHash and status.stableRS.
type RolloutFixture struct {
	Namespace, Name        string
	CanaryHash, StableHash string
	CanaryPods, StablePods int
	// CanaryImage and StableImage are the pod templates' images;
	// CanaryImageID and StableImageID what the pods' container statuses
	// report (repo@sha256:...).
	CanaryImage, CanaryImageID string
	StableImage, StableImageID string
}

// PodLabels returns the labels of the fixture's pods by pod name, canary
// ReplicaSet first: "<name>-<hash>-<i>".
func (f RolloutFixture) PodLabels() map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, rs := range []struct {
		hash string
		n    int
	}{{f.CanaryHash, f.CanaryPods}, {f.StableHash, f.StablePods}} {
		for i := range rs.n {
			out[fmt.Sprintf("%s-%s-%d", f.Name, rs.hash, i)] = map[string]string{"app": f.Name, rolloutHashLabel: rs.hash}
		}
	}
	return out
}

const rolloutHashLabel = "rollouts-pod-template-hash"

var rolloutGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}

// SeedRollout creates the fixture's Rollout, ReplicaSets and pods (the
// Argo Rollout CRDs must be installed) and returns the Rollout as stored.
func (e *Env) SeedRollout(ctx context.Context, f RolloutFixture) (*unstructured.Unstructured, error) {
	ro := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
		"metadata": map[string]any{"name": f.Name, "namespace": f.Namespace, "annotations": map[string]any{"rollout.argoproj.io/revision": "3"}},
		"spec": map[string]any{
			"replicas": int64(f.CanaryPods + f.StablePods),
			"selector": map[string]any{"matchLabels": map[string]any{"app": f.Name}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{"app": f.Name}},
				"spec":     map[string]any{"containers": []any{map[string]any{"name": "main", "image": f.CanaryImage}}},
			},
			"strategy": map[string]any{"canary": map[string]any{"steps": []any{map[string]any{"setWeight": int64(25)}, map[string]any{"pause": map[string]any{}}}}},
		},
	}}
	got, err := e.Dynamic.Resource(rolloutGVR).Namespace(f.Namespace).Create(ctx, ro, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("k8senv: create Rollout %s: %w", f.Name, err)
	}
	if err := unstructured.SetNestedMap(got.Object, map[string]any{"currentPodHash": f.CanaryHash, "stableRS": f.StableHash, "phase": "Paused"}, "status"); err != nil {
		return nil, err
	}
	if got, err = e.Dynamic.Resource(rolloutGVR).Namespace(f.Namespace).UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("k8senv: Rollout %s status: %w", f.Name, err)
	}
	owner := metav1.OwnerReference{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: f.Name, UID: got.GetUID()}
	labels := f.PodLabels()
	for _, rs := range []struct {
		hash, rev, image, imageID string
		n                         int
	}{{f.CanaryHash, "3", f.CanaryImage, f.CanaryImageID, f.CanaryPods}, {f.StableHash, "2", f.StableImage, f.StableImageID, f.StablePods}} {
		lbl := map[string]string{"app": f.Name, rolloutHashLabel: rs.hash}
		n := int32(rs.n)
		obj := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: f.Name + "-" + rs.hash, Namespace: f.Namespace, Labels: lbl,
			Annotations: map[string]string{"rollout.argoproj.io/revision": rs.rev}, OwnerReferences: []metav1.OwnerReference{owner}},
			Spec: appsv1.ReplicaSetSpec{Replicas: &n, Selector: &metav1.LabelSelector{MatchLabels: lbl},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbl},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: rs.image}}}}}}
		if _, err := e.Client.AppsV1().ReplicaSets(f.Namespace).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("k8senv: create ReplicaSet %s: %w", obj.Name, err)
		}
		for i := range rs.n {
			name := fmt.Sprintf("%s-%s-%d", f.Name, rs.hash, i)
			if err := e.RunningPod(ctx, f.Namespace, name, labels[name], rs.image, rs.imageID); err != nil {
				return nil, err
			}
		}
	}
	return got, nil
}

// RunningPod creates a pod and writes the status a kubelet would report
// once it runs: Running, Ready, and imageID (when not empty) as its
// container's image ID. No kubelet runs it.
func (e *Env) RunningPod(ctx context.Context, namespace, name string, labels map[string]string, image, imageID string) error {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: image}}}}
	p, err := e.Client.CoreV1().Pods(namespace).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("k8senv: create pod %s: %w", name, err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if imageID != "" {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", Image: image, ImageID: imageID, Ready: true}}
	}
	if _, err := e.Client.CoreV1().Pods(namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("k8senv: pod %s status: %w", name, err)
	}
	return nil
}
