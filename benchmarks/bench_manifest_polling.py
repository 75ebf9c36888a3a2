"""The manifest's ordering at scale: a reader polls an SFTP folder (real OpenSSH sshd) and an S3
bucket (moto) every 10 ms while a large file with `manifest: true` is delivered, and checks that
whenever it sees `<file>.manifest.json` the file is already complete (size and SHA-256 as the
manifest says). The test suite runs the same check at 24 MB (delivery/test_manifest.py); this is
the 200 MB version. Prints Markdown.

    .venv/bin/python benchmarks/bench_manifest_polling.py [--mb 200]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report_platform.delivery import Artifact, Connections, S3Connection, SftpConnection, deliver  # noqa: E402
from report_platform_devservers.standins import MotoStandin, SshdStandin  # noqa: E402
from report_platform_devservers.standins.s3 import STANDIN_ACCESS_KEY, STANDIN_SECRET_KEY  # noqa: E402

FIELDS = {"report_id": "rpt_bench", "run_id": "rpt_bench/20261128T110000Z", "rows": 0, "format": "csv"}


def polled_delivery(deliver_it, manifest_bytes, file_bytes) -> dict:
    """Deliver while polling every 10 ms; the first sighting of the manifest is checked."""
    stop, seen = threading.Event(), {}
    polls = 0

    def poll() -> None:
        nonlocal polls
        while not stop.is_set():
            polls += 1
            manifest = manifest_bytes()
            if manifest is not None:
                document = json.loads(manifest)
                data = file_bytes()
                seen.update(
                    complete=(len(data), hashlib.sha256(data).hexdigest()) == (document["bytes"], document["sha256"])
                )
                return
            time.sleep(0.01)

    reader = threading.Thread(target=poll)
    reader.start()
    t = time.perf_counter()
    deliver_it()
    seconds = time.perf_counter() - t
    reader.join(timeout=120)
    stop.set()
    reader.join()
    return {"seconds": seconds, "polls": polls, "seen": bool(seen), "complete": seen.get("complete", False)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-manifest-"))
    sftp_root = Path(tempfile.mkdtemp(prefix="bench-manifest-sftp-"))
    results = {}
    try:
        path = work / "report.csv"
        with path.open("wb") as fh:
            for _ in range(args.mb):
                fh.write(os.urandom(1 << 20))
        artifact = Artifact.from_path(path)
        with SshdStandin(root_dir=sftp_root, workdir=work / "etc") as sshd, MotoStandin() as moto:
            os.environ["BENCH_SFTP_KEY"] = sshd.client_key_text
            os.environ["BENCH_AWS_KEY_ID"], os.environ["BENCH_AWS_SECRET"] = STANDIN_ACCESS_KEY, STANDIN_SECRET_KEY
            connections = Connections(
                sftp={
                    "p": SftpConnection(
                        host=sshd.host,
                        port=sshd.port,
                        username=sshd.username,
                        private_key_env="BENCH_SFTP_KEY",
                        host_key=sshd.host_key,
                        organizations=["*"],
                    )
                },
                s3={
                    "s": S3Connection(
                        region="us-east-1",
                        endpoint_url=moto.endpoint_url,
                        access_key_id_env="BENCH_AWS_KEY_ID",
                        secret_access_key_env="BENCH_AWS_SECRET",
                        organizations=["*"],
                    )
                },
            )
            folder = sftp_root / "inbound"
            folder.mkdir()
            marker = folder / "report.csv.manifest.json"
            results["SFTP (sshd)"] = polled_delivery(
                lambda: deliver(
                    artifact,
                    {"type": "sftp", "connection": "p", "remote_dir": str(folder), "manifest": True},
                    connections,
                    manifest=FIELDS,
                ),
                lambda: marker.read_bytes() if marker.exists() else None,
                (folder / "report.csv").read_bytes,
            )
            moto.create_bucket("bench-manifest")
            client = moto.client()

            def s3_manifest() -> bytes | None:
                key = "in/report.csv.manifest.json"
                if not client.list_objects_v2(Bucket="bench-manifest", Prefix=key).get("KeyCount"):
                    return None
                return client.get_object(Bucket="bench-manifest", Key=key)["Body"].read()

            results["S3 (moto)"] = polled_delivery(
                lambda: deliver(
                    artifact,
                    {"type": "s3", "connection": "s", "bucket": "bench-manifest", "prefix": "in/", "manifest": True},
                    connections,
                    manifest=FIELDS,
                ),
                s3_manifest,
                lambda: client.get_object(Bucket="bench-manifest", Key="in/report.csv")["Body"].read(),
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sftp_root, ignore_errors=True)
    print(f"## Manifest after the file, {args.mb} MB, reader polling every 10 ms\n")
    print("| destination | delivery | polls | manifest seen | file complete when seen |")
    print("|---|---:|---:|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['seconds']:.1f} s | {r['polls']:,} | {r['seen']} | {r['complete']} |")
    return 0 if all(r["seen"] and r["complete"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
