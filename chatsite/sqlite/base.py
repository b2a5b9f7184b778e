"""Django's SQLite backend, with the process's writers taking turns in line instead of SQLite's sleep-and-retry.

SQLite has one writer at a time. A connection that finds the write lock taken does not queue: its busy handler
sleeps and tries again, 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms apart, until the busy timeout. The
engine writes from two threads (turns, and answers' checkpoints and final saves: engine/db_threads.py), so
under load a writer that lost once often loses again and sleeps tens of milliseconds while the lock is free:
tail latency for turns, lag for saves. Here every write transaction of this process first takes one
threading lock, so writers wait in line and go the moment the lock is released; SQLite's busy handler is
left for other processes (a management command, a second server by mistake).

The lock is held from BEGIN IMMEDIATE to COMMIT or ROLLBACK (the outermost `atomic`, and the implicit
transaction of a write in autocommit mode). Waiting for it counts as SQLite's busy wait: past the busy timeout
(OPTIONS["timeout"], SQLITE_BUSY_TIMEOUT) the write fails with "database is locked", exactly as SQLite would
fail it, so services/db_busy.py turns it into the same clear, retryable error. Nothing can deadlock that
did not before: a connection holding the lock holds SQLite's write lock too.
"""

from __future__ import annotations

import threading

from django.db import OperationalError
from django.db.backends.sqlite3 import base

# One line of writers per process (SQLite itself allows one writer per database file).
_WRITERS = threading.Lock()

_WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _is_write(sql: str) -> bool:
    return sql.lstrip()[:7].upper().startswith(_WRITE_VERBS)


class DatabaseWrapper(base.DatabaseWrapper):
    _queued = False  # this connection holds _WRITERS
    _cursor_class = None

    def _take_turn(self) -> None:
        timeout = float(self.settings_dict.get("OPTIONS", {}).get("timeout", 5))
        if not _WRITERS.acquire(timeout=timeout):
            raise OperationalError("database is locked (another write of this process took too long)")
        self._queued = True

    def _end_turn(self) -> None:
        if self._queued:
            self._queued = False
            _WRITERS.release()

    def _start_transaction_under_autocommit(self) -> None:
        self._take_turn()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._end_turn()
            raise

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._end_turn()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._end_turn()

    def _close(self):
        try:
            return super()._close()
        finally:
            self._end_turn()

    def create_cursor(self, name=None):
        if self._cursor_class is None:
            self._cursor_class = _cursor_factory(self)
        return self.connection.cursor(factory=self._cursor_class)


def _cursor_factory(wrapper: DatabaseWrapper):
    class Cursor(base.SQLiteCursorWrapper):
        """A write in autocommit mode is a transaction of its own: it waits in line too."""

        def execute(self, query, params=None):
            if wrapper._queued or wrapper.in_atomic_block or not _is_write(query):
                return super().execute(query, params)
            wrapper._take_turn()
            try:
                return super().execute(query, params)
            finally:
                wrapper._end_turn()

        def executemany(self, query, param_list):
            if wrapper._queued or wrapper.in_atomic_block or not _is_write(query):
                return super().executemany(query, param_list)
            wrapper._take_turn()
            try:
                return super().executemany(query, param_list)
            finally:
                wrapper._end_turn()

    return Cursor
