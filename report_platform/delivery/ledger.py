"""The delivery ledger: which deliveries are claimed, sent, confirmed or failed, in the registry's
database (SQLite by default, PostgreSQL in production), so every worker on every machine sees
the same truth and two workers can never both send the same file.

One row per delivery identity: (report run, destination type, connection and its endpoint,
target, recipient set, file SHA-256). Its state moves

    claimed -> sent -> confirmed          the server took it and we recorded that
            \\-> failed                    a retry may take the row over and send what is missing
    claimed/sent, lease expired -> unknown (e-mail) | taken over (SFTP, S3)

A claim is an INSERT under a unique key (or a compare-and-set of a failed row), made in one
transaction before anything is sent. The claiming worker renews a short lease while it works; a
worker that dies stops renewing. An e-mail whose worker died mid-send is never resent
automatically (a mail cannot be taken back; the outcome is "unknown" until an operator releases
it); SFTP and S3 deliveries are idempotent at the server (same path, same bytes; a conditional
put) and are simply taken over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, Column, Engine, Integer, MetaData, String, Table, Text, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from report_platform.database import UTCDateTime, make_engine
from report_platform.delivery.artifact import Receipt
from report_platform.delivery.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError

log = logging.getLogger(__name__)

CLAIMED, SENT, CONFIRMED, FAILED, UNKNOWN = "claimed", "sent", "confirmed", "failed", "unknown"
STATES = (CLAIMED, SENT, CONFIRMED, FAILED, UNKNOWN)
# Destinations where sending the same bytes to the same place again changes nothing.
IDEMPOTENT_DESTINATIONS = frozenset({"sftp", "s3"})

DEFAULT_LEASE_SECONDS = 120.0

metadata = MetaData()
deliveries = Table(
    "delivery_ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(64), nullable=False, unique=True),
    Column("scope", String(300), nullable=False, index=True),
    Column("destination", String(16), nullable=False),
    Column("connection", String(200), nullable=False),
    Column("endpoint", String(500), nullable=False),
    Column("target", Text, nullable=False),
    Column("recipients", JSON, nullable=False),
    Column("artifact_sha256", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("token", String(32), nullable=False),
    Column("worker", String(300), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("claimed_at", UTCDateTime, nullable=False),
    Column("lease_until", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # address -> "accepted" | the server's refusal, for e-mail; empty otherwise.
    Column("outcomes", JSON, nullable=False),
    Column("receipt", JSON),
    Column("error", Text),
)


class DeliveryInProgressError(TransientDeliveryError):
    """Another worker holds a live claim on this delivery; nothing was sent by this one."""


class OutcomeUnknownError(PermanentDeliveryError):
    """A worker stopped mid-delivery without recording the result; not resent automatically."""


@dataclass(frozen=True)
class DeliveryIdentity:
    """What makes two deliveries "the same" delivery."""

    scope: str  # the report run: report id + scheduled time (+ a backfill's variant)
    destination: str  # email | sftp | s3
    connection: str
    endpoint: str  # host:port, or the S3 endpoint/region: a renamed connection is not a new place
    target: str
    recipients: tuple[str, ...]
    sha256: str

    @property
    def key(self) -> str:
        parts = [
            self.scope,
            self.destination,
            self.connection,
            self.endpoint,
            self.target,
            sorted(set(self.recipients)),
            self.sha256,
        ]
        return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    """This worker's right to send one delivery, or the receipt of the earlier one."""

    key: str
    token: str
    attempt: int
    reused: Receipt | None = None
    # E-mail: the addresses that already accepted the message in an earlier attempt.
    accepted: frozenset[str] = frozenset()


@dataclass(frozen=True)
class LedgerRow:
    id: int
    key: str
    scope: str
    destination: str
    connection: str
    target: str
    state: str
    worker: str
    attempt: int
    claimed_at: datetime
    updated_at: datetime
    outcomes: dict[str, str] = field(default_factory=dict)
    receipt: dict[str, Any] | None = None
    error: str | None = None


def worker_label(run_id: str | None = None) -> str:
    """Who is delivering: host, process and (when known) the Dagster run."""
    base = f"{socket.gethostname()}:{os.getpid()}"
    return f"{base}:{run_id}" if run_id else base


def _now() -> datetime:
    return datetime.now(UTC)


class DeliveryLedger:
    """The ledger table in the registry database. Safe to share between threads and processes."""

    def __init__(
        self,
        engine: Engine,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        wait_seconds: float | None = None,
        poll_seconds: float = 0.25,
    ) -> None:
        self.engine = engine
        self.lease = timedelta(seconds=lease_seconds)
        # Long enough for a dead worker's lease to run out, so a waiting retry gets an answer.
        self.wait_seconds = lease_seconds + 5 if wait_seconds is None else wait_seconds
        self.poll_seconds = poll_seconds
        # The registry's migrations own this table; whoever opens the database first runs them.
        from report_platform.migrations import upgrade

        upgrade(engine)

    @classmethod
    def open(cls, url: str, **kwargs: Any) -> DeliveryLedger:
        """The ledger in the database at `url` (one engine per URL and process)."""
        return cls(_engine(url), **kwargs)

    def claim(self, identity: DeliveryIdentity, *, worker: str | None = None) -> Claim:
        """Claim `identity` for this worker, or return the confirmed receipt of an earlier delivery.

        Waits (bounded) while another worker holds a live claim. Raises `OutcomeUnknownError` for
        an e-mail whose worker died mid-send, `DeliveryInProgressError` when the wait runs out.
        """
        worker = worker or worker_label()
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                outcome = self._try_claim(identity, worker)
            except IntegrityError:
                continue  # another worker inserted the row between our read and write: look again
            except SQLAlchemyError as exc:
                raise PermanentDeliveryError(
                    f"the delivery ledger cannot record a claim ({_db_reason(exc)}); nothing was sent",
                    destination=identity.destination,
                ) from None
            if isinstance(outcome, Claim):
                return outcome
            holder, claimed_at = outcome
            if time.monotonic() >= deadline:
                raise DeliveryInProgressError(
                    f"{identity.target} is being delivered by another worker ({holder}, since "
                    f"{claimed_at:%Y-%m-%d %H:%M:%S} UTC); this run sent nothing, to avoid a second copy",
                    destination=identity.destination,
                )
            time.sleep(self.poll_seconds)

    def _try_claim(self, identity: DeliveryIdentity, worker: str) -> Claim | tuple[str, datetime]:
        now = _now()
        token = secrets.token_hex(16)
        key = identity.key
        unknown: OutcomeUnknownError | None = None
        with self.engine.begin() as conn:
            row = conn.execute(select(deliveries).where(deliveries.c.key == key).with_for_update()).mappings().first()
            if row is None:
                conn.execute(
                    deliveries.insert().values(
                        key=key,
                        scope=identity.scope[:300],
                        destination=identity.destination,
                        connection=identity.connection,
                        endpoint=identity.endpoint,
                        target=identity.target,
                        recipients=sorted(set(identity.recipients)),
                        artifact_sha256=identity.sha256,
                        state=CLAIMED,
                        token=token,
                        worker=worker,
                        attempt=1,
                        claimed_at=now,
                        lease_until=now + self.lease,
                        updated_at=now,
                        outcomes={},
                    )
                )
                return Claim(key, token, 1)
            state = row["state"]
            accepted = frozenset(a for a, o in (row["outcomes"] or {}).items() if o == "accepted")
            if state == CONFIRMED:
                return Claim(key, row["token"], row["attempt"], reused=Receipt.from_dict(row["receipt"]))
            if state == UNKNOWN:
                raise OutcomeUnknownError(_unknown_message(row), destination=identity.destination)
            live = state in (CLAIMED, SENT) and row["lease_until"] > now
            if live:
                return row["worker"], row["claimed_at"]
            if state in (CLAIMED, SENT) and identity.destination not in IDEMPOTENT_DESTINATIONS:
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.key == key, deliveries.c.token == row["token"])
                    .values(state=UNKNOWN, updated_at=now, error=_unknown_message(row))
                )
                log.error("delivery %s: %s", key[:12], _unknown_message(row))
                # Raised after the transaction commits, so the row says "unknown" for everyone.
                unknown = OutcomeUnknownError(_unknown_message(row), destination=identity.destination)
            else:
                taken = conn.execute(
                    update(deliveries)
                    .where(deliveries.c.key == key, deliveries.c.token == row["token"])
                    .values(
                        state=CLAIMED,
                        token=token,
                        worker=worker,
                        attempt=row["attempt"] + 1,
                        claimed_at=now,
                        lease_until=now + self.lease,
                        updated_at=now,
                        error=None,
                    )
                )
                if taken.rowcount != 1:
                    raise IntegrityError("claim", None, Exception("claimed concurrently"))
                return Claim(key, token, row["attempt"] + 1, accepted=accepted)
        assert unknown is not None
        raise unknown

    @contextmanager
    def heartbeat(self, claim: Claim) -> Iterator[None]:
        """Keep the claim's lease alive while the body runs (a thread renews it)."""
        stop = threading.Event()
        interval = max(self.lease.total_seconds() / 3, 0.05)

        def renew() -> None:
            while not stop.wait(interval):
                try:
                    with self.engine.begin() as conn:
                        conn.execute(
                            update(deliveries)
                            .where(deliveries.c.key == claim.key, deliveries.c.token == claim.token)
                            .values(lease_until=_now() + self.lease)
                        )
                except SQLAlchemyError as exc:  # the next renewal may succeed; the lease says how long
                    log.warning("could not renew the delivery claim %s: %s", claim.key[:12], _db_reason(exc))

        thread = threading.Thread(target=renew, name=f"ledger-lease-{claim.key[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def mark_sent(self, claim: Claim, accepted: Iterable[str] = ()) -> None:
        """The server has taken (part of) the delivery; for e-mail, which addresses accepted it."""
        self._update(claim, state=SENT, accepted=accepted)

    def confirm(self, claim: Claim, receipt: Receipt) -> None:
        """Record the confirmed delivery. Raises if it cannot be written (see `deliver`)."""
        outcomes = receipt.extra.get("outcomes") or {}
        self._update(claim, state=CONFIRMED, accepted=outcomes, receipt=receipt.to_dict())

    def fail(self, claim: Claim, error: str, outcomes: dict[str, str] | None = None) -> None:
        self._update(claim, state=FAILED, outcomes=outcomes or {}, error=error[:4000])

    def _update(
        self,
        claim: Claim,
        *,
        state: str,
        accepted: Iterable[str] = (),
        outcomes: dict[str, str] | None = None,
        receipt: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        with self.engine.begin() as conn:
            row = (
                conn.execute(select(deliveries.c.outcomes, deliveries.c.token).where(deliveries.c.key == claim.key))
                .mappings()
                .first()
            )
            if row is None or row["token"] != claim.token:
                raise PermanentDeliveryError(
                    "this worker's claim on the delivery was taken over by another worker (its lease ran out); "
                    "the other worker's outcome stands"
                )
            merged = dict(row["outcomes"] or {})
            merged.update({address: "accepted" for address in accepted})
            merged.update(outcomes or {})
            values: dict[str, Any] = {"state": state, "outcomes": merged, "updated_at": _now(), "error": error}
            if receipt is not None:
                values["receipt"] = receipt
            conn.execute(
                update(deliveries)
                .where(deliveries.c.key == claim.key, deliveries.c.token == claim.token)
                .values(values)
            )

    def rows(self, scope: str | None = None, state: str | None = None) -> list[LedgerRow]:
        query = select(deliveries).order_by(deliveries.c.id)
        if scope is not None:
            query = query.where(deliveries.c.scope == scope)
        if state is not None:
            query = query.where(deliveries.c.state == state)
        with self.engine.connect() as conn:
            return [
                LedgerRow(
                    id=r["id"],
                    key=r["key"],
                    scope=r["scope"],
                    destination=r["destination"],
                    connection=r["connection"],
                    target=r["target"],
                    state=r["state"],
                    worker=r["worker"],
                    attempt=r["attempt"],
                    claimed_at=r["claimed_at"],
                    updated_at=r["updated_at"],
                    outcomes=dict(r["outcomes"] or {}),
                    receipt=r["receipt"],
                    error=r["error"],
                )
                for r in conn.execute(query).mappings()
            ]

    def release(self, row_id: int, *, note: str) -> LedgerRow:
        """Let an operator allow a resend of a delivery whose outcome is unknown (it becomes failed)."""
        with self.engine.begin() as conn:
            row = conn.execute(select(deliveries).where(deliveries.c.id == row_id)).mappings().first()
            if row is None:
                raise PermanentDeliveryError(f"no delivery {row_id} in the ledger")
            if row["state"] != UNKNOWN:
                raise PermanentDeliveryError(
                    f"delivery {row_id} is {row['state']}, not unknown; only an unknown outcome can be released"
                )
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id == row_id)
                .values(state=FAILED, updated_at=_now(), error=f"released by an operator: {note}"[:4000])
            )
        return next(r for r in self.rows() if r.id == row_id)


def _unknown_message(row: Any) -> str:
    return (
        f"the outcome of delivering {row['target']} is unknown: worker {row['worker']} claimed it at "
        f"{row['claimed_at']:%Y-%m-%d %H:%M:%S} UTC and stopped without recording a result, so it may have "
        f"been sent. An e-mail is never resent automatically: check with the recipients, then allow a "
        f"resend with `report-platform deliveries release {row['id']}`"
    )


def _db_reason(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    return str(original or exc).splitlines()[0][:300]


@lru_cache(maxsize=16)
def _engine(url: str) -> Engine:
    return make_engine(url, durable_commits=True)


def confirm_or_explain(ledger: DeliveryLedger, claim: Claim, receipt: Receipt, describe: Callable[[], str]) -> None:
    """Record a confirmed delivery; if that write fails, fail loudly without inviting a resend."""
    try:
        ledger.confirm(claim, receipt)
    except (SQLAlchemyError, OSError) as exc:
        reason = _db_reason(exc) if isinstance(exc, SQLAlchemyError) else str(exc)
        raise DeliveryError(
            f"{describe()} was delivered ({receipt.location}) but the delivery ledger could not record it "
            f"({reason}); it will not be sent again automatically",
            destination=receipt.destination,
        ) from None
