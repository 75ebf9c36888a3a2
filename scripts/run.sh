#!/usr/bin/env bash
# Starts the stand-in delivery servers and Dagster (webserver + daemon) on 127.0.0.1:3000.
set -euo pipefail
cd "$(dirname "$0")/.."
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
if uv run --frozen python -c "import report_platform.delivery.devservers" 2>/dev/null; then
  uv run --frozen python -m report_platform.delivery.devservers &
  pids+=($!)
fi
echo "Dagster UI: http://127.0.0.1:3000   (data folder: $REPORT_PLATFORM_HOME)"
uv run --frozen dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000 &
pids+=($!)
wait -n "${pids[@]}"
