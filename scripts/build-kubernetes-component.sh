#!/usr/bin/env bash
# Builds one Kubernetes v1.34.2 component (kube-apiserver, kubelet, kube-controller-manager) from the
# Go module proxy once per machine and prints the path of the cached binary.
# k8s.io/kubernetes cannot be required on its own: its go.mod points every
# staging module at ./staging/..., so the throwaway module replaces each of
# them with the published v0.34.2 release.
#   usage: build-kubernetes-component.sh kube-apiserver|kubelet|kube-controller-manager
set -euo pipefail
component=${1:?usage: build-kubernetes-component.sh kube-apiserver|kubelet|kube-controller-manager}
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
  "$component-v$ver" "k8s.io/kubernetes@v$ver" "k8s.io/kubernetes/cmd/$component" "${replaces[@]}"
