#!/usr/bin/env bash
# Builds nats-server v2.15.2 from the Go module proxy once per machine (about a
# CPU-minute) and prints the path of the cached binary. The Debian nats-server
# (2.9) cannot fsync every write; 2.15 can (jetstream { sync_interval: always }),
# which the aggregator benchmark needs for its fsync tier.
set -euo pipefail
ver=2.15.2
exec bash "$(dirname "$0")/go-proxy-build.sh" \
  "nats-server-$ver" "github.com/nats-io/nats-server/v2@v$ver" github.com/nats-io/nats-server/v2
