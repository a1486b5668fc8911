#!/usr/bin/env bash
# Builds kubelet v1.34.2 from the Go module proxy once per machine and prints
# the path of the cached binary, exactly as scripts/build-kube-apiserver.sh
# builds kube-apiserver (the same staging replaces). The image test of
# internal/ociimage runs it with containerd to start chaosgate's image as a
# real pod. A few CPU-minutes the first time (less once kube-apiserver's
# modules are in the module cache); instant afterwards.
set -euo pipefail
ver=1.34.2
staging_ver=0.34.2
replaces=()
for m in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go \
  cloud-provider cluster-bootstrap code-generator component-base component-helpers \
  controller-manager cri-api cri-client csi-translation-lib dynamic-resource-allocation \
  endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy \
  kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission \
  sample-apiserver sample-cli-plugin sample-controller; do
  replaces+=("-replace=k8s.io/$m=k8s.io/$m@v$staging_ver")
done
exec bash "$(dirname "$0")/go-proxy-build.sh" \
  "kubelet-v$ver" "k8s.io/kubernetes@v$ver" k8s.io/kubernetes/cmd/kubelet "${replaces[@]}"
