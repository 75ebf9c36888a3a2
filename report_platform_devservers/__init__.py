"""Stand-in SMTP, SFTP and S3 servers on 127.0.0.1, for the demo (`make run`) and the tests.

Not part of the platform's runtime: the platform talks to real servers. The dependencies these
need (aiosmtpd, moto's server) are in the `devservers` dependency group, which `make` installs.
`python -m report_platform_devservers` runs all three for the demo.
"""
