#!/usr/bin/env bash
# Builds kube-apiserver v1.34.2 from the Go module proxy once per machine and
# prints the path of the cached binary. k8s.io/kubernetes cannot be required
# on its own: its go.mod points every staging module at ./staging/..., so the
# throwaway module replaces each of them with the published v0.34.2 release.
# About 12 CPU-minutes the first time; instant afterwards.
set -euo pipefail
ver=1.34.2
staging_ver=0.34.2
cache="${CHAOSGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chaosgate}/bin"
out="$cache/kube-apiserver-v$ver"
if [ -x "$out" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
go mod init kubeapiserverbuild >/dev/null 2>&1
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
go mod edit -require "k8s.io/kubernetes@v$ver"
for m in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go \
  cloud-provider cluster-bootstrap code-generator component-base component-helpers \
  controller-manager cri-api cri-client csi-translation-lib dynamic-resource-allocation \
  endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy \
  kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission \
  sample-apiserver sample-cli-plugin sample-controller; do
  go mod edit -replace "k8s.io/$m=k8s.io/$m@v$staging_ver"
done
echo "build-kube-apiserver: building kube-apiserver v$ver (about 12 CPU-minutes, once per machine)" >&2
GOFLAGS=-mod=mod go mod tidy >&2
GOFLAGS=-mod=mod go build -o "$out.tmp" k8s.io/kubernetes/cmd/kube-apiserver >&2
mv "$out.tmp" "$out"
echo "$out"
