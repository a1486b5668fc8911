#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a time each (default 10s),
# then prints one line per target with its executions and result.
#   scripts/fuzz-all.sh [FUZZTIME] [REGEXP]
# REGEXP, when given, keeps the targets whose "package FuzzName" matches it
# (e.g. 'web|evidence' or 'FuzzSafeNext'). FUZZFLAGS in the environment
# goes to every go test (e.g. FUZZFLAGS=-parallel=1 for one fuzz worker).
# Exit 1 when any target failed; its failing input is under the package's
# testdata/fuzz/.
set -uo pipefail
t="${1:-10s}"
filter="${2:-.}"
read -r -a flags <<<"${FUZZFLAGS:-}"
summary=()
failed=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "$pkg $f" | grep -Eq "$filter" || continue
    echo "fuzz $pkg $f ($t)"
    out=$(go test "${flags[@]}" -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg" 2>&1)
    rc=$?
    echo "$out" | tail -n 3
    execs=$(echo "$out" | grep -o 'execs: [0-9]*' | tail -n 1 | awk '{print $2}')
    result=ok
    if [ $rc -ne 0 ]; then
      result=FAIL
      failed=1
      echo "$out" | grep -v '^fuzz: elapsed' | tail -n 40
    fi
    summary+=("$(printf '%-60s %-28s %10s  %s' "$pkg" "$f" "${execs:-0}" "$result")")
  done
done
echo
printf '%-60s %-28s %10s  %s\n' PACKAGE TARGET EXECS RESULT
printf '%s\n' "${summary[@]}"
exit $failed
