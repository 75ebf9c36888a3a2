#!/usr/bin/env bash
# Demo users and reports for `make run`. Reports are registered once (a second run keeps them).
set -euo pipefail
cd "$(dirname "$0")/.."
rp() { ${UV:-uv} run --frozen report-platform "$@"; }
rp users add owner@acme.example --org acme --role owner
rp users add admin@acme.example --org acme --role admin
rp users add user@acme.example --org acme --role user
# Reports are checked against the connections they name, so the demo's connections come first.
${UV:-uv} run --frozen python -m report_platform_devservers --prepare
if [ -z "$(rp reports list --user owner@acme.example --json | tr -d '[:space:][]')" ]; then
  for f in demo/reports/*.yaml; do
    echo "registered $(rp reports create "$f" --user owner@acme.example): $f"
  done
fi
rp reports list --user owner@acme.example
