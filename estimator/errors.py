"""Domain errors: what the engine, the services and the CLI raise, free of any web framework.

The HTTP layer (`app/api/errors.py`) maps them to problem details and the CLI to exit
codes; anything that is not one of these is a fault of the program (500 / exit 3), never
the user's input.
"""

from __future__ import annotations


class DomainError(Exception):
    """An outcome the caller can act on (the base of every class below)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError, ValueError):
    """The caller's input is at fault; `field` names it ('' for the whole request)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = message


class InvalidSpec(InvalidInput):
    """A spec the engine cannot estimate, found while validating it."""


class BudgetExceeded(InvalidInput):
    """A request whose computation would pass the per-request budget."""


class NotFound(DomainError):
    """No such resource."""


class Unavailable(DomainError):
    """A dependency (the database) cannot serve now; retry after `retry_after_s`."""

    def __init__(self, dependency: str, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.dependency = dependency
        self.retry_after_s = retry_after_s


class RateLimited(DomainError):
    """Too many requests from one client; retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Cancelled(Exception):
    """The computation was called off by its caller (a client that went away); not an
    error of the input, so no DomainError."""
