#!/usr/bin/env bash
# Builds a Go program from the Go module proxy in a throwaway module, once per
# machine, and prints the path of the cached binary.
#   go-proxy-build.sh NAME MODULE@VERSION PACKAGE [go mod edit flag ...]
# NAME is the cached file name, e.g. nats-server-2.15.2; the cache is
# ${CHAOSGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chaosgate}/bin. Extra
# flags (e.g. -replace=a=b@v1) are applied to the throwaway go.mod.
# GO_BUILD_TAGS, when set, is passed to go build as -tags.
set -euo pipefail
name="$1" require="$2" pkg="$3"
shift 3
cache="${CHAOSGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chaosgate}/bin"
out="$cache/$name"
if [ -x "$out" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
go mod init "$(echo "$name" | tr -cd 'a-z0-9')build" >/dev/null 2>&1
printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" > tools.go
go mod edit -require "$require"
if [ $# -gt 0 ]; then go mod edit "$@"; fi
echo "go-proxy-build: building $name (once per machine)" >&2
GOFLAGS=-mod=mod go mod tidy >&2
GOFLAGS=-mod=mod go build ${GO_BUILD_TAGS:+-tags "$GO_BUILD_TAGS"} -o "$out.tmp" "$pkg" >&2
mv "$out.tmp" "$out"
echo "$out"
