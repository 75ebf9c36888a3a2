"""`report-platform production`: the production processes on one machine (docs/deployment.md)."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from report_platform.cli.common import UserError, cli


@cli.command()
def production() -> None:
    """Migrate the schemas, then start the code server, webserver, daemon and console, each once the
    one before is healthy; SIGTERM or Ctrl-C stops them all. Exits 1 if one ends on its own."""
    from report_platform.deployment import Deployment, DeploymentError, Layout
    from report_platform.settings import current_settings, process_environment

    logging.basicConfig(level=logging.INFO, format="%(asctime)s production: %(message)s", stream=sys.stderr)
    try:
        layout = Layout.from_settings(current_settings(), process_environment())
    except DeploymentError as exc:
        raise UserError(str(exc)) from None
    stopping = threading.Event()

    def stop(_signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.exit(Deployment(layout).run(stopping))
