#!/usr/bin/env bash
# Builds Consul 1.22.0 from the Go module proxy once per machine and prints the
# path of the cached binary. Consul has no Debian package; three of its
# submodules are missing from the checksum database, hence GONOSUMDB.
set -euo pipefail
ver=1.22.0
GONOSUMDB=github.com/hashicorp/consul exec bash "$(dirname "$0")/go-proxy-build.sh" \
  "consul-$ver" "github.com/hashicorp/consul@v$ver" github.com/hashicorp/consul
