"""Every setting the platform takes from its environment, in one model, and the data folder layout.

`PlatformSettings` (pydantic-settings) is the only reader of the process environment: every other
module asks it (`current_settings()`), and Dagster resources are built from it in one place
(`report_platform.resources`). Secrets are the one kind of value read by *name*: a connection
names the variable that holds its password, and `secret_from_env` reads it here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "REPORT_PLATFORM_"
DEFAULT_RETENTION_DAYS = 90  # days an archived export is kept unless a report or the setting says otherwise
MAX_PERIOD_DAYS_CEILING = 3660  # the longest period a person may choose can be raised to ten years, no further
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class SettingsError(ValueError):
    """A setting in the environment is malformed; the message names the variable."""


@dataclass(frozen=True)
class S3Location:
    """A bucket and key prefix on S3 or an S3-compatible store; `endpoint_url` empty means AWS.

    Only the place: credentials come from the standard AWS chain (environment, profile, instance
    role) when a client is made, and are never part of this value.
    """

    bucket: str
    prefix: str = ""
    endpoint_url: str = ""

    def __post_init__(self) -> None:
        # "a", "/a" and "a/" name the same folder; keys then join without doubled slashes.
        prefix = self.prefix.strip("/")
        object.__setattr__(self, "prefix", prefix + "/" if prefix else "")

    @classmethod
    def of(cls, bucket: str, prefix: str = "", endpoint_url: str = "") -> S3Location | None:
        return cls(bucket, prefix, endpoint_url) if bucket else None

    def key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)

    def url(self, *parts: str) -> str:
        return f"s3://{self.bucket}/{self.key(*parts)}"

    def __str__(self) -> str:
        return self.url()


class PlatformSettings(BaseSettings):
    """The platform's configuration: `REPORT_PLATFORM_<FIELD>` variables (and `DAGSTER_HOME`)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    home: Path | None = None
    """The data folder; default `data/` in the project."""
    registry_url: str | None = None
    """The registry (and delivery ledger) database; default SQLite `registry.db` in the data folder."""
    source: Literal["synthetic", "landing"] = "synthetic"
    """Usage source: `synthetic` (a landing file when present, else the generator) or `landing`."""
    seed: int = 7
    rows_per_day: int = Field(2_000, ge=0)
    usage_start: date = date(2026, 1, 1)
    """First day of the usage assets' daily partitions."""
    landing_s3_bucket: str = ""
    landing_s3_prefix: str = ""
    landing_s3_endpoint_url: str = ""
    store_s3_bucket: str = ""
    """Keep the usage store's Parquet partitions in this bucket instead of `store/` in the data folder."""
    store_s3_prefix: str = ""
    store_s3_endpoint_url: str = ""
    """An S3-compatible endpoint (MinIO, moto); default AWS. Credentials: the standard AWS chain."""
    archive_s3_bucket: str = ""
    """Keep the archive of built exports in this bucket; `archive/` in the data folder is then a cache."""
    archive_s3_prefix: str = ""
    archive_s3_endpoint_url: str = ""
    build_threads: int | None = Field(None, ge=1)
    """DuckDB threads for one export build; default all cores, at most 4."""
    build_memory: str = "384MB"
    archive_retention_days: int = Field(DEFAULT_RETENTION_DAYS, ge=1)
    max_period_days: int = 366
    """The longest period a person may choose (custom ranges, run now for past periods)."""
    dagster_url: str = "http://127.0.0.1:3000"
    """Where the Dagster webserver answers (the production supervisor starts it there)."""
    code_server_port: int = Field(4000, ge=1, le=65535)
    """The Dagster code server's gRPC port on 127.0.0.1 (deploy/workspace.production.yaml names it)."""
    console_port: int = Field(3100, ge=1, le=65535)
    """The console's port on 127.0.0.1 when the production supervisor starts it."""
    session_idle_minutes: int = Field(30, ge=1, le=7 * 24 * 60)
    """A console sign-in ends after this many minutes without a request."""
    session_max_hours: int = Field(12, ge=1, le=30 * 24)
    """A console sign-in ends this many hours after it began, however active."""
    console_secure_cookies: bool = False
    """Mark the session cookie `Secure` (the console is served over HTTPS, e.g. behind a proxy)."""
    dagster_home: str | None = Field(None, validation_alias="DAGSTER_HOME")

    @field_validator("max_period_days", mode="before")
    @classmethod
    def _period_days(cls, value: object) -> int:
        raw = str(value).strip()
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PERIOD_DAYS_CEILING:
            raise ValueError(f"must be a whole number of days from 1 to {MAX_PERIOD_DAYS_CEILING}, got {raw!r}")
        return int(raw)

    @field_validator("store_s3_bucket", "archive_s3_bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if value and not _BUCKET.fullmatch(value):
            raise ValueError(f"must be an S3 bucket name (3-63 of a-z, 0-9, '.', '-'), got {value!r}")
        return value

    @field_validator("store_s3_prefix", "archive_s3_prefix", "store_s3_endpoint_url", "archive_s3_endpoint_url")
    @classmethod
    def _needs_bucket(cls, value: str, info: ValidationInfo) -> str:
        bucket = str(info.field_name).split("_s3_")[0] + "_s3_bucket"
        if value and not info.data.get(bucket):
            raise ValueError(f"is set but {ENV_PREFIX}{bucket.upper()} is not")
        return value

    @property
    def data_home(self) -> Path:
        return (self.home or PROJECT_ROOT / "data").resolve()

    @property
    def store_s3(self) -> S3Location | None:
        """Where the usage store lives when it is on S3; None for `store/` in the data folder."""
        return S3Location.of(self.store_s3_bucket, self.store_s3_prefix, self.store_s3_endpoint_url)

    @property
    def archive_s3(self) -> S3Location | None:
        """Where the archive lives when it is on S3; None for `archive/` in the data folder."""
        return S3Location.of(self.archive_s3_bucket, self.archive_s3_prefix, self.archive_s3_endpoint_url)


def _relevant_environment() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIX) or k == "DAGSTER_HOME"))


_cache: dict[tuple[tuple[str, str], ...], PlatformSettings] = {}


def current_settings() -> PlatformSettings:
    """The settings of this process, read from the environment once (again only if it changed)."""
    key = _relevant_environment()
    cached = _cache.get(key)
    if cached is None:
        try:
            cached = PlatformSettings()
        except ValidationError as exc:
            problems = []
            for error in exc.errors(include_url=False):
                field = str(error["loc"][0]) if error["loc"] else "?"
                name = "DAGSTER_HOME" if field == "dagster_home" else f"{ENV_PREFIX}{field.upper()}"
                problems.append(f"{name} {error['msg'].removeprefix('Value error, ')}")
            raise SettingsError("; ".join(problems)) from None
        _cache.clear()  # one live configuration per process
        _cache[key] = cached
    return cached


def process_environment() -> dict[str, str]:
    """A copy of this process's whole environment, for the processes the production supervisor
    starts: they read their settings and secrets themselves, from the same variables."""
    return dict(os.environ)


def secret_from_env(name: str) -> tuple[str | None, str | None]:
    """(value of variable `name`, else None; path named by `<name>_FILE`, else None).

    Connections name the variables that hold their secrets; this is where those are looked up.
    """
    return os.environ.get(name) or None, os.environ.get(f"{name}_FILE") or None


@dataclass(frozen=True)
class Home:
    """The data folder (`$REPORT_PLATFORM_HOME`) and the fixed layout inside it.

    The usage store and the archive may live on S3 instead (`store_s3`, `archive_s3`); the data
    folder then holds no store, and `archive/` is only this machine's cache of the bucket.
    """

    root: Path
    registry_override: str | None = None
    store_s3: S3Location | None = None
    archive_s3: S3Location | None = None

    @classmethod
    def from_env(cls) -> Home:
        settings = current_settings()
        return cls(settings.data_home, settings.registry_url, settings.store_s3, settings.archive_s3)

    @property
    def landing(self) -> Path:
        """Incoming usage files: `landing/<source>/<YYYY-MM-DD>.<csv|jsonl|parquet>`."""
        return self.root / "landing"

    @property
    def store(self) -> Path | S3Location:
        """Usage partitions as Parquet: `store/<table>/day=<YYYY-MM-DD>/data.parquet`, or the S3 prefix."""
        return self.store_s3 or self.root / "store"

    @property
    def catalog(self) -> Path:
        """The DuckDB file analysts open read-only; it holds views over `store/`."""
        return self.root / "store.duckdb"

    @property
    def archive(self) -> Path:
        """Every built export, kept with its SHA-256 for re-delivery and proof (with `archive_s3`:
        this machine's cache of the archived files it built or read)."""
        return self.root / "archive"

    @property
    def logs(self) -> Path:
        """The production processes' logs, one file per process (`report-platform production`)."""
        return self.root / "logs"

    @property
    def rate_card(self) -> Path:
        return self.root / "rate_card.yaml"

    @property
    def connections(self) -> Path:
        return self.root / "connections.yaml"

    @property
    def registry_url(self) -> str:
        return self.registry_override or f"sqlite:///{self.root / 'registry.db'}"

    def ensure(self) -> Home:
        for path in (self.root, self.landing, self.store, self.archive):
            if isinstance(path, Path):
                path.mkdir(parents=True, exist_ok=True)
        return self
