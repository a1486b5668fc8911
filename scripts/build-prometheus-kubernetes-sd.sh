#!/usr/bin/env bash
# Builds Prometheus 3.16.0 (module github.com/prometheus/prometheus v0.316.0,
# Apache-2.0) from the Go module proxy once per machine, with Kubernetes
# service discovery as its only discovery besides file and HTTP (build tags
# remove_all_sd,enable_kubernetes_sd, Prometheus' own plugins/ switches),
# and prints the path of the cached binary. Debian's prometheus 2.42 is
# built without kubernetes_sd_configs; this one discovers the test
# cluster's pods from its API server with deploy/prometheus's scrape
# configuration, as a Prometheus in a user's cluster does.
set -euo pipefail
ver=3.16.0
GO_BUILD_TAGS=remove_all_sd,enable_kubernetes_sd exec bash "$(dirname "$0")/go-proxy-build.sh" \
  "prometheus-kubernetes-sd-$ver" "github.com/prometheus/prometheus@v0.316.0" \
  github.com/prometheus/prometheus/cmd/prometheus
