"""`report-platform console`: the web console and its HTTP API, served by uvicorn."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator

import click

from report_platform.cli.common import cli

# Bounds on what one connection may cost: request bodies are capped by the app (256 KiB).
MAX_HEADER_BYTES = 64 * 1024
KEEP_ALIVE_SECONDS = 5
GRACEFUL_SHUTDOWN_SECONDS = 30
MAX_CONNECTIONS = 200


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=3100, show_default=True, type=click.IntRange(1, 65535))
def console(host: str, port: int) -> None:
    """Serve the web console and the HTTP API (/api/v1); SIGTERM or Ctrl-C stops it gracefully."""
    import uvicorn

    from report_platform.settings import current_settings
    from report_platform.web.app import create_app

    settings = current_settings()
    if not _loopback(host) and not settings.console_secure_cookies:
        click.echo(
            f"warning: the console listens on {host}: serve it over HTTPS (e.g. behind a proxy) and set "
            "REPORT_PLATFORM_CONSOLE_SECURE_COOKIES=true, or passwords and sessions cross the network in clear",
            err=True,
        )
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        proxy_headers=False,  # the client address the sign-in throttle counts is the peer's own
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        limit_concurrency=MAX_CONNECTIONS,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
    # uvicorn stops on SIGTERM and SIGINT: no new connections, requests under way finish, then the
    # app's shutdown (runs not yet launched are recorded FAILED, see web/background.py).
    _graceful_server_class()(config).run()


def _graceful_server_class() -> type:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn's server, exiting 0 after a graceful stop on SIGTERM or SIGINT.

        uvicorn raises the signal again once it has stopped, so the process would end as killed
        by it (-15); a supervisor or a script waiting for the console would count a clean stop as
        a failure. The stop itself is uvicorn's own.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()

    return GracefulServer


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
