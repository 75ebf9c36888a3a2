from __future__ import annotations

from collections.abc import Iterator

import pytest

from report_platform_tests.faults.harness import Store
from report_platform_tests.faults.scenarios import Rig, open_rig


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One platform per test module (one fork server, one code location), with a relay, sshd and
    moto behind a gate; every test makes its own report, folder and bucket."""
    with open_rig(tmp_path_factory.mktemp("faults"), Store()) as rig:
        yield rig
