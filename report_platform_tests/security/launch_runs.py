"""Launch report runs as the daemon's run queue launches them, in a process of their own.

`python -m report_platform_tests.security.launch_runs SCHEDULED REPORT_ID=TYPE ...` creates one run
per report on the instance of `$DAGSTER_HOME` and hands it to `instance.launch_run` (the instance's
run launcher: ForkRunLauncher), then waits for every run to finish and prints
`{report_id: dagster_run_id}` as JSON. Its output, the fork server's and the run workers' all go to
this process's standard streams, which the test reads.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

from report_platform.scheduling.exports import (
    TAG_REPORT,
    TAG_SCHEDULED,
    TAG_TRIGGER,
    ensure_report_partition,
    job_name,
    partition_key,
)

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_SECONDS = 240


def launch(instance: dg.DagsterInstance, report_id: str, report_type: str, scheduled: datetime) -> str:
    repository = ReconstructableRepository.for_module(
        "report_platform.definitions", "report_platform_location", working_directory=str(ROOT)
    )
    recon_job = repository.get_reconstructable_job(job_name(report_type))
    ensure_report_partition(instance, report_type, report_id)
    key = partition_key(report_id, scheduled.date())
    tags = {
        TAG_REPORT: report_id,
        TAG_SCHEDULED: scheduled.isoformat(),
        TAG_TRIGGER: "schedule",
        "dagster/partition": str(key),
        **{f"dagster/partition/{dim}": value for dim, value in key.keys_by_dimension.items()},
    }
    run = instance.create_run_for_job(
        job_def=recon_job.get_definition(), run_config={}, tags=tags, job_code_origin=recon_job.get_python_origin()
    )
    instance.launch_run(run.run_id, workspace=None)
    return run.run_id


def main(argv: list[str]) -> None:
    scheduled = datetime.fromisoformat(argv[0])
    reports = [item.split("=", 1) for item in argv[1:]]
    with dg.DagsterInstance.get() as instance:
        runs = {report_id: launch(instance, report_id, report_type, scheduled) for report_id, report_type in reports}
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while not all(instance.get_run_by_id(run_id).is_finished for run_id in runs.values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"runs not finished within {RUN_TIMEOUT_SECONDS} s")
            time.sleep(0.2)
    print(json.dumps(runs))


if __name__ == "__main__":
    main(sys.argv[1:])
