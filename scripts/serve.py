"""Serve the site with several daphne processes on one address: a small supervisor, no dependencies.

    .venv/bin/python scripts/serve.py [--workers N] [--host H] [--port P] [--balance reuseport|shared]
                                      [daphne options...]

./scripts/run calls this (WORKERS, HOST and PORT come from the environment there). The parent binds the
listening socket(s) itself, starts N children `python -m daphne --fd <n> ... chatsite.asgi:application`
that inherit them, and then only waits:

- one listening socket per child, all bound to HOST:PORT with SO_REUSEPORT (`--balance reuseport`, the
  default): the kernel spreads new connections over the children by a hash of the client's address and port,
  so each gets its share even when one is busier or slower to wake. With one socket shared by every child
  (`--balance shared`) every child is woken for each new connection and the first to call accept() takes it,
  and Twisted accepts up to 100 connections per wake-up: a burst lands mostly on one process. Measured with
  400 websocket connections over 2 processes: see bench/README.md, "Several processes on one port".
  (daphne's `--endpoint tcp:...` can't ask for SO_REUSEPORT: Twisted 26's endpoint string has no such option,
  which is why the parent binds the sockets and hands them over with `--fd`.)
- SIGTERM and SIGINT are forwarded to every child (a second SIGTERM too: it skips what is left of their grace
  period, see conversations/services/shutdown.py); the parent exits when all children have, with status 0.
- A child that exits on its own (a crash) makes the parent stop the others and exit with status 1:
  nothing is restarted here; systemd (Restart=on-failure) restarts the whole service. Use KillMode=mixed
  so that systemd's SIGTERM reaches only this parent, which forwards it once (docs/deployment.md).
- The children are in their own process group (Ctrl-C in a terminal reaches them once, through the parent)
  and get SIGTERM if the parent dies without forwarding anything (Linux's PR_SET_PDEATHSIG).

- Each daphne process keeps to a core of its own (`--cpu-affinity on`, the default; CPU_AFFINITY=off to
  leave it to the scheduler): worker i to the i-th core this process may use, round robin. A daphne process
  is an event loop and two database threads under one GIL; spread over cores, every hand-over of the GIL
  between them crossed cores and each frame's send() woke the receiving process onto the loop's core, where
  it often ran first. Measured on 2 cores at 100-125 turns/s (bench/README.md, "Session 17"): the loop
  waited for a CPU 19% of the time, a send() took 80 us of waiting for 26 us of work, and added TTFT p95
  fell from 32-96 ms to 21-72 ms once the process kept to one core, with less CPU per answer.

With one worker the parent runs nothing itself: it becomes `daphne -b HOST -p PORT` (exec), as before (kept
to the first core it may use, unless CPU_AFFINITY=off).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPLICATION = "chatsite.asgi:application"
BACKLOG = 4096  # the kernel caps it at net.core.somaxconn; daphne's own default is 50
PR_SET_PDEATHSIG = 1


def redis_configured() -> bool:
    """Whether settings.py will use Redis (the channel layer several processes need): REDIS_URL or its _FILE."""
    return bool(os.environ.get("REDIS_URL") or os.environ.get("REDIS_URL_FILE"))


def default_workers() -> int:
    if not redis_configured():
        return 1
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def listening_sockets(host: str, port: int, count: int, reuse_port: bool) -> list[socket.socket]:
    """`count` listening sockets on host:port with SO_REUSEPORT, or one socket (reuse_port=False)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if family == socket.AF_INET6:
        # daphne's `--fd` adopts the socket as IPv4 (its fd endpoint has no way to say otherwise).
        raise SystemExit(f"serve.py: several processes need an IPv4 HOST, not {host!r}")
    sockets: list[socket.socket] = []
    for _ in range(count if reuse_port else 1):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise SystemExit(f"serve.py: cannot listen on {host}:{port}: {exc}") from None
        port = sock.getsockname()[1]  # port 0: the others join the port the first one got
        sock.listen(BACKLOG)
        sock.set_inheritable(True)
        sockets.append(sock)
    return sockets


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux), then its own process group."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    os.setpgid(0, 0)


def worker_cpus(count: int) -> list[int] | None:
    """The core each of `count` workers keeps to: the cores this process may use, in order, one each (round
    robin when there are more workers than cores). None where affinity can't be set (not Linux)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None
    return [cpus[i % len(cpus)] for i in range(count)]


def pin_to(cpu: int) -> None:
    """Keep this process, and the threads it starts, to one core (see --cpu-affinity)."""
    with contextlib.suppress(OSError):  # a container that forbids it: run unpinned
        os.sched_setaffinity(0, {cpu})


def _start_child(cpu: int | None) -> None:
    _die_with_parent()
    if cpu is not None:
        pin_to(cpu)


class Supervisor:
    def __init__(
        self,
        command: list[str],
        daphne_args: list[str],
        sockets: list[socket.socket],
        count: int,
        cpus: list[int] | None = None,
    ):
        self.children: list[subprocess.Popen] = []
        for i in range(count):
            sock = sockets[i % len(sockets)]
            fd = sock.fileno()
            cpu = cpus[i] if cpus else None
            self.children.append(
                subprocess.Popen(  # noqa: S603 - our own command line
                    [*command, "--fd", str(fd), *daphne_args, APPLICATION],
                    cwd=ROOT,
                    pass_fds=[fd],
                    # The parent has no other threads: safe here.
                    preexec_fn=functools.partial(_start_child, cpu),
                )
            )
        for sock in sockets:  # the children hold them now: a socket no child reads must not stay open here
            sock.close()
        self.stopping = False

    def forward(self, signum: int, _frame=None) -> None:
        self.stopping = True
        for child in self.children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signum)

    def wait(self) -> int:
        """Wait for every child; stop the rest when one exits by itself. The exit status for the parent."""
        status = 0
        alive = {child.pid: child for child in self.children}
        while alive:
            try:
                pid, raw = os.wait()
            except ChildProcessError:
                break
            child = alive.pop(pid, None)
            if child is None:
                continue
            child.returncode = os.waitstatus_to_exitcode(raw)
            if not self.stopping:
                print(
                    f"serve.py: daphne process {pid} exited by itself ({describe(child.returncode)}); "
                    f"stopping the others",
                    file=sys.stderr,
                    flush=True,
                )
                status = 1
                self.forward(signal.SIGTERM)
            elif child.returncode != 0:
                print(
                    f"serve.py: daphne process {pid} ended with {describe(child.returncode)}", file=sys.stderr
                )
        return status


def describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"status {code}"


def raise_open_files_limit() -> None:
    """Each streaming answer holds two sockets (the browser's and the provider's): a soft limit of 1024 open
    files (Debian's default) would refuse connections past about 500 answers. Lift it to the hard limit, as
    the children inherit it (nginx's worker_rlimit_nofile does the same)."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        if soft != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--workers", type=int, help="daphne processes (default: WORKERS, else the number of "
                        "cores when REDIS_URL is set, else 1)")  # fmt: skip
    parser.add_argument("--host", default=os.environ.get("HOST") or "127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
    parser.add_argument("--balance", choices=("reuseport", "shared"), default="reuseport",
                        help="one SO_REUSEPORT socket per process (default), or one socket shared by all")  # fmt: skip
    parser.add_argument("--cpu-affinity", type=str.lower, default=os.environ.get("CPU_AFFINITY") or "on",
                        help="keep each daphne process to a core of its own (default: CPU_AFFINITY, else on)")  # fmt: skip
    parser.add_argument("--daphne-command", default=f"{shlex.quote(sys.executable)} -m daphne",
                        help=argparse.SUPPRESS)  # the load bench runs its instrumented daphne  # fmt: skip
    args, daphne_args = parser.parse_known_args(argv)
    workers = (
        args.workers if args.workers is not None else int(os.environ.get("WORKERS") or default_workers())
    )
    if workers < 1:
        parser.error("--workers must be at least 1")
    args.cpu_affinity = args.cpu_affinity.strip().lower()  # from CPU_AFFINITY: argparse checks no default
    if args.cpu_affinity not in {"on", "off"}:
        parser.error(f"--cpu-affinity (CPU_AFFINITY) must be on or off, not {args.cpu_affinity!r}")
    if workers > 1 and not redis_configured():
        print(
            f"serve.py: {workers} workers asked for, but without REDIS_URL the in-memory channel layer can't "
            "reach another process: serving with one",
            file=sys.stderr,
        )
        workers = 1
    raise_open_files_limit()
    command = shlex.split(args.daphne_command)

    cpus = worker_cpus(workers) if args.cpu_affinity == "on" else None
    if workers == 1:
        print(f"Serving on http://{args.host}:{args.port} (1 daphne process)", flush=True)
        if cpus:
            pin_to(cpus[0])
        os.chdir(ROOT)
        argv = [*command, "-b", args.host, "-p", str(args.port), *daphne_args, APPLICATION]
        os.execv(command[0], argv)  # noqa: S606 - becomes daphne: our own command line

    sockets = listening_sockets(args.host, args.port, workers, args.balance == "reuseport")
    port = sockets[0].getsockname()[1]
    # Signals that arrive while the children start are forwarded to those already started.
    supervisor: Supervisor | None = None
    pending: list[int] = []

    def on_signal(signum, frame):
        if supervisor is None:
            pending.append(signum)
        else:
            supervisor.forward(signum, frame)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    supervisor = Supervisor(command, daphne_args, sockets, workers, cpus)
    pids = ", ".join(str(child.pid) for child in supervisor.children)
    print(
        f"Serving on http://{args.host}:{port} ({workers} daphne processes, {args.balance} balance; "
        f"pids {pids}; supervisor {os.getpid()})",
        flush=True,
    )
    for signum in pending:
        supervisor.forward(signum)
    started = time.monotonic()
    status = supervisor.wait()
    if status and time.monotonic() - started < 5:
        print("serve.py: a daphne process failed at start-up; see its output above", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
