#!/usr/bin/env bash
# Builds kubelet v1.34.2 from the Go module proxy once per machine and prints
# the path of the cached binary (scripts/build-kubernetes-component.sh). The
# pod tests (internal/ociimage, deploy) run it with containerd to start
# chaosgate's image as a real pod. A few CPU-minutes the first time (less once
# kube-apiserver's modules are in the module cache); instant afterwards.
set -euo pipefail
exec bash "$(dirname "$0")/build-kubernetes-component.sh" kubelet
