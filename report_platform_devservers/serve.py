"""Stand-in mail, SFTP and S3 servers on 127.0.0.1 for the demo, with results you can browse.

    python -m report_platform_devservers [--prepare]

Serves until SIGTERM/SIGINT; `--prepare` only starts them once to write the files below and stops
(the demo runs it before registering reports, which are checked against `connections.yaml`).
Under `$REPORT_PLATFORM_HOME/devservers/`:
`mail/*.eml` (every received message), `sftp/` (the SFTP server's folder: remote paths land
beneath it), `s3/<bucket>/<key>` (a copy of every object, refreshed every few seconds) and
`demo.env` (the environment variables the demo connections name). Writes `connections.yaml`
(`default` SMTP for every organisation, `demo-sftp` and `demo-s3` for `acme`) when the home has
none; the host and client keys stay in `devservers/sshd/`, so the pinned host key stays valid.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from report_platform.settings import Home
from report_platform_devservers.standins import MotoStandin, SmtpStandin, SshdStandin
from report_platform_devservers.standins.net import free_port
from report_platform_devservers.standins.s3 import STANDIN_ACCESS_KEY, STANDIN_SECRET_KEY

DEMO_BUCKETS = ("demo-reports", "acme-reports")
MIRROR_EVERY_SECONDS = 2.0
log = logging.getLogger("report_platform.devservers")


@dataclass
class DevServers:
    """The three running stand-ins and where their results land."""

    root: Path
    smtp: SmtpStandin
    sftp: SshdStandin
    s3: MotoStandin

    @property
    def mail_dir(self) -> Path:
        return self.root / "mail"

    @property
    def sftp_dir(self) -> Path:
        return self.root / "sftp"

    @property
    def s3_dir(self) -> Path:
        return self.root / "s3"

    @property
    def env_file(self) -> Path:
        return self.root / "demo.env"

    def environment(self) -> dict[str, str]:
        """Values for the variables named in the demo connections (placeholders, not secrets)."""
        return {
            "DEMO_SFTP_KEY": str(self.sftp.client_key_path),
            "DEMO_S3_ACCESS_KEY_ID": STANDIN_ACCESS_KEY,
            "DEMO_S3_SECRET_ACCESS_KEY": STANDIN_SECRET_KEY,
        }

    def connections(self) -> dict[str, Any]:
        return {
            "smtp": {
                "default": {
                    "host": self.smtp.host,
                    "port": self.smtp.port,
                    "security": "none",
                    "from_address": "reports@acme.example",
                    "organizations": ["*"],
                }
            },
            "sftp": {
                "demo-sftp": {
                    "host": self.sftp.host,
                    "port": self.sftp.port,
                    "username": self.sftp.username,
                    "private_key_env": "DEMO_SFTP_KEY",
                    "host_key": self.sftp.host_key,
                    "base_dir": str(self.sftp_dir),
                    "organizations": ["acme"],
                }
            },
            "s3": {
                "demo-s3": {
                    "region": "us-east-1",
                    "endpoint_url": self.s3.endpoint_url,
                    "access_key_id_env": "DEMO_S3_ACCESS_KEY_ID",
                    "secret_access_key_env": "DEMO_S3_SECRET_ACCESS_KEY",
                    "addressing_style": "path",
                    "organizations": ["acme"],
                }
            },
        }

    def mirror_s3(self) -> list[Path]:
        return self.s3.mirror(self.s3_dir)

    def stop(self) -> None:
        for server in (self.smtp, self.sftp, self.s3):
            try:
                server.stop()
            except Exception:  # noqa: BLE001 - stop the others regardless
                log.exception("stopping %s failed", type(server).__name__)


def _port(preferred: int | None) -> int:
    if preferred:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
    return free_port()


def _previous_ports(connections_file: Path) -> dict[str, int]:
    """Ports this launcher wrote last time, so an existing connections.yaml stays valid."""
    try:
        data = yaml.safe_load(connections_file.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    found = {}
    for kind, name in (("smtp", "default"), ("sftp", "demo-sftp")):
        port = (data.get(kind) or {}).get(name, {}).get("port")
        if isinstance(port, int):
            found[kind] = port
    url = (data.get("s3") or {}).get("demo-s3", {}).get("endpoint_url", "")
    if isinstance(url, str) and url.rsplit(":", 1)[-1].isdigit():
        found["s3"] = int(url.rsplit(":", 1)[-1])
    return found


def start(
    home: Home,
    *,
    smtp_port: int | None = 2525,
    sftp_port: int | None = 2222,
    s3_port: int | None = 9000,
    write_connections: bool = True,
) -> DevServers:
    """Start all three stand-ins for `home`; the caller stops them with `.stop()`."""
    home.ensure()
    root = home.root / "devservers"
    for sub in ("mail", "sftp", "s3", "sshd"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    previous = _previous_ports(home.connections)
    smtp = SmtpStandin(security="none", save_dir=root / "mail", port=_port(previous.get("smtp", smtp_port))).start()
    started: list[Any] = [smtp]
    try:
        # The sshd folder keeps its host and client keys, so the pinned key stays valid.
        sftp = SshdStandin(
            root_dir=root / "sftp",
            workdir=root / "sshd",
            port=_port(previous.get("sftp", sftp_port)),
        ).start()
        started.append(sftp)
        s3 = MotoStandin(port=_port(previous.get("s3", s3_port))).start()
        started.append(s3)
        for bucket in DEMO_BUCKETS:
            s3.create_bucket(bucket)
    except BaseException:
        for server in started:
            server.stop()
        raise
    servers = DevServers(root=root, smtp=smtp, sftp=sftp, s3=s3)
    servers.env_file.write_text("".join(f"{k}={v}\n" for k, v in servers.environment().items()))
    if write_connections and not home.connections.exists():
        home.connections.write_text(yaml.safe_dump(servers.connections(), sort_keys=False))
    return servers


def main(argv: list[str] | None = None) -> int:
    """Run the stand-ins until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description="Stand-in SMTP, SFTP and S3 servers for the demo.")
    parser.add_argument("--smtp-port", type=int, default=2525)
    parser.add_argument("--sftp-port", type=int, default=2222)
    parser.add_argument("--s3-port", type=int, default=9000)
    parser.add_argument(
        "--prepare", action="store_true", help="write connections.yaml and demo.env, then stop the servers"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    home = Home.from_env()
    servers = start(home, smtp_port=args.smtp_port, sftp_port=args.sftp_port, s3_port=args.s3_port)
    if args.prepare:
        servers.stop()
        print(f"connections: {home.connections}", flush=True)
        return 0
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    print(f"SMTP  127.0.0.1:{servers.smtp.port}  -> {servers.mail_dir}/*.eml", flush=True)
    print(f"SFTP  127.0.0.1:{servers.sftp.port}  -> {servers.sftp_dir}/<remote_dir>/", flush=True)
    print(f"S3    {servers.s3.endpoint_url}  -> {servers.s3_dir}/<bucket>/<key>", flush=True)
    print(f"connections: {home.connections}", flush=True)
    print(f"environment for those connections: {servers.env_file}", flush=True)
    try:
        while not stop.wait(MIRROR_EVERY_SECONDS):
            try:
                for path in servers.mirror_s3():
                    log.info("S3 object mirrored to %s", path)
            except Exception:  # noqa: BLE001 - keep serving; try again next round
                log.exception("mirroring S3 failed")
        servers.mirror_s3()
    finally:
        servers.stop()
    print("stand-in servers stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
