#!/usr/bin/env bash
# Starts the stand-in delivery servers (SMTP, SFTP, S3 on 127.0.0.1), Dagster (webserver +
# daemon) on http://127.0.0.1:3000 with the report-platform code location, and the console on
# http://127.0.0.1:3100, and prints how to sign in as the demo users.
set -euo pipefail
cd "$(dirname "$0")/.."
pids=()
# Each service runs in a session of its own and is stopped as a whole process group: `dagster
# dev` does not pass a SIGTERM on to its webserver, daemon and code server, and would outlive us.
start() { setsid "$@" & pids+=($!); }
alive() { for p in "${pids[@]}"; do kill -0 -- "-$p" 2>/dev/null && return 0; done; return 1; }
cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
  for _ in $(seq 1 60); do alive || break; sleep 0.5; done
  for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
env_file="$REPORT_PLATFORM_HOME/devservers/demo.env"
rm -f "$env_file"
start ${UV:-uv} run --frozen python -m report_platform_devservers
for _ in $(seq 1 120); do [ -f "$env_file" ] && break; sleep 0.5; done
[ -f "$env_file" ] || { echo "the stand-in delivery servers did not start" >&2; exit 1; }
set -a; . "$env_file"; set +a
start ${UV:-uv} run --frozen dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000
start ${UV:-uv} run --frozen report-platform console --host 127.0.0.1 --port 3100
passwords="$REPORT_PLATFORM_HOME/demo-passwords.txt"
cat <<EOF

Report Platform console: http://127.0.0.1:3100   (sign in with an e-mail and password below)
Dagster UI:              http://127.0.0.1:3000
Data folder:             $REPORT_PLATFORM_HOME

Demo sign-ins (kept in $passwords):
$(awk '{ printf "  %-22s %s\n", $1, $2 }' "$passwords" 2>/dev/null)

EOF
wait -n "${pids[@]}"
