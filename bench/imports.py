"""The import benchmark (issue 15): a generated ChatGPT-shaped export imported through a real daphne server
the way a person does it (upload, then polling), while another user renames a chat and sends messages.

    .venv/bin/python bench/imports.py                                            # SQLite
    .venv/bin/python bench/imports.py --database-url postgres://root@127.0.0.1:5432/chatsite_bench_imports

The export: 500 conversations, 20,000 messages, 600 branch points (regenerated answers), clock-skewed
timestamps (answers stamped a few ms before their question), web searches and code runs (tool calls and their
output), and one 10,000-deep chain. Measured: the server's RSS rise (sampled every 100 ms), the import's time
(upload to "done"), and the other user's rename (PATCH) and send (websocket `send` until its `ack`) p50/p95,
with errors. Targets: RSS rise <= 300 MB, import <= 60 s, rename and send p95 <= 200 ms with no error.
The PostgreSQL database named in the URL is created and dropped by the run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
from websockets.sync.client import connect

BASE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE))
from conversations.testing.upstream import Reply, UpstreamSimulator  # noqa: E402

TARGETS = {"rss_mb": 300, "import_s": 60, "p95_ms": 200}
CSRF = "b" * 32


# --- The export -------------------------------------------------------------------------------------------------


def _message(nid, role, body, t, recipient="all", ctype="text", name=None, **extra):
    content = {"content_type": ctype, **extra}
    if body is not None:
        content["parts"] = [body]
    return {
        "id": nid,
        "author": {"role": role, "name": name, "metadata": {}},
        "create_time": t,
        "update_time": None,
        "content": content,
        "status": "finished_successfully",
        "end_turn": True if role == "assistant" else None,
        "weight": 1.0,
        "metadata": {"model_slug": "gpt-4o"} if role == "assistant" else {},
        "recipient": recipient,
    }


def generate(path: Path, conversations=500, messages=20_000, branches=600, deep=10_000, seed=15) -> dict:
    rng = random.Random(seed)
    counts = {"conversations": conversations, "messages": 0, "branch_points": 0, "tool_calls": 0}
    per = (messages - deep - branches) // (conversations - 1)
    # branch points: a regenerated answer under some user turns (spread over the conversations, a few each)
    turns = [(c, i) for c in range(1, conversations) for i in range(0, per, 2)]
    branch_at = set(rng.sample(turns, min(branches, len(turns))))
    out = []
    t0 = 1_700_000_000.0
    for c in range(conversations):
        mapping = {}
        root = f"{c}-root"
        mapping[root] = {"id": root, "message": None, "parent": None, "children": []}
        parent, t = root, t0 + c * 1000
        length = (
            deep if c == 0 else per + (1 if c <= (messages - deep - branches) % (conversations - 1) else 0)
        )
        leaf = root
        for i in range(length):
            nid = f"{c}-{i}"
            role = "user" if i % 2 == 0 else "assistant"
            if role == "assistant" and c and i % 6 == 1:  # a web search before some answers
                call, result = f"{nid}-call", f"{nid}-result"
                mapping[call] = {
                    "id": call,
                    "parent": parent,
                    "children": [result],
                    "message": _message(
                        call, "assistant", None, t, recipient="web.run", ctype="code", text='{"q": "x"}'
                    ),
                }
                mapping[result] = {
                    "id": result,
                    "parent": call,
                    "children": [],
                    "message": _message(
                        result, "tool", None, t, name="web.run", ctype="tether_browsing_display", result="..."
                    ),
                }
                mapping[parent]["children"].append(call)
                parent = result
                counts["tool_calls"] += 1
            # clock skew: an answer stamped 3 ms before its question
            stamp = t - 0.003 if role == "assistant" else t + 1
            t = stamp + 1
            mapping[nid] = {
                "id": nid,
                "parent": parent,
                "children": [],
                "message": _message(
                    nid, role, f"{role} turn {i} of chat {c}: " + "lorem ipsum " * rng.randint(2, 30), stamp
                ),
            }
            mapping[parent]["children"].append(nid)
            counts["messages"] += 1
            if role == "user" and (c, i) in branch_at:  # a regenerated answer
                alt = f"{nid}-alt"
                mapping[alt] = {
                    "id": alt,
                    "parent": nid,
                    "children": [],
                    "message": _message(alt, "assistant", "another answer", stamp + 2),
                }
                mapping[nid]["children"].append(alt)
                counts["messages"] += 1
                counts["branch_points"] += 1
            parent = leaf = nid
        # the file lists the nodes in no useful order
        items = list(mapping.items())
        rng.shuffle(items)
        out.append(
            {
                "title": f"Chat {c}",
                "create_time": t0 + c * 1000,
                "update_time": t,
                "mapping": dict(items),
                "current_node": leaf,
                "conversation_id": str(uuid.UUID(int=c + 1)),
                "id": str(uuid.UUID(int=c + 1)),
                "is_archived": c % 50 == 0,
                "default_model_slug": "gpt-4o",
            }
        )
    path.write_text(json.dumps(out))
    counts["bytes"] = path.stat().st_size
    return counts


# --- The server ---------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pg_database(url: str, create: bool) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')


def run(database_url: str | None, workdir: Path, export: Path) -> dict:
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "DATA_DIR": str(workdir / "data"),
            "SECRET_KEY": "bench-imports-" + "x" * 40,
            "CHAT_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "CHAT_INSECURE_FAST_PASSWORD_HASHER": "1",
            "CHAT_TURNS_PER_MINUTE": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if database_url:
        env["DATABASE_URL"] = database_url
        pg_database(database_url, create=True)
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v", "0"], cwd=BASE, env=env, check=True)  # noqa: S603 - fixed arguments
    with UpstreamSimulator() as sim:
        sim.default = Reply(text="ok", token_delay=0.0)
        seeded = json.loads(
            subprocess.run(  # noqa: S603 - our own script, fixed arguments
                [python, "bench/load_seed.py", sim.base_url, "2", "1"],
                cwd=BASE,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        port = free_port()
        log = open(workdir / "daphne.log", "wb")  # noqa: SIM115
        server = subprocess.Popen(  # noqa: S603 - daphne, fixed arguments
            [python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "chatsite.asgi:application"],
            cwd=BASE,
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            return measure(port, server.pid, seeded, export)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()
            if database_url:
                pg_database(database_url, create=False)


def measure(port: int, pid: int, seeded: dict, export: Path) -> dict:
    url = f"http://127.0.0.1:{port}"
    importer, other = seeded["sessions"]
    their_chat = seeded["conversations"][1][0]
    headers = {"X-CSRFToken": CSRF, "Accept": "application/json"}
    cookies_for = lambda s: {"sessionid": s, "csrftoken": CSRF}  # noqa: E731
    baseline = rss_mb(pid)
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.1)

    renames, sends, errors = [], [], []
    importing = threading.Event()

    def other_user() -> None:
        client = httpx.Client(base_url=url, cookies=cookies_for(other), headers=headers, timeout=30)
        ws = connect(
            f"ws://127.0.0.1:{port}/ws/chat/",
            origin=url,
            additional_headers={"Cookie": f"sessionid={other}"},
            open_timeout=10,
            max_size=None,
        )
        ws.recv(timeout=10)  # hello
        n = 0
        while importing.is_set():
            n += 1
            started = time.monotonic()
            response = client.patch(f"/api/conversations/{their_chat}", json={"title": f"Renamed {n}"})
            renames.append(time.monotonic() - started)
            if response.status_code != 200:
                errors.append(f"rename {response.status_code}")
            started = time.monotonic()
            ws.send(json.dumps({"type": "send", "conversation": their_chat, "text": f"Hello {n}"}))
            while True:
                frame = json.loads(ws.recv(timeout=30))
                if frame["type"] == "ack":
                    sends.append(time.monotonic() - started)
                elif frame["type"] == "error":
                    errors.append(f"send {frame.get('code')}")
                    break
                elif frame["type"] == "end":
                    break
            time.sleep(0.2)
        ws.close()
        client.close()

    threading.Thread(target=sample, daemon=True).start()
    importing.set()
    writer = threading.Thread(target=other_user)
    writer.start()
    client = httpx.Client(base_url=url, cookies=cookies_for(importer), headers=headers, timeout=120)
    started = time.monotonic()
    with export.open("rb") as handle:
        response = client.post(
            "/api/imports", files={"file": ("conversations.json", handle, "application/json")}
        )
    job = response.json()
    assert response.status_code == 202, job
    after_upload = rss_mb(pid)
    upload_peak = peak[0]
    while job["status"] in ("queued", "running"):
        time.sleep(0.5)
        job = client.get(f"/api/imports/{job['id']}").json()
    elapsed = time.monotonic() - started
    importing.clear()
    writer.join()
    stop.set()

    def pct(values, q):
        values = sorted(values)
        return round(1000 * values[min(len(values) - 1, int(q * len(values)))]) if values else None

    return {
        "status": job["status"],
        "error": job.get("error"),
        "report": job.get("report"),
        "import_s": round(elapsed, 1),
        "rss_baseline_mb": round(baseline),
        "rss_rise_mb": round(peak[0] - baseline),
        "rss_rise_by_upload_peak_mb": round(upload_peak - baseline),  # daphne holds the request body
        "rss_rise_after_upload_mb": round(after_upload - baseline),
        "rss_rise_at_end_mb": round(rss_mb(pid) - baseline),
        "rename_ms": {
            "n": len(renames),
            "p50": pct(renames, 0.5),
            "p95": pct(renames, 0.95),
            "max": pct(renames, 1),
        },
        "send_ms": {"n": len(sends), "p50": pct(sends, 0.5), "p95": pct(sends, 0.95), "max": pct(sends, 1)},
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: SQLite in a temp dir)")
    parser.add_argument("--conversations", type=int, default=500)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--branches", type=int, default=600)
    parser.add_argument("--deep", type=int, default=10_000, help="length of the one long chain")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-imports-"))
    try:
        export = workdir / "conversations.json"
        shape = generate(export, args.conversations, args.messages, args.branches, args.deep)
        print("export:", json.dumps(shape))
        result = run(args.database_url, workdir, export)
        result["database"] = "PostgreSQL" if args.database_url else "SQLite"
        result["load_average"] = os.getloadavg()
        print(json.dumps(result, indent=2))
        fine = (
            result["status"] == "done"
            and result["rss_rise_mb"] <= TARGETS["rss_mb"]
            and result["import_s"] <= TARGETS["import_s"]
            and not result["errors"]
            and all((result[k]["p95"] or 0) <= TARGETS["p95_ms"] for k in ("rename_ms", "send_ms"))
        )
        print("targets met" if fine else "targets NOT met")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
