"""Failures a use case reports to its caller; the API maps each kind to an HTTP status."""

from __future__ import annotations


class UseCaseError(Exception):
    kind = "invalid"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class NotFound(UseCaseError):
    kind = "not-found"


class Conflict(UseCaseError):
    kind = "conflict"


class Forbidden(UseCaseError):
    kind = "forbidden"


class Invalid(UseCaseError):
    """The request is well-formed but cannot be done as asked (422)."""

    kind = "invalid"


class BadRequest(UseCaseError):
    """A query parameter or cursor is malformed (400)."""

    kind = "bad-request"


class Unavailable(UseCaseError):
    kind = "unavailable"


class Unauthenticated(UseCaseError):
    """The request does not prove who sent it (401): e.g. a Slack signature that does not match."""

    kind = "unauthenticated"
