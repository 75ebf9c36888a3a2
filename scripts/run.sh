#!/usr/bin/env bash
# Starts the stand-in delivery servers (SMTP, SFTP, S3 on 127.0.0.1) and Dagster (webserver +
# daemon) on http://127.0.0.1:3000 with the report-platform code location.
set -euo pipefail
cd "$(dirname "$0")/.."
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
env_file="$REPORT_PLATFORM_HOME/devservers/demo.env"
rm -f "$env_file"
${UV:-uv} run --frozen python -m report_platform_devservers &
pids+=($!)
for _ in $(seq 1 120); do [ -f "$env_file" ] && break; sleep 0.5; done
[ -f "$env_file" ] || { echo "the stand-in delivery servers did not start" >&2; exit 1; }
set -a; . "$env_file"; set +a
echo "Dagster UI: http://127.0.0.1:3000   data folder: $REPORT_PLATFORM_HOME"
${UV:-uv} run --frozen dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000 &
pids+=($!)
wait -n "${pids[@]}"
