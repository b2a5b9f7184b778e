"""Deployment: the production environment documented in docs/deployment.md passes `manage.py check --deploy`
cleanly, ./scripts/run serves one port from several daphne processes when REDIS_URL is set, and each daphne
process keeps to a core of its own unless CPU_AFFINITY=off."""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings

from tests.live import BASE_DIR, DaphneServer, free_port, wait_for_port

DOC = BASE_DIR / "docs" / "deployment.md"
MARKER = "<!-- production-env:"


def documented_environment() -> dict[str, str]:
    """The NAME=value lines of the fenced block right after the marker in docs/deployment.md."""
    text = DOC.read_text()
    assert MARKER in text, f"{DOC} lost its production environment block"
    block = re.search(r"```sh\n(.*?)```", text[text.index(MARKER) :], re.S)
    assert block is not None
    env = {}
    for line in block.group(1).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    return env


def test_the_documented_production_environment_passes_check_deploy(tmp_path):
    env = documented_environment()
    assert env["CHAT_PRODUCTION"] == "1" and "SECRET_KEY" not in env, "secrets belong in files"
    # Same settings, with the secret files and directories of this machine.
    secrets = {
        "SECRET_KEY_FILE": Fernet.generate_key().decode() * 2,
        "CHAT_ENCRYPTION_KEY_FILE": Fernet.generate_key().decode(),
        "DATABASE_URL_FILE": "postgres://chatsite:secret@127.0.0.1:5432/chatsite",
    }
    for name, value in secrets.items():
        assert name in env, f"the documented environment no longer sets {name}"
        path = tmp_path / name.lower()
        path.write_text(value + "\n")
        env[name] = str(path)
    env["DATA_DIR"] = str(tmp_path / "data")
    env["STATIC_ROOT"] = str(tmp_path / "static")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CHAT_", "SECURE_", "DJANGO_"))}
    for name in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS", "DEBUG", "CSRF_TRUSTED_ORIGINS"):
        clean.pop(name, None)
    clean.update(env, DJANGO_SETTINGS_MODULE="chatsite.settings")

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


# --- ./scripts/run with several processes ------------------------------------------------------------------------

needs_redis = pytest.mark.skipif(
    not settings.REDIS_URL,
    reason="needs REDIS_URL: without it ./scripts/run starts one process "
    "(scripts/test runs this in its PostgreSQL + Redis lane)",
)


def connections_by_pid(pids: list[int], port: int) -> list[int]:
    """Established TCP connections to local `port` each process holds (/proc/net/tcp and its fds)."""
    established = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
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


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@needs_redis
@pytest.mark.django_db(transaction=True)  # the launcher's processes read the committed test database
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts connections through /proc")
def test_run_with_workers_2_serves_one_port_from_two_processes_and_sigterm_stops_both(tmp_path):
    port = free_port()
    env = DaphneServer(tmp_path, {}).environment()  # the test database, the test Redis, this run's secrets
    env.update({"WORKERS": "2", "HOST": "127.0.0.1", "PORT": str(port), "ALLOWED_HOSTS": "127.0.0.1"})
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        run = subprocess.Popen(
            [str(BASE_DIR / "scripts" / "run")], cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    connections: list[http.client.HTTPConnection] = []
    try:
        deadline = time.monotonic() + 120  # migrate (nothing to do), collectstatic, bootstrap, then serve
        while "Serving on" not in (log := log_path.read_text(errors="replace")):
            assert run.poll() is None, log
            assert time.monotonic() < deadline, log
            time.sleep(0.1)
        found = re.search(
            rf"Serving on http://127.0.0.1:{port} \(2 daphne processes.*; pids (\d+), (\d+);", log
        )
        assert found, log
        pids = [int(found.group(1)), int(found.group(2))]

        # Keep-alive connections that each got an answer: each is held by the process that served it.
        for _ in range(24):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/accounts/login/")
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
            connections.append(conn)
        counts = connections_by_pid(pids, port)
        assert sum(counts) == 24 and min(counts) > 0, f"connections per process: {counts}"
        # Each process, every thread of it included, keeps to one core: the first two this machine allows.
        cores = sorted(os.sched_getaffinity(0))
        assert [thread_cores(pid) for pid in pids] == [{cores[0]}, {cores[1 % len(cores)]}]
        for conn in connections:
            conn.close()

        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=30) == 0, log_path.read_text(errors="replace")
        assert not any(alive(pid) for pid in pids), "a daphne process outlived the launcher"
    finally:
        for conn in connections:
            conn.close()
        if run.poll() is None:
            run.kill()
            run.wait(timeout=10)


def thread_cores(pid: int) -> set[int]:
    """The cores every thread of process `pid` may run on (all of them the same, else the test fails)."""
    found = {frozenset(os.sched_getaffinity(int(tid))) for tid in os.listdir(f"/proc/{pid}/task")}
    assert len(found) == 1, f"threads of {pid} differ in affinity: {found}"
    return set(found.pop())


def serve_module():
    spec = importlib.util.spec_from_file_location("serve", BASE_DIR / "scripts" / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_workers_take_the_allowed_cores_in_turn(monkeypatch):
    serve = serve_module()
    monkeypatch.setattr(serve.os, "sched_getaffinity", lambda pid: {5, 2, 7})
    assert serve.worker_cpus(1) == [2]
    assert serve.worker_cpus(4) == [2, 5, 7, 2]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CPU affinity is Linux's")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a machine with two cores to tell")
@pytest.mark.parametrize("setting", ["", "off"])
@pytest.mark.django_db(transaction=True)  # daphne reads the committed test database
def test_one_daphne_process_keeps_to_one_core_unless_cpu_affinity_is_off(tmp_path, setting):
    port = free_port()
    env = DaphneServer(tmp_path, {}).environment()
    env.pop("CPU_AFFINITY", None)
    if setting:
        env["CPU_AFFINITY"] = setting
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        serve = subprocess.Popen(
            [sys.executable, "scripts/serve.py", "--workers", "1", "--host", "127.0.0.1", f"--port={port}"],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, 60, serve)  # serve.py became daphne (exec): the same pid, its threads started
        cores = sorted(os.sched_getaffinity(0))
        expected = set(cores) if setting == "off" else {cores[0]}
        assert thread_cores(serve.pid) == expected, log_path.read_text(errors="replace")
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0, log_path.read_text(errors="replace")
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait(timeout=10)


# --- ./scripts/test sets up its own browser ---------------------------------------------------------------------


def _ensure_chromium(path: str, fake_bin, debians: str = "/usr/bin/chromium") -> subprocess.CompletedProcess:
    """scripts/_venv.sh's ensure_chromium, with `fake_bin` first on PATH (a fake apt-get records its calls)."""
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"}
    script = f'source "{BASE_DIR}/scripts/_venv.sh" && ensure_chromium "{path}" "{debians}" && echo ready'
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)


def test_the_test_script_uses_chromium_when_it_is_there(tmp_path):
    browser = tmp_path / "chromium"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    done = _ensure_chromium(str(browser), tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "ready"


def test_the_test_script_says_the_one_command_when_it_cannot_install_chromium(tmp_path):
    # A path other than Debian's is never installed by apt: the person is told what to run.
    done = _ensure_chromium(str(tmp_path / "missing" / "chromium"), tmp_path)
    assert done.returncode == 1
    assert "Install it with: sudo apt-get install -y chromium" in done.stderr


@pytest.mark.skipif(
    os.geteuid() != 0, reason="installing with apt needs root (CI and these machines run as root)"
)
def test_the_test_script_installs_debians_chromium_with_apt_when_root(tmp_path):
    # A fake apt-get stands in for Debian's: it records its arguments and "installs" the browser where
    # Debian's path is said to be for this run.
    browser, log = tmp_path / "usr-bin" / "chromium", tmp_path / "apt.log"
    apt = tmp_path / "apt-get"
    apt.write_text(
        f'#!/bin/sh\necho "$@" >> {log}\nmkdir -p {browser.parent}\n'
        f'printf "#!/bin/sh\\n" > {browser}\nchmod +x {browser}\n'
    )
    apt.chmod(0o755)
    done = _ensure_chromium(str(browser), tmp_path, debians=str(browser))
    assert done.returncode == 0 and done.stdout.strip().endswith("ready"), done.stderr
    assert log.read_text().splitlines() == ["update -qq", "install -y -qq chromium"]
