"""Upload a file to an SFTP server: pinned host key, temporary name, atomic rename, size check."""

from __future__ import annotations

import base64
import binascii
import errno
import io
import logging
import posixpath
import secrets
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from report_platform.delivery.artifact import Artifact, Receipt, utc_now
from report_platform.delivery.connections import SftpConnection, read_secret
from report_platform.delivery.errors import (
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)

log = logging.getLogger(__name__)

# paramiko's defaults (2 MiB window, 32 KiB packets, aes128-ctr first) upload at about half
# OpenSSH's speed on loopback. A large window keeps the pipe full; the server caps packets at
# 32 KiB of SFTP payload anyway, and GCM avoids a separate MAC pass.
WINDOW_SIZE = 64 * 1024 * 1024
MAX_PACKET_SIZE = 256 * 1024
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr")
# SFTPFile sends at most 32 KiB per request; writing exactly that avoids paramiko re-slicing
# a large buffer for every request (paramiko#2438).
CHUNK_SIZE = 32 * 1024
SOCKET_BUFFER = 4 * 1024 * 1024


@dataclass
class SftpAttemptState:
    """Carried across retries: temporary files an interrupted attempt may have left behind."""

    abandoned: list[str] = field(default_factory=list)


def _load_private_key(text: str, passphrase: str | None, label: str, variable: str | None = None) -> paramiko.PKey:
    """The key in `text`: PEM/OpenSSH key text, base64 of that text, or the path of a key file.

    `variable` names the environment variable `text` came from (by default it is looked up among
    the secrets `read_secret` registered). No message quotes `text` or anything derived from it:
    whichever form it has, it may be the key itself.
    """
    from report_platform.redaction import register_secret, secret_name

    name = variable or secret_name(text)
    holder = f"the private key variable {name}" if name else "the private key variable"
    problem = (
        f"{label}: {holder} holds neither a PEM/OpenSSH key, nor base64 of one, nor the path of a readable key file"
    )
    stripped = text.strip()
    key_text = None
    if stripped.startswith("-----BEGIN"):
        # A key pasted into a .env file often arrives on one line, its newlines written as "\n".
        key_text = stripped if "\n" in stripped else stripped.replace("\\n", "\n")
    elif len(stripped) <= 4096 and "\n" not in stripped:
        path = Path(stripped).expanduser()
        try:
            is_file = path.is_file()
        except OSError:
            is_file = False  # e.g. a name too long for the file system: base64, not a path
        if is_file:
            try:
                key_text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
                raise ConfigurationError(f"{label}: the key file named by {holder} cannot be read ({reason})") from None
    if key_text is None:
        # Standard or URL-safe alphabet, wrapped or not, padding optional: as `base64` tools write it.
        compact = "".join(stripped.split()).translate(str.maketrans("-_", "+/"))
        try:
            decoded = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if not decoded.lstrip().startswith(b"-----BEGIN"):
            raise ConfigurationError(problem)
        try:
            key_text = decoded.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigurationError(problem) from None
    # The decoded or file-read key is as secret as the variable itself.
    register_secret(name or "private key", key_text)
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(key_text.strip()), password=passphrase)
        except paramiko.PasswordRequiredException:
            raise ConfigurationError(f"{label}: the private key is encrypted; set private_key_passphrase_env") from None
        except (paramiko.SSHException, ValueError):
            continue
    raise ConfigurationError(
        f"{label}: the private key from {name or 'its variable'} could not be read as ed25519, ECDSA or RSA "
        "(wrong passphrase or unsupported format)"
    )


def host_key_entry(host: str, port: int) -> str:
    """The known_hosts name OpenSSH uses: `host` on port 22, `[host]:port` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def _host_keys(conn: SftpConnection, label: str) -> paramiko.HostKeys:
    keys = paramiko.HostKeys()
    entry = host_key_entry(conn.host, conn.port)
    if conn.host_key:
        parts = conn.host_key.split()
        key_type, data = parts[0], parts[1]
        try:
            key = paramiko.PKey.from_type_string(key_type, base64.b64decode(data))
        except (binascii.Error, paramiko.SSHException, ValueError, TypeError):
            raise ConfigurationError(f"{label}: host_key is not a valid '{key_type} AAAA...' public key") from None
        keys.add(entry, key_type, key)
    if conn.known_hosts_file:
        path = Path(conn.known_hosts_file).expanduser()
        try:
            keys.load(str(path))
        except OSError as exc:
            raise ConfigurationError(f"{label}: known_hosts_file {path} cannot be read ({exc.strerror})") from None
    return keys


def _fingerprint(key: paramiko.PKey) -> str:
    return key.fingerprint  # "SHA256:..." as OpenSSH prints it


class _TunedTransport(paramiko.Transport):
    def __init__(self, sock: Any, **kwargs: Any) -> None:
        super().__init__(
            sock,
            default_window_size=WINDOW_SIZE,
            default_max_packet_size=MAX_PACKET_SIZE,
            **kwargs,
        )
        options = self.get_security_options()
        available = [c for c in PREFERRED_CIPHERS if c in options.ciphers]
        options.ciphers = tuple(available) + tuple(c for c in options.ciphers if c not in available)


def _open_socket(conn: SftpConnection) -> socket.socket:
    sock = socket.create_connection((conn.host, conn.port), timeout=conn.timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    return sock


def connect(conn: SftpConnection, connection_name: str) -> paramiko.SSHClient:
    """Log in with host-key checking (RejectPolicy: unknown or changed key fails before auth)."""
    label = f"sftp connection {connection_name!r}"
    pkey = None
    password = None
    passphrase = None
    if conn.private_key_passphrase_env:
        passphrase = read_secret(conn.private_key_passphrase_env, field="private_key_passphrase_env", connection=label)
    if conn.private_key_env:
        text = read_secret(conn.private_key_env, field="private_key_env", connection=label)
        pkey = _load_private_key(text, passphrase, label, variable=conn.private_key_env)
    elif conn.private_key_file_env:
        path = read_secret(conn.private_key_file_env, field="private_key_file_env", connection=label)
        pkey = _load_private_key(path, passphrase, label, variable=conn.private_key_file_env)
    if conn.password_env:
        password = read_secret(conn.password_env, field="password_env", connection=label)

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    for hostname, by_type in _host_keys(conn, label).items():
        for key_type, key in by_type.items():
            client.get_host_keys().add(hostname, key_type, key)

    try:
        sock = _open_socket(conn)
    except OSError as exc:
        raise TransientDeliveryError(
            f"{label}: cannot connect to {conn.host}:{conn.port} ({exc})", destination="sftp"
        ) from None
    try:
        client.connect(
            conn.host,
            port=conn.port,
            username=conn.username,
            pkey=pkey,
            password=password,
            sock=sock,
            timeout=conn.timeout,
            banner_timeout=conn.timeout,
            auth_timeout=conn.timeout,
            channel_timeout=conn.timeout,
            allow_agent=False,
            look_for_keys=False,
            transport_factory=_TunedTransport,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise PermanentDeliveryError(
            f"{label}: HOST KEY CHANGED for {host_key_entry(conn.host, conn.port)}: the server "
            f"presented {exc.key.get_name()} {_fingerprint(exc.key)}, expected "
            f"{_fingerprint(exc.expected_key)}. Nothing was sent. If the server was really "
            "re-keyed, update host_key / known_hosts_file after checking with its owner.",
            destination="sftp",
        ) from None
    except paramiko.SSHException as exc:
        client.close()
        raise classify_ssh_error(exc, label, conn) from None
    except (OSError, EOFError) as exc:
        client.close()
        raise TransientDeliveryError(
            f"{label}: connection to {conn.host}:{conn.port} failed ({exc or type(exc).__name__})",
            destination="sftp",
        ) from None
    return client


def classify_ssh_error(exc: Exception, label: str, conn: SftpConnection) -> DeliveryError:
    """Turn a paramiko failure into a transient or permanent delivery error (no secrets)."""
    if isinstance(exc, paramiko.AuthenticationException):
        how = "password" if conn.password_env and not (conn.private_key_env or conn.private_key_file_env) else "key"
        return PermanentDeliveryError(
            f"{label}: authentication as {conn.username!r} failed ({how}); check the "
            f"credentials named in connections.yaml",
            destination="sftp",
        )
    text = str(exc)
    if "not found in known_hosts" in text or "Server '" in text and "not found" in text:
        return PermanentDeliveryError(
            f"{label}: the server's host key is unknown (not pinned in host_key or "
            "known_hosts_file); refusing to send. Pin the key after checking it with the "
            "server's owner.",
            destination="sftp",
        )
    if "Incompatible" in text or "no acceptable" in text.lower():
        return PermanentDeliveryError(
            f"{label}: no common SSH algorithms with {conn.host}:{conn.port} ({text})",
            destination="sftp",
        )
    return TransientDeliveryError(
        f"{label}: SSH failure talking to {conn.host}:{conn.port} ({text or type(exc).__name__})",
        destination="sftp",
    )


def remote_folder(conn: SftpConnection, remote_dir: str) -> str:
    """The folder on the server: `remote_dir`, beneath `base_dir` when the connection sets one."""
    joined = posixpath.join(conn.base_dir, remote_dir.lstrip("/")) if conn.base_dir else remote_dir or "."
    normal = posixpath.normpath(joined)
    if conn.base_dir and not (
        normal == posixpath.normpath(conn.base_dir)
        or normal.startswith(posixpath.normpath(conn.base_dir).rstrip("/") + "/")
    ):
        raise ConfigurationError(f"remote_dir {remote_dir!r} leaves the connection's base_dir")
    return normal


def _makedirs(sftp: paramiko.SFTPClient, folder: str) -> None:
    parts = folder.split("/")
    current = "/" if folder.startswith("/") else ""
    for part in parts:
        if not part:
            continue
        current = posixpath.join(current, part) if current else part
        try:
            if not stat.S_ISDIR(sftp.stat(current).st_mode or 0):
                raise PermanentDeliveryError(f"{current} exists on the server and is not a folder")
        except FileNotFoundError:
            try:
                sftp.mkdir(current)
            except OSError:
                # Another uploader may have created it in between; only fail if it is still absent.
                sftp.stat(current)


def _remove_quietly(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        sftp.remove(path)
        return True
    except OSError:
        return False


def upload(
    artifact: Artifact,
    *,
    connection_name: str,
    connection: SftpConnection,
    remote_dir: str,
    create_dirs: bool = False,
    state: SftpAttemptState | None = None,
    on_sent: Callable[[], None] | None = None,
) -> Receipt:
    """Upload under a temporary name, check its size, then rename onto the final name."""
    label = f"sftp connection {connection_name!r}"
    state = state or SftpAttemptState()
    folder = remote_folder(connection, remote_dir)
    final = posixpath.join(folder, artifact.filename)
    temp = posixpath.join(folder, part_prefix(artifact.filename) + secrets.token_hex(6))
    started = time.monotonic()
    client = connect(connection, connection_name)
    temp_created = False
    try:
        transport = client.get_transport()
        assert transport is not None
        sftp = paramiko.SFTPClient.from_transport(transport, window_size=WINDOW_SIZE, max_packet_size=MAX_PACKET_SIZE)
        assert sftp is not None
        sftp.get_channel().settimeout(connection.timeout)
        for leftover in list(state.abandoned):
            if _remove_quietly(sftp, leftover) or not _exists(sftp, leftover):
                state.abandoned.remove(leftover)
        if create_dirs:
            _makedirs(sftp, folder)
        elif not _is_dir(sftp, folder):
            raise PermanentDeliveryError(
                f"{label}: remote folder {folder} does not exist (create it, or set "
                "create_dirs: true on the destination)",
                destination="sftp",
            )
        # A worker that died mid-upload (any process, any machine) leaves its temporary file; the
        # ledger lets only one worker deliver this target at a time, so every such file is stale.
        remove_stale_parts(sftp, folder, artifact.filename)
        state.abandoned.append(temp)
        temp_created = True
        with artifact.path.open("rb") as local, sftp.open(temp, "wb") as remote:
            remote.set_pipelined(True)
            while chunk := local.read(CHUNK_SIZE):
                remote.write(chunk)
        remote_size = sftp.stat(temp).st_size
        if remote_size != artifact.size:
            raise TransientDeliveryError(
                f"{label}: {temp} has {remote_size} bytes after upload, expected {artifact.size}",
                destination="sftp",
            )
        _rename_over(sftp, temp, final)
        temp_created = False
        state.abandoned.remove(temp)
        if on_sent is not None:
            on_sent()
        final_size = sftp.stat(final).st_size
        if final_size != artifact.size:
            raise TransientDeliveryError(
                f"{label}: {final} has {final_size} bytes after rename, expected {artifact.size}",
                destination="sftp",
            )
        cipher = transport.local_cipher
    except DeliveryError:
        _cleanup(client, temp if temp_created else None, state)
        raise
    except PermissionError as exc:
        _cleanup(client, temp if temp_created else None, state)
        raise PermanentDeliveryError(
            f"{label}: permission denied in {folder} for user {connection.username!r} ({exc})",
            destination="sftp",
        ) from None
    except OSError as exc:
        _cleanup(client, temp if temp_created else None, state)
        if exc.errno in (errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT):
            raise PermanentDeliveryError(
                f"{label}: the server refused the write in {folder} ({exc})", destination="sftp"
            ) from None
        raise TransientDeliveryError(
            f"{label}: transfer to {folder} failed ({exc or type(exc).__name__})",
            destination="sftp",
        ) from None
    except (paramiko.SSHException, EOFError) as exc:
        _cleanup(client, temp if temp_created else None, state)
        raise TransientDeliveryError(
            f"{label}: connection lost during transfer ({exc or type(exc).__name__})",
            destination="sftp",
        ) from None
    client.close()
    elapsed = time.monotonic() - started
    return Receipt(
        destination="sftp",
        target=f"sftp://{connection_name}{final if final.startswith('/') else '/' + final}",
        location=final,
        size=artifact.size,
        sha256=artifact.sha256,
        delivered_at=utc_now(),
        extra={
            "host": connection.host,
            "port": connection.port,
            "connection": connection_name,
            "cipher": cipher,
            "seconds": round(elapsed, 3),
        },
    )


def part_prefix(filename: str) -> str:
    """Temporary uploads of `filename` are `.<filename>.part-<random>` in the same folder."""
    return f".{filename}.part-"


def remove_stale_parts(sftp: paramiko.SFTPClient, folder: str, filename: str) -> list[str]:
    """Remove temporary uploads of `filename` left in `folder`; return the names removed."""
    prefix = part_prefix(filename)
    removed = []
    for name in sftp.listdir(folder):
        if name.startswith(prefix) and _remove_quietly(sftp, posixpath.join(folder, name)):
            removed.append(name)
    if removed:
        log.info("removed %d stale temporary upload(s) of %s in %s", len(removed), filename, folder)
    return removed


def _exists(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        sftp.stat(path)
        return True
    except OSError:
        return False


def _is_dir(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        return stat.S_ISDIR(sftp.stat(path).st_mode or 0)
    except PermissionError:
        raise  # reported as "permission denied", not as a missing folder
    except OSError:
        return False


def _rename_over(sftp: paramiko.SFTPClient, temp: str, final: str) -> None:
    try:
        # posix-rename@openssh.com replaces an existing file atomically; plain SFTP rename
        # refuses to overwrite on OpenSSH.
        sftp.posix_rename(temp, final)
    except OSError as exc:
        if "extension" not in str(exc).lower() and "unsupported" not in str(exc).lower():
            raise
        # A server without the extension: the old file briefly disappears, but a reader
        # still never sees a partial new one.
        _remove_quietly(sftp, final)
        sftp.rename(temp, final)


def _cleanup(client: paramiko.SSHClient, temp: str | None, state: SftpAttemptState) -> None:
    if temp is not None:
        try:
            transport = client.get_transport()
            if transport is not None and transport.is_active():
                sftp = paramiko.SFTPClient.from_transport(transport)
                if sftp is not None and _remove_quietly(sftp, temp) and temp in state.abandoned:
                    state.abandoned.remove(temp)
        except Exception:  # noqa: BLE001 - best effort; the next attempt retries the removal
            log.debug("could not remove %s after a failed upload", temp)
    client.close()
