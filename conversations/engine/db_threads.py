"""The engine's two database threads, and why each keeps its connection.

- **Turns** run on asgiref's one sync thread (`SyncToAsync.single_thread_executor`, what
  `database_sync_to_async` uses): reading and saving turns, snapshots, titles, sweeps.
- **Answer saves** (checkpoints, final saves) run on a thread of their own (`on_saves_thread`), so an
  answer's `end` frame never waits behind a burst of new turns on the first thread (bench/README.md, "Load":
  end-frame lag was seconds at 200 concurrent answers when both shared one thread). Each thread has its own
  connection; SQLite serialises their writes (BEGIN IMMEDIATE with a busy timeout), PostgreSQL doesn't need to.

channels closes a thread's connection after each call when CONN_MAX_AGE is 0 (the default, right for Django's
per-request threads under ASGI). For these two long-lived threads that would mean a new connection for every
checkpoint; on SQLite closing the last connection also checkpoints and deletes the WAL file. They keep their
connections instead; Django still health-checks them before reuse and replaces them after errors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import SyncToAsync
from django.db.backends.signals import connection_created
from django.dispatch import receiver

from conversations import metrics

# How long the engine's database threads keep their connections when CONN_MAX_AGE is 0.
ENGINE_CONN_MAX_AGE = 600.0

SAVES = ThreadPoolExecutor(max_workers=1, thread_name_prefix="answer-saves")

# Each executor has one worker, created on first use and kept: asking it who it is names the thread for good.
_ENGINE_THREADS = (
    SyncToAsync.single_thread_executor.submit(threading.get_ident),
    SAVES.submit(threading.get_ident),
)


def on_saves_thread(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` (sync ORM code) as a coroutine function running on the answer-saves thread (its queue wait timed
    for /metrics, like the turns thread's)."""
    return metrics.database_sync_to_async(fn, thread_sensitive=False, executor=SAVES)


@receiver(connection_created, dispatch_uid="engine_keeps_its_connection")
def keep_engine_connection(sender, connection, **kwargs) -> None:
    if connection.settings_dict.get("CONN_MAX_AGE") != 0:
        return
    if threading.get_ident() in {thread.result() for thread in _ENGINE_THREADS}:
        connection.close_at = time.monotonic() + ENGINE_CONN_MAX_AGE
