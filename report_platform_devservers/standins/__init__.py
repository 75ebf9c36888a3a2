"""Real servers on 127.0.0.1 that stand in for a recipient's mail relay, SFTP server and bucket.

Used by `report-platform`'s demo (`devservers`), by the test suite and by the benchmarks, so there
is one implementation of each. Nothing here is used when delivering to a real destination.
"""

from report_platform_devservers.standins.s3 import MotoStandin
from report_platform_devservers.standins.sftp import SshdStandin
from report_platform_devservers.standins.smtp import ReceivedMail, SmtpStandin

__all__ = ["MotoStandin", "ReceivedMail", "SmtpStandin", "SshdStandin"]
