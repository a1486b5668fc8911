// Package k8s finds where the system under test runs on Kubernetes: the
// stable (control) and canary workloads — a Deployment or StatefulSet per
// arm chosen by namespace and label selectors, or the canary and stable
// ReplicaSets of one Argo Rollout — their pods, and the revision they run:
// the subject of the evidence record. The blast-radius budget is computed
// from the workloads' real replica counts.
//
// It needs only get/list on pods, deployments, statefulsets, and for a
// Rollout, replicasets and rollouts.argoproj.io.
package k8s

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/chaosgate/chaosgate/engine"
	"github.com/chaosgate/chaosgate/scenarios"
)

// HTTPPortName is the name of the container port of a pod's HTTP API
// (deploy/aggregator names it so), which probes and load dial.
const HTTPPortName = "http"

// RevisionAnnotation is the Deployment annotation holding its revision.
const RevisionAnnotation = "deployment.kubernetes.io/revision"

// Argo Rollouts names: the label Argo adds to a Rollout's ReplicaSets and
// pods (what its analysis args' podTemplateHashValue sends), and the
// revision annotation of the Rollout and its ReplicaSets.
const (
	RolloutHashLabel          = "rollouts-pod-template-hash"
	RolloutRevisionAnnotation = "rollout.argoproj.io/revision"
)

// RolloutResource is the Argo Rollouts Rollout resource.
var RolloutResource = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}

// WorkloadKind is the kind of a workload controller.
type WorkloadKind int

// Workload kinds.
const (
	Deployment WorkloadKind = 1 + iota
	StatefulSet
	// ReplicaSet is one ReplicaSet of an Argo Rollout (its canary or
	// stable revision); Workload.Rollout names the Rollout.
	ReplicaSet
)

// String is "Deployment", "StatefulSet" or "ReplicaSet".
func (k WorkloadKind) String() string {
	switch k {
	case Deployment:
		return "Deployment"
	case StatefulSet:
		return "StatefulSet"
	case ReplicaSet:
		return "ReplicaSet"
	}
	return fmt.Sprintf("invalid(%d)", int(k))
}

// MarshalText writes the kind's name.
func (k WorkloadKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Selector chooses one arm's workload: the Deployment or StatefulSet in
// Namespace whose pod template carries every label in MatchLabels (and, when
// set, whose name is Name).
type Selector struct {
	Namespace   string            `json:"namespace"`
	MatchLabels map[string]string `json:"matchLabels"`
	Name        string            `json:"name,omitempty"`
}

// String describes the selector for error messages.
func (s Selector) String() string {
	keys := make([]string, 0, len(s.MatchLabels))
	for k := range s.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + s.MatchLabels[k]
	}
	out := fmt.Sprintf("namespace %q, labels {%s}", s.Namespace, strings.Join(parts, ","))
	if s.Name != "" {
		out += fmt.Sprintf(", name %q", s.Name)
	}
	return out
}

// Pod is one replica of a workload.
type Pod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
	Phase     string `json:"phase"`
	Ready     bool   `json:"ready"`
	Node      string `json:"node,omitempty"`
	IP        string `json:"ip,omitempty"`
	// Revision is the pod's template hash (Deployment; rollouts-pod-template-hash
	// for a Rollout's ReplicaSet) or controller revision (StatefulSet).
	Revision string `json:"revision,omitempty"`
	// ImageIDs are the container image IDs the kubelet reports
	// (repo@sha256:...); empty while the pod has not started.
	ImageIDs []string          `json:"imageIDs,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	// HTTPPort is the container port named "http" (the aggregator's API:
	// /metrics, /v1/cluster, the load), 0 when no container names one.
	HTTPPort int `json:"httpPort,omitempty"`
}

// Workload is one arm's controller, its pods and the revision it runs.
type Workload struct {
	Arm       engine.Arm   `json:"arm"`
	Kind      WorkloadKind `json:"kind"`
	Namespace string       `json:"namespace"`
	Name      string       `json:"name"`
	// Replicas is the desired replica count (spec.replicas).
	Replicas      int32 `json:"replicas"`
	ReadyReplicas int32 `json:"readyReplicas"`
	// Revision is deployment.kubernetes.io/revision (Deployment),
	// status.currentRevision (StatefulSet) or rollout.argoproj.io/revision
	// (a Rollout's ReplicaSet).
	Revision string `json:"revision"`
	// Rollout is "Rollout/<namespace>/<name>" when the workload is a
	// ReplicaSet of an Argo Rollout.
	Rollout string `json:"rollout,omitempty"`
	// UpdateRevision is a StatefulSet's status.updateRevision (empty for a
	// Deployment).
	UpdateRevision string `json:"updateRevision,omitempty"`
	// Images are the container images of the pod template.
	Images []string `json:"images"`
	// Digests are the sha256 image digests the pods run (from pod status,
	// or from images pinned by digest), sorted and unique.
	Digests []string `json:"digests,omitempty"`
	// PodSelector is the workload's spec.selector as a label selector string.
	PodSelector string `json:"podSelector"`
	Pods        []Pod  `json:"pods"`
}

// Ref is "Kind/namespace/name".
func (w *Workload) Ref() string { return fmt.Sprintf("%s/%s/%s", w.Kind, w.Namespace, w.Name) }

// PodNames returns the pod names, sorted.
func (w *Workload) PodNames() []string {
	out := make([]string, len(w.Pods))
	for i, p := range w.Pods {
		out[i] = p.Name
	}
	sort.Strings(out)
	return out
}

// Subject is an in-toto subject: what the evidence is about.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Subject returns the evidence subject for the workload's revision. The
// digest is the image digest when there is exactly one; with several (or
// none, before any pod started and no image is pinned by digest) it is the
// sha256 of the sorted digests, images and revision, and the name says so.
func (w *Workload) Subject() Subject {
	name := fmt.Sprintf("%s@%s", w.Ref(), w.Revision)
	if len(w.Digests) == 1 {
		return Subject{Name: name, Digest: map[string]string{"sha256": w.Digests[0]}}
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", w.Ref(), w.Revision)
	for _, d := range w.Digests {
		fmt.Fprintf(h, "digest %s\n", d)
	}
	for _, im := range w.Images {
		fmt.Fprintf(h, "image %s\n", im)
	}
	return Subject{Name: name, Digest: map[string]string{"sha256": hex.EncodeToString(h.Sum(nil))}}
}

// GateKeys are the other names under which a rollout controller may ask
// the gate for this workload's revision: each pod-template-hash (a
// Deployment's pods), rollouts-pod-template-hash (a Rollout's ReplicaSet;
// what Argo Rollouts' podTemplateHashValue sends) or
// controller-revision-hash (a StatefulSet's); for a Rollout's ReplicaSet
// also "Rollout/<namespace>/<name>@<revision>" (the Rollout's
// rollout.argoproj.io/revision, which an analysis arg can read with
// fieldRef); and "sha256:<digest>" when the pods run a single image digest.
// Sorted and unique.
func (w *Workload) GateKeys() []string {
	set := map[string]bool{}
	for _, p := range w.Pods {
		if p.Revision != "" {
			set[p.Revision] = true
		}
	}
	if w.Rollout != "" && w.Revision != "" {
		set[w.Rollout+"@"+w.Revision] = true
	}
	if len(w.Digests) == 1 {
		set["sha256:"+w.Digests[0]] = true
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// RevisionString is the workload's revision as the evidence revision:
// "<Kind>/<namespace>/<name>@sha256:<digest>" when the pods run a single
// image digest (the evidence subject is then that digest), else
// "<Kind>/<namespace>/<name>@<revision>".
func (w *Workload) RevisionString() string {
	if len(w.Digests) == 1 {
		return w.Ref() + "@sha256:" + w.Digests[0]
	}
	return w.Ref() + "@" + w.Revision
}

// Budget reports whether impairing impaired pods fits the blast-radius
// budget, computed from the workload's real replica count (the larger of
// spec.replicas and the pods that exist).
func (w *Workload) Budget(b scenarios.BlastRadius, impaired int) (bool, string) {
	n := int(w.Replicas)
	if len(w.Pods) > n {
		n = len(w.Pods)
	}
	if n == 0 {
		return false, fmt.Sprintf("%s has no replicas", w.Ref())
	}
	ok, why := b.Allows(impaired, n)
	if !ok {
		why = fmt.Sprintf("%s: %s", w.Ref(), why)
	}
	return ok, why
}

// MaxImpaired is the largest number of pods a fault may impair under b.
func (w *Workload) MaxImpaired(b scenarios.BlastRadius) int {
	best := 0
	for i := 1; i <= int(w.Replicas) || i <= len(w.Pods); i++ {
		if ok, _ := w.Budget(b, i); ok {
			best = i
		}
	}
	return best
}

// Pair is the canary and control workloads of one run, and the optional
// calibration workload (the control's build, measuring A/A noise).
type Pair struct {
	Canary      *Workload `json:"canary"`
	Control     *Workload `json:"control"`
	Calibration *Workload `json:"calibration,omitempty"`
}

// Arm returns the workload of an arm (nil for a calibration arm the run
// does not have).
func (p Pair) Arm(a engine.Arm) *Workload {
	switch a {
	case engine.ArmCanary:
		return p.Canary
	case engine.ArmCalibration:
		return p.Calibration
	}
	return p.Control
}

// AddCalibration resolves the calibration workload into p; it must be
// neither arm's workload.
func (r *Resolver) AddCalibration(ctx context.Context, p *Pair, sel Selector) error {
	w, err := r.Resolve(ctx, engine.ArmCalibration, sel)
	if err != nil {
		return err
	}
	for _, o := range []*Workload{p.Canary, p.Control} {
		if o != nil && o.Ref() == w.Ref() {
			return engine.E(engine.KindInvalid, "resolve targets",
				fmt.Errorf("the calibration selector chooses %s, the %s workload; hint: run the control's build as a workload of its own (e.g. track=calibration)", w.Ref(), o.Arm))
		}
	}
	p.Calibration = w
	return nil
}

// Target returns the engine target of an arm: its pods by name.
func (p Pair) Target(a engine.Arm) engine.Target {
	w := p.Arm(a)
	if w == nil {
		return engine.Target{Arm: a}
	}
	return engine.Target{Arm: a, Nodes: w.PodNames()}
}

// Resolver reads workloads and pods from the API server.
type Resolver struct {
	client  kubernetes.Interface
	dynamic dynamic.Interface
}

// NewResolver returns a resolver using client. dyn reads Argo Rollouts
// (ResolveRollout); it may be nil when no Rollout is resolved.
func NewResolver(client kubernetes.Interface, dyn dynamic.Interface) *Resolver {
	return &Resolver{client: client, dynamic: dyn}
}

// Selectors converts a scenario file's Kubernetes target. namespace, when
// not empty, overrides the file's namespace (the --namespace flag).
func Selectors(t *scenarios.KubernetesTarget, namespace string) (canary, control Selector, err error) {
	if t == nil {
		return Selector{}, Selector{}, engine.E(engine.KindInvalid, "kubernetes target",
			errors.New("the experiment has no spec.target.kubernetes; hint: add namespace, canary.matchLabels and control.matchLabels"))
	}
	ns := t.Namespace
	if namespace != "" {
		ns = namespace
	}
	if ns == "" {
		return Selector{}, Selector{}, engine.E(engine.KindInvalid, "kubernetes target",
			errors.New("no namespace; hint: set spec.target.kubernetes.namespace or pass --namespace"))
	}
	return Selector{Namespace: ns, MatchLabels: t.Canary.MatchLabels}, Selector{Namespace: ns, MatchLabels: t.Control.MatchLabels}, nil
}

// ResolvePair resolves both arms; the two must be different workloads.
func (r *Resolver) ResolvePair(ctx context.Context, canary, control Selector) (Pair, error) {
	c, err := r.Resolve(ctx, engine.ArmCanary, canary)
	if err != nil {
		return Pair{}, err
	}
	s, err := r.Resolve(ctx, engine.ArmControl, control)
	if err != nil {
		return Pair{}, err
	}
	if c.Ref() == s.Ref() {
		return Pair{}, engine.E(engine.KindInvalid, "resolve targets",
			fmt.Errorf("canary and control both select %s; hint: give each arm a label only its pods carry (e.g. track=canary / track=stable)", c.Ref()))
	}
	return Pair{Canary: c, Control: s}, nil
}

// Resolve finds the one Deployment or StatefulSet the selector chooses, its
// pods and its revision.
func (r *Resolver) Resolve(ctx context.Context, arm engine.Arm, sel Selector) (*Workload, error) {
	op := fmt.Sprintf("resolve %s workload", arm)
	if sel.Namespace == "" {
		return nil, engine.E(engine.KindInvalid, op, errors.New("no namespace"))
	}
	if len(sel.MatchLabels) == 0 && sel.Name == "" {
		return nil, engine.E(engine.KindInvalid, op, fmt.Errorf("%s: no matchLabels and no name; hint: select the %s pods by a label only they carry", sel, arm))
	}
	want := labels.SelectorFromSet(sel.MatchLabels)
	var found []*Workload
	deps, err := r.client.AppsV1().Deployments(sel.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, apiErr(op+": list deployments", err)
	}
	for i := range deps.Items {
		d := &deps.Items[i]
		if (sel.Name == "" || d.Name == sel.Name) && want.Matches(labels.Set(d.Spec.Template.Labels)) {
			found = append(found, fromDeployment(arm, d))
		}
	}
	sts, err := r.client.AppsV1().StatefulSets(sel.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, apiErr(op+": list statefulsets", err)
	}
	for i := range sts.Items {
		s := &sts.Items[i]
		if (sel.Name == "" || s.Name == sel.Name) && want.Matches(labels.Set(s.Spec.Template.Labels)) {
			found = append(found, fromStatefulSet(arm, s))
		}
	}
	switch len(found) {
	case 0:
		return nil, engine.E(engine.KindNotFound, op, fmt.Errorf("no Deployment or StatefulSet whose pod template matches %s", sel))
	case 1:
	default:
		refs := make([]string, len(found))
		for i, w := range found {
			refs[i] = w.Ref()
		}
		sort.Strings(refs)
		return nil, engine.E(engine.KindInvalid, op, fmt.Errorf("%s matches %d workloads (%s); hint: add a label that tells them apart", sel, len(found), strings.Join(refs, ", ")))
	}
	w := found[0]
	pods, err := r.client.CoreV1().Pods(sel.Namespace).List(ctx, metav1.ListOptions{LabelSelector: w.PodSelector})
	if err != nil {
		return nil, apiErr(op+": list pods", err)
	}
	w.Pods, w.Digests = podsOf(pods.Items, w.Kind, w.Images)
	return w, nil
}

// RefreshPods re-lists the workload's pods (a Deployment's replacement
// pods have new names) and the digests they run.
func (r *Resolver) RefreshPods(ctx context.Context, w *Workload) error {
	pods, err := r.client.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{LabelSelector: w.PodSelector})
	if err != nil {
		return apiErr("list pods of "+w.Ref(), err)
	}
	w.Pods, w.Digests = podsOf(pods.Items, w.Kind, w.Images)
	return nil
}

func fromDeployment(arm engine.Arm, d *appsv1.Deployment) *Workload {
	w := &Workload{Arm: arm, Kind: Deployment, Namespace: d.Namespace, Name: d.Name,
		Replicas: 1, ReadyReplicas: d.Status.ReadyReplicas, Revision: d.Annotations[RevisionAnnotation]}
	if d.Spec.Replicas != nil {
		w.Replicas = *d.Spec.Replicas
	}
	if w.Revision == "" {
		// No deployment controller has stamped it yet: the generation is
		// the best stable identity of the spec.
		w.Revision = fmt.Sprintf("generation-%d", d.Generation)
	}
	w.PodSelector = selectorString(d.Spec.Selector)
	w.Images = templateImages(&d.Spec.Template)
	return w
}

func fromStatefulSet(arm engine.Arm, s *appsv1.StatefulSet) *Workload {
	w := &Workload{Arm: arm, Kind: StatefulSet, Namespace: s.Namespace, Name: s.Name,
		Replicas: 1, ReadyReplicas: s.Status.ReadyReplicas,
		Revision: s.Status.CurrentRevision, UpdateRevision: s.Status.UpdateRevision}
	if s.Spec.Replicas != nil {
		w.Replicas = *s.Spec.Replicas
	}
	if w.Revision == "" {
		w.Revision = fmt.Sprintf("generation-%d", s.Generation)
	}
	w.PodSelector = selectorString(s.Spec.Selector)
	w.Images = templateImages(&s.Spec.Template)
	return w
}

func selectorString(ls *metav1.LabelSelector) string {
	if ls == nil {
		return labels.Nothing().String()
	}
	s, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return labels.Nothing().String()
	}
	return s.String()
}

func templateImages(t *corev1.PodTemplateSpec) []string {
	var out []string
	for _, c := range t.Spec.Containers {
		out = append(out, c.Image)
	}
	sort.Strings(out)
	return out
}

// podsOf converts pods (skipping those being deleted) and collects the
// image digests they run.
func podsOf(items []corev1.Pod, kind WorkloadKind, images []string) ([]Pod, []string) {
	digests := map[string]bool{}
	var out []Pod
	for i := range items {
		p := &items[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		q := Pod{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID), Phase: string(p.Status.Phase),
			Node: p.Spec.NodeName, IP: p.Status.PodIP, Labels: p.Labels, Ready: podReady(p)}
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == HTTPPortName && q.HTTPPort == 0 {
					q.HTTPPort = int(cp.ContainerPort)
				}
			}
		}
		switch kind {
		case Deployment:
			q.Revision = p.Labels["pod-template-hash"]
		case ReplicaSet:
			q.Revision = p.Labels[RolloutHashLabel]
		default:
			q.Revision = p.Labels["controller-revision-hash"]
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.ImageID == "" {
				continue
			}
			q.ImageIDs = append(q.ImageIDs, cs.ImageID)
			if d := DigestOf(cs.ImageID); d != "" {
				digests[d] = true
			}
		}
		out = append(out, q)
	}
	for _, im := range images {
		if d := DigestOf(im); d != "" {
			digests[d] = true
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	ds := make([]string, 0, len(digests))
	for d := range digests {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	return out, ds
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// DigestOf extracts the hex sha256 digest from an image reference or a
// kubelet image ID ("docker-pullable://repo@sha256:<hex>", "sha256:<hex>",
// "repo@sha256:<hex>"); "" when there is none.
func DigestOf(ref string) string {
	i := strings.LastIndex(ref, "sha256:")
	if i < 0 {
		return ""
	}
	h := ref[i+len("sha256:"):]
	if len(h) != 64 {
		return ""
	}
	if _, err := hex.DecodeString(h); err != nil {
		return ""
	}
	return strings.ToLower(h)
}

func apiErr(op string, err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return engine.E(engine.KindInvalid, op, fmt.Errorf("%w; hint: the ServiceAccount needs get/list on pods, deployments and statefulsets, and for --rollout on replicasets and rollouts.argoproj.io (deploy/serve/rbac.yaml)", err))
	case apierrors.IsNotFound(err):
		return engine.E(engine.KindNotFound, op, err)
	default:
		return engine.E(engine.KindUnavailable, op, err)
	}
}
