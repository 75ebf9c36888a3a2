"""Ingest one source for one UTC day into the store, replacing that day's partition.

Where the rows come from: the landing file for (source, day) when there is one; otherwise, in
`synthetic` mode (the embedded default and the demo) the deterministic generator, and in
`landing` mode a clear failure, because a production day with no file must not be invented.

Every file of the source is read and validated before anything is written, so a file that cannot
be read leaves the source's partitions as they were. Given a rate card, the day's billing is
derived again from the store after the partitions are replaced (also when a later write fails):
billing never counts usage the store no longer holds, whichever other source of the day fails.
Aegis days are then derived into `aegis_interactions` (their event streams rendered as the export
writes them, ingest/interactions.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from report_platform.domain.rate_card import RateCard
from report_platform.domain.tenancy import Tenancy
from report_platform.ingest import generator
from report_platform.ingest.billing import refresh_billing_day
from report_platform.ingest.interactions import InteractionsError, refresh_interactions_day
from report_platform.ingest.landing import LandingFileError, LocalLanding, read_raw, validate
from report_platform.settings import current_settings
from report_platform.store.partitions import Store, remove_partition, write_partition
from report_platform.store.schema import AEGIS_INTERACTIONS, QUARANTINE, TABLES_BY_NAME

# A source and the tables it fills (Aegis transactions carry their event stream).
SOURCE_TABLES = {
    "voice_calls": ("voice_calls",),
    "sms_messages": ("sms_messages",),
    "aegis_transactions": ("aegis_transactions", "aegis_events"),
}


@dataclass(frozen=True)
class SourceSettings:
    mode: str = "synthetic"  # synthetic | landing
    seed: int = 7
    rows_per_day: int = 2_000

    @classmethod
    def from_env(cls) -> SourceSettings:
        settings = current_settings()
        return cls(mode=settings.source, seed=settings.seed, rows_per_day=settings.rows_per_day)


@dataclass
class IngestResult:
    source: str
    day: date
    origin: str  # "landing:<file>" or "synthetic(seed=…)"
    rows: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    paths: dict[str, str] = field(default_factory=dict)
    billing_rows: int | None = None  # the day's billing line items after re-deriving; None when not re-derived
    interactions_problem: str | None = None  # why the day's aegis_interactions could not be derived


def _write_quarantine(store: Store, table_name: str, day: date, bad: pl.DataFrame) -> None:
    # One quarantine file per source and day: `quarantine/day=<day>/<source>.parquet`.
    if bad.height:
        write_partition(store, QUARANTINE, day, bad, name=table_name)
    else:
        # A clean re-ingest clears the day's earlier quarantine.
        remove_partition(store, QUARANTINE, day, name=table_name)


def ingest_day(
    store: Store,
    landing_root: Path | None,
    source: str,
    day: date,
    tenancy: Tenancy,
    settings: SourceSettings,
    landing=None,  # noqa: ANN001 - LocalLanding | S3Landing
    rate_card: RateCard | None = None,
) -> IngestResult:
    """Load (source, day), atomically replace its partitions and, given `rate_card`, re-derive the
    day's billing line items. Raises LandingFileError before writing anything."""
    if source not in SOURCE_TABLES:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCE_TABLES)}")
    landing = landing or (LocalLanding(landing_root) if landing_root else None)
    workspaces = frozenset(w.id for w in tenancy.workspaces())
    frames, quarantined, origins = _from_landing(landing, source, day, workspaces)
    if not frames:
        if settings.mode != "synthetic":
            where = landing_root / source / f"{day.isoformat()}.(parquet|csv|jsonl)" if landing_root else source
            raise LandingFileError(f"no landing file for {source} on {day.isoformat()}: expected {where}")
        frames = generator.generate(source, tenancy, day, settings.rows_per_day, settings.seed)
        origins.append(f"synthetic(seed={settings.seed}, rows_per_day={settings.rows_per_day})")
    elif source == "aegis_transactions" and "aegis_transactions" not in frames:
        raise LandingFileError(f"aegis_events for {day.isoformat()} landed without aegis_transactions")
    result = IngestResult(source, day, "; ".join(origins))
    try:
        for table_name in SOURCE_TABLES[source]:
            frame = frames.get(table_name)
            if frame is None:
                frame = pl.DataFrame(schema=TABLES_BY_NAME[table_name].schema)
            bad = quarantined.get(table_name, pl.DataFrame(schema=QUARANTINE.schema))
            if table_name == "aegis_events" and table_name in quarantined:
                frame, orphans = _split_orphan_events(frame, frames["aegis_transactions"], day, bad)
                bad = pl.concat([bad, orphans])
            if table_name == "aegis_events":
                # Sorted by transaction, the Parquet row groups' min/max let exports read only the
                # events of the transactions they need.
                frame = frame.sort("transaction_id", "seq")
            path = write_partition(store, TABLES_BY_NAME[table_name], day, frame)
            result.rows[table_name] = frame.height
            result.paths[table_name] = str(path)
            _write_quarantine(store, table_name, day, bad)
            result.quarantined += bad.height
        if source == "aegis_transactions":
            # The derivation reads the partitions back from disk, to record what it rendered; the
            # day's frames are let go first.
            del frame, bad
            frames.clear()
            quarantined.clear()
            _derive_interactions(store, day, result)
    finally:
        # Once a partition may have been replaced, billing follows the store, even if a later write failed.
        if rate_card is not None:
            result.billing_rows = refresh_billing_day(store, day, tenancy, rate_card)[0].height
    return result


def _from_landing(
    landing,  # noqa: ANN001 - LocalLanding | S3Landing | None
    source: str,
    day: date,
    workspaces: frozenset[str],
) -> tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame], list[str]]:
    """The source's landing files for the day, validated: rows and quarantined rows per table, and
    where they came from. Empty when nothing landed."""
    frames: dict[str, pl.DataFrame] = {}
    quarantined: dict[str, pl.DataFrame] = {}
    origins = []
    for table_name in SOURCE_TABLES[source]:
        found = landing.find(table_name, day) if landing else None
        if found is None:
            continue
        checked = validate(read_raw(found), TABLES_BY_NAME[table_name], day, found.name, workspaces)
        frames[table_name] = checked.rows
        quarantined[table_name] = checked.quarantined
        origins.append(f"landing:{found.name}")
    return frames, quarantined, origins


def _derive_interactions(store: Store, day: date, result: IngestResult) -> None:
    """Render the day's event streams into `aegis_interactions`. A day that cannot be derived keeps
    no partition there (exports then aggregate its events, as before); ingestion still succeeds."""
    try:
        derived = refresh_interactions_day(store, day, force=True)
    except InteractionsError as exc:
        remove_partition(store, AEGIS_INTERACTIONS, day)
        result.interactions_problem = str(exc)
        return
    result.rows[AEGIS_INTERACTIONS.name] = derived.rows
    result.paths[AEGIS_INTERACTIONS.name] = str(derived.path)


def _split_orphan_events(
    events: pl.DataFrame, transactions: pl.DataFrame, day: date, bad: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events whose transaction is not among the day's valid transactions are quarantined."""
    known = transactions.select("transaction_id")
    orphans = events.join(known, on="transaction_id", how="anti")
    file_name = bad["file"][0] if bad.height else "aegis_events landing file"
    rows = pl.DataFrame(
        {
            "source": ["aegis_events"] * orphans.height,
            "day": [day] * orphans.height,
            "file": [file_name] * orphans.height,
            "row_number": [None] * orphans.height,
            "reason": ["transaction_id: no valid transaction with this id on this day"] * orphans.height,
            "raw": orphans.select(pl.struct(pl.all().cast(pl.String)).struct.json_encode())["transaction_id"]
            if orphans.height
            else [],
        },
        schema=QUARANTINE.schema,
    )
    return events.join(known, on="transaction_id", how="semi"), rows


def write_landing_day(
    landing_root: Path,
    source: str,
    day: date,
    tenancy: Tenancy,
    rows_per_day: int,
    seed: int,
    fmt: str = "parquet",
) -> list[Path]:
    """Generate (source, day) into the landing zone, as a data provider would deliver it."""
    written = []
    for table_name, frame in generator.generate(source, tenancy, day, rows_per_day, seed).items():
        target = landing_root / table_name / f"{day.isoformat()}.{fmt}"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        if fmt == "parquet":
            frame.write_parquet(tmp)
        elif fmt == "csv":
            frame.write_csv(tmp)
        elif fmt == "jsonl":
            frame.write_ndjson(tmp)
        else:
            raise ValueError(f"unknown landing format {fmt!r}")
        os.replace(tmp, target)
        written.append(target)
    return written
