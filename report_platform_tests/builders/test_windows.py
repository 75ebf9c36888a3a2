"""Exports read a period window by window; windows follow the rows, not the clock."""

from datetime import UTC, datetime

from report_platform.reports.builders.sms import COLUMNS
from report_platform.reports.builders.spec import ExportSpec
from report_platform.reports.builders.usage import usage_queries
from report_platform.store.duck import reader


def test_every_window_holds_about_the_same_number_of_rows_despite_the_afternoon_peak(store, con):
    spec = ExportSpec(
        "sms_usage",
        "acme-east",
        None,
        "UTC",
        datetime(2026, 3, 7, tzinfo=UTC),
        datetime(2026, 3, 10, tzinfo=UTC),
    )
    per_window = 100
    queries = usage_queries(store, spec, "sms_messages", "message_id", COLUMNS, rows_per_window=per_window)
    counts = []
    covered = []
    counter = reader(store)  # the queries' own connection is busy between windows
    for _sql, params in queries(con):
        n = counter.execute(
            "select count(*) from sms_messages where workspace_id = $workspace and occurred_at >= $start"
            " and occurred_at < $end",
            {"workspace": params["workspace"], "start": params["start"], "end": params["end"]},
        ).fetchone()[0]
        counts.append(n)
        covered.append((params["start"], params["end"]))
    total = counter.execute(
        "select count(*) from sms_messages where workspace_id = 'acme-east' and occurred_at >= ? and occurred_at < ?",
        [spec.start_utc, spec.end_utc],
    ).fetchone()[0]
    assert sum(counts) == total  # windows tile the period: nothing read twice, nothing missed
    assert all(a_end == b_start for (_, a_end), (b_start, _) in zip(covered, covered[1:], strict=False))
    assert max(counts) <= per_window * 1.2, counts
