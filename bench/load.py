"""Load benchmark: one daphne process, N concurrent websocket clients each sending one turn.

    .venv/bin/python bench/load.py              # SQLite + in-memory channel layer; writes bench/RESULTS.md
    .venv/bin/python bench/load.py --postgres   # PostgreSQL + Redis (127.0.0.1; database chatsite_bench)
    .venv/bin/python bench/load.py --quick      # fewer rounds and sockets, for a smoke run (~1 minute)

Processes: the upstream simulator (200 tokens, 200 ms to the first, 10 ms apart; bench/load_upstream.py),
the site (one daphne, bench/load_server.py: plain daphne plus an SQL statement counter), and the clients
(asyncio + websockets; bench/load_clients.py), each its own process so that client and simulator CPU is not
counted as the server's. See bench/README.md for what each figure means and how it is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYTHON = sys.executable
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

TOKENS, TTFT, TOKEN_DELAY = 200, 0.2, 0.01
PG_URL = "postgres://root@127.0.0.1:5432/chatsite_bench"
REDIS_URL = "redis://127.0.0.1:6379/14"

# Targets for one daphne process on a 2-core machine (see bench/README.md).
TARGETS = {
    "added TTFT p50 at N=1": ("<=", 10.0, "ms"),
    "added TTFT p95 at N=200": ("<=", 250.0, "ms"),
    "completion lag p95 at N=200": ("<=", 250.0, "ms"),
    "lost or duplicated characters": ("==", 0, ""),
    "server CPU per answer": ("<=", 15.0, "ms"),
    "idle RSS": ("<", 150.0, "MB"),
    "RSS per idle socket": ("<", 100.0, "KB"),
}


# --- processes ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port}")


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU of a process (or of one of its threads), from /proc."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def machine_cpu_seconds() -> float:
    """CPU time used by everything on the machine (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


class PeakRss:
    """Samples a process's resident memory every 20 ms in a thread; `peak` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class Upstream:
    def __init__(self, log: Path) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own scripts, fixed arguments
            [PYTHON, str(BENCH / "load_upstream.py"), "--tokens", str(TOKENS), "--ttft", str(TTFT),
             "--token-delay", str(TOKEN_DELAY)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("wb"), text=True, cwd=ROOT,
        )  # fmt: skip
        self.base_url = json.loads(self.process.stdout.readline())["base_url"]

    def timings(self) -> dict[str, list[float]]:
        self.process.stdin.write("timings\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.process.stdin.write("quit\n")
            self.process.stdin.flush()
            self.process.wait(timeout=5)
        if self.process.poll() is None:
            self.process.kill()


class Clients:
    """One load_clients.py process: connect, then `go`, then `close`."""

    def __init__(self, mode: str, plan: dict, workdir: Path) -> None:
        plan_path = workdir / f"plan-{time.monotonic_ns()}.json"
        plan_path.write_text(json.dumps(plan))
        self.process = subprocess.Popen(  # noqa: S603 - our own scripts, fixed arguments
            [PYTHON, str(BENCH / "load_clients.py"), mode, str(plan_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the client process failed to connect its sockets")
        self.ready = json.loads(line)["ready"]

    def go(self) -> list[dict]:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())["results"]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.process.stdin.write("close\n")
            self.process.stdin.flush()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


# --- the site ---------------------------------------------------------------------------------------------------


def site_environment(workdir: Path, postgres: bool) -> dict[str, str]:
    from cryptography.fernet import Fernet

    drop = {"DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "OPENROUTER_API_KEY", "AIMLAPI_API_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("CHAT_")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "PYTHONUNBUFFERED": "1",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "CHAT_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "DATA_DIR": str(workdir / "data"),
            "STATIC_ROOT": str(workdir),  # nothing static is requested; any existing folder will do
            "ALLOWED_HOSTS": "127.0.0.1",
            "CHAT_TURNS_PER_MINUTE": "0",  # one person may not send 500 turns a minute; 500 people may
            "CHAT_INSECURE_FAST_PASSWORD_HASHER": "1",
            "BENCH_COUNTS_FILE": str(workdir / "sql-counts.json"),
        }
    )
    if postgres:
        env["DATABASE_URL"] = PG_URL
        env["REDIS_URL"] = REDIS_URL
    for setting in os.environ.get("BENCH_SITE_ENV", "").split():  # experiments: NAME=value NAME=value
        name, _, value = setting.partition("=")
        env[name] = value
    return env


def reset_backends() -> None:
    import psycopg
    import redis

    with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS chatsite_bench WITH (FORCE)")
        conn.execute("CREATE DATABASE chatsite_bench")
    redis.Redis.from_url(REDIS_URL).flushdb()


class Site:
    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.port = free_port()
        log = (workdir / "daphne.log").open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - our own scripts, fixed arguments
            [PYTHON, str(BENCH / "load_server.py"), "-b", "127.0.0.1", "-p", str(self.port),
             "chatsite.asgi:application"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for_port(self.port, self.process)
        self.pid = self.process.pid

    def sql_counts(self) -> dict[str, int]:
        """The server's SQL statement counts so far (it writes them on SIGUSR1)."""
        path = Path(self.env["BENCH_COUNTS_FILE"])
        path.unlink(missing_ok=True)
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not write its SQL counts")
            time.sleep(0.01)
        return json.loads(path.read_text())

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the server stops using CPU (final saves done, sockets closed)."""
        deadline = time.monotonic() + timeout
        last = cpu_seconds(self.pid)
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = cpu_seconds(self.pid)
            if now - last < 0.01:
                return
            last = now

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


# --- statistics -------------------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.0f}" if value >= 0.1 else f"{value * 1000:.1f}"


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="chatsite-bench-"))
        self.rows: list[dict] = []
        self.facts: dict[str, object] = {}
        self.pools: list[list[str]] = []
        self.turn_no = 0

    # -- set-up ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the server and the clients
        self.facts["open files limit"] = hard
        need = max(self.args.sizes) + self.args.idle + 100
        if hard < need:
            sys.exit(f"ulimit -n is {hard}; the bench needs about {need} (raise the hard limit)")
        if self.args.postgres:
            reset_backends()
        self.env = site_environment(self.workdir, self.args.postgres)
        print(f"work directory {self.workdir}", flush=True)
        self.upstream = Upstream(self.workdir / "upstream.log")
        subprocess.run(  # noqa: S603 - our own scripts, fixed arguments
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=self.env, check=True
        )
        users = max(max(self.args.sizes), 1)
        rounds = {size: (self.args.rounds_n1 if size == 1 else 1) for size in self.args.sizes}
        # A fresh conversation for every turn, plus the warm-up.
        per_user = 1 + sum(rounds[size] for size in self.args.sizes)
        seeded = subprocess.run(  # noqa: S603 - our own scripts, fixed arguments
            [PYTHON, str(BENCH / "load_seed.py"), self.upstream.base_url, str(users), str(per_user)],
            cwd=ROOT, env=self.env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        self.seed = json.loads(seeded.stdout.strip().splitlines()[-1])
        self.pools = [list(conversations) for conversations in self.seed["conversations"]]
        self.rounds = rounds
        self.site = Site(self.workdir, self.env)
        self.expected = __import__("load_upstream").bench_text(TOKENS)

    def plan(self, size: int, rounds: int) -> dict:
        plan_rounds = []
        for _ in range(rounds):
            round_ = []
            for i in range(size):
                self.turn_no += 1
                round_.append((self.pools[i].pop(), f"bench turn {self.turn_no} (client {i})"))
            plan_rounds.append(round_)
        return {
            "url": f"ws://127.0.0.1:{self.site.port}/ws/chat/",
            "origin": f"http://127.0.0.1:{self.site.port}",
            "sessions": self.seed["sessions"][:size],
            "model": self.seed["model"],
            "expected": self.expected,
            "rounds": plan_rounds,
        }

    # -- measurements ----------------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """A few turns first: lazy imports, the first database connection, the provider's HTTP pool."""
        self.facts["RSS at start"] = rss_bytes(self.site.pid)
        clients = Clients("turns", self.plan(min(5, max(self.args.sizes)), 1), self.workdir)
        results = clients.go()
        clients.close()
        self.upstream.timings()
        failed = [r for r in results if r["error"] or r["status"] != "complete"]
        if failed:
            raise RuntimeError(f"warm-up turns failed: {failed[:3]}; see {self.workdir}/daphne.log")
        self.site.settle()
        self.facts["idle RSS"] = rss_bytes(self.site.pid)

    def idle_sockets(self) -> None:
        count = self.args.idle
        sessions = self.seed["sessions"]
        plan = {
            "url": f"ws://127.0.0.1:{self.site.port}/ws/chat/",
            "origin": f"http://127.0.0.1:{self.site.port}",
            "sessions": [sessions[i % len(sessions)] for i in range(count)],  # a few tabs per person
        }
        self.site.settle()
        before = rss_bytes(self.site.pid)
        cpu_before = cpu_seconds(self.site.pid)
        started = time.monotonic()
        clients = Clients("idle", plan, self.workdir)
        connect_time = time.monotonic() - started
        self.site.settle()
        after = rss_bytes(self.site.pid)
        connect_cpu = cpu_seconds(self.site.pid) - cpu_before
        idle_cpu_start = cpu_seconds(self.site.pid)
        time.sleep(3)
        idle_cpu = (cpu_seconds(self.site.pid) - idle_cpu_start) / 3
        clients.close()
        self.site.settle()
        self.facts.update(
            {
                "idle sockets": clients.ready,
                "RSS per idle socket": (after - before) / clients.ready,
                "RSS with idle sockets": after,
                "connect time for idle sockets": connect_time,
                "server CPU per socket connect": connect_cpu / clients.ready,
                "server CPU while sockets idle": idle_cpu,
            }
        )
        print(
            f"idle sockets: {clients.ready} use {(after - before) / clients.ready / 1024:.1f} KB each "
            f"(RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MB)",
            flush=True,
        )

    def run_size(self, size: int) -> None:
        rounds = self.rounds[size]
        clients = Clients("turns", self.plan(size, rounds), self.workdir)
        self.site.settle()
        counts_before = self.site.sql_counts()
        ours = (self.site.pid, self.upstream.process.pid, clients.process.pid)
        ours_before = sum(cpu_seconds(pid) for pid in ours)
        machine_before = machine_cpu_seconds()
        cpu_before = cpu_seconds(self.site.pid)
        loop_before = cpu_seconds(self.site.pid, self.site.pid)  # the main thread runs the event loop
        started = time.monotonic()
        with PeakRss(self.site.pid) as peak:
            results = clients.go()
            elapsed = time.monotonic() - started
            others = (
                machine_cpu_seconds() - machine_before - (sum(cpu_seconds(p) for p in ours) - ours_before)
            )
            self.site.settle()
            cpu = cpu_seconds(self.site.pid) - cpu_before
            loop_cpu = cpu_seconds(self.site.pid, self.site.pid) - loop_before
        counts_after = self.site.sql_counts()
        clients.close()
        timings = self.upstream.timings()
        answers = len(results)

        added, lag, end_lag, slip = [], [], [], []
        lost = duplicated = 0
        errors: list[str] = []
        for r in results:
            lost += r["lost"]
            duplicated += r["duplicated"]
            upstream = timings.get(r["tag"])
            if r["error"] or r["status"] != "complete" or upstream is None or "complete" not in r:
                errors.append(
                    r["error"]
                    or (f"status {r['status']}" if r["status"] != "complete" else None)
                    or ("no upstream request" if upstream is None else "the answer arrived incomplete")
                )
                continue
            request_at, first_at, last_at = upstream
            added.append((r["first"] - r["sent"]) - (first_at - request_at))
            lag.append(r["complete"] - last_at)
            end_lag.append(r["end"] - last_at)
            slip.append(first_at - request_at - TTFT)

        def delta(key: str) -> float:
            return (counts_after.get(key, 0) - counts_before.get(key, 0)) / max(answers, 1)

        writes = delta("INSERT") + delta("UPDATE") + delta("DELETE")
        statements = writes + delta("SELECT") + delta("OTHER")
        row = {
            "N": size,
            "answers": answers,
            "added TTFT p50": percentile(added, 50),
            "added TTFT p95": percentile(added, 95),
            "completion lag p50": percentile(lag, 50),
            "completion lag p95": percentile(lag, 95),
            "end frame lag p95": percentile(end_lag, 95),
            "upstream TTFT slip p95": percentile(slip, 95),
            "lost": lost,
            "duplicated": duplicated,
            "errors": len(errors),
            "error samples": sorted(set(errors))[:3],
            "CPU per answer": cpu / max(answers, 1),
            # The rest ran on other threads: Django's database thread (every ORM call of the engine).
            "loop CPU per answer": loop_cpu / max(answers, 1),
            "peak RSS": peak.peak,
            "writes per answer": writes,
            "statements per answer": statements,
            "wall time": elapsed,
            "other load": max(others, 0.0) / elapsed,  # cores busy with processes not ours
        }
        self.rows.append(row)
        print(
            f"N={size:>3} ({answers} answers): added TTFT p50 {ms(row['added TTFT p50'])} ms, "
            f"p95 {ms(row['added TTFT p95'])} ms; lag p50 {ms(row['completion lag p50'])} ms, "
            f"p95 {ms(row['completion lag p95'])} ms; lost {lost}, duplicated {duplicated}, "
            f"errors {len(errors)}; CPU {row['CPU per answer'] * 1000:.1f} ms/answer "
            f"({row['loop CPU per answer'] * 1000:.1f} in the event loop); "
            f"peak RSS {peak.peak / 2**20:.0f} MB; {writes:.1f} writes/answer; "
            f"other processes used {row['other load']:.2f} cores",
            flush=True,
        )
        if errors:
            print(f"   errors: {row['error samples']}", flush=True)

    def close(self) -> None:
        for part in ("site", "upstream"):
            with contextlib.suppress(Exception):
                getattr(self, part).close()
        if self.args.postgres:
            with contextlib.suppress(Exception):
                import redis

                redis.Redis.from_url(REDIS_URL).flushdb()
        if not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- report ----------------------------------------------------------------------------------------------

    def verdicts(self) -> list[tuple[str, str, str, bool]]:
        by_n = {row["N"]: row for row in self.rows}
        measured: dict[str, float | None] = {
            "added TTFT p50 at N=1": by_n.get(1, {}).get("added TTFT p50"),
            "added TTFT p95 at N=200": by_n.get(200, {}).get("added TTFT p95"),
            "completion lag p95 at N=200": by_n.get(200, {}).get("completion lag p95"),
            "lost or duplicated characters": sum(r["lost"] + r["duplicated"] for r in self.rows),
            "server CPU per answer": max(
                (by_n[n]["CPU per answer"] for n in (1, 50, 200) if n in by_n), default=None
            ),
            "idle RSS": self.facts.get("idle RSS"),
            "RSS per idle socket": self.facts.get("RSS per idle socket"),
        }
        out = []
        for name, (op, limit, unit) in TARGETS.items():
            value = measured[name]
            if value is None:
                continue
            if unit == "ms":
                shown = value * 1000
            elif unit == "MB":
                shown = value / 2**20
            elif unit == "KB":
                shown = value / 1024
            else:
                shown = value
            ok = {"<=": shown <= limit, "<": shown < limit, "==": shown == limit}[op]
            out.append((name, f"{op} {limit:g} {unit}".strip(), f"{shown:.1f} {unit}".strip(), ok))
        return out

    def report(self) -> str:
        cpu_model = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor() or "unknown",
        )
        backend = (
            "PostgreSQL + Redis channel layer" if self.args.postgres else "SQLite + in-memory channel layer"
        )
        lines = [
            f"## {backend}",
            "",
            f"Written by `bench/load.py{' --postgres' if self.args.postgres else ''}"
            f"{' --quick' if self.args.quick else ''}` on {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}.",
            f"Machine: {os.cpu_count()} CPUs ({cpu_model}), Python {platform.python_version()}, "
            f"Linux {platform.release()}, `ulimit -n` {self.facts['open files limit']}.",
            f"One daphne process; upstream simulator: {TOKENS} tokens, TTFT {TTFT * 1000:.0f} ms, "
            f"{TOKEN_DELAY * 1000:.0f} ms per token, in its own process; clients in a third process. "
            f"N=1 is {self.rounds.get(1, 0)} turns one after another; larger N send all turns at once.",
            "",
            "| N | added TTFT p50 / p95 (ms) | completion lag p50 / p95 (ms) | end frame lag p95 (ms) | "
            "lost / duplicated chars | errors | server CPU per answer (ms): all / event loop | peak RSS (MB) | "
            "DB writes per answer | SQL statements per answer | upstream TTFT slip p95 (ms) | other load (cores) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r['N']} | {ms(r['added TTFT p50'])} / {ms(r['added TTFT p95'])} | "
                f"{ms(r['completion lag p50'])} / {ms(r['completion lag p95'])} | {ms(r['end frame lag p95'])} | "
                f"{r['lost']} / {r['duplicated']} | {r['errors']} | {r['CPU per answer'] * 1000:.1f} / "
                f"{r['loop CPU per answer'] * 1000:.1f} | "
                f"{r['peak RSS'] / 2**20:.0f} | {r['writes per answer']:.1f} | {r['statements per answer']:.1f} | "
                f"{ms(r['upstream TTFT slip p95'])} | {r['other load']:.2f} |"
            )
        f = self.facts
        lines += [
            "",
            f"- Idle RSS (after start-up and {min(5, max(self.args.sizes))} warm-up turns): "
            f"{f['idle RSS'] / 2**20:.0f} MB (right after start: {f['RSS at start'] / 2**20:.0f} MB).",
        ]
        if "idle sockets" in f:
            lines.append(
                f"- {f['idle sockets']} idle open sockets: {f['RSS per idle socket'] / 1024:.1f} KB of RSS each "
                f"(RSS {f['RSS with idle sockets'] / 2**20:.0f} MB with them open); connecting cost "
                f"{f['server CPU per socket connect'] * 1000:.2f} ms of server CPU per socket; while idle the "
                f"server used {f['server CPU while sockets idle'] * 100:.1f}% of a core."
            )
        for r in self.rows:
            if r["errors"]:
                lines.append(f"- Errors at N={r['N']}: {', '.join(r['error samples'])}")
        lines += ["", "Targets:", "", "| target | limit | measured | met |", "|---|---|---|---|"]
        for name, limit, shown, ok in self.verdicts():
            lines.append(f"| {name} | {limit} | {shown} | {'yes' if ok else '**no**'} |")
        return "\n".join(lines) + "\n"


PREAMBLE = """# Load benchmark results

Written by `bench/load.py` (one section per backend; each run replaces its own). How it works, what limits
the figures and what to change next: bench/README.md, "Load".

Definitions: *added TTFT* = the client's time from sending the turn to its first character, minus the
upstream's own time from receiving the request to writing its first token. *Completion lag* = when the client
holds the whole answer, minus when the upstream wrote its last token; *end frame lag* the same for the `end`
frame (after the final save). *Server CPU* = user + system time of the daphne process (/proc/<pid>/stat),
all threads and the event loop's thread alone, from just before the turns are sent until the process is idle
again, divided by the answers. *DB writes* = INSERT/UPDATE/DELETE statements the server ran (an execute
wrapper counts them), per answer. *Upstream TTFT slip* = how late the simulator itself wrote first tokens.
*Other load* = CPU used by processes other than the server, the simulator and the clients during the run: with
`--postgres` that includes the PostgreSQL and Redis servers (about 0.15 cores); otherwise anything above a few
hundredths means something else disturbed the figures.
"""


def write_results(path: Path, key: str, section: str) -> None:
    """Replace this backend's section of the results file, keeping the other's."""
    start, end = f"<!-- results:{key} -->", f"<!-- /results:{key} -->"
    sections = {}
    if path.exists():
        text = path.read_text()
        for other in ("sqlite", "postgres"):
            a, b = f"<!-- results:{other} -->", f"<!-- /results:{other} -->"
            if a in text and b in text:
                sections[other] = text[text.index(a) : text.index(b) + len(b)]
    sections[key] = f"{start}\n{section}{end}"
    body = "\n\n".join(sections[k] for k in ("sqlite", "postgres") if k in sections)
    path.write_text(PREAMBLE + "\n" + body + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL + Redis instead of SQLite")
    parser.add_argument("--quick", action="store_true", help="N=1 (5 turns), 50, 200; 300 idle sockets")
    parser.add_argument("--sizes", help="comma-separated N (default 1,50,200,500)")
    parser.add_argument("--idle", type=int, help="idle sockets to open (default 1000)")
    parser.add_argument("--output", type=Path, help="where to write the report (default bench/RESULTS.md)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, database)")
    args = parser.parse_args()
    args.sizes = [int(s) for s in (args.sizes or ("1,50,200" if args.quick else "1,50,200,500")).split(",")]
    args.idle = args.idle if args.idle is not None else (300 if args.quick else 1000)
    args.rounds_n1 = 5 if args.quick else 20
    output = args.output or BENCH / "RESULTS.md"
    sys.path.insert(0, str(BENCH))

    bench = Bench(args)
    try:
        bench.start()
        bench.warm_up()
        print(f"idle RSS {bench.facts['idle RSS'] / 2**20:.0f} MB", flush=True)
        if args.idle:
            bench.idle_sockets()
        for size in args.sizes:
            bench.run_size(size)
        report = bench.report()
    finally:
        bench.close()
    write_results(output, "postgres" if args.postgres else "sqlite", report)
    print(f"\nwrote {output}")
    for name, limit, shown, ok in bench.verdicts():
        print(f"  {'ok  ' if ok else 'MISS'} {name}: {shown} (target {limit})")


if __name__ == "__main__":
    main()
