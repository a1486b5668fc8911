#!/usr/bin/env bash
# Installs or builds every server the test suite starts. Idempotent: packages
# already present and cached builds are reused.
#   - Debian packages (only when root): prometheus (promtool too), etcd-server,
#     nats-server, mosquitto (MQTT broker of the upstream tests), chromium,
#     chromium-driver, containerd and runc (the image test's node).
#   - Consul 1.22.0, built once from the Go module proxy (scripts/build-consul.sh).
#   - kube-apiserver v1.34.2, built once from the Go module proxy
#     (scripts/build-kube-apiserver.sh).
#   - kubelet v1.34.2, built once from the Go module proxy
#     (scripts/build-kubelet.sh): with containerd it runs chaosgate's image
#     as a real pod (internal/ociimage).
#   - kube-controller-manager v1.34.2, built once from the Go module proxy
#     (scripts/build-kube-controller-manager.sh): the test cluster's
#     StatefulSet, ReplicaSet and Deployment controllers.
#   - nats-server 2.15.2, built once from the Go module proxy
#     (scripts/build-nats-server.sh): the aggregator benchmark's fsync tier.
#   - VictoriaLogs 1.52.2 (Apache-2.0), built once from the Go module proxy
#     (scripts/build-victoria-logs.sh): the log server of the log tests (it
#     speaks Loki's push API; Grafana Loki is AGPL and is not used).
#   - Prometheus 3.16.0 with Kubernetes service discovery, built once from
#     the Go module proxy (scripts/build-prometheus-kubernetes-sd.sh): the
#     test cluster's Prometheus, which finds the pods through the API
#     server (Debian's 2.42 has no kubernetes_sd_configs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

pkgs=()
command -v prometheus >/dev/null 2>&1 || pkgs+=(prometheus)
command -v etcd >/dev/null 2>&1 || pkgs+=(etcd-server)
command -v nats-server >/dev/null 2>&1 || pkgs+=(nats-server)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || pkgs+=(mosquitto)
command -v chromium >/dev/null 2>&1 || pkgs+=(chromium chromium-driver)
command -v containerd >/dev/null 2>&1 || pkgs+=(containerd)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || pkgs+=(runc)
if [ ${#pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: apt-get install ${pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  else
    echo "install-test-deps: not root or no apt-get; missing packages: ${pkgs[*]} (tests that need them skip outside CI and fail in CI)" >&2
  fi
fi

bash "$here/build-consul.sh" >/dev/null
bash "$here/build-kube-apiserver.sh" >/dev/null
bash "$here/build-kubelet.sh" >/dev/null
bash "$here/build-kube-controller-manager.sh" >/dev/null
bash "$here/build-nats-server.sh" >/dev/null
bash "$here/build-victoria-logs.sh" >/dev/null
bash "$here/build-prometheus-kubernetes-sd.sh" >/dev/null
