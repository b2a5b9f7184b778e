"""Errors the service layer raises. Each has a stable `code` for the websocket protocol and a message a
person can read; consumers and views turn them into error frames or HTTP responses."""

from __future__ import annotations

# Said by the protocol (a `send` with neither) and by the turn service (an edit emptied of its only text).
EMPTY_MESSAGE = "Write a message or attach an image."


class ServiceError(Exception):
    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class NotFound(ServiceError):
    """Missing, or someone else's: the two are indistinguishable on purpose, so ids can't be probed."""

    code = "not_found"


class NotAllowed(ServiceError):
    code = "forbidden"


class Unauthenticated(ServiceError):
    code = "unauthenticated"


class InvalidInput(ServiceError):
    code = "invalid"


class TooLarge(InvalidInput):
    """More bytes than the site accepts (an upload)."""

    code = "too_large"


class Busy(ServiceError):
    code = "busy"


class RateLimited(ServiceError):
    code = "rate_limited"


class TooManyRunning(RateLimited):
    """The user already has CHAT_MAX_RUNNING_PER_USER answers being written."""

    code = "too_many_running"


class DatabaseBusy(ServiceError):
    """SQLite's write lock was held longer than SQLITE_BUSY_TIMEOUT: nothing was saved, try again
    (services/db_busy.py)."""

    code = "database_busy"


class BudgetExceeded(ServiceError):
    code = "budget_exceeded"
