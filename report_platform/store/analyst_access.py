"""How analysts reach the store without being able to change it: the closing section of `docs/store.md`."""

from __future__ import annotations

ANALYST_ACCESS_MARKDOWN = """\
## Reading the store without being able to change it

### `report-platform sql`

```
report-platform sql "SELECT ..." [--json] [--timeout S] [--max-rows N]
```

- **One query.** Exactly one statement that can stand as a subquery: `SELECT`, `WITH ... SELECT`,
  `FROM table SELECT ...`, `VALUES`, `TABLE t`, `DESCRIBE`, `SHOW TABLES`, `SUMMARIZE`, `PIVOT`,
  `UNPIVOT`, or a plain `EXPLAIN` of one of them. It runs as
  `SELECT * FROM (<query>) AS analyst_query LIMIT N+1`, so nothing but a query can parse there;
  columns with the same name come out as `n`, `n_1`, ... Anything else is refused with one line on
  stderr: `COPY`, `ATTACH`, `CREATE`, `INSERT`, `SET`/`RESET`, `PRAGMA`, `CALL`, `CHECKPOINT`,
  `INSTALL`/`LOAD`, `EXPORT`, several statements at once, `EXPLAIN` with options, and
  `EXPLAIN ANALYZE` (DuckDB executes the statement it analyses).
- **No file access at all.** The query runs in an in-memory DuckDB with external access off, no
  allowed path or directory, no temp folder, no extension loading and its configuration locked.
  The tables are handed to it as Arrow datasets that the command opens for reading, so a query can
  read the tables below and nothing else: `read_csv`, `read_parquet`, `glob`, `ATTACH` or
  `COPY ... TO` of any path fail with "file system operations are disabled".
- **Bounded.** `--timeout` (default 60 s): the query is interrupted and the command fails with
  `query stopped after N s (--timeout)`. `--max-rows` (default 10,000): at most N rows are printed.
  Memory: 2 GB and 2 threads per query, with no spilling to disk; a query that needs more fails
  with a one-line "needs more than the 2GB of memory" message.
- **Exit status.** 0: every row printed. 1: refused, failed or stopped, with one line on stderr.
  2: a wrong option. 3: the result had more than `--max-rows` rows; the first N rows are printed
  (with `--json` still a valid array of row objects) and stderr says
  `output cut at N rows (--max-rows): the query returned more`. A script reading `--json` must
  treat 3 as "incomplete".
- **Writes nothing.** The command reads `store/` and nothing else in the data folder, and creates
  no file or folder, so it runs for an account that may only read `store/`.

What it does not guarantee:

- It is not a boundary between organisations: every table holds every workspace of every
  organisation, and `quarantine` holds raw landing rows. Whoever may run it sees all usage.
- It is only as strong as the account running it. Someone who can run other programs with the
  same file rights can write wherever those rights allow; `duckdb -readonly store.duckdb` only
  makes the catalog file read-only, and its `COPY ... TO` and `ATTACH` still write with the user's
  rights. Read-only access for analysts therefore comes from file permissions, below.
- A query that runs while ingestion replaces partitions may see some days before and some after
  the ingestion; each partition is always whole (it is replaced by one rename).

### File permissions for analysts

Everything in `$REPORT_PLATFORM_HOME` belongs to the account the platform runs as. Analysts are
members of a group that may read `store/` and `store.duckdb` and nothing else: not `registry.db`
(users, roles, report definitions and their recipients), `connections.yaml` (delivery secrets),
`archive/` (exports as delivered), `landing/` (raw files), `dagster_home/` or `devservers/`.
As root, once (`RP_HOME` is the data folder, `RP_USER` the platform's account; analysts must not
be members of `RP_USER`'s own group):

```sh
groupadd --system rp-analysts
usermod -aG rp-analysts alice
chown -R "$RP_USER": "$RP_HOME"
chmod -R o-rwx "$RP_HOME"                                   # nobody else reads any of it
chgrp rp-analysts "$RP_HOME" && chmod 0710 "$RP_HOME"        # analysts pass through, cannot list
chgrp -R rp-analysts "$RP_HOME/store" "$RP_HOME/store.duckdb"
find "$RP_HOME/store" -type d -exec chmod 2750 {} +          # setgid: new day folders keep the group
find "$RP_HOME/store" -type f -exec chmod 0640 {} +
chmod 0640 "$RP_HOME/store.duckdb"
chmod 0600 "$RP_HOME/registry.db" "$RP_HOME/connections.yaml"
```

Run the platform's processes with `umask 0027` (systemd: `UMask=0027`), so that what it creates
later is not readable by others and new folders in `store/` are `2750`. Every partition is
written with mode `0640` before it is renamed into place, so a new or replaced partition is
readable by the analysts' group (through the setgid folders) and by nobody else.

An analyst then reads with `REPORT_PLATFORM_HOME="$RP_HOME" report-platform sql "..."` or
`duckdb -readonly "$RP_HOME/store.duckdb"`; `ls "$RP_HOME"`, `cat "$RP_HOME/connections.yaml"` and
`touch "$RP_HOME/store/x"` fail with "Permission denied". With the registry on PostgreSQL
(`REPORT_PLATFORM_REGISTRY_URL`) there is no `registry.db`; keep its credentials out of the
analysts' environment.
"""
