#!/usr/bin/env bash
# The production processes on one machine: migrates Dagster's storage and the registry, then starts
# the code server, the webserver, the daemon and the console, each once the one before answers its
# health check, and stops them all on SIGTERM (docs/deployment.md). The environment carries every
# setting and secret (DAGSTER_HOME, DAGSTER_PG_*, REPORT_PLATFORM_*); nothing is read from files here.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/report-platform production "$@"
