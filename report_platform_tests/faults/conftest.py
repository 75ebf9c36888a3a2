from __future__ import annotations

from collections.abc import Iterator

import pytest

from report_platform_devservers.standins import MotoStandin, SmtpStandin, SshdStandin
from report_platform_devservers.standins.s3 import STANDIN_ACCESS_KEY, STANDIN_SECRET_KEY
from report_platform_tests.faults.harness import Servers, Store, open_platform
from report_platform_tests.faults.scenarios import Rig, S3Gate


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One platform per test module (one fork server, one code location), with a relay, sshd and
    moto behind a gate; every test makes its own report, folder and bucket."""
    work = tmp_path_factory.mktemp("faults")
    with (
        SmtpStandin(security="none") as relay,
        SshdStandin(root_dir=work / "sftp-root", workdir=work / "sshd") as sshd,
        MotoStandin() as moto,
        S3Gate(moto.endpoint_url) as gate,
    ):
        servers = Servers(
            smtp_port=relay.port,
            sftp_host=sshd.host,
            sftp_port=sshd.port,
            sftp_user=sshd.username,
            sftp_host_key=sshd.host_key,
            sftp_client_key=sshd.client_key_text,
            s3_endpoint=gate.url,
            s3_key_id=STANDIN_ACCESS_KEY,
            s3_secret=STANDIN_SECRET_KEY,
        )
        with open_platform(work, servers, Store()) as platform:
            yield Rig(platform, relay, sshd, moto, gate)
