"""Prometheus metrics for operators: every instrument, and the small functions the engine calls to record.

Served at GET /metrics (views/metrics.py) to the CHAT_METRICS_TOKEN bearer token or a staff session; what
each metric means is in docs/deployment.md ("Metrics"). Recording sits on the hot path (a frame every 40 ms
per answer, hundreds of answers at once): each call is one or two updates of instruments bound at import, no
label lookup, and tokens are counted per frame, not per token.

One process: the figures live in memory (prometheus-client's default registry, which adds its process_*
metrics). Several daphne processes (PROMETHEUS_MULTIPROC_DIR, or CHAT_METRICS_MULTIPROCESS=1 for
$DATA_DIR/metrics): each process writes its figures to files of its own in the directory they share, and
/metrics adds every file up; gauges count live processes only (`livesum`). prometheus-client picks its mode
when first imported, so this module sets the variable before importing it. Housekeeping, under a lock file:
- the first process of a site to start (no live process has files there) empties the directory, as
  prometheus-client asks ("wiped between runs");
- a dead process's gauge files go (`mark_process_dead`) when a process starts and at every scrape, so the
  sockets and answers of a killed process stop counting; its counters and histograms stay, so totals never
  go down while the site runs (files holding only zeros, like those of management commands, are removed).
Processes sharing a directory must share a pid namespace (one machine, or one container): a file's owner is
told alive or dead by its pid.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import os
import re
import time
from collections.abc import Callable

from channels.db import database_sync_to_async as _channels_database_sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from conversations.llm import client as llm_client
from conversations.services.errors import ServiceError

MULTIPROC_DIR = settings.PROMETHEUS_MULTIPROC_DIR
if MULTIPROC_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = MULTIPROC_DIR  # read by prometheus_client when it is imported

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

# prometheus-client's file names: counter_<pid>.db, histogram_<pid>.db, gauge_livesum_<pid>.db... Nothing
# else in the directory is ever touched.
_FILE = re.compile(r"^(?:counter|histogram|summary|gauge_[a-z]+)_(\d+)\.db$")


def _files() -> dict[str, int]:
    """prometheus-client's files in the directory, with the pid of the process that wrote each."""
    found = {}
    for name in os.listdir(MULTIPROC_DIR):
        match = _FILE.match(name)
        if match:
            found[os.path.join(MULTIPROC_DIR, name)] = int(match.group(1))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _only_zeros(path: str) -> bool:
    """Whether a counter or histogram file holds nothing but zeros (it adds nothing to any total)."""
    return all(
        sample.value == 0
        for metric in multiprocess.MultiProcessCollector.merge([path], accumulate=False)
        for sample in metric.samples
    )


def _lock_directory():
    """An exclusive lock on the directory between processes (released by `_unlock_directory`, or at exit)."""
    lock = open(os.path.join(MULTIPROC_DIR, ".lock"), "a")  # noqa: SIM115 - held across statements
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def _unlock_directory(lock) -> None:
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()


@contextlib.contextmanager
def _directory_lock():
    lock = _lock_directory()
    try:
        yield
    finally:
        _unlock_directory(lock)


_kept: set[str] = set()  # files of dead processes found to hold counts: not read again to be pruned


def _forget_dead_processes(files: dict[str, int]) -> None:
    """Remove what dead processes left that must not count: their live gauges, and files of only zeros."""
    me = os.getpid()
    dead = {pid for pid in set(files.values()) if pid != me and not _alive(pid)}
    for pid in dead:
        multiprocess.mark_process_dead(pid, MULTIPROC_DIR)
    for path, pid in files.items():
        if pid not in dead or path in _kept or os.path.basename(path).startswith("gauge_live"):
            continue
        with contextlib.suppress(FileNotFoundError):
            if _only_zeros(path):
                os.remove(path)
            else:
                _kept.add(path)


def _prepare_directory() -> None:
    """At start, before this process opens its files (the caller holds the lock): an empty directory for
    the first process of a site, else the dead processes' leftovers removed."""
    me = os.getpid()
    files = _files()
    if not any(_alive(pid) for pid in set(files.values()) - {me}):
        for path in files:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        return
    multiprocess.mark_process_dead(me, MULTIPROC_DIR)  # a dead process that had our pid: not our gauges
    _forget_dead_processes(files)


# --- The instruments ------------------------------------------------------------------------------------

# Seconds. The server's own share of the time to first token is small unless it is overloaded; providers
# take from a fraction of a second to a minute (CHAT_FIRST_TOKEN_TIMEOUT); the database queue is usually
# empty, and seconds deep in a burst of turns.
ADDED_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
UPSTREAM_TTFT_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 30, 60)
DB_WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# Refusals a busy site sees, bound (and shown at 0) from the start; other codes are added when they happen.
KNOWN_REFUSALS = ("rate_limited", "budget_exceeded", "busy", "model_unavailable")


if MULTIPROC_DIR:
    if not getattr(values.ValueClass, "_multiprocess", False):
        raise ImproperlyConfigured(
            "prometheus_client was imported before conversations.metrics could set PROMETHEUS_MULTIPROC_DIR: "
            "set it in the environment of every process instead."
        )
    os.makedirs(MULTIPROC_DIR, exist_ok=True)
    _start_lock = _lock_directory()  # held until this process's files exist (the instruments below)
    _prepare_directory()

STREAMS_RUNNING = Gauge(
    "chatsite_streams_running", "Answers being generated now.", multiprocess_mode="livesum"
)
TURNS_ADMITTED = Counter("chatsite_turns_admitted", "Turns (send, regenerate, edit) saved and answered.")
TURNS_REFUSED = Counter(
    "chatsite_turns_refused", "Turns refused, by reason: the error code sent to the browser.", ["reason"]
)
ADDED_TTFT = Histogram(
    "chatsite_added_ttft_seconds",
    "The server's own share of the time to first token: from the turn frame's arrival to the first delta "
    "frame sent, less the provider's time to first token.",
    buckets=ADDED_TTFT_BUCKETS,
)
UPSTREAM_TTFT = Histogram(
    "chatsite_upstream_ttft_seconds",
    "The provider's time to first token: from the request leaving to the answer's first text (connecting, "
    "retries and fallbacks included).",
    buckets=UPSTREAM_TTFT_BUCKETS,
)
FRAMES = Counter("chatsite_stream_frames", "Delta frames of running answers sent to their tabs.")
TOKENS = Counter("chatsite_stream_tokens", "Text deltas from providers in those frames (about a token each).")
DB_WAIT = Histogram(
    "chatsite_db_queue_wait_seconds",
    "How long a database call of the websocket engine waited for the database thread before it ran.",
    buckets=DB_WAIT_BUCKETS,
)
PROVIDER_ERRORS = Counter(
    "chatsite_provider_errors",
    "Failed attempts at providers, by provider and error kind.",
    ["provider", "kind"],
)
PROVIDER_RETRIES = Counter(
    "chatsite_provider_retries", "Requests tried again at the same provider.", ["provider"]
)
SENT_AHEAD = Counter(
    "chatsite_sent_ahead",
    "Answers whose request left before their turn was saved (engine/send_ahead.py), by "
    "outcome: kept (the turn's batch prepared the same request), redone (it did not: cancelled and sent "
    "again), dropped (the turn was refused or failed: cancelled).",
    ["outcome"],
)
WEBSOCKETS = Gauge("chatsite_websocket_connections", "Open chat websockets.", multiprocess_mode="livesum")

_refused = {reason: TURNS_REFUSED.labels(reason) for reason in KNOWN_REFUSALS}
_frames_inc = FRAMES.inc
_tokens_inc = TOKENS.inc
_added_observe = ADDED_TTFT.observe
_upstream_observe = UPSTREAM_TTFT.observe
_db_wait_observe = DB_WAIT.observe

if MULTIPROC_DIR:
    _unlock_directory(_start_lock)  # this process's files exist: other processes now see it alive
    atexit.register(multiprocess.mark_process_dead, os.getpid(), MULTIPROC_DIR)


# --- Recording (each call is cheap; none raises on a good argument) -------------------------------------


def turn_admitted() -> None:
    TURNS_ADMITTED.inc()


def turn_refused(error: BaseException | str) -> None:
    """A turn was refused: a ServiceError counts under its code, a str is the code, anything else is a
    server_error."""
    if isinstance(error, str):
        reason = error
    elif isinstance(error, ServiceError):
        reason = error.code
    else:
        reason = "server_error"
    child = _refused.get(reason)
    if child is None:
        child = _refused[reason] = TURNS_REFUSED.labels(reason)
    child.inc()


def stream_started() -> None:
    STREAMS_RUNNING.inc()


def stream_ended(_task: object = None) -> None:
    """Also usable as the generation task's done callback."""
    STREAMS_RUNNING.dec()


def first_token(added_seconds: float, upstream_seconds: float) -> None:
    _added_observe(max(0.0, added_seconds))
    _upstream_observe(max(0.0, upstream_seconds))


def first_frame(received_at: float, requested_at: float, text_at: float) -> None:
    """An answer's first delta frame just went out. Monotonic times: `received_at` the turn frame arrived,
    `requested_at` the request to the provider started, `text_at` its first text arrived."""
    upstream = text_at - requested_at
    first_token(time.monotonic() - received_at - upstream, upstream)


def frame_sent(tokens: int) -> None:
    """A delta frame carrying `tokens` text deltas went out."""
    _frames_inc()
    _tokens_inc(tokens)


def db_wait(seconds: float) -> None:
    _db_wait_observe(seconds)


def provider_error(provider: str, kind: str) -> None:
    PROVIDER_ERRORS.labels(provider, kind).inc()


def provider_retry(provider: str) -> None:
    PROVIDER_RETRIES.labels(provider).inc()


def sent_ahead(outcome: str) -> None:
    """kept, redone or dropped (SENT_AHEAD)."""
    SENT_AHEAD.labels(outcome).inc()


def socket_opened() -> None:
    WEBSOCKETS.inc()


def socket_closed() -> None:
    WEBSOCKETS.dec()


class _ProviderObserver(llm_client.Observer):
    """What conversations/llm reports about providers (it imports nothing of ours), counted here."""

    def provider_error(self, provider: str, kind: str) -> None:
        provider_error(provider, kind)

    def provider_retry(self, provider: str) -> None:
        provider_retry(provider)


llm_client.observer = _ProviderObserver()


def database_sync_to_async(func: Callable, **options) -> Callable:
    """channels' database_sync_to_async (`options` go to it: an executor for the engine's answer-saves thread),
    also timing how long each call waits for its database thread: from the call on the event loop to the
    function starting on that thread."""

    @functools.wraps(func)
    async def call(*args, **kwargs):
        submitted = time.monotonic()

        def timed():
            _db_wait_observe(time.monotonic() - submitted)
            return func(*args, **kwargs)

        return await _channels_database_sync_to_async(timed, **options)()

    return call


# --- Exposition -----------------------------------------------------------------------------------------


def render() -> tuple[bytes, str]:
    """The text exposition of every metric (of every live and past process of the site in multi-process
    mode) and its content type. Blocking file reads in multi-process mode: call it off the event loop."""
    if not MULTIPROC_DIR:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    with _directory_lock():
        _forget_dead_processes(_files())
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
        return generate_latest(registry), CONTENT_TYPE_LATEST
