"""SFTP upload speed: our `sftp.upload` against OpenSSH's `sftp` client, same server, same file.

    .venv/bin/python benchmarks/bench_sftp.py [--size-mb 500] [--rounds 3]

Starts a real OpenSSH sshd on 127.0.0.1, writes a random file to a temporary folder, and
uploads it alternately with both clients (same key, same server). Prints MB/s per round, the
median of each and the ratio (goal: ours >= 0.7x OpenSSH). Everything is deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from report_platform.delivery import sftp as sftp_delivery  # noqa: E402
from report_platform.delivery.artifact import Artifact  # noqa: E402
from report_platform.delivery.connections import SftpConnection  # noqa: E402
from report_platform_devservers.standins import SshdStandin  # noqa: E402


def _random_file(path: Path, size_mb: int) -> None:
    block = 4 * 1024 * 1024
    remaining = size_mb * 1024 * 1024
    with path.open("wb") as handle:
        while remaining:
            n = min(block, remaining)
            handle.write(os.urandom(n))
            remaining -= n


def _ours(server: SshdStandin, artifact: Artifact, folder: Path) -> tuple[float, str]:
    os.environ["BENCH_SFTP_KEY"] = str(server.client_key_path)
    conn = SftpConnection(
        host=server.host,
        port=server.port,
        username=server.username,
        private_key_env="BENCH_SFTP_KEY",
        host_key=server.host_key,
        organizations=("acme",),
    )
    started = time.perf_counter()
    receipt = sftp_delivery.upload(artifact, connection_name="bench", connection=conn, remote_dir=str(folder))
    return time.perf_counter() - started, str(receipt.extra.get("cipher"))


def _openssh(server: SshdStandin, source: Path, folder: Path, known_hosts: Path) -> float:
    batch = server.workdir / "bench.batch"
    batch.write_text(f"put {source} {folder}/openssh-{source.name}\n")
    command = [
        "sftp", "-q", "-b", str(batch), "-i", str(server.client_key_path), "-P", str(server.port),
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes", f"{server.username}@{server.host}",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-sftp-") as tmp:
        tmpdir = Path(tmp)
        source = tmpdir / "payload.bin"
        _random_file(source, args.size_mb)
        artifact = Artifact.from_path(source)
        size_mb = artifact.size / 1e6
        with SshdStandin(root_dir=tmpdir / "server", workdir=tmpdir / "sshd") as server:
            known_hosts = tmpdir / "known_hosts"
            known_hosts.write_text(f"[{server.host}]:{server.port} {server.host_key}\n")
            ours, theirs, cipher = [], [], ""
            for round_no in range(1, args.rounds + 1):
                seconds, cipher = _ours(server, artifact, server.root_dir)
                ours.append(size_mb / seconds)
                (server.root_dir / source.name).unlink()
                seconds = _openssh(server, source, server.root_dir, known_hosts)
                theirs.append(size_mb / seconds)
                (server.root_dir / f"openssh-{source.name}").unlink()
                print(
                    f"round {round_no}: report_platform {ours[-1]:7.1f} MB/s   OpenSSH sftp {theirs[-1]:7.1f} MB/s",
                    flush=True,
                )
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    print(
        f"\n{args.size_mb} MiB file, {args.rounds} rounds, {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}, cipher {cipher}"
    )
    print(f"report_platform sftp.upload  median {ours_median:7.1f} MB/s")
    print(f"OpenSSH sftp -b              median {theirs_median:7.1f} MB/s")
    print(f"ratio                        {ours_median / theirs_median:.2f}x (goal >= 0.70x)")


if __name__ == "__main__":
    main()
