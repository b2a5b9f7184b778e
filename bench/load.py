"""Load benchmark: daphne under websocket clients sending turns, in bursts or at a sustained random rate.

    .venv/bin/python bench/load.py                       # SQLite + in-memory channel layer; writes bench/RESULTS.md
    .venv/bin/python bench/load.py --postgres            # PostgreSQL + Redis (127.0.0.1; database chatsite_bench)
    .venv/bin/python bench/load.py --quick               # fewer rounds and sockets, for a smoke run (~1 minute)
    .venv/bin/python bench/load.py --backend postgres --workers 2    # two daphne processes on one port, N=400
    .venv/bin/python bench/load.py --sustained           # capacity search: Poisson arrivals, doubling + bisection
    .venv/bin/python bench/load.py --sustained --rate 3  # one sustained run at 3 turns/s for --duration

Processes: the upstream simulator (200 tokens, 200 ms to the first, 10 ms apart; bench/load_upstream.py),
the site (scripts/serve.py, as ./scripts/run starts it: one daphne process, or --workers of them sharing one
port; each is bench/load_server.py: plain daphne plus an SQL statement counter), and the clients (asyncio +
websockets; bench/load_clients.py, --client-procs processes), each its own process so that client and
simulator CPU is not counted as the server's. See bench/README.md for what each figure means and how it is
measured.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import math
import os
import platform
import random
import re
import resource
import secrets
import shlex
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
RESULTS_DIR = BENCH / "results"  # flame graphs (gitignored)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

TOKENS, TTFT, TOKEN_DELAY = 200, 0.2, 0.01
# Only these names: other engineers' benches and test lanes use other databases on the same servers.
PG_DATABASE = "chatsite_bench"
PG_URL = f"postgres://root@127.0.0.1:5432/{PG_DATABASE}"
REDIS_URL = "redis://127.0.0.1:6379/13"

# Targets for one daphne process on a 2-core machine (see bench/README.md).
TARGETS = {
    "added TTFT p50 at N=1": ("<=", 10.0, "ms"),
    "added TTFT p95 at N=200": ("<=", 250.0, "ms"),
    "added TTFT p95 at N=500": ("<=", 1000.0, "ms"),
    "completion lag p95 at N=200": ("<=", 250.0, "ms"),
    "end frame lag p95 at N=200": ("<=", 500.0, "ms"),
    "lost or duplicated characters": ("==", 0, ""),
    "server CPU per answer at N=1": ("<=", 20.0, "ms"),
    "server CPU per answer at N>=50": ("<=", 15.0, "ms"),
    "idle RSS": ("<", 150.0, "MB"),
    "RSS per idle socket": ("<", 100.0, "KB"),
}
# Several processes on one port (PostgreSQL + Redis, the production shape): a burst of 400 turns.
TARGETS_WORKERS = {
    "added TTFT p95 at N=400": ("<=", 500.0, "ms"),
    "lost or duplicated characters": ("==", 0, ""),
    "idle RSS": ("<", 150.0, "MB"),
}
# Sustained load: a rate is within capacity when both hold (and nothing is lost, duplicated or fails).
SUSTAINED_LIMITS = {"added TTFT p95": 0.100, "completion lag p95": 0.250}
# Sockets a client process keeps per turn/s of its rate: an answer takes TTFT + 200 x 10 ms = 2.2 s; the rest
# is slack for slow answers. When every socket is busy a turn waits for one and counts as "late".
SOCKETS_PER_RATE = 6.0


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


def wait_for_http(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    """Until an HTTP request gets an answer (with listening sockets bound by scripts/serve.py, a connection
    succeeds before any daphne reads from it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/", headers={"Host": "127.0.0.1"})
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
        finally:
            conn.close()
    raise TimeoutError(f"nothing answered HTTP on port {port}")


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU of a process (or of one of its threads), from /proc."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def run_delay_seconds(pid: int, tid: int) -> float:
    """How long a thread has been runnable but waiting for a CPU (/proc/<pid>/task/<tid>/schedstat, 2nd field;
    0 where the kernel keeps no schedstats)."""
    try:
        return int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_cpu_seconds() -> float:
    """CPU time used by everything on the machine (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def connections_by_pid(pids: list[int], port: int) -> list[int]:
    """How many established TCP connections to local `port` each process holds (/proc/net/tcp + its fds)."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # 01: ESTABLISHED
                    established.add(fields[9])  # the socket's inode
    counts = []
    for pid in pids:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        counts.append(len(inodes & established))
    return counts


class PeakRss:
    """Samples the processes' resident memory every 20 ms in a thread; `peak` is the largest one seen."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak = max(rss_bytes(pid) for pid in pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, *(rss_bytes(pid) for pid in self.pids))

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
    """load_clients.py processes, one per plan, started together: connect, then `go`, then `close`."""

    def __init__(self, mode: str, plans: list[dict], workdir: Path) -> None:
        self.processes = []
        for plan in plans:
            plan_path = workdir / f"plan-{time.monotonic_ns()}.json"
            plan_path.write_text(json.dumps(plan))
            self.processes.append(
                subprocess.Popen(  # noqa: S603 - our own scripts, fixed arguments
                    [PYTHON, str(BENCH / "load_clients.py"), mode, str(plan_path)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                )
            )
        self.ready = 0
        for process in self.processes:
            line = process.stdout.readline()
            if not line:
                self.close()
                raise RuntimeError("a client process failed to connect its sockets")
            self.ready += json.loads(line)["ready"]
        self.pids = [process.pid for process in self.processes]
        self.stats: list[dict] = []

    def go(self) -> list[dict]:
        for process in self.processes:  # microseconds apart
            process.stdin.write("go\n")
            process.stdin.flush()
        results = []
        self.stats = []
        for process in self.processes:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("a client process died during the run")
            answer = json.loads(line)
            results += answer["results"]
            self.stats.append(answer["client"])
        return results

    def close(self) -> None:
        for process in self.processes:
            with contextlib.suppress(Exception):
                process.stdin.write("close\n")
                process.stdin.flush()
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def split(items: list, parts: int) -> list[list]:
    """`items` in `parts` contiguous slices of nearly equal length."""
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


class Profiler:
    """py-spy flame graphs (SVG) of the daphne processes while a run lasts: bench/results/<name>-p<i>.svg."""

    def __init__(self, pids: list[int], name: str) -> None:
        py_spy = shutil.which("py-spy", path=str(Path(PYTHON).parent)) or shutil.which("py-spy")
        if py_spy is None:
            raise SystemExit("--profile needs py-spy: pip install -e '.[test]'")
        RESULTS_DIR.mkdir(exist_ok=True)
        # BENCH_PROFILE_FORMAT=raw: collapsed stacks (.txt) for bench/profile_summary.py instead of SVGs.
        fmt = os.environ.get("BENCH_PROFILE_FORMAT", "flamegraph")
        suffix = ".txt" if fmt == "raw" else ".svg"
        self.paths = [RESULTS_DIR / (f"{name}{suffix}" if len(pids) == 1 else f"{name}-p{i + 1}{suffix}") for i in
                      range(len(pids))]  # fmt: skip
        rate = os.environ.get("BENCH_PROFILE_RATE", "200")  # samples a second; 1000 for short runs
        options = ["--format", fmt, "--rate", rate, "--threads", "--nonblocking"]
        self.processes = [
            subprocess.Popen(  # noqa: S603 - our own tool, fixed arguments
                [py_spy, "record", "--pid", str(pid), "--output", str(path), *options],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for pid, path in zip(pids, self.paths, strict=True)
        ]
        time.sleep(0.5)  # attached before the run starts
        self.pids = [process.pid for process in self.processes]

    def stop(self) -> list[Path]:
        for process in self.processes:
            process.send_signal(signal.SIGINT)  # py-spy writes the flame graph on Ctrl-C
        written = []
        for process, path in zip(self.processes, self.paths, strict=True):
            try:
                _out, err = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                err = "timed out"
            if path.exists():
                written.append(path)
            else:
                print(f"py-spy wrote no {path}: {err.strip()[-300:]}", flush=True)
        return written


# --- the site ---------------------------------------------------------------------------------------------------


def site_environment(workdir: Path, postgres: bool, redis: bool) -> dict[str, str]:
    from cryptography.fernet import Fernet

    drop = {"DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "OPENROUTER_API_KEY", "AIMLAPI_API_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("CHAT_")}
    env.pop("REDIS_URL_FILE", None)
    env.pop("DATABASE_URL_FILE", None)
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
    if redis:
        env["REDIS_URL"] = REDIS_URL
    for setting in os.environ.get("BENCH_SITE_ENV", "").split():  # experiments: NAME=value NAME=value
        name, _, value = setting.partition("=")
        env[name] = value
    return env


def reset_backends(postgres: bool) -> None:
    import redis

    if postgres:
        import psycopg

        with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {PG_DATABASE}")
    redis.Redis.from_url(REDIS_URL).flushdb()


class Site:
    """The site as ./scripts/run starts it: scripts/serve.py with `workers` daphne processes on one port
    (with one, serve.py becomes that daphne process). Each is bench/load_server.py (daphne + SQL counter)."""

    def __init__(self, workdir: Path, env: dict[str, str], workers: int, balance: str) -> None:
        self.workdir, self.env, self.workers = workdir, env, workers
        self.port = free_port()
        self.log_path = workdir / "daphne.log"
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - our own scripts, fixed arguments
            [PYTHON, str(ROOT / "scripts" / "serve.py"), "--workers", str(workers), "--host", "127.0.0.1",
             "--port", str(self.port), "--balance", balance,
             "--daphne-command", shlex.join([PYTHON, str(BENCH / "load_server.py")])],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        if workers == 1:
            self.pids = [self.process.pid]  # serve.py exec'd daphne
            wait_for_port(self.port, self.process)
        else:
            self.pids = self._children()
            wait_for_http(self.port, self.process)
            self.settle(timeout=60)  # every process done importing and idle in its event loop

    def _children(self, timeout: float = 30) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"scripts/serve.py exited; see {self.log_path}")
            found = re.search(r"pids ([\d, ]+);", self.log_path.read_text(errors="replace"))
            if found:
                return [int(pid) for pid in found.group(1).split(", ")]
            time.sleep(0.05)
        raise TimeoutError("scripts/serve.py did not say which processes it started")

    @property
    def pid(self) -> int:
        return self.pids[0]

    def family(self) -> list[int]:
        """The servers and the processes they started (CHAT_DB_PROCESS's database process): all of it is the
        server's CPU and memory."""
        pids = list(self.pids)
        for pid in self.pids:
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{pid}/task"):
                    children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                    pids += [int(child) for child in children]
        return pids

    def cpu(self) -> float:
        total = 0.0
        for pid in self.family():
            with contextlib.suppress(OSError):
                total += cpu_seconds(pid)
        return total

    def loop_cpu(self) -> float:
        return sum(cpu_seconds(pid, pid) for pid in self.pids)  # the main threads run the event loops

    def loop_run_delay(self) -> float:
        """Seconds the event loops' threads spent runnable but waiting for a CPU, summed."""
        return sum(run_delay_seconds(pid, pid) for pid in self.pids)

    def rss(self) -> list[int]:
        return [rss_bytes(pid) for pid in self.pids]

    def connections(self) -> list[int]:
        return connections_by_pid(self.pids, self.port)

    def sql_counts(self) -> dict[str, int]:
        """The servers' SQL statement counts so far, summed (each writes its own on SIGUSR1)."""
        total: dict[str, int] = {}
        for pid in self.pids:
            path = Path(f"{self.env['BENCH_COUNTS_FILE']}.{pid}")
            path.unlink(missing_ok=True)
            os.kill(pid, signal.SIGUSR1)
            deadline = time.monotonic() + 5
            while not path.exists():
                if time.monotonic() > deadline:
                    raise TimeoutError("the server did not write its SQL counts")
                time.sleep(0.01)
            for key, value in json.loads(path.read_text()).items():
                total[key] = total.get(key, 0) + value
        return total

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the servers stop using CPU (final saves done, sockets closed)."""
        deadline = time.monotonic() + timeout
        last = self.cpu()
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = self.cpu()
            if now - last < 0.01 * len(self.pids):
                return
            last = now

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # serve.py forwards it to every daphne process
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                for pid in self.pids:  # left behind by the supervisor we killed (checked: still our server)
                    with contextlib.suppress(OSError):
                        if b"load_server.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                            os.kill(pid, signal.SIGKILL)


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


def rate_text(rate: float | None) -> str:
    return "none" if rate is None else f"{rate:g}"


def within_limits(row: dict) -> bool:
    """A sustained step passes: added TTFT p95 and completion lag p95 within limits, nothing lost or failed."""
    return (
        row["errors"] == 0
        and row["lost"] + row["duplicated"] == 0
        and all(row[key] is not None and row[key] <= limit for key, limit in SUSTAINED_LIMITS.items())
    )


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="chatsite-bench-"))
        self.rows: list[dict] = []
        self.facts: dict[str, object] = {}
        self.pools: list[list[str]] = []
        self.turn_no = 0
        self.step_no = 0
        self.notes: list[str] = []
        self.flame_graphs: list[Path] = []

    # -- set-up ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the server and the clients
        self.facts["open files limit"] = hard
        need = max(self.args.sizes) + self.args.idle + 100
        if hard < need:
            sys.exit(f"ulimit -n is {hard}; the bench needs about {need} (raise the hard limit)")
        if self.args.redis:
            reset_backends(self.args.postgres)
        self.env = site_environment(self.workdir, self.args.postgres, self.args.redis)
        print(f"work directory {self.workdir}", flush=True)
        self.upstream = Upstream(self.workdir / "upstream.log")
        subprocess.run(  # noqa: S603 - our own scripts, fixed arguments
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=self.env, check=True
        )
        self.warm_up_size = 5 * self.args.workers
        users = max(*self.args.sizes, self.warm_up_size, 1)
        rounds = {size: (self.args.rounds_n1 if size == 1 else 1) for size in self.args.sizes}
        # A fresh conversation for every turn, plus the warm-up.
        per_user = 1 + sum(rounds[size] for size in self.args.sizes)
        self.seed = self.run_seed([self.upstream.base_url, str(users), str(per_user)])
        self.pools = [list(conversations) for conversations in self.seed["conversations"]]
        self.rounds = rounds
        self.site = Site(self.workdir, self.env, self.args.workers, self.args.balance)
        self.expected = __import__("load_upstream").bench_text(TOKENS)

    def run_seed(self, arguments: list[str]) -> dict:
        seeded = subprocess.run(  # noqa: S603 - our own scripts, fixed arguments
            [PYTHON, str(BENCH / "load_seed.py"), *arguments],
            cwd=ROOT, env=self.env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        return json.loads(seeded.stdout.strip().splitlines()[-1])

    def endpoint(self) -> dict:
        return {
            "url": f"ws://127.0.0.1:{self.site.port}/ws/chat/",
            "origin": f"http://127.0.0.1:{self.site.port}",
            "model": self.seed["model"],
            "expected": self.expected,
            "new_chats": self.args.new_chats,
            "follow_ups": self.args.follow_ups,
        }

    def plans(self, size: int, rounds: int) -> list[dict]:
        """Burst plans: `size` clients (split over the client processes), `rounds` turns each."""
        turns = []
        for i in range(size):
            mine = []
            for _ in range(rounds):
                self.turn_no += 1
                mine.append((self.pools[i].pop(), f"bench turn {self.turn_no} (client {i})"))
            turns.append(mine)
        plans = []
        for part in split(list(range(size)), min(self.args.client_procs, size)):
            plans.append(
                {
                    **self.endpoint(),
                    "sessions": [self.seed["sessions"][i] for i in part],
                    "rounds": [[turns[i][r] for i in part] for r in range(rounds)],
                }
            )
        return plans

    # -- measurements ----------------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """A few turns first: lazy imports, the first database connection, the provider's HTTP pool (in every
        process: 5 sockets per process, spread by the kernel)."""
        self.facts["RSS at start"] = max(self.site.rss())
        self.facts["cores"] = [sorted(os.sched_getaffinity(pid)) for pid in self.site.pids]
        clients = Clients("turns", self.plans(self.warm_up_size, 1), self.workdir)
        spread = self.site.connections()
        results = clients.go()
        clients.close()
        self.upstream.timings()
        failed = [r for r in results if r["error"] or r["status"] != "complete"]
        if failed:
            raise RuntimeError(f"warm-up turns failed: {failed[:3]}; see {self.workdir}/daphne.log")
        if self.args.workers > 1 and min(spread) == 0:
            print(f"warning: a daphne process got no warm-up socket ({spread})", flush=True)
        self.site.settle()
        self.facts["idle RSS"] = max(self.site.rss())

    def idle_sockets(self) -> None:
        count = self.args.idle
        sessions = self.seed["sessions"]
        plans = [
            {**self.endpoint(), "sessions": part}
            for part in split(
                [sessions[i % len(sessions)] for i in range(count)],  # a few tabs per person
                min(self.args.client_procs, count),
            )
        ]
        self.site.settle()
        before = sum(self.site.rss())
        cpu_before = self.site.cpu()
        started = time.monotonic()
        clients = Clients("idle", plans, self.workdir)
        connect_time = time.monotonic() - started
        self.site.settle()
        after = sum(self.site.rss())
        spread = self.site.connections()
        connect_cpu = self.site.cpu() - cpu_before
        idle_cpu_start = self.site.cpu()
        time.sleep(3)
        idle_cpu = (self.site.cpu() - idle_cpu_start) / 3
        clients.close()
        self.site.settle()
        self.facts.update(
            {
                "idle sockets": clients.ready,
                "idle sockets per process": spread,
                "RSS per idle socket": (after - before) / clients.ready,
                "RSS with idle sockets": after,
                "connect time for idle sockets": connect_time,
                "server CPU per socket connect": connect_cpu / clients.ready,
                "server CPU while sockets idle": idle_cpu,
            }
        )
        print(
            f"idle sockets: {clients.ready} use {(after - before) / clients.ready / 1024:.1f} KB each "
            f"(RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MB"
            + (f"; per process {' / '.join(map(str, spread))}" if len(spread) > 1 else "")
            + ")",
            flush=True,
        )

    def measure(self, mode: str, plans: list[dict], profile_name: str | None) -> dict:
        """Run one set of client processes (`go` until every turn ended) and take every figure of a row."""
        clients = Clients(mode, plans, self.workdir)
        self.site.settle()
        spread = self.site.connections()
        counts_before = self.site.sql_counts()
        profiler = Profiler(self.site.pids, profile_name) if profile_name else None
        ours = [*self.site.pids, self.site.process.pid, self.upstream.process.pid, *clients.pids]
        ours += profiler.pids if profiler else []
        ours_before = {pid: cpu_seconds(pid) for pid in ours}
        machine_before = machine_cpu_seconds()
        cpu_before = self.site.cpu()
        loop_before = self.site.loop_cpu()
        delay_before = self.site.loop_run_delay()
        started = time.monotonic()
        with PeakRss(self.site.pids) as peak:
            results = clients.go()
            elapsed = time.monotonic() - started
            ours_cpu = sum(cpu_seconds(pid) - before for pid, before in ours_before.items())
            upstream_cpu = cpu_seconds(self.upstream.process.pid) - ours_before[self.upstream.process.pid]
            others = machine_cpu_seconds() - machine_before - ours_cpu
            self.site.settle()
            cpu = self.site.cpu() - cpu_before
            loop_cpu = self.site.loop_cpu() - loop_before
            loop_delay = self.site.loop_run_delay() - delay_before
            busy = time.monotonic() - started  # until the servers were idle again
        if profiler:
            self.flame_graphs += profiler.stop()
        counts_after = self.site.sql_counts()
        clients.close()
        timings = self.upstream.timings()
        answers = len(results)
        if os.environ.get("BENCH_DUMP_TURNS"):  # experiments only: every turn's client and upstream times
            with open(os.environ["BENCH_DUMP_TURNS"], "a") as dump:
                for r in results:
                    dump.write(json.dumps({"tag": r["tag"], "sent": r.get("sent"), "first": r.get("first"),
                                           "upstream": timings.get(r["tag"])}) + "\n")  # fmt: skip

        added, lag, end_lag, slip, late, leaving, delivery = [], [], [], [], [], [], []
        parse_wait, added_from_arrival = [], []
        lost = duplicated = 0
        errors: list[str] = []
        for r in results:
            lost += r["lost"]
            duplicated += r["duplicated"]
            if r.get("late", 0) > 0:
                late.append(r["late"])
            upstream = timings.get(r["tag"])
            if r["error"] or r["status"] != "complete" or upstream is None or "complete" not in r:
                errors.append(
                    r["error"]
                    or (f"status {r['status']}" if r["status"] != "complete" else None)
                    or ("no upstream request" if upstream is None else "the answer arrived incomplete")
                )
                continue
            request_at, first_at, last_at, arrived_at = upstream
            added.append((r["first"] - r["sent"]) - (first_at - request_at))
            # The simulator's wait to parse the request once its bytes had arrived (a burst's requests are parsed
            # one after another): counted as the server's in `added`, as the upstream's in `added_from_arrival`.
            parse_wait.append(request_at - arrived_at)
            added_from_arrival.append((r["first"] - r["sent"]) - (first_at - arrived_at))
            # Added TTFT in two parts (one machine, one monotonic clock): the turn's way to the provider
            # (frame, admission, database, request) and the first token's way back to the client.
            leaving.append(request_at - r["sent"])
            delivery.append(r["first"] - first_at)
            lag.append(r["complete"] - last_at)
            end_lag.append(r["end"] - last_at)
            slip.append(first_at - request_at - TTFT)

        def delta(key: str) -> float:
            return (counts_after.get(key, 0) - counts_before.get(key, 0)) / max(answers, 1)

        writes = delta("INSERT") + delta("UPDATE") + delta("DELETE")
        statements = writes + delta("SELECT") + delta("OTHER")
        stats = clients.stats
        return {
            "answers": answers,
            "added TTFT p50": percentile(added, 50),
            "added TTFT p95": percentile(added, 95),
            "completion lag p50": percentile(lag, 50),
            "completion lag p95": percentile(lag, 95),
            "end frame lag p95": percentile(end_lag, 95),
            "upstream TTFT slip p95": percentile(slip, 95),
            "request out p95": percentile(leaving, 95),
            "upstream parse wait p95": percentile(parse_wait, 95),
            "added TTFT from arrival p95": percentile(added_from_arrival, 95),
            "first token back p95": percentile(delivery, 95),
            "lost": lost,
            "duplicated": duplicated,
            "errors": len(errors),
            "error samples": sorted(set(errors))[:3],
            "late": len(late),
            "late max": max(late, default=0.0),
            "CPU per answer": cpu / max(answers, 1),
            # The rest ran on other threads: Django's database thread (every ORM call of the engine).
            "loop CPU per answer": loop_cpu / max(answers, 1),
            "server cores": cpu / busy,
            # The share of the run the event loops were ready to run but waited for a CPU (per process).
            "loop CPU wait": loop_delay / busy / len(self.site.pids),
            "peak RSS": peak.peak,
            "writes per answer": writes,
            "statements per answer": statements,
            "wall time": elapsed,
            "other load": max(others, 0.0) / elapsed,  # cores busy with processes not ours
            "simulator cores": upstream_cpu / elapsed,  # on the same machine: what it takes, servers lack
            "sockets per process": spread,
            "client processes": len(stats),
            "client CPU per answer": sum(s["cpu"] for s in stats) / max(answers, 1),
            "client cores": max(s["cpu"] / s["wall"] for s in stats),  # the busiest client process
            "client lag p95": max(s["lag p95"] for s in stats),
            "client lag max": max(s["lag max"] for s in stats),
        }

    def run_size(self, size: int) -> None:
        name = f"flame-{self.key()}-N{size}" if self.args.profile else None
        row = {"N": size, **self.measure("turns", self.plans(size, self.rounds[size]), name)}
        self.rows.append(row)
        spread = row["sockets per process"]
        print(
            f"N={size:>3} ({row['answers']} answers): added TTFT p50 {ms(row['added TTFT p50'])} ms, "
            f"p95 {ms(row['added TTFT p95'])} ms (p95 request out {ms(row['request out p95'])} ms, first "
            f"token back {ms(row['first token back p95'])} ms; simulator's parse wait p95 "
            f"{ms(row['upstream parse wait p95'])} ms, added TTFT from its arrival p95 "
            f"{ms(row['added TTFT from arrival p95'])} ms); lag p50 {ms(row['completion lag p50'])} ms, "
            f"p95 {ms(row['completion lag p95'])} ms; lost {row['lost']}, duplicated {row['duplicated']}, "
            f"errors {row['errors']}; CPU {row['CPU per answer'] * 1000:.1f} ms/answer "
            f"({row['loop CPU per answer'] * 1000:.1f} in the event loop, which waited for a CPU "
            f"{row['loop CPU wait']:.0%} of the time); peak RSS {row['peak RSS'] / 2**20:.0f} MB; {row['writes per answer']:.1f} writes/answer; "
            f"client: {row['client CPU per answer'] * 1000:.1f} ms/answer, busiest process "
            f"{row['client cores']:.2f} cores, loop lag p95 {ms(row['client lag p95'])} ms; "
            + (f"sockets per process {' / '.join(map(str, spread))}; " if len(spread) > 1 else "")
            + f"other processes used {row['other load']:.2f} cores",
            flush=True,
        )
        if row["errors"]:
            print(f"   errors: {row['error samples']}", flush=True)
        self.check_client(row, f"N={size}")

    def check_client(self, row: dict, label: str) -> None:
        """Say so when the clients, not the server, may have set the pace."""
        cores, lag = row["client cores"], ms(row["client lag p95"])
        if cores > 0.8:
            note = (
                f"{label}: the busiest client process used {cores:.2f} cores (its event loop woke {lag} ms late "
                "at p95): the client may have set the pace; use more --client-procs"
            )
        elif row["client lag p95"] > 0.010:
            note = (
                f"{label}: the clients' event loops woke {lag} ms late at p95 while using only {cores:.2f} cores: "
                f"starved of CPU (other load {row['other load']:.2f} cores), so timings include up to that delay"
            )
        else:
            return
        self.notes.append(note)
        print(f"   warning: {note}", flush=True)

    # -- sustained load ----------------------------------------------------------------------------------------

    def sustained(self, rate: float, duration: float, phase: str) -> dict:
        """One sustained run (see `sustained_once`), repeated up to twice while other processes on the machine
        used more than --max-other-load cores during it: such a run's verdict says more about the machine
        than about the site. Every run is reported; only the last one's verdict counts."""
        for attempt in range(3):
            row = self.sustained_once(rate, duration, phase)
            if row["other load"] <= self.args.max_other_load or attempt == 2:
                return row
            row["disturbed"] = True
            print(
                f"   disturbed: other processes used {row['other load']:.2f} cores (more than "
                f"--max-other-load {self.args.max_other_load:g}): repeating this rate",
                flush=True,
            )
        return row

    def sustained_once(self, rate: float, duration: float, phase: str) -> dict:
        """Turns arriving as a Poisson process at `rate` turns/s (all processes) for `duration` seconds."""
        self.step_no += 1
        procs = self.args.client_procs
        rng = random.Random(f"{self.args.seed}-{self.step_no}")
        arrivals = []
        for _ in range(procs):  # independent Poisson processes at rate/procs: together one at `rate`
            offsets, t = [], rng.expovariate(rate / procs)
            while t < duration:
                offsets.append(round(t, 6))
                t += rng.expovariate(rate / procs)
            arrivals.append(offsets)
        pool = math.ceil(rate / procs * SOCKETS_PER_RATE) + 3
        per_socket = max(math.ceil(len(offsets) / pool * 2) + 2 for offsets in arrivals)
        seed = self.run_seed(["--add", str(pool * procs), str(per_socket)])
        plans = []
        for k in range(procs):
            mine = range(k * pool, (k + 1) * pool)
            plans.append(
                {
                    **self.endpoint(),
                    "sessions": [seed["sessions"][i] for i in mine],
                    "conversations": [seed["conversations"][i] for i in mine],
                    "arrivals": arrivals[k],
                    "tag": f"bench step {self.step_no} process {k}",
                }
            )
        name = None
        if self.args.profile and phase != "search":
            name = f"flame-{self.key()}-{rate:g}ps"
        row = {
            "step": self.step_no,
            "phase": phase,
            "rate": rate,
            "duration": duration,
            "sockets": pool * procs,
            **self.measure("sustained", plans, name),
        }
        row["ok"] = within_limits(row)
        self.rows.append(row)
        workers = self.args.workers
        print(
            f"step {self.step_no} ({phase}): {rate:g} turns/s ({rate / workers:g} per process) for {duration:g} s, "
            f"{row['answers']} turns: added TTFT p50 {ms(row['added TTFT p50'])} / p95 "
            f"{ms(row['added TTFT p95'])} ms (request out p95 {ms(row['request out p95'])}, first token back p95 "
            f"{ms(row['first token back p95'])} ms, simulator's parse wait p95 "
            f"{ms(row['upstream parse wait p95'])}, added TTFT from its arrival p95 "
            f"{ms(row['added TTFT from arrival p95'])} ms); lag p50 {ms(row['completion lag p50'])} / p95 "
            f"{ms(row['completion lag p95'])} ms; lost {row['lost']}, duplicated {row['duplicated']}, "
            f"errors {row['errors']}, late {row['late']}; server CPU {row['CPU per answer'] * 1000:.1f} "
            f"ms/answer ({row['server cores']:.2f} cores; event loop waiting for a CPU {row['loop CPU wait']:.0%}); "
            f"client busiest {row['client cores']:.2f} cores, "
            f"loop lag p95 {ms(row['client lag p95'])} ms; simulator {row['simulator cores']:.2f} cores; "
            f"other load {row['other load']:.2f} cores -> "
            f"{'within limits' if row['ok'] else 'OVER'}",
            flush=True,
        )
        if row["errors"]:
            print(f"   errors: {row['error samples']}", flush=True)
        self.check_client(row, f"{rate:g} turns/s")
        return row

    def capacity_search(self) -> None:
        """Doubling until a step misses a limit, then bisection; then a confirming run of --duration."""
        args, workers = self.args, self.args.workers
        rate = args.start_rate * workers
        low = high = None
        while (
            len([r for r in self.rows if r["phase"] == "search" and not r.get("disturbed")]) < args.max_steps
        ):
            if self.sustained(rate, args.step_duration, "search")["ok"]:
                low = rate
            else:
                high = rate
            if high is None:
                if rate >= args.max_rate * workers:
                    break
                rate = min(rate * 2, args.max_rate * workers)  # the last doubling stops at --max-rate
            elif low is None:
                rate /= 2
                if rate < 0.1 * workers:
                    break
            elif (high - low) / low <= args.precision:
                break
            else:
                rate = (low + high) / 2
            rate = round(rate, 2)
        self.facts["capacity"] = None
        candidate = low
        for _ in range(
            3
        ):  # a step of --step-duration is noisier than the confirming run: step down if needed
            if candidate is None:
                break
            if self.sustained(candidate, args.duration, "confirm")["ok"]:
                self.facts["capacity"] = candidate
                break
            candidate = round(candidate * 0.85, 2)
        self.facts["search bounds"] = (low, high)

    def close(self) -> None:
        for part in ("site", "upstream"):
            with contextlib.suppress(Exception):
                getattr(self, part).close()
        if self.args.redis:
            with contextlib.suppress(Exception):
                import redis

                redis.Redis.from_url(REDIS_URL).flushdb()
        if not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- report ----------------------------------------------------------------------------------------------

    def key(self) -> str:
        """This run's section of RESULTS.md: the backend, the number of processes, burst or sustained."""
        key = "postgres" if self.args.postgres else "sqlite"
        if self.args.workers > 1:
            key += f"-{self.args.workers}w"
        if not self.args.sustained:
            return key
        if self.args.new_chats:
            return f"sustained-{key}-new-chats"
        return f"sustained-{key}-follow-ups" if self.args.follow_ups else f"sustained-{key}"

    def backend(self) -> str:
        name = "PostgreSQL + Redis channel layer" if self.args.postgres else "SQLite + "
        if not self.args.postgres:
            name += "Redis channel layer" if self.args.redis else "in-memory channel layer"
        workers = self.args.workers
        return name + (f", {workers} daphne processes on one port" if workers > 1 else "")

    def command(self) -> str:
        shown, skip = [], False
        for arg in sys.argv[1:]:
            if skip or arg == "--note" or arg.startswith("--note="):
                skip = arg == "--note"
                continue
            shown.append(arg)
        return shlex.join(["bench/load.py", *shown])

    def verdicts(self) -> list[tuple[str, str, str, bool]]:
        by_n = {row["N"]: row for row in self.rows if "N" in row}
        measured: dict[str, float | None] = {
            "added TTFT p50 at N=1": by_n.get(1, {}).get("added TTFT p50"),
            "added TTFT p95 at N=200": by_n.get(200, {}).get("added TTFT p95"),
            "added TTFT p95 at N=400": by_n.get(400, {}).get("added TTFT p95"),
            "added TTFT p95 at N=500": by_n.get(500, {}).get("added TTFT p95"),
            "completion lag p95 at N=200": by_n.get(200, {}).get("completion lag p95"),
            "end frame lag p95 at N=200": by_n.get(200, {}).get("end frame lag p95"),
            "lost or duplicated characters": sum(r["lost"] + r["duplicated"] for r in self.rows),
            "server CPU per answer at N=1": by_n.get(1, {}).get("CPU per answer"),
            "server CPU per answer at N>=50": max(
                (row["CPU per answer"] for n, row in by_n.items() if n >= 50), default=None
            ),
            "idle RSS": self.facts.get("idle RSS"),
            "RSS per idle socket": self.facts.get("RSS per idle socket"),
        }
        out = []
        for name, (op, limit, unit) in (TARGETS_WORKERS if self.args.workers > 1 else TARGETS).items():
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

    def header(self, title: str, how: str) -> list[str]:
        cpu_model = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor() or "unknown",
        )
        workers = self.args.workers
        servers = (
            "One daphne process"
            if workers == 1
            else f"{workers} daphne processes sharing one port (scripts/serve.py, {self.args.balance} balance)"
        )
        return [
            f"## {title}",
            "",
            f"Written by `{self.command()}` on {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}.",
            f"Machine: {os.cpu_count()} CPUs ({cpu_model}), Python {platform.python_version()}, "
            f"Linux {platform.release()}, `ulimit -n` {self.facts['open files limit']}.",
            f"{servers}; upstream simulator: {TOKENS} tokens, TTFT {TTFT * 1000:.0f} ms, "
            f"{TOKEN_DELAY * 1000:.0f} ms per token, in its own process; clients in up to "
            f"{self.args.client_procs} more. {self.pinning()}{how}",
            *([f"**Note: {self.args.note}**"] if self.args.note else []),
        ]

    def pinning(self) -> str:
        """Which cores the daphne processes were kept to (scripts/serve.py, CPU_AFFINITY), as measured."""
        cores = self.facts.get("cores")
        if not cores:
            return ""
        if all(len(allowed) == os.cpu_count() for allowed in cores):
            return "The daphne processes were not kept to cores (CPU_AFFINITY=off). "
        kept = ", ".join(",".join(map(str, allowed)) for allowed in cores)
        return f"Each daphne process kept to its core (CPU_AFFINITY, scripts/serve.py): core {kept}. "

    def footer(self) -> list[str]:
        lines = []
        for r in self.rows:
            if r["errors"]:
                label = f"N={r['N']}" if "N" in r else f"step {r['step']}"
                lines.append(f"- Errors at {label}: {', '.join(r['error samples'])}")
        lines += [f"- {note}" for note in self.notes]
        if self.args.profile:
            lines.append(
                "- Profiled (`--profile`): py-spy sampled the daphne processes 200 times a second, which costs "
                "them some CPU; flame graphs: "
                + ", ".join(f"`{p.relative_to(ROOT)}`" for p in self.flame_graphs)
                + "."
            )
        return lines

    def report(self) -> str:
        lines = self.header(
            self.backend(),
            f"N=1 is {self.rounds.get(1, 0)} turns one after another; larger N send all turns at once.",
        )
        several = self.args.workers > 1
        lines += [
            "",
            "| N | added TTFT p50 / p95 (ms) | completion lag p50 / p95 (ms) | end frame lag p95 (ms) | "
            "lost / duplicated chars | errors | server CPU per answer (ms): all / event loop | "
            "event loop waiting for a CPU | peak RSS (MB) | DB writes per answer | SQL statements per answer | "
            + ("sockets per process | " if several else "")
            + "client CPU per answer (ms) / busiest client (cores) / client loop lag p95 (ms) | "
            "upstream TTFT slip p95 (ms) / simulator (cores) | other load (cores) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            + ("---:|" if several else "")
            + "---:|---:|---:|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r['N']} | {ms(r['added TTFT p50'])} / {ms(r['added TTFT p95'])} | "
                f"{ms(r['completion lag p50'])} / {ms(r['completion lag p95'])} | {ms(r['end frame lag p95'])} | "
                f"{r['lost']} / {r['duplicated']} | {r['errors']} | {r['CPU per answer'] * 1000:.1f} / "
                f"{r['loop CPU per answer'] * 1000:.1f} | {r.get('loop CPU wait', 0):.0%} | "
                f"{r['peak RSS'] / 2**20:.0f} | {r['writes per answer']:.1f} | {r['statements per answer']:.1f} | "
                + (f"{' / '.join(map(str, r['sockets per process']))} | " if several else "")
                + f"{r['client CPU per answer'] * 1000:.1f} / {r['client cores']:.2f} / {ms(r['client lag p95'])} | "
                f"{ms(r['upstream TTFT slip p95'])} / {r['simulator cores']:.2f} | {r['other load']:.2f} |"
            )
        f = self.facts
        lines += [
            "",
            f"- Idle RSS{' of the largest process' if several else ''} (after start-up and "
            f"{self.warm_up_size} warm-up turns): {f['idle RSS'] / 2**20:.0f} MB "
            f"(right after start: {f['RSS at start'] / 2**20:.0f} MB).",
        ]
        if "idle sockets" in f:
            lines.append(
                f"- {f['idle sockets']} idle open sockets: {f['RSS per idle socket'] / 1024:.1f} KB of RSS each "
                f"(RSS {f['RSS with idle sockets'] / 2**20:.0f} MB with them open"
                + (f", {' / '.join(map(str, f['idle sockets per process']))} per process" if several else "")
                + f"); connecting cost {f['server CPU per socket connect'] * 1000:.2f} ms of server CPU per "
                f"socket; while idle the server used {f['server CPU while sockets idle'] * 100:.1f}% of a core."
            )
        lines += self.footer()
        targets = "Targets:"
        if self.args.postgres and self.args.workers == 1:
            targets = (
                "The SQLite targets, for comparison (PostgreSQL's own target is for two processes, N=400):"
            )
        lines += ["", targets, "", "| target | limit | measured | met |", "|---|---|---|---|"]
        for name, limit, shown, ok in self.verdicts():
            lines.append(f"| {name} | {limit} | {shown} | {'yes' if ok else '**no**'} |")
        return "\n".join(lines) + "\n"

    def sustained_report(self) -> str:
        args, workers = self.args, self.args.workers
        lines = self.header(
            f"Sustained load: {self.backend()}",
            f"Turns arrive as a Poisson process (seed {args.seed}); each is a full answer on an idle socket of "
            + (
                "its own user, starting a new conversation (`--new-chats`: created by the turn, then titled by "
                "a title request the simulator answers with a few words)."
                if args.new_chats
                else "its own user, in that socket's one conversation (`--follow-ups`: every turn after a "
                "socket's first is a follow-up, the prompt growing by a question and a 200-token answer each)."
                if args.follow_ups
                else "its own user (a fresh conversation)."
            ),
        )
        lines.append("")
        limits = (
            f"added TTFT p95 <= {SUSTAINED_LIMITS['added TTFT p95'] * 1000:.0f} ms and completion lag p95 <= "
            f"{SUSTAINED_LIMITS['completion lag p95'] * 1000:.0f} ms, nothing lost, duplicated or failed"
        )
        if "capacity" in self.facts:
            capacity = self.facts["capacity"]
            low, high = self.facts["search bounds"]
            if capacity is not None:
                lines.append(
                    f"**Capacity: {capacity / workers:g} turns/s per process** ({capacity:g} turns/s in all), the "
                    f"highest rate found with {limits}, confirmed by a {args.duration:g} s run. Search: "
                    f"{args.step_duration:g} s steps, doubling from {args.start_rate:g} turns/s per process, "
                    f"then bisection to within {args.precision:.0%} (last passing {rate_text(low)}, first failing "
                    f"{rate_text(high)} turns/s in all)."
                    + (
                        " No step failed before --max-steps or --max-rate: this is a lower bound."
                        if high is None
                        else ""
                    )
                )
            else:
                lines.append(
                    f"**Capacity: not found.** No confirming run kept {limits} (last passing step "
                    f"{rate_text(low)}, first failing {rate_text(high)} turns/s in all; the confirming runs are "
                    "below)."
                )
        else:
            lines.append(f"One run at {args.rate:g} turns/s; limits: {limits}.")
        lines += [
            "",
            "| step | phase | rate: all / per process (turns/s) | duration (s) | turns | added TTFT p50 / p95 (ms) | "
            "completion lag p50 / p95 (ms) | end frame lag p95 (ms) | lost / duplicated chars | errors | late sends "
            "| server CPU per answer (ms): all / event loop | server CPU (cores) | event loop waiting for a CPU | "
            + ("sockets per process | " if workers > 1 else "")
            + "client CPU per answer (ms) / busiest client (cores) / client loop lag p95 (ms) | "
            "upstream TTFT slip p95 (ms) / simulator (cores) | other load (cores) | within limits |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            + ("---:|" if workers > 1 else "")
            + "---:|---:|---:|---|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r['step']} | {r['phase']}{' (disturbed: repeated)' if r.get('disturbed') else ''} | "
                f"{r['rate']:g} / {r['rate'] / workers:g} | {r['duration']:g} | "
                f"{r['answers']} | {ms(r['added TTFT p50'])} / {ms(r['added TTFT p95'])} | "
                f"{ms(r['completion lag p50'])} / {ms(r['completion lag p95'])} | {ms(r['end frame lag p95'])} | "
                f"{r['lost']} / {r['duplicated']} | {r['errors']} | {r['late']} | "
                f"{r['CPU per answer'] * 1000:.1f} / {r['loop CPU per answer'] * 1000:.1f} | "
                f"{r['server cores']:.2f} | {r.get('loop CPU wait', 0):.0%} | "
                + (f"{' / '.join(map(str, r['sockets per process']))} | " if workers > 1 else "")
                + f"{r['client CPU per answer'] * 1000:.1f} / {r['client cores']:.2f} / {ms(r['client lag p95'])} | "
                f"{ms(r['upstream TTFT slip p95'])} / {r['simulator cores']:.2f} | {r['other load']:.2f} | "
                f"{'yes' if r['ok'] else '**no**'} |"
            )
        lines += ["", *self.footer()]
        return "\n".join(lines).rstrip("\n") + "\n"


PREAMBLE = """# Load benchmark results

Written by `bench/load.py` (one section per backend, number of processes and mode; each run replaces its
own). How it works, what limits the figures and what to change next: bench/README.md, "Load".

Definitions: *added TTFT* = the client's time from sending the turn to its first character, minus the
upstream's own time from receiving the request to writing its first token. *Completion lag* = when the client
holds the whole answer, minus when the upstream wrote its last token; *end frame lag* the same for the `end`
frame (after the final save). *Server CPU* = user + system time of the daphne processes (/proc/<pid>/stat),
all threads and the event loops' threads alone, from just before the turns are sent until the processes are
idle again, divided by the answers; *server CPU (cores)* the same time divided by that span. *Event loop
waiting for a CPU* = the share of that span an event loop's thread was ready to run but had no CPU (the
kernel's run delay, /proc/<pid>/task/<tid>/schedstat; per process). *DB writes* =
INSERT/UPDATE/DELETE statements the servers ran (an execute wrapper counts them), per answer. *Upstream TTFT
slip* = how late the simulator itself wrote first tokens; *simulator* = the cores its process used (the
same machine's: what it takes, the servers lack). *Client CPU* = CPU of the client processes per answer;
*busiest client* = the largest share of a core one client process used during the run; *client loop
lag* = how late a client process's event loop woke for a 20 ms timer (p95 of the busiest): when it grows,
client timestamps include the client's own delay. *Other load* = CPU used by processes other than the
servers, the simulator, the clients (and py-spy) during the run: with PostgreSQL or Redis that includes
their servers (about 0.15 cores); otherwise anything above a few hundredths means something else disturbed
the figures. *Sockets per process* = the clients' websocket connections each daphne process held (the
kernel spreads them). Sustained runs: turns arrive at random (a Poisson process) at the *rate*; a turn is
*late* when all the client's sockets were busy at its instant (its figures still count from that instant); a
run is *disturbed* when other processes used more than `--max-other-load` cores during it: it is repeated
(twice at most) and only the last run's verdict counts.
"""

SECTION_ORDER = [
    "sqlite",
    "postgres",
    "postgres-2w",
    "sustained-sqlite",
    "sustained-sqlite-new-chats",
    "sustained-sqlite-follow-ups",
    "sustained-postgres-2w",
]


def write_results(path: Path, key: str, section: str) -> None:
    """Replace this run's section of the results file, keeping everything else in it (the other sections,
    and what people wrote between them: before/after tables, other benchmarks' sections)."""
    block = f"<!-- results:{key} -->\n{section}<!-- /results:{key} -->"
    text = path.read_text() if path.exists() else PREAMBLE + "\n"
    pattern = re.compile(rf"<!-- results:{re.escape(key)} -->.*?<!-- /results:{re.escape(key)} -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text, count=1)
    else:  # a new section: before the first section that comes after it in SECTION_ORDER, else at the end
        rank = SECTION_ORDER.index(key) if key in SECTION_ORDER else 99
        later = [
            found.start()
            for found in re.finditer(r"<!-- results:(\S+) -->", text)
            if (SECTION_ORDER.index(found.group(1)) if found.group(1) in SECTION_ORDER else 99) > rank
        ]
        at = min(later) if later else len(text)
        text = text[:at].rstrip("\n") + "\n\n" + block + "\n\n" + text[at:].lstrip("\n")
    path.write_text(text.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite",
                        help="SQLite (default) or PostgreSQL (database chatsite_bench) + Redis (database 13)")  # fmt: skip
    parser.add_argument("--postgres", action="store_true", help="the same as --backend postgres")
    parser.add_argument("--workers", type=int, default=1,
                        help="daphne processes sharing one port, started by scripts/serve.py like ./scripts/run "
                        "does (more than one needs Redis: with SQLite the bench uses Redis database 13 too)")  # fmt: skip
    parser.add_argument("--balance", choices=("reuseport", "shared"), default="reuseport",
                        help="how scripts/serve.py spreads connections over the processes (default reuseport)")  # fmt: skip
    parser.add_argument("--client-procs", type=int, default=2,
                        help="websocket client processes (default 2), each with its share of the sockets")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="N=1 (5 turns), 50, 200; 300 idle sockets")
    parser.add_argument("--sizes", help="comma-separated N (default 1,50,200,500; with --workers: 1,200,400)")
    parser.add_argument("--idle", type=int, help="idle sockets to open (default 1000)")
    sustained = parser.add_argument_group("sustained load")
    sustained.add_argument("--sustained", action="store_true",
                           help="Poisson arrivals instead of bursts: a capacity search, or one run with --rate")  # fmt: skip
    sustained.add_argument(
        "--rate", type=float, help="one sustained run at this many turns/s (all processes)"
    )
    sustained.add_argument("--duration", type=float, default=60.0,
                           help="seconds of arrivals of a --rate run and of the search's confirming run (60)")  # fmt: skip
    sustained.add_argument("--step-duration", type=float, default=20.0,
                           help="seconds of arrivals of each search step (20)")  # fmt: skip
    sustained.add_argument("--start-rate", type=float, default=1.0,
                           help="the search's first rate, turns/s per process (1)")  # fmt: skip
    sustained.add_argument(
        "--max-rate", type=float, default=200.0, help="the search stops doubling here (per process)"
    )
    sustained.add_argument("--precision", type=float, default=0.1,
                           help="bisect until the failing rate is within this fraction of the passing one (0.1)")  # fmt: skip
    sustained.add_argument("--max-steps", type=int, default=12, help="search steps at most (12)")
    sustained.add_argument("--seed", type=int, default=1, help="seed of the arrival times (1)")
    sustained.add_argument("--new-chats", action="store_true",
                           help="each turn starts a new conversation (the New chat button) instead of going into "
                           "a fresh seeded one; its report section is separate")  # fmt: skip
    sustained.add_argument("--follow-ups", action="store_true",
                           help="each socket sends all its turns into one conversation (follow-ups); its report "
                           "section is separate")  # fmt: skip
    sustained.add_argument("--max-other-load", type=float, default=None,
                           help="repeat a run (twice at most) while other processes used more cores than this "
                           "(default 0.5; 0.7 with PostgreSQL or Redis, whose servers count as other load)")  # fmt: skip
    parser.add_argument("--profile", action="store_true",
                        help="py-spy flame graphs of the daphne processes: one per N (bursts), per confirming "
                        "or --rate run (sustained), in bench/results/")  # fmt: skip
    parser.add_argument("--output", type=Path, help="where to write the report (default bench/RESULTS.md)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, database)")
    parser.add_argument("--note", help="a remark printed under the section's heading in the report")
    args = parser.parse_args()
    args.postgres = args.postgres or args.backend == "postgres"
    args.sustained = args.sustained or args.rate is not None
    if args.max_other_load is None:
        args.max_other_load = 0.7 if args.postgres or args.workers > 1 else 0.5
    args.redis = args.postgres or args.workers > 1
    if args.workers < 1 or args.client_procs < 1:
        parser.error("--workers and --client-procs must be at least 1")
    default_sizes = "1,200,400" if args.workers > 1 else "1,50,200" if args.quick else "1,50,200,500"
    args.sizes = [int(s) for s in (args.sizes or default_sizes).split(",")]
    if args.sustained:
        args.sizes = [1]  # the burst sizes only size the initial seed (the warm-up's users)
        args.idle = args.idle if args.idle is not None else 0
    args.idle = args.idle if args.idle is not None else (300 if args.quick else 1000)
    args.rounds_n1 = 5 if args.quick else 20
    output = args.output or BENCH / "RESULTS.md"
    sys.path.insert(0, str(BENCH))

    bench = Bench(args)
    try:
        bench.start()
        bench.warm_up()
        print(f"idle RSS {bench.facts['idle RSS'] / 2**20:.0f} MB", flush=True)
        if args.sustained:
            if args.rate:
                bench.sustained(args.rate, args.duration, "single")
            else:
                bench.capacity_search()
            report = bench.sustained_report()
        else:
            if args.idle:
                bench.idle_sockets()
            for size in args.sizes:
                bench.run_size(size)
            report = bench.report()
    finally:
        bench.close()
    write_results(output, bench.key(), report)
    print(f"\nwrote {output}")
    for path in bench.flame_graphs:
        print(f"flame graph: {path}")
    if args.sustained:
        capacity = bench.facts.get("capacity", "absent")
        if capacity != "absent":
            print(
                f"capacity: {capacity / args.workers:g} turns/s per process"
                if capacity
                else "capacity: not found"
            )
        return
    for name, limit, shown, ok in bench.verdicts():
        print(f"  {'ok  ' if ok else 'MISS'} {name}: {shown} (target {limit})")


if __name__ == "__main__":
    main()
