"""Work the API hands off so that no request waits for it: "run now", and reloading schedules.

`launch.launch_requested_run` submits a run to the Dagster webserver when one answers (quick),
and otherwise executes it in this process, which takes as long as the run. Either way it runs
here, on a small thread pool, and the API answers 202 with the audit run id at once; the audit
log shows the run QUEUED, then STARTED, then its outcome. A run that cannot be launched is
recorded FAILED with the reason. When the console stops, runs still waiting for a thread are
recorded FAILED (they were never launched) and runs already executing are waited for.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

from report_platform.redaction import redact
from report_platform.registry import ReportService, RunRequest

log = logging.getLogger(__name__)

STOPPED_BEFORE_LAUNCH = "the run could not be launched: the console stopped before it was launched"


class Background:
    """A few threads that launch the runs people asked for (`workers` bounds how many at once)
    and ask a running Dagster webserver to reload the schedules after a change."""

    def __init__(self, service: ReportService, *, workers: int = 2) -> None:
        self._service = service
        self._workers = workers
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None  # made on first use, again after a shutdown
        self._pending: dict[Future[None], RunRequest] = {}
        self._reload_pending = False

    def launch(self, request: RunRequest) -> None:
        """Launch the queued run soon; returns at once."""
        with self._lock:
            future = self._running_pool().submit(self._launch, request)
            self._pending[future] = request
        future.add_done_callback(self._forget)

    def reload_schedules(self) -> None:
        """New or changed schedules appear in Dagster without a restart (one reload for a burst of changes)."""
        with self._lock:
            if self._reload_pending:
                return
            self._reload_pending = True
            self._running_pool().submit(self._reload)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every submitted run was launched (or refused); False if `timeout` ran out first."""
        with self._lock:
            futures = list(self._pending)
        _, not_done = wait_futures(futures, timeout=timeout)
        return not not_done

    def shutdown(self) -> None:
        """Stop: runs not yet launched are recorded FAILED, runs under way are waited for."""
        with self._lock:
            pool, self._pool = self._pool, None
            waiting = list(self._pending.items())
        for future, request in waiting:
            if future.cancel():
                self._service.system.record_run_finish(request.run_id, status="FAILED", error=STOPPED_BEFORE_LAUNCH)
        if pool is not None:
            pool.shutdown(wait=True)

    def _running_pool(self) -> ThreadPoolExecutor:
        # The app's lifespan may end and begin again (a test client per request does that).
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="run-now")
        return self._pool

    def _launch(self, request: RunRequest) -> None:
        # The console's start-up has imported it (web/app.py, `_load_dagster`).
        from report_platform.launch import RunNotLaunched, launch_requested_run

        try:
            launched = launch_requested_run(self._service, request)
        except RunNotLaunched as exc:
            log.warning("run %s of %s: %s", request.run_id, request.report_id, redact(str(exc)))
        except Exception:  # recording the failure failed too: the log is all that is left
            log.exception("run %s of %s could not be launched or recorded", request.run_id, request.report_id)
        else:
            log.info(
                "run %s of %s: Dagster run %s (%s)",
                request.run_id,
                request.report_id,
                launched.dagster_run_id,
                launched.where,
            )

    def _reload(self) -> None:
        from report_platform.scheduling.webserver import reload_code_location

        with self._lock:
            self._reload_pending = False
        try:
            reload_code_location()
        except Exception:  # the change is saved; report_registry_sensor reloads too
            log.exception("could not ask the Dagster webserver to reload the schedules")

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.pop(future, None)
