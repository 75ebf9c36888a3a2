#!/usr/bin/env bash
# Demo data for `make run`: the last $DEMO_DAYS UTC days of synthetic usage, ingested, plus the
# demo users and reports. Safe to run again: every step replaces what it made before.
set -euo pipefail
cd "$(dirname "$0")/.."
rp() { ${UV:-uv} run --frozen report-platform "$@"; }
end=$(date -u -d "yesterday" +%F)
start=$(date -u -d "$end - $(( ${DEMO_DAYS:-35} - 1 )) days" +%F)
mkdir -p "$REPORT_PLATFORM_HOME" "$DAGSTER_HOME"
cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
rp demo-data --start "$start" --end "$end" --rows-per-day "${DEMO_ROWS:-2000}"
rp ingest --start "$start" --end "$end"
if [ -x scripts/demo-reports.sh ]; then
  bash scripts/demo-reports.sh
fi
