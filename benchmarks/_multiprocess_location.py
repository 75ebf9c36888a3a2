"""The report jobs with Dagster's multiprocess executor (its default), for side-by-side comparison.

Only `bench_run_overhead.py --compare-multiprocess` loads this module: the same assets and
resources as the platform's code location, the report jobs running their step in a second
process as Dagster does by default.
"""

import dagster as dg

from report_platform.ingest.assets import usage_assets
from report_platform.reports.definition import REPORT_TYPES
from report_platform.resources import deployment_resources
from report_platform.scheduling.exports import asset_name, export_assets, job_name

defs = dg.Definitions(
    assets=[*usage_assets, *export_assets],
    jobs=[
        dg.define_asset_job(job_name(t), selection=[asset_name(t)], executor_def=dg.multiprocess_executor)
        for t in REPORT_TYPES
    ],
    resources=deployment_resources(),
)
