"""An S3 endpoint on 127.0.0.1 (moto's server), plus a mirror of its buckets onto disk."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

# moto accepts any credentials; these are placeholders, not secrets.
STANDIN_ACCESS_KEY = "standin-access-key"
STANDIN_SECRET_KEY = "standin-secret-key"
STANDIN_REGION = "us-east-1"


@contextmanager
def moto_process(environment: dict[str, str] | None = None) -> Iterator[str]:
    """moto's S3 server in a process of its own on a free loopback port; yields its URL.

    For what a `MotoStandin` in this process cannot do: a server with other settings (moto reads
    them from its environment once), or one that must not share this process's CPU (benchmarks)."""
    from report_platform_devservers.standins.net import free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **(environment or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("moto's S3 server did not start within 15 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


class MotoStandin:
    """moto's S3 in server mode, on a free port of 127.0.0.1.

    moto keeps one in-memory backend per process, so two stand-ins in one process share their
    buckets: give buckets unique names.
    """

    def __init__(self, port: int = 0) -> None:
        from moto.server import ThreadedMotoServer

        self.host = "127.0.0.1"
        self._server = ThreadedMotoServer(ip_address=self.host, port=port, verbose=False)
        self.port = port
        self._mirrored: dict[tuple[str, str], str] = {}

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoStandin:
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        return self

    def stop(self) -> None:
        self._server.stop()

    def client(self, endpoint_url: str | None = None) -> Any:
        """A boto3 S3 client for this server (or for a proxy in front of it)."""
        return boto3.client(
            "s3",
            endpoint_url=endpoint_url or self.endpoint_url,
            region_name=STANDIN_REGION,
            aws_access_key_id=STANDIN_ACCESS_KEY,
            aws_secret_access_key=STANDIN_SECRET_KEY,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def mirror(self, destination: Path) -> list[Path]:
        """Copy new or changed objects of every bucket to `destination/<bucket>/<key>`."""
        client = self.client()
        written: list[Path] = []
        for bucket in client.list_buckets().get("Buckets", []):
            name = bucket["Name"]
            paginator = client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=name):
                for obj in page.get("Contents", []):
                    key, etag = obj["Key"], obj["ETag"]
                    if self._mirrored.get((name, key)) == etag:
                        continue
                    target = (destination / name / key).resolve()
                    if not target.is_relative_to((destination / name).resolve()):
                        continue  # a key like "../x" must not escape the mirror
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp = target.with_name(f".{target.name}.mirror-{os.getpid()}")
                    client.download_file(name, key, str(tmp))
                    tmp.replace(target)
                    self._mirrored[(name, key)] = etag
                    written.append(target)
        return written

    def __enter__(self) -> MotoStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
