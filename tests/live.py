"""A real daphne server in a subprocess, serving the site from the test database.

pytest-django's live_server is WSGI only and can't carry websockets, so tests that need the full ASGI stack
(origin check, session auth, websockets, several processes) start daphne like a deployment would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"daphne exited with code {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Call `predicate` until it returns something true, and return that; fail the test after `timeout` s.
    For what another process or thread does in its own time (a live daphne, a channel layer, a checkpoint)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
    return value


def database_url_for_tests() -> str:
    """The URL of the database pytest-django created, so the subprocess sees what the tests commit."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    if connection.vendor == "postgresql":
        auth = db["USER"] or ""
        if db["PASSWORD"]:
            auth += f":{db['PASSWORD']}"
        host = f"{auth}@" if auth else ""
        return f"postgres://{host}{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    raise RuntimeError(f"no live-server support for {db['ENGINE']}")


class DaphneServer:
    """One daphne process. `kill()` is SIGKILL (a crash); `start()` again brings it back on the same port."""

    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None
        self.log_path = workdir / f"daphne-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """The test run's settings, not the developer's: the test database, and Redis only when the run uses
        it (settings.REDIS_URL, the PostgreSQL + Redis lane), so several servers share one channel layer."""
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "chatsite.settings",
                "DATABASE_URL": database_url_for_tests(),
                "SECRET_KEY": settings.SECRET_KEY,
                "DATA_DIR": str(self.workdir / "data"),
                "MEDIA_ROOT": str(settings.MEDIA_ROOT),
                "STATIC_ROOT": str(settings.STATIC_ROOT),
                "CHAT_INSECURE_FAST_PASSWORD_HASHER": "1",
                # Stopping a test server with an answer still running shouldn't wait the full 10 s.
                "CHAT_SHUTDOWN_GRACE": "2",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if settings.CHAT_ENCRYPTION_KEY:
            env["CHAT_ENCRYPTION_KEY"] = settings.CHAT_ENCRYPTION_KEY
        if settings.REDIS_URL:
            env["REDIS_URL"] = settings.REDIS_URL
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child; closed with the process
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "chatsite.asgi:application",
            ],
            cwd=BASE_DIR,
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            wait_for_port(self.port, timeout, self.process)
        except Exception:
            self.stop()
            raise RuntimeError(f"daphne failed to start; its log:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up, like a crash or an OOM kill."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM, the way systemd stops a service: running answers get the grace period, then it exits."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; its exit code."""
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
