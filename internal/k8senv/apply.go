package k8senv

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Applier creates objects of any kind the API server serves, finding each
// kind's resource through discovery.
type Applier struct {
	e      *Env
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

// NewApplier returns an Applier for the control plane.
func (e *Env) NewApplier() *Applier {
	return &Applier{e: e, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(e.Client.Discovery()))}
}

// Reset forgets the discovered kinds: call it after installing CRDs.
func (a *Applier) Reset() { a.mapper.Reset() }

// Resource returns the client of obj's resource (namespaced when the kind is).
func (a *Applier) Resource(obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := obj.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("%s %s: no such resource on the API server (hint: is its CRD installed?): %w", gvk, obj.GetName(), err)
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		return a.e.Dynamic.Resource(m.Resource), nil
	}
	if obj.GetNamespace() == "" {
		return nil, fmt.Errorf("%s %s has no namespace", gvk.Kind, obj.GetName())
	}
	return a.e.Dynamic.Resource(m.Resource).Namespace(obj.GetNamespace()), nil
}

// DryRun submits every object with a server-side dry run (DryRun All,
// strict field validation): the API server checks schema, defaults and
// admission and stores nothing. Namespaces are created for real, since the
// dry-run objects need theirs to exist. source names the objects' origin
// in errors.
func (a *Applier) DryRun(ctx context.Context, source string, objs []*unstructured.Unstructured) error {
	return a.create(ctx, source, objs, true)
}

// Create creates every object for real (strict field validation); an
// object that exists already is left alone.
func (a *Applier) Create(ctx context.Context, source string, objs []*unstructured.Unstructured) error {
	return a.create(ctx, source, objs, false)
}

func (a *Applier) create(ctx context.Context, source string, objs []*unstructured.Unstructured, dryRun bool) error {
	for _, o := range objs {
		ri, err := a.Resource(o)
		if err != nil {
			return fmt.Errorf("%s: %w", source, err)
		}
		opts := metav1.CreateOptions{FieldValidation: "Strict"}
		if dryRun && o.GetKind() != "Namespace" {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		if _, err := ri.Create(ctx, o, opts); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("%s: the API server refused %s %s: %w", source, o.GetKind(), objectName(o), err)
		}
	}
	return nil
}

func objectName(o *unstructured.Unstructured) string {
	if ns := o.GetNamespace(); ns != "" {
		return ns + "/" + o.GetName()
	}
	return o.GetName()
}

// Kustomize renders a kustomization directory with kustomize's krusty
// library (what `kubectl kustomize DIR` runs) and decodes the objects; a
// kustomization that renders nothing is an error.
func Kustomize(dir string) ([]*unstructured.Unstructured, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	y, err := rm.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	objs, err := DecodeObjects(bytes.NewReader(y), "kustomize "+dir)
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("kustomize build %s rendered nothing", dir)
	}
	return objs, nil
}
