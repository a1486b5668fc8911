#!/usr/bin/env bash
# Builds kube-controller-manager v1.34.2 from the Go module proxy once per
# machine and prints the path of the cached binary
# (scripts/build-kubernetes-component.sh). The test cluster
# (internal/kubelettest.Cluster) runs it so that StatefulSets and
# Deployments get real pods, and a deleted pod is really replaced. A few
# CPU-minutes the first time (less once kube-apiserver's modules are in the
# module cache); instant afterwards.
set -euo pipefail
exec bash "$(dirname "$0")/build-kubernetes-component.sh" kube-controller-manager
