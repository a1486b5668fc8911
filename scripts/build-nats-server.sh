#!/usr/bin/env bash
# Builds nats-server v2.15.2 from the Go module proxy once per machine and
# prints the path of the cached binary. The Debian nats-server (2.9) cannot
# fsync every write; 2.15 can (jetstream { sync_interval: always }), which the
# aggregator benchmark needs for its fsync-per-acknowledgement tier.
set -euo pipefail
ver=2.15.2
cache="${CHAOSGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chaosgate}/bin"
out="$cache/nats-server-$ver"
if [ -x "$out" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
go mod init natsbuild >/dev/null 2>&1
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/nats-io/nats-server/v2"
GO
go mod edit -require "github.com/nats-io/nats-server/v2@v$ver"
echo "build-nats-server: building nats-server $ver (about a CPU-minute, once per machine)" >&2
GOFLAGS=-mod=mod go mod tidy >&2
GOFLAGS=-mod=mod go build -o "$out.tmp" github.com/nats-io/nats-server/v2 >&2
mv "$out.tmp" "$out"
echo "$out"
