"""Real processes: a writer killed mid-write, and readers, an analyst and a backfill at once."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from report_platform.ingest.load import SourceSettings
from report_platform.store.duck import ensure_catalog, reader
from report_platform.store.partitions import partition_path
from report_platform.store.schema import SMS_MESSAGES
from report_platform_tests.foundation.util import ingest

DAY = date(2026, 3, 8)
ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_writer_killed_mid_partition_leaves_the_previous_contents_intact(home):
    ingest(home, "sms_messages", SourceSettings(rows_per_day=2000, seed=1))
    target = partition_path(home.store, SMS_MESSAGES, DAY)
    before = pl.read_parquet(target)
    # The writer makes a much larger partition (about a second of writing) and is killed once
    # its temporary file exists, i.e. in the middle of the write.
    writer = _python(
        """
        import sys
        from datetime import date
        from pathlib import Path
        from report_platform.domain.tenancy import DEMO_TENANCY
        from report_platform.ingest.load import SourceSettings, ingest_day
        ingest_day(Path(sys.argv[1]), None, "sms_messages", date(2026, 3, 8), DEMO_TENANCY,
                   SourceSettings(rows_per_day=1_500_000, seed=2))
        """,
        str(home.store),
    )
    deadline = time.time() + 120
    while not list(target.parent.glob(".tmp-*")):
        assert writer.poll() is None, f"writer ended before it was killed: {writer.stderr.read()}"
        assert time.time() < deadline, "the writer never started writing"
        time.sleep(0.005)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    after = pl.read_parquet(target)
    assert after.equals(before)
    # The half-written temporary file is invisible to queries.
    assert list(target.parent.glob(".tmp-*"))
    con = reader(home.store)
    assert con.execute("select count(*) from sms_messages").fetchone() == (2000,)


ANALYST = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("open", flush=True)
end = time.time() + float(sys.argv[2])
n = 0
while time.time() < end:
    con.execute("select count(*) from sms_messages").fetchone()
    n += 1
    time.sleep(0.05)
print(n, flush=True)
"""

READER = """
import sys, time
from pathlib import Path
from report_platform.store.query import run_read_only
end = time.time() + float(sys.argv[2])
n = 0
while time.time() < end:
    run_read_only(Path(sys.argv[1]), "select workspace_id, count(*) from sms_messages group by 1")
    n += 1
print(n, flush=True)
"""


def test_analyst_backfill_and_readers_run_together_without_lock_errors(home):
    ingest(home, "sms_messages", SourceSettings())
    ensure_catalog(home.store, home.catalog)
    env = {"REPORT_PLATFORM_HOME": str(home.root), "REPORT_PLATFORM_ROWS_PER_DAY": "20000"}
    analyst = _python(ANALYST, str(home.catalog), "25")
    assert analyst.stdout.readline().strip() == "open"
    readers = [_python(READER, str(home.store), "12") for _ in range(3)]
    backfill = subprocess.run(
        [
            sys.executable,
            "-m",
            "report_platform.cli.main",
            "ingest",
            "--start",
            "2026-03-01",
            "--end",
            "2026-03-07",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert backfill.returncode == 0, backfill.stderr
    # While the analyst still holds the catalog open, another analyst opens it too.
    second = duckdb.connect(str(home.catalog), read_only=True)
    assert second.execute("select count(distinct occurred_at::date) from sms_messages").fetchone() == (8,)
    second.close()
    for proc in [*readers, analyst]:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "lock" not in err.lower()
        assert int(out.strip().splitlines()[-1]) > 0
