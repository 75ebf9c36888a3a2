"""Where a file may go (e-mail, SFTP, S3): strict models with messages a person understands.

The same models check a destination when a report is saved (reports/definition) and again when
it is delivered (`parse_destination`), so delivery accepts exactly what a user can save. The
field checks here (`single_line`, `shown`, ...) are the ones the rest of a definition uses too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from report_platform.delivery.addresses import address_problem
from report_platform.delivery.connections import DEFAULT_SMTP_CONNECTION, ConnectionKind
from report_platform.delivery.errors import ConfigurationError

DESTINATION_TYPES: tuple[str, ...] = ("email", "sftp", "s3")
CONNECTION_KIND_BY_TYPE: dict[str, ConnectionKind] = {"email": "smtp", "sftp": "sftp", "s3": "s3"}
MAX_LIST_ITEMS = 1000  # any list: each of to/cc/bcc, a report's workflows, ...
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONNECTION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_EXPIRES_RE = re.compile(r"([1-9][0-9]{0,5})([mhd])")
_EXPIRES_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
# SigV4 presigned URLs are valid for at most 7 days; the spec caps download links there too.
MAX_LINK_SECONDS = 7 * 86400
MIN_LINK_SECONDS = 3600


class FieldError(ValueError):
    """Raised inside a model validator to attach the message to one of the model's fields."""

    def __init__(self, field_path: str, message: str) -> None:
        self.field_path = field_path
        super().__init__(message)


class StrictModel(BaseModel):
    """Frozen, and an unknown field is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def shown(value: Any) -> str:
    """`value` as a message shows it: short text quoted, containers by their kind."""
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(text)
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)


def require_text(value: Any, what: str = "text") -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be {what}, got {shown(value)}")
    return value


def single_line(value: Any, *, max_len: int, allow_empty: bool = False) -> str:
    """`value` stripped, if it is text of one line and at most `max_len` characters."""
    text = require_text(value).strip()
    if not text and not allow_empty:
        raise ValueError("must not be empty")
    if CONTROL_CHARACTERS.search(text):
        raise ValueError("must be a single line without control characters")
    if len(text) > max_len:
        raise ValueError(f"must be at most {max_len} characters, got {len(text)}")
    return text


def check_list_length(value: list[Any]) -> None:
    if len(value) > MAX_LIST_ITEMS:
        raise ValueError(f"at most {MAX_LIST_ITEMS} items are allowed, got {len(value)}")


def strict_bool(value: Any) -> bool:
    """`value` if it is true or false; "yes", 1 and the like are refused."""
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {shown(value)}")
    return value


def _address_list(value: Any, *, required: bool) -> list[str]:
    if value is None:
        value = []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"must be a list of e-mail addresses, got {shown(value)}")
    if required and not value:
        raise ValueError("must list at least one e-mail address")
    check_list_length(value)
    addresses: list[str] = []
    seen: set[str] = set()  # lower-cased, so de-duplication stays linear in the list's length
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"must contain e-mail addresses, got {shown(item)}")
        address = item.strip()
        if address_problem(address) is not None:
            raise ValueError(f"invalid e-mail address {shown(item)}")
        if address.lower() not in seen:
            seen.add(address.lower())
            addresses.append(address)
    return addresses


def address_list(value: Any, *, required: bool) -> list[str]:
    """E-mail addresses checked and de-duplicated with the recipients' rule and messages."""
    return _address_list(value, required=required)


def _connection_name(value: Any) -> str:
    name = require_text(value, "a connection name").strip()
    if not _CONNECTION_RE.fullmatch(name):
        raise ValueError(f"must be a connection name of letters, digits, '-', '_' or '.', got {shown(value)}")
    return name


def _bucket_name(value: Any) -> str:
    name = require_text(value, "a bucket name").strip()
    if not _BUCKET_RE.fullmatch(name) or ".." in name:
        raise ValueError(f"must be an S3 bucket name (3-63 lower-case letters, digits, '.' or '-'), got {shown(value)}")
    return name


def _key_prefix(value: Any) -> str:
    if value is None:
        return ""
    prefix = single_line(value, max_len=900, allow_empty=True)
    if prefix.startswith("/"):
        raise ValueError(f"must not start with '/', got {shown(value)}")
    if ".." in prefix.split("/"):
        raise ValueError(f"must not contain '..' parts, got {shown(value)}")
    return prefix


def link_seconds(expires: str) -> int:
    """Seconds of a link lifetime written `30m`, `12h` or `7d`."""
    match = _EXPIRES_RE.fullmatch(expires)
    if match is None:
        raise ValueError(f"must be a duration like 12h or 7d, got {shown(expires)}")
    return int(match.group(1)) * _EXPIRES_UNIT_SECONDS[match.group(2)]


def _encrypt_to(value: Any) -> list[str]:
    """Armored OpenPGP public keys. Only their form is checked here (stored definitions are parsed
    again on every load); whether gpg can encrypt to them is checked when a report is saved
    (`pgp.key_problems`) and again at delivery."""
    from report_platform.delivery import pgp

    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"must be a list of ASCII-armored OpenPGP public keys, got {shown(value)}")
    if len(value) > pgp.MAX_KEYS:
        raise ValueError(f"at most {pgp.MAX_KEYS} keys are allowed, got {len(value)}")
    keys: list[str] = []
    for index, item in enumerate(value):
        try:
            text = pgp.check_key_text(item)
        except pgp.KeyProblem as exc:
            raise ValueError(f"key {index + 1} of {len(value)}: {exc}") from None
        if text not in keys:
            keys.append(text)
    return keys


class LargeFiles(StrictModel):
    """Where an e-mail puts a file too large to attach even zipped: a bucket, and a link's lifetime."""

    connection: str
    bucket: str
    prefix: str = ""
    expires: str = "7d"

    _connection = field_validator("connection", mode="before")(_connection_name)
    _bucket = field_validator("bucket", mode="before")(_bucket_name)
    _prefix = field_validator("prefix", mode="before")(_key_prefix)

    @field_validator("expires", mode="before")
    @classmethod
    def _expires(cls, value: Any) -> str:
        text = single_line(value, max_len=20)
        seconds = link_seconds(text)
        if seconds > MAX_LINK_SECONDS:
            raise ValueError(f"a download link may live at most 7d, got {shown(value)}")
        if seconds < MIN_LINK_SECONDS:
            raise ValueError(f"a download link must live at least 1h, got {shown(value)}")
        return text

    @property
    def expires_seconds(self) -> int:
        return link_seconds(self.expires)


class EmailDestination(StrictModel):
    """Deliver the file as an e-mail attachment.

    The subject and body templates are the report's: `deliver` is handed them rendered, so here
    they are only held to one line and a bounded size.
    """

    type: Literal["email"]
    to: list[str]
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    subject_template: str | None = None
    body_template: str | None = None
    connection: str = DEFAULT_SMTP_CONNECTION
    large_files: LargeFiles | None = None

    @field_validator("to", mode="before")
    @classmethod
    def _to(cls, value: Any) -> list[str]:
        return _address_list(value, required=True)

    @field_validator("cc", "bcc", mode="before")
    @classmethod
    def _copies(cls, value: Any) -> list[str]:
        return _address_list(value, required=False)

    @field_validator("subject_template", mode="before")
    @classmethod
    def _subject(cls, value: Any) -> str | None:
        return None if value is None else single_line(value, max_len=300)

    @field_validator("body_template", mode="before")
    @classmethod
    def _body(cls, value: Any) -> str | None:
        if value is None:
            return None
        text = require_text(value)
        if len(text) > 20_000:
            raise ValueError(f"must be at most 20000 characters, got {len(text)}")
        return text

    _connection = field_validator("connection", mode="before")(_connection_name)

    @model_validator(mode="before")
    @classmethod
    def _no_manifest(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "manifest" in data:
            raise FieldError(
                "manifest",
                "only sftp and s3 destinations can carry a manifest (a completion file next to the "
                "delivered file); an e-mail arrives whole or not at all, so remove manifest here",
            )
        return data


MANIFEST_SUFFIX = ".manifest.json"


class SftpDestination(StrictModel):
    """Upload the file to a directory on an SFTP server."""

    type: Literal["sftp"]
    connection: str
    remote_dir: str
    create_dirs: bool = False
    encrypt_to: list[str] = Field(default_factory=list)
    # After the file is in place, upload `<file>.manifest.json` describing it (see delivery/manifest.py).
    manifest: bool = False

    _connection = field_validator("connection", mode="before")(_connection_name)
    _bool = field_validator("create_dirs", mode="before")(strict_bool)
    _keys = field_validator("encrypt_to", mode="before")(_encrypt_to)
    _manifest_bool = field_validator("manifest", mode="before")(strict_bool)

    @field_validator("remote_dir", mode="before")
    @classmethod
    def _remote_dir(cls, value: Any) -> str:
        path = single_line(value, max_len=1000)
        if "\\" in path or ".." in path.split("/"):
            raise ValueError(f"must be a '/'-separated path without '..' parts, got {shown(value)}")
        return path


class S3Destination(StrictModel):
    """Put the file into an S3 bucket under a key prefix."""

    type: Literal["s3"]
    connection: str
    bucket: str
    prefix: str = ""
    server_side_encryption: Literal["AES256", "aws:kms"] | None = None
    kms_key_id: str | None = None
    encrypt_to: list[str] = Field(default_factory=list)
    # After the object is verified, put `<key>.manifest.json` describing it (see delivery/manifest.py).
    manifest: bool = False

    _connection = field_validator("connection", mode="before")(_connection_name)
    _bucket = field_validator("bucket", mode="before")(_bucket_name)
    _prefix = field_validator("prefix", mode="before")(_key_prefix)
    _keys = field_validator("encrypt_to", mode="before")(_encrypt_to)
    _manifest_bool = field_validator("manifest", mode="before")(strict_bool)

    @field_validator("kms_key_id", mode="before")
    @classmethod
    def _kms(cls, value: Any) -> str | None:
        return None if value is None else single_line(value, max_len=2048)

    @model_validator(mode="after")
    def _kms_needs_kms(self) -> S3Destination:
        if self.kms_key_id and self.server_side_encryption != "aws:kms":
            raise FieldError("kms_key_id", "only allowed with server_side_encryption: aws:kms")
        return self


Destination = Annotated[
    EmailDestination | SftpDestination | S3Destination,
    Discriminator("type"),
]
_DESTINATION: TypeAdapter[Destination] = TypeAdapter(Destination)


def parse_destination(destination: Mapping[str, Any]) -> Destination:
    """Validate a report's destination dict, with a message a person understands."""
    try:
        return _DESTINATION.validate_python(destination)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'destination'}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"invalid destination: {problems}") from None
