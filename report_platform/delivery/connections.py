"""Named connections from `$REPORT_PLATFORM_HOME/connections.yaml`.

The file holds only *names* of environment variables (fields ending in `_env`); the secrets
themselves are read from the environment at delivery time, so no model here can ever print one.
Every connection lists the organisations that may deliver through it (`organizations`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from report_platform.delivery.errors import ConfigurationError
from report_platform.settings import secret_from_env

DEFAULT_SMTP_CONNECTION = "default"
DEFAULT_MAX_ATTACHMENT_BYTES = 20 * 1000 * 1000
EVERY_ORGANIZATION = "*"
ORGANIZATIONS_HINT = (
    "list the organizations that may use it, e.g. organizations: [acme], or organizations: ['*'] for all"
)

ConnectionKind = Literal["smtp", "sftp", "s3"]
CONNECTION_KINDS: tuple[ConnectionKind, ...] = ("smtp", "sftp", "s3")

_C = TypeVar("_C", bound="_Connection")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Connection(_Model):
    """What every kind of connection has: the organisations allowed to deliver through it."""

    # Required, and "*" only when written: a connection is never shared between tenants by default.
    organizations: tuple[str, ...]

    @field_validator("organizations", mode="before")
    @classmethod
    def _organizations(cls, value: Any) -> tuple[str, ...]:
        if value == EVERY_ORGANIZATION:
            return (EVERY_ORGANIZATION,)
        if not isinstance(value, list | tuple):
            raise ValueError(f"must be a list of organization ids or '*'; {ORGANIZATIONS_HINT}")
        ids: list[str] = []
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"organization ids are text, got {item!r}")
            if not item.strip():
                raise ValueError("an organization id must not be empty")
            if item.strip() not in ids:
                ids.append(item.strip())
        if not ids:
            raise ValueError(f"must name at least one organization; {ORGANIZATIONS_HINT}")
        if EVERY_ORGANIZATION in ids and len(ids) > 1:
            raise ValueError("'*' already means every organization: write ['*'] alone or list ids")
        return tuple(ids)

    def allows(self, organization: str) -> bool:
        return EVERY_ORGANIZATION in self.organizations or organization in self.organizations


class SmtpConnection(_Connection):
    """An SMTP relay. `max_attachment_bytes` is measured after base64 MIME encoding."""

    host: str
    port: int = 587
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password_env: str | None = None
    from_address: str
    timeout: float = 60.0
    ca_file: str | None = None
    max_attachment_bytes: int = Field(DEFAULT_MAX_ATTACHMENT_BYTES, gt=0)

    @model_validator(mode="after")
    def _password_needs_user(self) -> SmtpConnection:
        if self.username and not self.password_env:
            raise ValueError("username is set, so password_env must name the password's variable")
        return self


class SftpConnection(_Connection):
    """An SFTP server, its pinned host key (or known_hosts file) and how to log in."""

    host: str
    port: int = 22
    username: str
    private_key_env: str | None = None
    private_key_file_env: str | None = None
    private_key_passphrase_env: str | None = None
    password_env: str | None = None
    host_key: str | None = None
    known_hosts_file: str | None = None
    timeout: float = 60.0
    # Remote folders are resolved beneath this one, for servers that are not chrooted.
    base_dir: str | None = None

    @model_validator(mode="after")
    def _check(self) -> SftpConnection:
        if not (self.host_key or self.known_hosts_file):
            raise ValueError(
                "set host_key (e.g. 'ssh-ed25519 AAAA...') or known_hosts_file: "
                "an SFTP server's identity must be checked"
            )
        if not (self.private_key_env or self.private_key_file_env or self.password_env):
            raise ValueError("set private_key_env, private_key_file_env or password_env")
        if self.host_key and len(self.host_key.split()) < 2:
            raise ValueError("host_key must look like 'ssh-ed25519 AAAA...'")
        return self


class S3Connection(_Connection):
    """An S3 (or S3-compatible) endpoint; without *_env fields the standard AWS chain is used."""

    region: str | None = None
    endpoint_url: str | None = None
    access_key_id_env: str | None = None
    secret_access_key_env: str | None = None
    session_token_env: str | None = None
    ca_file: str | None = None
    # A custom endpoint such as MinIO usually wants path-style addressing.
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # botocore's own retries per request, before delivery's retries with backoff kick in.
    sdk_max_attempts: int = Field(3, ge=1, le=10)

    @model_validator(mode="after")
    def _pairs(self) -> S3Connection:
        if bool(self.access_key_id_env) != bool(self.secret_access_key_env):
            raise ValueError("set both access_key_id_env and secret_access_key_env, or neither")
        return self


class Connections(_Model):
    """Every named connection, by kind."""

    smtp: dict[str, SmtpConnection] = Field(default_factory=dict)
    sftp: dict[str, SftpConnection] = Field(default_factory=dict)
    s3: dict[str, S3Connection] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | str) -> Connections:
        """Read and validate a connections file; a missing file means no connections."""
        path = Path(path)
        if not path.exists():
            return cls()
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{path} is not valid YAML: {exc}") from None
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigurationError(f"{path}: {_describe(exc)}") from None

    @classmethod
    def from_env(cls) -> Connections:
        """The connections file of `$REPORT_PLATFORM_HOME`."""
        from report_platform.settings import Home

        return cls.load(Home.from_env().connections)

    def get_smtp(self, name: str | None = None) -> SmtpConnection:
        return _pick(self.smtp, name or DEFAULT_SMTP_CONNECTION, "smtp")

    def get_sftp(self, name: str) -> SftpConnection:
        return _pick(self.sftp, name, "sftp")

    def get_s3(self, name: str) -> S3Connection:
        return _pick(self.s3, name, "s3")

    def table(self, kind: ConnectionKind) -> dict[str, _Connection]:
        if kind not in CONNECTION_KINDS:
            raise ConfigurationError(f"unknown connection kind {kind!r} (one of {', '.join(CONNECTION_KINDS)})")
        return dict(getattr(self, kind))

    def names_for(self, kind: ConnectionKind, organization: str) -> list[str]:
        """The `kind` connections `organization` may use, sorted; never another tenant's."""
        return sorted(name for name, conn in self.table(kind).items() if conn.allows(organization))

    def require_allowed(self, kind: ConnectionKind, name: str | None, organization: str) -> None:
        """Raise ConfigurationError unless `organization` may deliver through connection `name`.

        `name=None` means the default SMTP connection (e-mail that names none). An unknown name is
        answered with the names this organisation may use, so no other tenant's names leak.
        """
        if name is None:
            if kind != "smtp":
                raise ConfigurationError(f"a {kind} destination must name a connection")
            name = DEFAULT_SMTP_CONNECTION
        connection = self.table(kind).get(name)
        if connection is None:
            known = ", ".join(self.names_for(kind, organization)) or "none"
            raise ConfigurationError(
                f"no {kind} connection named {name!r} available to organization {organization!r} (known: {known})"
            )
        if not connection.allows(organization):
            raise ConfigurationError(f"connection {name!r} is not available to organization {organization!r}")

    def availability(self) -> dict[str, dict[str, frozenset[str]]]:
        """Kind -> connection name -> organisations allowed ('*' for all): plain data to check definitions."""
        return {
            kind: {name: frozenset(conn.organizations) for name, conn in self.table(kind).items()}
            for kind in CONNECTION_KINDS
        }

    def unknown_organizations(self, known: Iterable[str]) -> list[str]:
        """One line per organisation id listed on a connection but absent from `known`."""
        known = set(known)
        return [
            f"{kind} connection {name!r} lists organization {org!r}, which does not exist"
            for kind in CONNECTION_KINDS
            for name, conn in sorted(self.table(kind).items())
            for org in conn.organizations
            if org != EVERY_ORGANIZATION and org not in known
        ]


def _pick(table: dict[str, _C], name: str, kind: str) -> _C:
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise ConfigurationError(f"no {kind} connection named {name!r} in connections.yaml (known: {known})") from None


def _describe(exc: ValidationError) -> str:
    # Pydantic's default text repeats input values; connection files hold no secrets, but keep
    # the message short and positional anyway.
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "missing" and err["loc"][-1:] == ("organizations",):
            parts.append(f"{where}: required: {ORGANIZATIONS_HINT}")
        else:
            parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def read_secret(env_name: str, *, field: str, connection: str) -> str:
    """The value of a secret's environment variable, or of the file named by `<VAR>_FILE`.

    The error names the variable and the connection, never a value. Every value returned is
    registered for redaction, so any message that later quotes it shows its name instead.
    """
    from report_platform.redaction import register_secret

    value, file_path = secret_from_env(env_name)
    if value:
        register_secret(env_name, value)
        return value
    file_var = f"{env_name}_FILE"
    if file_path:
        try:
            value = Path(file_path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigurationError(
                f"{connection}: {field} names {env_name}; {file_var} points at {file_path!r} "
                f"which cannot be read ({exc.strerror})"
            ) from None
        register_secret(env_name, value)
        return value
    raise ConfigurationError(f"{connection}: environment variable {env_name} (from {field}) is not set")
