"""A fresh registry service for a test's data folder, with its users, and no service left cached after."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from report_platform.app import _service, registry_service
from report_platform.registry.service import ReportService
from report_platform.settings import Home


@contextmanager
def fresh_registry(home: Home, users: Iterable[tuple[str, str, str]]) -> Iterator[ReportService]:
    """The registry of `home`, made anew, with each (e-mail, organisation, role) added."""
    _service.cache_clear()  # a service cached for an earlier test's folder must not answer
    service = registry_service(home)
    for email, organization, role in users:
        service.add_user(email, organization, role)
    try:
        yield service
    finally:
        _service.cache_clear()
