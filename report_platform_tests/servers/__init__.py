"""Real servers on 127.0.0.1 for tests and benchmarks.

The SMTP, SFTP and S3 servers live in `report_platform_devservers.standins` (the demo uses them
too); here are what only tests need: `http_faults.FaultyHttpProxy` (scripted 503s in front of
S3), `postgres` and the pytest fixtures in `fixtures`. Every server is also a context manager.
Nothing is imported here, so using one server does not load the others' libraries.
"""
