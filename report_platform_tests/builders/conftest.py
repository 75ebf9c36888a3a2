"""A small usage store shared by the builder tests: a few days around both 2026 DST changes
in America/New_York, every source, and billing line items derived from them."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from report_platform.domain.rate_card import DEFAULT_RATE_CARD, RateCard, load_rate_card
from report_platform.domain.tenancy import DEMO_TENANCY, Tenancy
from report_platform.ingest.billing import derive_billing_day
from report_platform.ingest.load import SourceSettings, ingest_day
from report_platform.store.duck import reader
from report_platform.store.partitions import write_partition
from report_platform.store.schema import BILLING_LINE_ITEMS

DAYS = (
    date(2026, 3, 7),
    date(2026, 3, 8),  # spring forward
    date(2026, 3, 9),
    date(2026, 10, 31),
    date(2026, 11, 1),  # fall back; also the 1st, so monthly fees are charged
    date(2026, 11, 2),
)
ROWS_PER_DAY = 3_000
SOURCES = ("voice_calls", "sms_messages", "aegis_transactions")


@pytest.fixture(scope="session")
def tenancy() -> Tenancy:
    return DEMO_TENANCY


@pytest.fixture(scope="session")
def rate_card() -> RateCard:
    return load_rate_card(DEFAULT_RATE_CARD)


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory, tenancy: Tenancy, rate_card: RateCard) -> Path:
    root = tmp_path_factory.mktemp("store")
    settings = SourceSettings(rows_per_day=ROWS_PER_DAY, seed=11)
    for day in DAYS:
        for source in SOURCES:
            ingest_day(root, None, source, day, tenancy, settings)
        write_partition(root, BILLING_LINE_ITEMS, day, derive_billing_day(root, day, tenancy, rate_card))
    return root


@pytest.fixture()
def con(store: Path):
    connection = reader(store)
    yield connection
    connection.close()
