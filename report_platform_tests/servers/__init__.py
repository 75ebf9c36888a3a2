"""Real servers on 127.0.0.1 for tests and benchmarks.

The servers themselves live in `report_platform.delivery.standins` (the demo uses them too);
this package adds what only tests need: a fault-injecting proxy for S3 and pytest fixtures
(`report_platform_tests.servers.fixtures`). Every class here is also a context manager.
"""

from report_platform.delivery.standins import MotoStandin, ReceivedMail, SmtpStandin, SshdStandin
from report_platform_tests.servers.http_faults import FaultyHttpProxy

__all__ = ["FaultyHttpProxy", "MotoStandin", "ReceivedMail", "SmtpStandin", "SshdStandin"]
