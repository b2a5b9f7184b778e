"""The database thread of the realtime engine keeps its connection.

Every ORM call of the websocket consumers and generations runs on asgiref's one sync thread
(`SyncToAsync.single_thread_executor`), and channels closes that thread's connection after each call when
CONN_MAX_AGE is 0 (the default, right for Django's per-request threads under ASGI). Here that would mean a
new connection for every checkpoint; on SQLite closing the last connection also checkpoints and deletes the
WAL file. That long-lived thread keeps its connection instead; Django still health-checks it before reuse
and replaces it after errors.
"""

from __future__ import annotations

import threading
import time

from asgiref.sync import SyncToAsync
from django.db.backends.signals import connection_created
from django.dispatch import receiver

# How long the engine's database thread keeps its connection when CONN_MAX_AGE is 0.
ENGINE_CONN_MAX_AGE = 600.0

# The executor has one worker, created on first use and kept: asking it who it is names the thread for good.
_ENGINE_THREAD = SyncToAsync.single_thread_executor.submit(threading.get_ident)


@receiver(connection_created, dispatch_uid="engine_keeps_its_connection")
def keep_engine_connection(sender, connection, **kwargs) -> None:
    if connection.settings_dict.get("CONN_MAX_AGE") != 0:
        return
    if threading.get_ident() == _ENGINE_THREAD.result():
        connection.close_at = time.monotonic() + ENGINE_CONN_MAX_AGE
