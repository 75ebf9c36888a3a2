"""Where the platform keeps its data, and the few settings that come from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Home:
    """The data folder (`$REPORT_PLATFORM_HOME`) and the fixed layout inside it."""

    root: Path

    @classmethod
    def from_env(cls) -> Home:
        raw = os.environ.get("REPORT_PLATFORM_HOME")
        root = Path(raw) if raw else PROJECT_ROOT / "data"
        return cls(root.resolve())

    @property
    def landing(self) -> Path:
        """Incoming usage files: `landing/<source>/<YYYY-MM-DD>.<csv|jsonl|parquet>`."""
        return self.root / "landing"

    @property
    def store(self) -> Path:
        """Usage partitions as Parquet: `store/<table>/day=<YYYY-MM-DD>/data.parquet`."""
        return self.root / "store"

    @property
    def catalog(self) -> Path:
        """The DuckDB file analysts open read-only; it holds views over `store/`."""
        return self.root / "store.duckdb"

    @property
    def archive(self) -> Path:
        """Every built export, kept with its SHA-256 for re-delivery and proof."""
        return self.root / "archive"

    @property
    def rate_card(self) -> Path:
        return self.root / "rate_card.yaml"

    @property
    def connections(self) -> Path:
        return self.root / "connections.yaml"

    @property
    def registry_url(self) -> str:
        return os.environ.get("REPORT_PLATFORM_REGISTRY_URL") or f"sqlite:///{self.root / 'registry.db'}"

    def ensure(self) -> Home:
        for path in (self.root, self.landing, self.store, self.archive):
            path.mkdir(parents=True, exist_ok=True)
        return self
