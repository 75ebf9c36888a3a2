"""The rate card: prices per billing line type as exact decimals, from an editable YAML file."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import yaml

DEFAULT_RATE_CARD = Path(__file__).with_name("rate_card.yaml")

# Every type a billing report may show, in the order reports list them.
LINE_TYPES = (
    "CampaignFee",
    "ByopPoolFee",
    "Transactions",
    "AegisLiteTransactions",
    "AegisEttTransactions",
    "Messages",
    "MessageCarrierFees",
    "SmsLongCodeFee",
    "ProtectNumber",
    "Calls",
    "IntrastateVoIP",
    "InterstateVoIP",
    "TaxesAndFees",
    "TRS",
    "FUSF",
)
CENT = Decimal("0.01")


def money(value: Decimal) -> Decimal:
    """Round to the cent, half up, as invoices do."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class LineRate:
    type: str
    description: str
    unit: str
    rate: Decimal


@dataclass(frozen=True)
class TaxRate:
    type: str
    description: str
    percent: Decimal
    base: tuple[str, ...]

    @property
    def rate(self) -> Decimal:
        return self.percent / Decimal(100)


@dataclass(frozen=True)
class RateCard:
    currency: str
    lines: dict[str, LineRate]
    taxes: dict[str, TaxRate]


class RateCardError(ValueError):
    pass


def _decimal(value: object, where: str) -> Decimal:
    if isinstance(value, float):
        raise RateCardError(f"{where}: write the amount in quotes ({value!r} would be a float)")
    try:
        return Decimal(str(value))
    except Exception as exc:
        raise RateCardError(f"{where}: {value!r} is not a number") from exc


def parse_rate_card(data: dict) -> RateCard:
    lines: dict[str, LineRate] = {}
    for name, spec in (data.get("lines") or {}).items():
        if name not in LINE_TYPES:
            raise RateCardError(f"lines.{name}: unknown line type (known: {', '.join(LINE_TYPES)})")
        lines[name] = LineRate(
            name,
            spec["description"],
            spec.get("unit", "unit"),
            _decimal(spec["rate"], f"lines.{name}.rate"),
        )
    taxes: dict[str, TaxRate] = {}
    for name, spec in (data.get("taxes") or {}).items():
        if name not in LINE_TYPES:
            raise RateCardError(f"taxes.{name}: unknown line type")
        base = tuple(spec.get("base") or ())
        for b in base:
            if b not in lines:
                raise RateCardError(f"taxes.{name}.base: {b!r} is not a priced line type")
        taxes[name] = TaxRate(name, spec["description"], _decimal(spec["percent"], f"taxes.{name}.percent"), base)
    missing = [t for t in LINE_TYPES if t not in lines and t not in taxes]
    if missing:
        raise RateCardError(f"rate card has no price for: {', '.join(missing)}")
    return RateCard(str(data.get("currency", "USD")), lines, taxes)


def load_rate_card(path: Path) -> RateCard:
    """Load the deployment's rate card, creating it from the default on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEFAULT_RATE_CARD, path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RateCardError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return parse_rate_card(data or {})
    except KeyError as exc:
        raise RateCardError(f"{path}: missing field {exc}") from exc
