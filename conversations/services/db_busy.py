"""SQLite's single writer: a write that can't get the lock must never become a 500.

SQLite lets one connection write at a time; the others wait up to SQLITE_BUSY_TIMEOUT and then fail with
"database is locked". Where nobody waits for the answer (the final save of an answer, the purge commands)
we wait longer; where a person does (a page, an API call, a websocket command), the request is answered with
a clear, retryable error instead: 503 JSON `database_busy` with Retry-After, or a `database_busy` error frame.
Nothing is half-saved: the failed write's transaction rolled back.

PostgreSQL never raises these (its writers lock rows, not the database).
"""

from __future__ import annotations

import functools
import logging
import time

from django.db import OperationalError, connection

from conversations.services.errors import DatabaseBusy

logger = logging.getLogger(__name__)

BUSY_MESSAGE = "The server is busy saving other work. Nothing was changed; try again in a moment."
RETRY_AFTER_SECONDS = 2


__all__ = ["BUSY_MESSAGE", "RETRY_AFTER_SECONDS", "DatabaseBusy", "is_database_locked", "retry_when_locked"]


def is_database_locked(exc: BaseException) -> bool:
    """SQLite's "database is locked" / "database table is locked" (a writer held the lock too long)."""
    return isinstance(exc, OperationalError) and "is locked" in str(exc).lower()


def retry_when_locked(attempts: int = 3):
    """For writes nobody waits on (and safe to repeat): try again, each time waiting a busy timeout more."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for attempt in range(1, attempts + 1):
                try:
                    return fn(*args, **kwargs)
                except OperationalError as exc:
                    if attempt == attempts or not is_database_locked(exc):
                        raise
                    logger.warning(
                        "%s: the database was locked; trying again (%d/%d)", fn.__name__, attempt, attempts
                    )
                    time.sleep(0.1 * attempt)
            raise AssertionError("unreachable")

        return wrapper

    return decorate


def wait_longer(seconds: float = 300.0) -> None:
    """Let this connection wait up to `seconds` for SQLite's lock: for management commands (purges), where
    waiting in line is better than failing. Nothing to do on other databases."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
