#!/usr/bin/env bash
# Builds VictoriaLogs v1.52.2 (Apache-2.0) from the Go module proxy once per
# machine (about a CPU-minute) and prints the path of the cached binary. It
# is the log server of the tests: it accepts Loki's push API
# (/insert/loki/api/v1/push) and answers LogsQL (/select/logsql/...).
# Grafana Loki itself is AGPL and is neither built nor run.
set -euo pipefail
ver=1.52.2
exec bash "$(dirname "$0")/go-proxy-build.sh" \
  "victoria-logs-$ver" "github.com/VictoriaMetrics/VictoriaLogs@v$ver" \
  github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs
