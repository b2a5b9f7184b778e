"""daphne for bench/load.py, with a count of the SQL statements the site runs.

Usage: load_server.py <daphne arguments>. Same as `daphne ...`, plus: every database connection gets an
execute wrapper counting statements by kind (the first SQL word), and on SIGUSR1 the counts are written to
$BENCH_COUNTS_FILE.<pid> (one file per process: bench/load.py may run several behind scripts/serve.py).
Counting costs about a microsecond a statement; nothing else differs from a plain
daphne process. With $BENCH_GC_LOG set, every run of the cycle collector is logged to $BENCH_GC_LOG.<pid>: when,
the generation, how long it held the process (ms) and how many objects it freed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import daphne.server  # noqa: F401  (installs Twisted's asyncio reactor before anything imports Twisted)

COUNTS: dict[str, int] = {}


def _count(execute, sql, params, many, context):
    word = sql.lstrip()[:6].upper()
    key = word if word in {"SELECT", "INSERT", "UPDATE", "DELETE"} else "OTHER"
    COUNTS[key] = COUNTS.get(key, 0) + (len(params) if many and params is not None else 1)
    return execute(sql, params, many, context)


def _on_connection(sender, connection, **kwargs) -> None:
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


def _write_counts(path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(COUNTS))
    tmp.replace(path)


def _log_collections(path: Path) -> None:
    import gc
    import time

    log = path.open("a")
    started = [0.0]

    def logged(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = (time.perf_counter() - started[0]) * 1000
        log.write(f"{time.monotonic():.3f} {info['generation']} {took:.2f} {info['collected']}\n")
        log.flush()

    gc.callbacks.append(logged)


def _record_garbage(path: Path) -> None:
    """What the cycle collector frees, by type (objects that only a collection can free: reference cycles),
    summed over the process's life and rewritten to `path` after every collection. DEBUG_SAVEALL keeps
    them in gc.garbage for a moment, so each collection's haul is counted and then dropped."""
    import collections
    import gc

    totals: collections.Counter[str] = collections.Counter()

    def counted(phase: str, info: dict) -> None:
        if phase != "stop" or not gc.garbage:
            return
        totals.update(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage)
        gc.garbage.clear()
        path.write_text("".join(f"{n} {name}\n" for name, n in totals.most_common(60)))

    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.callbacks.append(counted)


def _write_object_counts(path: Path) -> None:
    """Live objects the cycle collector tracks, by type (to find what grows with the turns served)."""
    import collections
    import gc

    counts = collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())
    path.write_text("".join(f"{n} {name}\n" for name, n in counts.most_common(80)))


def _trace_loop(path: Path) -> None:
    """What wakes the event loop and what each wake-up costs: every callback it runs, counted by what it is (a
    task's step is named by its coroutine) with the CPU time of this thread it took, and the loop's passes
    (their CPU time includes their callbacks'); written to `path` at exit and on SIGUSR2 as lines of
    `count cpu_ms name`. Costs about two microseconds a callback."""
    import asyncio.base_events
    import asyncio.events
    import atexit
    import collections
    import signal
    import time

    counts: collections.Counter[str] = collections.Counter()
    cpu: collections.Counter[str] = collections.Counter()
    run = asyncio.events.Handle._run
    clock = time.thread_time

    def name(callback) -> str:
        owner = getattr(callback, "__self__", None)
        if isinstance(owner, asyncio.Task):
            coro = owner.get_coro()
            return "task " + getattr(coro, "__qualname__", type(coro).__qualname__)
        target = getattr(callback, "func", callback)  # functools.partial
        return getattr(target, "__qualname__", type(target).__qualname__)

    def traced(handle):
        key = name(handle._callback)
        started = clock()
        try:
            return run(handle)
        finally:
            counts[key] += 1
            cpu[key] += clock() - started

    asyncio.events.Handle._run = traced
    run_once = asyncio.base_events.BaseEventLoop._run_once

    def counted_pass(loop):
        started = clock()
        try:
            return run_once(loop)
        finally:
            counts["(loop pass)"] += 1
            cpu["(loop pass)"] += clock() - started

    asyncio.base_events.BaseEventLoop._run_once = counted_pass
    import selectors

    select = selectors.EpollSelector.select

    def timed_select(selector, timeout=None):
        key = "(select, no wait)" if timeout is not None and timeout <= 0 else "(select, may sleep)"
        started = clock()
        try:
            return select(selector, timeout)
        finally:
            counts[key] += 1
            cpu[key] += clock() - started

    selectors.EpollSelector.select = timed_select
    threadsafe = asyncio.base_events.BaseEventLoop.call_soon_threadsafe

    def counted_threadsafe(loop, callback, *args, **kwargs):
        counts["(from a thread) " + name(callback)] += (
            1  # a hand-off back to the loop: a wake-up if it sleeps
        )
        return threadsafe(loop, callback, *args, **kwargs)

    asyncio.base_events.BaseEventLoop.call_soon_threadsafe = counted_threadsafe

    def write(*_args) -> None:
        path.write_text("".join(f"{n} {cpu[k] * 1000:.3f} {k}\n" for k, n in counts.most_common(120)))

    atexit.register(write)
    signal.signal(signal.SIGUSR2, write)


def _trace_turns(path: Path) -> None:
    """Where a turn's time goes before its request leaves, as seen from the server: from its frame's arrival
    to its batch starting on the turns' database thread (queue wait), the batch on that thread (wall time, and
    the thread's own CPU time: the rest is waiting for the GIL, the CPU or SQLite's lock), the hand-off back to
    the event loop that starts its answer (answer started), the answer's request task taking its first step
    (request task) and its request written to the upstream's socket (request written); and, before all that,
    from autobahn's onMessage to the consumer's parse (daphne to consumer). Percentiles of every 500 turns
    (BENCH_TURN_TRACE_EVERY) are appended to `path`, as lines of `name: n=.. p50=.. p95=.. mean=..` in ms.
    BENCH_TURN_TIMES=<path>: each turn's (onMessage, parsed, request written) times by its text as JSON, to
    join with `bench/load.py`'s BENCH_DUMP_TURNS (client and upstream times) turn by turn."""
    import collections
    import time

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    django.setup()
    from conversations.engine import admission, generation

    samples: dict[str, list[float]] = collections.defaultdict(list)

    def write() -> None:
        taken = {
            name: sorted(values) for name, values in list(samples.items())
        }  # the turns' thread appends too
        samples.clear()
        with path.open("a") as out:
            for name, values in taken.items():
                n = len(values)
                out.write(f"{name}: n={n} p50={values[n // 2] * 1000:.2f} p95={values[int(n * 0.95)] * 1000:.2f} "
                          f"mean={sum(values) / n * 1000:.2f}\n")  # fmt: skip
            out.write("--\n")

    start_batch, start_early, read = (
        admission._start_batch,
        admission._start_early,
        generation.Generation._read,
    )

    def timed_batch(batch, loop, context) -> None:
        began, cpu = time.monotonic(), time.thread_time()
        samples["queue wait"].extend(began - w.received_at for w in batch)
        try:
            start_batch(batch, loop, context)
        finally:
            samples["batch wall"].append(time.monotonic() - began)
            samples["batch CPU"].append(time.thread_time() - cpu)
            if len(samples["queue wait"]) >= int(os.environ.get("BENCH_TURN_TRACE_EVERY", "500")):
                loop.call_soon_threadsafe(write)

    def timed_start_early(ready) -> None:
        now = time.monotonic()
        samples["answer started"].extend(now - w.received_at for w, _ in ready)
        start_early(ready)

    async def timed_read(self):
        samples["request task"].append(time.monotonic() - self.received_at)
        return await read(self)

    admission._start_batch, admission._start_early = timed_batch, timed_start_early
    generation.Generation._read = timed_read

    # A turn's frame reaching daphne (autobahn's onMessage) -> parsed by its consumer, keyed by its text; and
    # its request written to the upstream's socket, from the consumer's parse (the reader task's context).
    import contextlib
    import contextvars
    import json as json_module

    from daphne.ws_protocol import WebSocketProtocol

    from conversations.engine import protocol
    from conversations.llm import http11

    arrived: dict[str, float] = {}
    received = contextvars.ContextVar("received", default=0.0)
    on_message, parse_frame, send = WebSocketProtocol.onMessage, protocol.parse_frame, http11.Connection.send

    def timed_on_message(self, payload, isBinary):
        with contextlib.suppress(Exception):  # not a send
            arrived[json_module.loads(payload)["text"]] = time.monotonic()
        return on_message(self, payload, isBinary)

    def timed_parse_frame(*args, **kwargs):
        command = parse_frame(*args, **kwargs)
        at = arrived.pop(command.data.get("text"), None) if isinstance(command.data, dict) else None
        if at is not None:
            samples["daphne to consumer"].append(command.received_at - at)
            times[command.data.get("text")] = [at, command.received_at]
        return command

    turns_file = os.environ.get("BENCH_TURN_TIMES")  # experiments only: tag -> (arrived, parsed, written)
    tag = contextvars.ContextVar("tag", default=None)
    times: dict[str, list[float]] = {}

    async def timed_send(self, request):
        await send(self, request)
        if received.get():
            samples["request written"].append(time.monotonic() - received.get())
            if turns_file and tag.get() in times:
                times[tag.get()].append(time.monotonic())
                written = sum(1 for t in times.values() if len(t) > 2)
                if written % 20 == 0:
                    Path(f"{turns_file}.{os.getpid()}").write_text(json_module.dumps(times))

    async def timed_read_context(self):
        received.set(self.received_at)
        messages = self.prepared.request.messages
        tag.set(messages[-1].text if messages else None)
        return await timed_read(self)

    WebSocketProtocol.onMessage = timed_on_message
    protocol.parse_frame = timed_parse_frame
    consumer_module = __import__("conversations.engine.consumer", fromlist=["parse_frame"])
    consumer_module.parse_frame = timed_parse_frame
    http11.Connection.send = timed_send
    generation.Generation._read = timed_read_context


def _measure_loop_lag(path: Path) -> None:
    """How late the event loop runs a 10 ms timer (what every hop of a turn waits for), and how long its
    passes take: percentiles of each 5 s appended to `path` as `lag p50 .. p95 .. max ..; pass ...` in ms.
    Started with the engine (the first connection), on daphne's loop."""
    import asyncio
    import asyncio.events
    import time

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    django.setup()
    from conversations import engine

    start = engine.start

    async def watch() -> None:
        loop = asyncio.get_running_loop()
        lags: list[float] = []
        passes: list[float] = []
        run_once = loop._run_once

        slow: list[tuple[float, str]] = []  # this pass's callbacks over 5 ms

        def timed_run_once() -> None:
            began = time.perf_counter()
            slow.clear()
            run_once()
            took = time.perf_counter() - began
            passes.append(took)
            if took > 0.03:
                with path.open("a") as out:
                    out.write(f"  slow pass {took * 1000:.1f} ms, ready {len(loop._ready)}: "
                              + ", ".join(f"{name} {t * 1000:.1f}" for t, name in sorted(slow, reverse=True)[:6])
                              + "\n")  # fmt: skip

        handle_run = asyncio.events.Handle._run

        def name_of(handle) -> str:
            callback = handle._callback
            owner = getattr(callback, "__self__", None)
            if isinstance(owner, asyncio.Task):
                coro = owner.get_coro()
                return "task " + getattr(coro, "__qualname__", type(coro).__qualname__)
            target = getattr(callback, "func", callback)
            return getattr(target, "__qualname__", type(target).__qualname__)

        def timed_handle_run(handle):
            began = time.perf_counter()
            try:
                return handle_run(handle)
            finally:
                took = time.perf_counter() - began
                if took > 0.005:
                    slow.append((took, name_of(handle)))

        asyncio.events.Handle._run = timed_handle_run

        loop._run_once = timed_run_once
        written = time.monotonic()
        while True:
            due = loop.time() + 0.01
            await asyncio.sleep(0.01)
            lags.append(loop.time() - due)
            if time.monotonic() - written >= 5:
                written = time.monotonic()
                lags.sort()
                done = sorted(passes)
                passes.clear()

                def pct(v: list[float], q: float) -> float:
                    return v[min(len(v) - 1, int(len(v) * q))] * 1000 if v else 0.0

                with path.open("a") as out:
                    out.write(
                        f"lag p50 {pct(lags, 0.5):.1f} p95 {pct(lags, 0.95):.1f} max {pct(lags, 1):.1f}; "
                        f"pass p50 {pct(done, 0.5):.2f} p95 {pct(done, 0.95):.2f} p99 {pct(done, 0.99):.2f} "
                        f"max {pct(done, 1):.1f} n {len(done)}\n"
                    )
                lags.clear()

    def started() -> bool:
        ran = start()
        if ran:
            watcher = asyncio.get_running_loop().create_task(watch())
            engine._loop_lag_watcher = watcher  # kept alive
        return ran

    engine.start = started


def _time_sends(path: Path) -> None:
    """BENCH_SEND_TIMES: each TCP send()'s wall time against the loop thread's CPU time over it (the rest is
    waiting: for the GIL, or for a CPU), percentiles appended to `path` every 20,000 sends."""
    import time

    from twisted.internet import tcp

    write_some = tcp.Connection.writeSomeData
    walls: list[float] = []
    cpus: list[float] = []

    def timed(self, data):
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return write_some(self, data)
        finally:
            walls.append(time.perf_counter() - wall)
            cpus.append(time.thread_time() - cpu)
            if len(walls) >= 20_000:
                w, c = sorted(walls), sorted(cpus)
                waits = sorted(a - b for a, b in zip(walls, cpus, strict=True))
                walls.clear()
                cpus.clear()
                with path.open("a") as out:
                    for name, v in (("wall", w), ("cpu", c), ("wait", waits)):
                        out.write(f"{name}: p50 {v[len(v) // 2] * 1e6:.0f} p95 {v[int(len(v) * 0.95)] * 1e6:.0f} "
                                  f"mean {sum(v) / len(v) * 1e6:.0f} us\n")  # fmt: skip
                    out.write("--\n")

    tcp.Connection.writeSomeData = timed


def _nice_db_threads(niceness: int) -> None:
    """BENCH_DB_NICE: run the engine's two database threads at this niceness (the event loop's stays 0)."""
    import threading

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    django.setup()
    from asgiref.sync import SyncToAsync

    from conversations.engine import db_threads

    def nice() -> None:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)

    for executor in (SyncToAsync.single_thread_executor, db_threads.SAVES):
        executor.submit(nice).result()


def main() -> None:
    if os.environ.get("BENCH_DB_NICE"):  # experiments only: the database threads at a lower priority
        _nice_db_threads(int(os.environ["BENCH_DB_NICE"]))
    if os.environ.get("BENCH_SEND_TIMES"):  # experiments only: what a frame's send() costs the loop
        _time_sends(Path(f"{os.environ['BENCH_SEND_TIMES']}.{os.getpid()}"))
    if os.environ.get("BENCH_TURN_TRACE"):  # experiments only: a turn's steps before its request leaves
        _trace_turns(Path(f"{os.environ['BENCH_TURN_TRACE']}.{os.getpid()}"))
    if os.environ.get("BENCH_LOOP_LAG"):  # experiments only: how late the loop is, how long its passes
        _measure_loop_lag(Path(f"{os.environ['BENCH_LOOP_LAG']}.{os.getpid()}"))
    if os.environ.get("BENCH_LOOP_TRACE"):  # experiments only: what wakes the loop
        _trace_loop(Path(f"{os.environ['BENCH_LOOP_TRACE']}.{os.getpid()}"))
    if os.environ.get("BENCH_SWITCH_INTERVAL"):  # experiments only
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
    if os.environ.get("BENCH_GC_LOG"):
        _log_collections(Path(f"{os.environ['BENCH_GC_LOG']}.{os.getpid()}"))
    if os.environ.get("BENCH_GC_GARBAGE"):
        _record_garbage(Path(f"{os.environ['BENCH_GC_GARBAGE']}.{os.getpid()}"))
    from django.db.backends.signals import connection_created

    connection_created.connect(_on_connection)
    counts_file = os.environ.get("BENCH_COUNTS_FILE")
    if counts_file:
        # Python runs the handler in the main thread at its next bytecode: the event loop wakes at least
        # once a second (daphne's housekeeping timers), so the file appears within about a second.
        path = Path(f"{counts_file}.{os.getpid()}")
        signal.signal(signal.SIGUSR1, lambda *_: _write_counts(path))
    if os.environ.get("BENCH_OBJECTS_FILE"):  # kill -USR2 <pid>: live objects by type, for leak hunting
        objects = Path(f"{os.environ['BENCH_OBJECTS_FILE']}.{os.getpid()}")
        signal.signal(signal.SIGUSR2, lambda *_: _write_object_counts(objects))
    from daphne.cli import CommandLineInterface

    sys.argv = ["daphne", *sys.argv[1:]]
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
