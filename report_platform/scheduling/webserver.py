"""Talking to a running Dagster webserver without importing Dagster (the CLI stays quick)."""

from __future__ import annotations

import json
import socket
import urllib.request

from report_platform.settings import current_settings

LOCATION = "report_platform"
RELOAD = """
mutation($location: String!) {
  reloadRepositoryLocation(repositoryLocationName: $location) { __typename }
}"""


def webserver() -> tuple[str, int]:
    url = current_settings().dagster_url
    host_port = url.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.partition(":")
    return host, int(port or 80)


def webserver_answers() -> bool:
    host, port = webserver()
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def reload_code_location() -> bool:
    """Ask the webserver to reload the code location (new/changed schedules). False if none runs."""
    if not webserver_answers():
        return False
    host, port = webserver()
    payload = json.dumps({"query": RELOAD, "variables": {"location": LOCATION}}).encode()
    request = urllib.request.Request(
        f"http://{host}:{port}/graphql", data=payload, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            body = json.loads(answer.read())
    except (OSError, ValueError):  # the change is saved either way; the registry sensor retries
        return False
    return "errors" not in body
