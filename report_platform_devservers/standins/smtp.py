"""An SMTP relay on 127.0.0.1 (aiosmtpd): STARTTLS or implicit TLS, AUTH, scripted refusals."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import tempfile
import threading
import uuid
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, AuthResult, LoginPassword

from report_platform_devservers.standins.net import free_port
from report_platform_devservers.standins.tls import make_self_signed_cert


@dataclass(frozen=True)
class ReceivedMail:
    """One accepted message: the SMTP envelope and the bytes that were transmitted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    auth_user: str | None = None

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class _State:
    received: list[ReceivedMail] = field(default_factory=list)
    faults: deque[str] = field(default_factory=deque)
    data_attempts: int = 0
    # address -> replies still to give at RCPT for it (each used once), e.g. "450 4.2.1 busy".
    rcpt_faults: dict[str, deque[str]] = field(default_factory=dict)
    # "421 ..." answers QUIT with that reply; "drop" closes the connection without one.
    quit_fault: str | None = None
    data_delay: float = 0.0
    on_data: Callable[[], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler:
    def __init__(self, state: _State, save_dir: Path | None) -> None:
        self._state = state
        self._save_dir = save_dir

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self._state.lock:
            replies = self._state.rcpt_faults.get(address.lower())
            if replies:
                return replies.popleft()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> Any:  # noqa: N802
        fault = self._state.quit_fault
        if fault == "drop":
            assert server.transport is not None
            server.transport.abort()
            return "221 Bye"  # never reaches the client: the connection is already gone
        return fault if fault else MISSING

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self._state.data_delay:
            # Holds this session only; time.sleep would stall the server's whole event loop.
            await asyncio.sleep(self._state.data_delay)
        if self._state.on_data is not None and not self._state.faults:
            self._state.on_data()
        with self._state.lock:
            self._state.data_attempts += 1
            if self._state.faults:
                return self._state.faults.popleft()
            user = (
                session.auth_data.login.decode()
                if session.authenticated and isinstance(session.auth_data, LoginPassword)
                else None
            )
            mail = ReceivedMail(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                data=bytes(envelope.original_content or envelope.content),
                auth_user=user,
            )
            self._state.received.append(mail)
        if self._save_dir is not None:
            self._save_dir.mkdir(parents=True, exist_ok=True)
            name = f"{len(self._state.received):05d}-{uuid.uuid4().hex[:8]}.eml"
            tmp = self._save_dir / f".{name}.part"
            tmp.write_bytes(mail.data)
            tmp.rename(self._save_dir / name)
        return "250 Message accepted for delivery"


class SmtpStandin:
    """aiosmtpd on 127.0.0.1 with a self-signed certificate made at start-up.

    `security`: "starttls" (TLS required before AUTH/MAIL), "ssl" (implicit TLS) or "none".
    `users`: login -> password; when given, AUTH is required. Queue SMTP replies such as
    "451 4.3.0 try later" with `fail_next()` to make the next DATA commands fail that way.
    """

    def __init__(
        self,
        *,
        security: Literal["starttls", "ssl", "none"] = "starttls",
        users: dict[str, str] | None = None,
        save_dir: Path | None = None,
        port: int | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.security = security
        self.users = dict(users or {})
        self.host = "127.0.0.1"
        self.port = port or 0
        self._save_dir = save_dir
        self._workdir = workdir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._state = _State()
        self._controller: Controller | None = None
        self.cert_file: Path | None = None

    @property
    def received(self) -> list[ReceivedMail]:
        with self._state.lock:
            return list(self._state.received)

    @property
    def data_attempts(self) -> int:
        return self._state.data_attempts

    def fail_next(self, *replies: str) -> None:
        """Answer the next DATA commands with these replies instead of accepting."""
        with self._state.lock:
            self._state.faults.extend(replies)

    def refuse_recipient(self, address: str, *replies: str) -> None:
        """Answer RCPT TO for `address` with these replies (one per attempt), then accept it."""
        with self._state.lock:
            self._state.rcpt_faults.setdefault(address.lower(), deque()).extend(replies)

    def fail_quit(self, reply: str | None) -> None:
        """Answer QUIT with `reply` (e.g. "421 4.3.2 shutting down"), or "drop" the connection."""
        self._state.quit_fault = reply

    def slow_data(self, seconds: float) -> None:
        """Wait this long before answering each DATA (a busy relay)."""
        self._state.data_delay = seconds

    def before_accepting(self, hook: Callable[[], None] | None) -> None:
        """Call `hook` in the server just before a message is accepted with 250."""
        self._state.on_data = hook

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        # handled=False on failure: with handled=True aiosmtpd sends nothing and the client hangs.
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
            if login in self.users and self.users[login] == password:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def start(self) -> SmtpStandin:
        if self._workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="smtp-standin-")
            self._workdir = Path(self._tmp.name)
        kwargs: dict[str, Any] = {}
        if self.security != "none":
            cert = make_self_signed_cert(self._workdir / "tls")
            self.cert_file = cert.cert_file
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert.cert_file, cert.key_file)
            if self.security == "ssl":
                kwargs["ssl_context"] = context
            else:
                kwargs["tls_context"] = context
                kwargs["require_starttls"] = True
        if self.users:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            # Implicit TLS is invisible to aiosmtpd's check (it only knows STARTTLS), so it
            # would never offer AUTH; the connection is encrypted either way.
            kwargs["auth_require_tls"] = self.security == "starttls"
            if self.security == "ssl":
                warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
        if not self.port:
            self.port = free_port(self.host)
        self._controller = Controller(
            _Handler(self._state, self._save_dir),
            hostname=self.host,
            port=self.port,
            server_hostname="localhost",
            **kwargs,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SmtpStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
