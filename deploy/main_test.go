// Package deploy_test checks what deploy/ ships: the Helm chart
// (deploy/helm/chaosgate) rendered with the Helm library and linted, the
// kustomize bases rendered with kustomize's krusty library, the two install
// paths against each other, the PrometheusRule's expressions, and the
// GameDay CRD against the scenario JSON Schema — and submits every rendered
// object to a real kube-apiserver (internal/k8senv) as a server-side dry run
// with strict field validation, with the Prometheus Operator CRDs installed.
package deploy_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/internal/k8senv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(k8senv.Main(m), k8senv.LeakOptions()...) }
