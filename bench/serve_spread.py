"""How scripts/serve.py spreads connections over its daphne processes: SO_REUSEPORT sockets or one shared socket.

    .venv/bin/python bench/serve_spread.py                       # 2 processes, 400 connections, 5 rounds each
    .venv/bin/python bench/serve_spread.py --workers 2 --connections 400 --rounds 10 --busy

Starts scripts/serve.py (SQLite in a temporary DATA_DIR, Redis database 13 named but never used: only plain
HTTP is requested) once per balance. Each round opens `--connections` keep-alive HTTP connections at once,
each sends one request and reads the answer (so the connection is held by the process that accepted it),
then counts each process's established connections through /proc, and closes them. With `--busy`, one of the
processes is kept busy (a request loop against it alone is not possible on a shared port, so it is made busy
by pausing it with SIGSTOP for 20 ms out of every 40 ms), the case where a shared socket is most unfair.
Prints each round's spread and the largest share a process took.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from load import REDIS_URL, connections_by_pid, free_port, wait_for_http  # noqa: E402


async def open_held(port: int, count: int) -> list[asyncio.StreamWriter]:
    async def one() -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        if length:
            await reader.readexactly(int(length.group(1)))
        return writer

    return list(await asyncio.gather(*(one() for _ in range(count))))


def pause_loop(pid: int, stop: threading.Event) -> None:
    while not stop.is_set():
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.02)
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.02)


async def one_round(
    port: int, connections: int, pids: list[int], stop: threading.Event, pauser: threading.Thread | None
) -> list[int]:
    writers = await open_held(port, connections)
    if pauser:
        stop.set()
        pauser.join()
        os.kill(pids[0], signal.SIGCONT)
    counts = connections_by_pid(pids, port)
    for writer in writers:
        writer.close()
    return counts


def measure(balance: str, workers: int, connections: int, rounds: int, busy: bool) -> list[list[int]]:
    workdir = Path(tempfile.mkdtemp(prefix="chatsite-spread-"))
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        DJANGO_SETTINGS_MODULE="chatsite.settings",
        SECRET_KEY=secrets.token_urlsafe(50),
        DATA_DIR=str(workdir / "data"),
        STATIC_ROOT=str(workdir),
        ALLOWED_HOSTS="127.0.0.1",
        REDIS_URL=REDIS_URL,
        LOG_LEVEL="warning",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    port = free_port()
    log = (workdir / "serve.log").open("wb")
    server = subprocess.Popen(  # noqa: S603 - our own script
        [sys.executable, str(ROOT / "scripts" / "serve.py"), "--workers", str(workers), "--port", str(port),
         "--balance", balance, "-v", "0"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    spreads = []
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"pids ([\d, ]+);", (workdir / "serve.log").read_text())):
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError((workdir / "serve.log").read_text())
            time.sleep(0.05)
        pids = [int(pid) for pid in found.group(1).split(", ")]
        wait_for_http(port, server)
        time.sleep(2)  # every process started (its imports done)
        for _ in range(rounds):
            stop = threading.Event()
            pauser = threading.Thread(target=pause_loop, args=(pids[0], stop), daemon=True) if busy else None
            if pauser:
                pauser.start()
            spreads.append(asyncio.run(one_round(port, connections, pids, stop, pauser)))
            time.sleep(1)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return spreads


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--busy", action="store_true", help="keep the first process busy (paused half the time)"
    )
    parser.add_argument("--balance", choices=("reuseport", "shared", "both"), default="both")
    args = parser.parse_args()
    for balance in ("reuseport", "shared") if args.balance == "both" else (args.balance,):
        spreads = measure(balance, args.workers, args.connections, args.rounds, args.busy)
        largest = max(max(s) / max(sum(s), 1) for s in spreads)
        print(
            f"{balance:>9}{' (first process busy)' if args.busy else ''}: "
            + ", ".join(" / ".join(map(str, s)) for s in spreads)
            + f"; largest share {largest:.0%} (fair: {1 / args.workers:.0%})",
            flush=True,
        )


if __name__ == "__main__":
    main()
