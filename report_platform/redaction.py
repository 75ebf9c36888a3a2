"""Keep secret values out of every text a person or a log can read.

A process-wide registry holds the secrets this process has seen: every value `read_secret`
returns is registered under its variable's name, together with the forms it takes when an error
or a log line quotes it (base64, URL-encoding, `repr`/JSON escaping, each line of a multi-line
value such as a PEM key). `redact(text)` replaces each with `[redacted:<VARIABLE>]`; private-key
blocks, and base64 of them, are replaced even when nobody registered them, because a process that
never read the secret (a sensor, the CLI) may still be handed a message that quotes it.

Where text leaves the process it passes through here: the audit log's `error` and `note`, the
CLI's error line, every log record once `install()` has run (that includes Dagster's event log,
whose records are built from Python log records), and exceptions wrapped by `redacted_exception`.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from report_platform.settings import secret_from_env

# Shorter values would match ordinary words and numbers in every message; a secret this short
# is not protected by redaction anyway.
MIN_SECRET_LENGTH = 6
# A line of a multi-line secret this short ("-----", "==") says nothing about the secret.
MIN_LINE_LENGTH = 9
# A message cut to a column's width may end in the first part of a secret; this much of one is
# recognised.
MIN_CUT_LENGTH = 8

# Found without any registration: the body of a PEM private key, the base64 of "-----BEGIN"
# (how a base64-encoded key file starts) and of "openssh-key-v1" (an OpenSSH key's first line).
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.DOTALL),
        "[redacted:private key]",
    ),
    (re.compile(r"LS0tLS1CRUdJT[A-Za-z0-9+/=_-]*(?:(?:\\n|\r?\n)[A-Za-z0-9+/=_-]+)*"), "[redacted:base64 key]"),
    (re.compile(r"b3BlbnNzaC1rZXktdjE[A-Za-z0-9+/=]*"), "[redacted:private key]"),
)


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: dict[str, str] = {}  # form of a secret -> name of its variable
        self._pattern: re.Pattern[str] | None = None

    def add(self, name: str, value: str) -> None:
        forms = [f for f in _forms(value) if f not in self._names]
        if not forms:
            return
        with self._lock:
            for form in forms:
                self._names.setdefault(form, name)
            self._pattern = None

    def name_of(self, value: str) -> str | None:
        return self._names.get(value) or self._names.get(value.strip())

    def pattern(self) -> re.Pattern[str] | None:
        pattern = self._pattern
        if pattern is None and self._names:
            with self._lock:
                # Longest first, so a whole key is replaced before any of its lines.
                forms = sorted(self._names, key=len, reverse=True)
                pattern = self._pattern = re.compile("|".join(re.escape(f) for f in forms))
        return pattern

    def cut_at_end(self, text: str) -> tuple[int, str] | None:
        """Where `text` ends in the start of a registered secret (it was truncated), and that secret's name."""
        for form, name in list(self._names.items()):
            start = text.find(form[:MIN_CUT_LENGTH], max(0, len(text) - len(form) + 1))
            while start != -1:
                if len(text) - start >= MIN_CUT_LENGTH and form.startswith(text[start:]):
                    return start, name
                start = text.find(form[:MIN_CUT_LENGTH], start + 1)
        return None

    def clear(self) -> None:
        with self._lock:
            self._names.clear()
            self._pattern = None


_registry = _Registry()


def _forms(value: str) -> set[str]:
    """The texts under which `value` may show up in a message."""
    values = {value, value.strip()}
    forms: set[str] = set()
    for v in values:
        if len(v) < MIN_SECRET_LENGTH:
            continue
        raw = v.encode("utf-8")
        forms.add(v)
        forms.add(repr(v)[1:-1])
        forms.add(json.dumps(v)[1:-1])
        forms.add(urllib.parse.quote(v, safe=""))
        forms.add(urllib.parse.quote_plus(v))
        for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
            text = encoded.decode("ascii")
            forms.update((text, text.rstrip("=")))
        for line in v.splitlines():
            line = line.strip()
            # PEM armour lines are the same in every key; the key is in the lines between them.
            if len(line) >= MIN_LINE_LENGTH and not line.startswith("-----"):
                forms.add(line)
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def register_secret(name: str, value: str | None) -> None:
    """Remember `value` (and its quoted forms) as a secret named `name`; short or empty values are ignored."""
    if value:
        _registry.add(name, value)


def register_env_secrets(names: Iterable[str]) -> None:
    """Register the values of these environment variables (or of the files named by `<VAR>_FILE`).

    Unset variables and unreadable files are skipped: this only prepares redaction, and the
    delivery that needs the secret reports a missing one itself.
    """
    for name in names:
        value, file_path = secret_from_env(name)
        if not value and file_path:
            try:
                value = Path(file_path).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError:
                value = None
        register_secret(name, value)


def env_names_in(config: Any) -> list[str]:
    """Every value of a key ending in `_env` in a nested mapping such as connections.yaml's content."""
    found: list[str] = []
    if isinstance(config, Mapping):
        for key, item in config.items():
            if str(key).endswith("_env") and isinstance(item, str):
                found.append(item)
            else:
                found.extend(env_names_in(item))
    elif isinstance(config, list | tuple):
        for item in config:
            found.extend(env_names_in(item))
    return found


def register_configured_secrets(connections_file: Path | str | None = None) -> None:
    """Register the secrets every connection in connections.yaml names (default: `$REPORT_PLATFORM_HOME`'s).

    For processes that handle messages without reading the secrets themselves (sensors, the CLI).
    A missing or broken file registers nothing; loading connections reports that properly.
    """
    import yaml

    if connections_file is None:
        from report_platform.settings import Home

        connections_file = Home.from_env().connections
    try:
        config = yaml.safe_load(Path(connections_file).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return
    register_env_secrets(env_names_in(config))


def secret_name(value: str) -> str | None:
    """The variable a registered secret was read from, or None."""
    return _registry.name_of(value)


def forget_secrets() -> None:
    """Empty the registry (tests use it to start from nothing)."""
    _registry.clear()


def redact(text: str) -> str:
    """`text` with every registered secret, and anything that looks like a private key, replaced."""
    if not text:
        return text
    pattern = _registry.pattern()
    if pattern is not None:
        text = pattern.sub(lambda m: f"[redacted:{_registry.name_of(m.group(0)) or 'secret'}]", text)
        if cut := _registry.cut_at_end(text):
            text = f"{text[: cut[0]]}[redacted:{cut[1]}]"
    for found, replacement in _PATTERNS:
        text = found.sub(replacement, text)
    return text


def redact_optional(text: str | None) -> str | None:
    """`redact` for a field that may be empty."""
    return None if text is None else redact(text)


class RedactedError(Exception):
    """Stands in for an exception whose text held a secret and whose type cannot be rebuilt with a new message."""

    def __init__(self, message: str, original_type: str) -> None:
        super().__init__(message)
        self.original_type = original_type


def redacted_exception(exc: BaseException) -> BaseException:
    """`exc` itself when neither it nor its causes quote a secret; otherwise a copy that does not.

    The copy keeps the type where the message is all that makes its text (most exceptions,
    `DeliveryError` among them), else it is a `RedactedError` naming the original type. Causes and
    contexts are copied the same way; the traceback (code locations, never values) is kept.
    """
    clean = _redacted(exc, {})
    assert clean is not None  # only a link back into the chain can be cut
    return clean


def _redacted(exc: BaseException, seen: dict[int, BaseException | None]) -> BaseException | None:
    if id(exc) in seen:
        return seen[id(exc)]  # None while `exc` is still being copied: a cycle in the chain ends here
    seen[id(exc)] = None
    cause = _redacted(exc.__cause__, seen) if exc.__cause__ is not None else None
    context = _redacted(exc.__context__, seen) if exc.__context__ is not None else None
    text = str(exc)
    clean = redact(text)
    attributes = {k: redact(v) if isinstance(v, str) else v for k, v in vars(exc).items()}
    if clean == text and cause is exc.__cause__ and context is exc.__context__ and attributes == vars(exc):
        seen[id(exc)] = exc
        return exc
    if type(exc).__str__ is BaseException.__str__ and len(exc.args) == 1 and isinstance(exc.args[0], str):
        copy = type(exc).__new__(type(exc))
        copy.args = (clean,)
        copy.__dict__.update(attributes)
    else:
        copy = RedactedError(f"{type(exc).__name__}: {clean}" if clean else type(exc).__name__, type(exc).__name__)
    copy.__cause__, copy.__context__ = cause, context
    copy.__suppress_context__ = exc.__suppress_context__
    seen[id(exc)] = copy.with_traceback(exc.__traceback__)
    return copy


@contextmanager
def redacting_errors() -> Iterator[None]:
    """Re-raise whatever the block raises as `redacted_exception` of it.

    For boundaries where an exception leaves our code for a place that records its text
    (Dagster's step failure, a notification). The original is not chained: it is what held the secret.
    """
    try:
        yield
    except Exception as exc:
        clean = redacted_exception(exc)
        if clean is exc:
            raise
        shown = clean.__context__ if not clean.__suppress_context__ else None
        # `from` marks the original's context as suppressed; the redacted copy of it is shown instead.
        raise clean from (clean.__cause__ or shown)


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format string; let logging report it as usual
        return
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, ()
    if record.exc_info and not record.exc_text:
        text = logging.Formatter().formatException(record.exc_info)
        clean = redact(text)
        if clean != text:
            # Formatters use exc_text when it is set, so the traceback is printed redacted.
            record.exc_text = clean
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class _RedactingRecord(logging.LogRecord):
    """A log record whose Dagster event (set through `extra`) is read back with its error redacted.

    Dagster stores a run's events (step failures with their exception text and stack among them)
    by logging them: the event travels on the record as `dagster_event` and every handler, the
    event log's own included, reads it from there. Reading it through this property redacts it.
    """

    @property
    def dagster_event(self) -> Any:
        try:
            event = self.__dict__["dagster_event"]
        except KeyError:
            raise AttributeError("dagster_event") from None
        return _redacted_event(event)

    @dagster_event.setter
    def dagster_event(self, event: Any) -> None:
        self.__dict__["dagster_event"] = event


def _redacted_event(event: Any) -> Any:
    if event is None or not hasattr(event, "_replace"):
        return event
    changes: dict[str, Any] = {}
    if isinstance(getattr(event, "message", None), str):
        changes["message"] = redact(event.message)
    data = getattr(event, "event_specific_data", None)
    if data is not None and hasattr(data, "_replace"):
        data_changes: dict[str, Any] = {}
        if getattr(data, "error", None) is not None:
            data_changes["error"] = _redacted_error_info(data.error)
        if getattr(data, "first_step_failure_event", None) is not None:
            data_changes["first_step_failure_event"] = _redacted_event(data.first_step_failure_event)
        failure = getattr(data, "user_failure_data", None)  # a raised dg.Failure's description
        if isinstance(getattr(failure, "description", None), str) and hasattr(failure, "_replace"):
            data_changes["user_failure_data"] = failure._replace(description=redact(failure.description))
        if data_changes:
            changes["event_specific_data"] = data._replace(**data_changes)
    return event._replace(**changes) if changes else event


def _redacted_error_info(info: Any) -> Any:
    """Dagster's SerializableErrorInfo (message, stack, cause, context), redacted throughout."""
    if info is None or not hasattr(info, "_replace"):
        return info
    return info._replace(
        message=redact(info.message),
        stack=[redact(line) for line in info.stack],
        cause=_redacted_error_info(info.cause),
        context=_redacted_error_info(info.context),
    )


_installed = threading.Lock()
_previous_factory: Callable[..., logging.LogRecord] | None = None


def install(connections_file: Path | str | None = None) -> None:
    """Redact every log record this process creates, and register the secrets connections.yaml names.

    Records are redacted when created (a record factory), not by a filter: a logger's filter
    misses records propagated from its children, and Dagster builds a new logger and handlers for
    every run, so only creation is common to every record. Safe to call again.
    """
    global _previous_factory
    with _installed:
        if _previous_factory is None:
            previous = logging.getLogRecordFactory()

            def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                record = previous(*args, **kwargs)
                if type(record) is logging.LogRecord:
                    record.__class__ = _RedactingRecord
                _redact_record(record)
                return record

            _previous_factory = previous
            logging.setLogRecordFactory(factory)
    register_configured_secrets(connections_file)
