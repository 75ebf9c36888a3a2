#!/usr/bin/env bash
# Demo users and reports for `make run`. Reports are registered once (a second run keeps them).
set -euo pipefail
cd "$(dirname "$0")/.."
rp() { ${UV:-uv} run --frozen report-platform "$@"; }
# Console passwords: made once per data folder (never in git), kept beside the data they open.
passwords="$REPORT_PLATFORM_HOME/demo-passwords.txt"
if [ ! -s "$passwords" ]; then
  (umask 077; for who in owner admin user; do
    echo "$who@acme.example $(python3 -c 'import secrets; print(secrets.token_urlsafe(15))')"
  done > "$passwords")
fi
while read -r email password; do
  role=${email%%@*}
  printf '%s\n' "$password" | rp users add "$email" --org acme --role "$role" --password-stdin
done < "$passwords"
# Reports are checked against the connections they name, so the demo's connections come first.
${UV:-uv} run --frozen python -m report_platform_devservers --prepare
if [ -z "$(rp reports list --user owner@acme.example --json | tr -d '[:space:][]')" ]; then
  for f in demo/reports/*.yaml; do
    echo "registered $(rp reports create "$f" --user owner@acme.example): $f"
  done
fi
rp reports list --user owner@acme.example
