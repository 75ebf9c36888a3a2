"""OpenSSH `sshd` run unprivileged on a free port of 127.0.0.1, with its own keys and config."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from report_platform.processes import PARENT, pids, stat_fields
from report_platform_devservers.standins.net import free_port, wait_for_port

SSHD = "/usr/sbin/sshd"


def generate_ed25519_key(private_path: Path) -> str:
    """Write an OpenSSH-format ed25519 private key; return its public line `ssh-ed25519 AAAA...`."""
    key = ed25519.Ed25519PrivateKey.generate()
    private_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    private_path.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = public.decode("ascii")
    private_path.with_name(private_path.name + ".pub").write_text(line + "\n")
    return line


def create_password_user(password: str, prefix: str = "rp-sftp-") -> str:
    """Create a local login of a new name with this password, for sshd's password authentication,
    and return the name. Needs root; remove it with `remove_password_user`.

    Every caller gets a user of its own: a password lives in /etc/shadow, one for the whole
    machine, so two callers giving one user their own passwords (pytest-xdist's workers, or two
    test runs side by side) would each take the login from the other, and sshd would refuse the
    first with "Failed password".
    """
    if os.geteuid() != 0:
        raise PermissionError("creating a password login for sshd needs root")
    name = f"{prefix}{secrets.token_hex(6)}"
    _run_as_root(["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name])
    try:
        # On standard input, so the password is in no process's arguments.
        _run_as_root(["chpasswd"], stdin=f"{name}:{password}\n")
    except BaseException:
        remove_password_user(name)
        raise
    return name


def remove_password_user(name: str, timeout: float = 10.0) -> None:
    """Delete a login made by `create_password_user`, once no process of it is left."""
    deadline = time.monotonic() + timeout
    while True:
        ran = subprocess.run(["userdel", name], capture_output=True, text=True)
        # 6: no such user (already gone); 8: a process of the user is still ending.
        if ran.returncode in (0, 6):
            return
        if ran.returncode != 8 or time.monotonic() > deadline:
            raise RuntimeError(f"userdel {name} exited {ran.returncode}: {ran.stderr.strip()}")
        time.sleep(0.1)


@contextlib.contextmanager
def password_user(password: str, prefix: str = "rp-sftp-") -> Iterator[str]:
    """A local login with this password for as long as the block runs; yields its name."""
    name = create_password_user(password, prefix)
    try:
        yield name
    finally:
        remove_password_user(name)


def _run_as_root(args: list[str], stdin: str | None = None) -> None:
    ran = subprocess.run(args, input=stdin, capture_output=True, text=True)
    if ran.returncode != 0:
        raise RuntimeError(f"{args[0]} exited {ran.returncode}: {ran.stderr.strip()}")


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for child in pids():
        if fields := stat_fields(child):
            children.setdefault(int(fields[PARENT]), []).append(child)
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


class SshdStandin:
    """A real OpenSSH server for SFTP on 127.0.0.1.

    Key authentication for the current user (root included) with a client key generated at
    start; optionally password authentication for other local users. Files land wherever the
    client writes; use `root_dir` as the connection's `base_dir` to keep them in one folder.
    """

    def __init__(
        self,
        root_dir: Path | None = None,
        *,
        port: int | None = None,
        password_auth: bool = False,
        workdir: Path | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or 0
        self.password_auth = password_auth
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sshd-standin-")
            workdir = Path(self._tmp.name)
        self.workdir = workdir
        self.root_dir = root_dir or (workdir / "root")
        self.username = _current_user()
        self.host_key_path = workdir / "ssh_host_ed25519_key"
        self.client_key_path = workdir / "client_ed25519"
        self.config_path = workdir / "sshd_config"
        self.log_path = workdir / "sshd.log"
        self.host_key = ""
        self.client_public_key = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def client_key_text(self) -> str:
        return self.client_key_path.read_text()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root_dir.mkdir(parents=True, exist_ok=True)
        if not self.host_key_path.exists():
            self.host_key = generate_ed25519_key(self.host_key_path)
        else:
            self.host_key = self.host_key_path.with_name(self.host_key_path.name + ".pub").read_text().strip()
        if not self.client_key_path.exists():
            self.client_public_key = generate_ed25519_key(self.client_key_path)
        else:
            self.client_public_key = (
                self.client_key_path.with_name(self.client_key_path.name + ".pub").read_text().strip()
            )
        (self.workdir / "authorized_keys").write_text(self.client_public_key + "\n")
        if not self.port:
            self.port = free_port(self.host)
        yes_no = "yes" if self.password_auth else "no"
        self.config_path.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    f"ListenAddress {self.host}",
                    f"HostKey {self.host_key_path}",
                    f"PidFile {self.workdir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}",
                    "UsePAM no",
                    "StrictModes no",
                    "PermitRootLogin yes",
                    "PubkeyAuthentication yes",
                    f"PasswordAuthentication {yes_no}",
                    "KbdInteractiveAuthentication no",
                    "PermitEmptyPasswords no",
                    "MaxStartups 64",
                    "MaxSessions 32",
                    "UseDNS no",
                    "LogLevel INFO",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )

    def start(self) -> SshdStandin:
        if not Path(SSHD).exists():
            raise FileNotFoundError(f"{SSHD} not found: install the openssh-server package")
        self._prepare()
        if os.geteuid() == 0:
            # sshd insists on its privilege-separation directory when started as root.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self._log = self.log_path.open("ab")
        # sshd re-executes itself per connection, so it needs its absolute path.
        self._proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.host, self.port, timeout=15.0, banner=b"SSH-")
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"sshd did not start: {self.log_text()[-2000:]}") from None
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill_sessions(self) -> int:
        """Kill every connection's process (the listener stays up). Returns how many died."""
        if self._proc is None:
            return 0
        victims = _descendants(self._proc.pid)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(victims)

    def pause_sessions(self) -> int:
        """Freeze every connection's process (SIGSTOP): a server that stops reading mid-transfer.
        Returns how many were frozen; `resume_sessions` lets them go on."""
        return self._signal_sessions(signal.SIGSTOP)

    def resume_sessions(self) -> int:
        return self._signal_sessions(signal.SIGCONT)

    def _signal_sessions(self, signum: int) -> int:
        if self._proc is None:
            return 0
        sessions = _descendants(self._proc.pid)
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        return len(sessions)

    def replace_host_key(self) -> str:
        """Restart with a new host key on the same port, as a re-installed server would."""
        self.stop(cleanup=False)
        self.host_key_path.unlink()
        self.host_key_path.with_name(self.host_key_path.name + ".pub").unlink()
        return self.start().host_key

    def stop(self, cleanup: bool = True) -> None:
        if self._proc is not None:
            self.kill_sessions()
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if cleanup and self._tmp is not None:
            # Give the kernel a moment to release files written by killed session processes.
            time.sleep(0.05)
            shutil.rmtree(self._tmp.name, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> SshdStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name
