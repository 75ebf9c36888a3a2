"""`report-platform sql` can read the store and nothing else, and every query is bounded in time and rows."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner, Result

from report_platform.cli.main import cli
from report_platform.domain.tenancy import DEMO_TENANCY
from report_platform.ingest.load import SourceSettings, ingest_day
from report_platform.settings import Home
from report_platform.store import query
from report_platform.store.partitions import partition_path
from report_platform.store.schema import TABLES, TABLES_BY_NAME, sql_type

DAY = date(2026, 3, 8)
ROWS_PER_DAY = 40


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A store with a day of voice calls and SMS, written by the project's own ingestion."""
    home = Home(tmp_path_factory.mktemp("sql") / "home").ensure()
    for source in ("voice_calls", "sms_messages"):
        ingest_day(home.store, None, source, DAY, DEMO_TENANCY, SourceSettings(rows_per_day=ROWS_PER_DAY))
    return home


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def sql(home: Home, *args: str) -> Result:
    return CliRunner().invoke(cli, ["sql", *args], env={"REPORT_PLATFORM_HOME": str(home.root)})


def voice_partition(home: Home) -> Path:
    return partition_path(home.store, TABLES_BY_NAME["voice_calls"], DAY)


def voice_rows(home: Home) -> int:
    return pl.read_parquet(voice_partition(home)).height


def assert_refused(result: Result, fragment: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_explain_analyze_copy_cannot_overwrite_a_usage_partition(home: Home) -> None:
    before = digests(home.store)
    target = voice_partition(home)
    result = sql(home, f"EXPLAIN ANALYZE COPY (SELECT * FROM voice_calls LIMIT 1) TO '{target}' (FORMAT parquet)")
    assert digests(home.store) == before
    assert_refused(result, "EXPLAIN ANALYZE runs the statement it explains")
    counted = sql(home, "select count(*) as n from voice_calls", "--json")
    assert json.loads(counted.stdout) == [{"n": voice_rows(home)}]


def attacks(home: Home, outside: Path) -> list[tuple[str, str]]:
    """(statement, what the one-line refusal says) for each way one might try to write or escape."""
    partition = voice_partition(home)
    return [
        (f"EXPLAIN /* quiet */ analyse COPY (SELECT 1) TO '{partition}'", "EXPLAIN ANALYZE"),
        ("EXPLAIN\n-- a comment\nANALYZE CREATE TABLE t AS SELECT 1", "EXPLAIN ANALYZE"),
        (f"EXPLAIN /* «é€» */ ANALYZE COPY (SELECT 1) TO '{partition}'", "EXPLAIN ANALYZE"),
        (f"EXPLAIN COPY (SELECT 1) TO '{partition}'", "COPY statements are refused"),
        ("EXPLAIN (ANALYZE) SELECT * FROM voice_calls", "EXPLAIN options are not supported"),
        (f"COPY (SELECT * FROM voice_calls LIMIT 1) TO '{partition}' (FORMAT parquet)", "COPY statements"),
        (f"COPY voice_calls TO '{outside / 'calls.csv'}'", "COPY statements"),
        ("CREATE TABLE copied AS SELECT * FROM voice_calls", "CREATE statements"),
        (f"ATTACH '{home.store / 'forged.duckdb'}' AS forged", "ATTACH statements"),
        (f"EXPORT DATABASE '{outside / 'export'}'", "EXPORT statements"),
        ("SELECT * FROM read_csv('/etc/passwd')", "file system operations are disabled"),
        (f"SELECT * FROM read_parquet('{partition}')", "only the store's tables can be read"),
        ("SELECT * FROM glob('/etc/*')", "file system operations are disabled"),
        (f"SELECT * FROM query('COPY (SELECT 1) TO ''{outside / 'q.csv'}''')", "Expected a single SELECT"),
        (f"SELECT 1; COPY (SELECT 1) TO '{partition}'", "COPY statements"),
        ("SELECT 1; SELECT 2", "one statement per query, got 2"),
        (f"/* SELECT 1 */ COPY (SELECT 1) TO '{partition}'", "COPY statements"),
        ("SELECT 1 -- harmless\n; DROP VIEW voice_calls", "DROP statements"),
        (f"SELECT * FROM voice_calls) x; COPY (SELECT 1) TO '{partition}'; SELECT * FROM (SELECT 1", "cannot parse"),
        ("PRAGMA enable_profiling", "PRAGMA statements"),
        ("CALL pragma_version()", "CALL statements"),
        ("CHECKPOINT", "CALL statements"),
        ("SET enable_external_access = true", "SET statements"),
        (f"SET allowed_directories = ['{home.root}']", "SET statements"),
        ("RESET lock_configuration", "SET statements"),
        ("INSTALL httpfs", "LOAD statements"),
        ("LOAD parquet", "LOAD statements"),
        ("INSERT INTO voice_calls SELECT * FROM voice_calls", "INSERT statements"),
        ("", "empty query"),
    ]


def test_statements_that_could_write_or_escape_are_refused_and_the_store_is_unchanged(
    home: Home, tmp_path: Path
) -> None:
    before = digests(home.root)
    for statement, fragment in attacks(home, tmp_path):
        assert_refused(sql(home, statement), fragment)
    assert digests(home.root) == before
    assert list(tmp_path.iterdir()) == []


def test_the_query_engine_itself_can_open_no_file(home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a statement that got past the checks would have nowhere to write."""
    monkeypatch.chdir(tmp_path)  # DuckDB by default allows files next to ":memory:" in the working folder
    con = query.analyst_connection(home.store)
    try:
        settings = dict(
            con.execute(
                "select name, value from duckdb_settings() where name in "
                "('allowed_paths', 'allowed_directories', 'enable_external_access', 'lock_configuration', "
                "'temp_directory', 'memory_limit', 'threads')"
            ).fetchall()
        )
        assert settings["allowed_paths"] == settings["allowed_directories"] == "[]"
        assert (settings["enable_external_access"], settings["lock_configuration"]) == ("false", "true")
        assert settings["temp_directory"] == "" and settings["threads"] == str(query.THREADS)
        for statement in [
            f"COPY (SELECT 1) TO '{voice_partition(home)}'",
            f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'",
            f"ATTACH '{tmp_path / ':memory:'}' AS forged",
            "SET enable_external_access = true",
        ]:
            with pytest.raises((duckdb.PermissionException, duckdb.InvalidInputException)):
                con.execute(statement)
        assert con.execute("select count(*) from voice_calls").fetchone() == (voice_rows(home),)
    finally:
        con.close()
    assert list(tmp_path.iterdir()) == []


def test_sql_writes_nothing_into_the_data_folder(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.store.mkdir(parents=True)  # a data folder an analyst can only read: just the store, no table yet
    result = sql(home, "select count(*) as n from sms_messages", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [{"n": 0}]
    assert [p.relative_to(home.root) for p in home.root.rglob("*")] == [Path("store")]


def test_a_missing_store_is_a_one_line_error(tmp_path: Path) -> None:
    assert_refused(sql(Home(tmp_path / "nowhere"), "select 1"), "no usage store at")
    assert not (tmp_path / "nowhere").exists()


def test_a_slow_query_stops_at_the_timeout(home: Home) -> None:
    started = time.monotonic()
    result = sql(home, "select sum(a.range * b.range) from range(1000000) a, range(1000000) b", "--timeout", "1")
    elapsed = time.monotonic() - started
    assert_refused(result, "query stopped after 1 s (--timeout)")
    assert elapsed < 6, elapsed


def test_a_timeout_shorter_than_the_query_start_still_stops_it(home: Home) -> None:
    started = time.monotonic()
    with pytest.raises(query.QueryTimeout):
        query.run_read_only(home.store, "select count(*) from range(100000000000)", timeout_seconds=0.001)
    assert time.monotonic() - started < 6


def test_rows_past_max_rows_are_cut_and_the_exit_status_says_so(home: Home) -> None:
    cut = sql(home, "select call_id from voice_calls order by call_id", "--json", "--max-rows", "5")
    assert cut.exit_code == 3
    assert [r["call_id"] for r in json.loads(cut.stdout)] == [f"call-20260308-{i:08d}" for i in range(5)]
    assert cut.stderr == "error: output cut at 5 rows (--max-rows): the query returned more\n"
    table = sql(home, "select call_id from voice_calls order by call_id", "--max-rows", "5")
    assert table.exit_code == 3 and table.stdout.count("call-20260308-") == 5
    assert "output cut at 5 rows" in table.stderr
    exact = sql(home, "select call_id from voice_calls limit 5", "--json", "--max-rows", "5")
    assert exact.exit_code == 0 and exact.stderr == "" and len(json.loads(exact.stdout)) == 5


def test_the_default_row_limit_is_ten_thousand(home: Home) -> None:
    assert query.DEFAULT_MAX_ROWS == 10_000
    at_limit = sql(home, "select range as n from range(10000)", "--json")
    assert at_limit.exit_code == 0 and len(json.loads(at_limit.stdout)) == 10_000
    past = sql(home, "select range as n from range(10001)", "--json")
    assert past.exit_code == 3 and len(json.loads(past.stdout)) == 10_000
    assert "output cut at 10000 rows" in past.stderr


def test_help_states_the_defaults_the_query_module_uses(home: Home) -> None:
    shown = " ".join(CliRunner().invoke(cli, ["sql", "--help"]).stdout.split())
    assert f"(default {query.DEFAULT_TIMEOUT_SECONDS:g})" in shown
    assert f"(default {query.DEFAULT_MAX_ROWS})" in shown


def test_json_prints_an_array_of_row_objects(home: Home) -> None:
    result = sql(
        home,
        "select call_id, occurred_at, duration_seconds, 1.50::decimal(18,6) as rate, null as nothing, "
        "1 as n, 2 as n from voice_calls order by call_id limit 2",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [list(r) for r in rows] == [
        ["call_id", "occurred_at", "duration_seconds", "rate", "nothing", "n", "n_1"]
    ] * 2
    first = rows[0]
    assert first["call_id"] == "call-20260308-00000000"
    assert first["occurred_at"].startswith("2026-03-08T") and first["occurred_at"].endswith("+00:00")
    assert isinstance(first["duration_seconds"], int)
    assert (first["rate"], first["nothing"], first["n"], first["n_1"]) == ("1.500000", None, 1, 2)


@pytest.mark.parametrize(
    "statement",
    [
        "with w as (select workspace_id from voice_calls) select count(*) as n from w",
        "from voice_calls select count(*) as n",
        "select count(*) as n from (describe voice_calls) where column_name <> 'call_id'",
        "select 10 as n; -- trailing comment",
        "select length('é€«»') as n; /* non-ASCII before a trailing comment */",
    ],
)
def test_select_shaped_statements_run(home: Home, statement: str) -> None:
    result = sql(home, statement, "--json")
    assert result.exit_code == 0, result.stderr
    assert list(json.loads(result.stdout)[0]) == ["n"]


def test_pivot_and_show_run(home: Home) -> None:
    pivot = sql(home, "pivot voice_calls on status using count(*) group by workspace_id order by 1", "--json")
    assert pivot.exit_code == 0, pivot.stderr
    assert json.loads(pivot.stdout)[0]["workspace_id"] == "acme-east"
    shown = sql(home, "show tables", "--json")
    assert sorted(r["name"] for r in json.loads(shown.stdout)) == sorted(t.name for t in TABLES)


def test_plain_explain_shows_the_plan(home: Home) -> None:
    result = sql(home, "explain select workspace_id, count(*) from sms_messages group by 1", "--json")
    assert result.exit_code == 0, result.stderr
    [plan] = json.loads(result.stdout)
    assert plan["explain_key"] == "physical_plan" and "HASH_GROUP_BY" in plan["explain_value"].upper().replace(" ", "_")


def test_order_by_survives_the_row_limit(home: Home) -> None:
    result = sql(home, "select message_id from sms_messages order by message_id desc", "--json")
    ids = [r["message_id"] for r in json.loads(result.stdout)]
    assert len(ids) == ROWS_PER_DAY and ids == sorted(ids, reverse=True)


def test_every_table_has_its_documented_columns_with_or_without_partitions(home: Home, tmp_path: Path) -> None:
    empty = Home(tmp_path / "empty")
    empty.store.mkdir(parents=True)
    for store in (home.store, empty.store):
        con = query.analyst_connection(store)
        try:
            for table in TABLES:
                described = con.execute(f"describe {table.name}").fetchall()
                assert [(r[0], r[1]) for r in described] == [(c.name, sql_type(c.dtype)) for c in table.columns]
        finally:
            con.close()
