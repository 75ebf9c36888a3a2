"""What the registry refuses, and why. Every surface shows `str(error)` as the one-line reason."""

from __future__ import annotations


class RegistryError(Exception):
    """Base class: the action was refused and nothing was changed."""


class PermissionDenied(RegistryError):
    """The acting user may not do this (HTTP 403)."""


class UnknownUser(PermissionDenied):
    """The acting user is not registered at all (HTTP 401)."""


class NotFound(RegistryError, LookupError):
    """No such report or folder, or none the acting user may see (HTTP 404).

    Reports of organisations or workspaces the user is not credentialed for are reported as not
    found, never as forbidden, so their existence does not leak.
    """


class BadRequest(RegistryError, ValueError):
    """The request itself is malformed, e.g. a bad e-mail address or date range (HTTP 400)."""


class DefinitionError(BadRequest):
    """The report definition is invalid (HTTP 422)."""


class Conflict(RegistryError):
    """The action clashes with the current state, e.g. a folder name already taken (HTTP 409)."""
