"""A scheduled Parquet report delivered to a real sshd with `manifest: true`, run twice."""

import hashlib
import json
from datetime import datetime
from zoneinfo import ZoneInfo

import polars as pl
import yaml

from report_platform.app import registry_service
from report_platform.launch import launch_report_run
from report_platform.settings import Home
from report_platform_tests.scheduling.conftest import OWNER, USER, sms_definition
from report_platform_tests.servers.fixtures import sshd_shared  # noqa: F401

NY = ZoneInfo("America/New_York")
SCHEDULED = datetime(2026, 3, 9, 6, 0, tzinfo=NY)


def test_a_parquet_run_delivers_its_file_then_one_manifest_describing_it(platform, sshd_shared, monkeypatch):  # noqa: F811
    folder = sshd_shared.root_dir / "run-manifest"
    folder.mkdir()
    monkeypatch.setenv("RUN_SFTP_KEY", sshd_shared.client_key_text)
    connections = yaml.safe_load(platform.connections.read_text())
    connections["sftp"] = {
        "partner-sftp": {
            "host": sshd_shared.host,
            "port": sshd_shared.port,
            "username": sshd_shared.username,
            "private_key_env": "RUN_SFTP_KEY",
            "host_key": sshd_shared.host_key,
            "organizations": ["acme"],
        }
    }
    platform.connections.write_text(yaml.safe_dump(connections))
    definition = sms_definition(
        filename_pattern=None,
        format="parquet",
        filters={"core_campaigns": ["Acme East Sales Line"], "engage_campaigns": ["Acme East Promotions"]},
        destination={"type": "sftp", "connection": "partner-sftp", "remote_dir": str(folder), "manifest": True},
    )
    service = registry_service(Home.from_env())
    report_id = service.create_report(OWNER, definition)
    for _ in range(2):  # the second run of the same tick sends nothing again
        assert launch_report_run(report_id, "sms_usage", SCHEDULED, trigger="schedule").success

    name = "Daily SMS usage_2026-03-08_2026-03-08.parquet"
    assert sorted(p.name for p in folder.iterdir()) == [name, name + ".manifest.json"]
    data = (folder / name).read_bytes()
    manifest = json.loads((folder / (name + ".manifest.json")).read_text())
    frame = pl.read_parquet(folder / name)
    runs = service.audit_log(USER, report_id).runs
    assert {run.status for run in runs} == {"SUCCESS"}
    assert manifest["file"] == name and manifest["format"] == "parquet"
    assert manifest["bytes"] == len(data) and manifest["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["sha256"] == runs[0].sha256
    assert manifest["content_type"] == "application/vnd.apache.parquet"
    assert manifest["rows"] == frame.height == runs[0].rows > 0
    assert manifest["report_id"] == report_id and manifest["run_id"] == f"{report_id}/20260309T100000Z"
    assert manifest["period"] == {
        "start": "2026-03-08T00:00:00-05:00",
        "end": "2026-03-09T00:00:00-04:00",
        "timezone": "America/New_York",
    }
    assert [c["name"] for c in manifest["columns"]] == frame.columns
    assert dict((c["name"], c["type"]) for c in manifest["columns"])["Carrier Fees"] == "decimal(18,6)"
    assert runs[0].delivered_to[0]["extra"]["manifest"]["target"].endswith(".parquet.manifest.json")
    # The rows a filtered file holds, in words (an SMS report's filters have no event details).
    assert manifest["filters"] == "Core campaigns: Acme East Sales Line; Engage campaigns: Acme East Promotions"
