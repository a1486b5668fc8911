#!/usr/bin/env bash
# Builds Consul 1.22.0 from the Go module proxy once per machine and prints the
# path of the cached binary. Consul has no Debian package; three of its
# submodules are missing from the checksum database, hence GONOSUMDB.
set -euo pipefail
ver=1.22.0
cache="${CHAOSGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chaosgate}/bin"
out="$cache/consul-$ver"
if [ -x "$out" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
go mod init consulbuild >/dev/null 2>&1
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/hashicorp/consul"
GO
go mod edit -require "github.com/hashicorp/consul@v$ver"
echo "build-consul: building Consul $ver (a few CPU-minutes, once per machine)" >&2
GONOSUMDB=github.com/hashicorp/consul GOFLAGS=-mod=mod go mod tidy >&2
GONOSUMDB=github.com/hashicorp/consul GOFLAGS=-mod=mod go build -o "$out.tmp" github.com/hashicorp/consul >&2
mv "$out.tmp" "$out"
echo "$out"
