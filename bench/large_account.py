"""A large account: response times of the sidebar, a conversation and search for one user with
10,000 conversations of 20 messages each (200,000 messages), on SQLite (or DATABASE_URL if given).

    .venv/bin/python bench/large_account.py                 # 10,000 x 20, 100 requests per endpoint
    .venv/bin/python bench/large_account.py --conversations 2000 --requests 50

Seeds a temporary database with bulk_create (FTS triggers included), then times requests through Django's
test Client (the whole view, middleware and JSON stack in-process; no network). Prints p50 and p95 per
endpoint and checks them against the goals: sidebar and conversation p95 < 100 ms, search p95 < 300 ms.
"turn checks" times what every new turn reads about its user and conversation before it starts (the running
answers and the last minute's for the limits, the conversation and whether an answer is being written in it,
services/limits.py and services/access.py): inside the turn batch's transaction, so it must not grow with
the account's history (goal p95 < 10 ms).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

GOALS_MS = {"sidebar": 100, "sidebar page 50": 100, "conversation": 100, "search": 300, "turn checks": 10}
WORDS = [
    "python",
    "django",
    "sqlite",
    "postgres",
    "index",
    "query",
    "cache",
    "latency",
    "budget",
    "travel",
    "lisbon",
    "recipe",
    "bread",
    "flour",
    "garden",
    "tomato",
    "invoice",
    "email",
    "meeting",
    "agenda",
    "poem",
    "autumn",
    "river",
    "mountain",
    "kernel",
    "thread",
    "socket",
    "stream",
    "token",
    "model",
    "prompt",
    "answer",
    "branch",
    "history",
    "export",
    "import",
    "share",
    "search",
    "vector",
    "rank",
    "snippet",
    "highlight",
    "release",
    "deploy",
]


def seed(conversations: int, messages: int):
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from conversations.models import Conversation, Message

    rng = random.Random(7)
    user = get_user_model().objects.create_user("bench", "bench@example.com", "bench password")
    now = timezone.now()
    batch = 500
    started = time.perf_counter()
    for start in range(0, conversations, batch):
        with transaction.atomic():
            rows = Conversation.objects.bulk_create(
                [
                    Conversation(owner=user, title=" ".join(rng.sample(WORDS, 4)).capitalize())
                    for _ in range(start, min(start + batch, conversations))
                ]
            )
            parents: list[Message | None] = [None] * len(rows)
            for depth in range(messages):
                level = Message.objects.bulk_create(
                    [
                        Message(
                            conversation=c,
                            parent=parents[i],
                            role="user" if depth % 2 == 0 else "assistant",
                            content=" ".join(rng.choices(WORDS, k=rng.randint(12, 80))),
                        )
                        for i, c in enumerate(rows)
                    ]
                )
                parents = list(level)
            for i, c in enumerate(rows):
                c.current_leaf = parents[i]
                c.updated_at = now - dt.timedelta(minutes=start + i)
            Conversation.objects.bulk_update(rows, ["current_leaf", "updated_at"])
        print(f"\rseeded {min(start + batch, conversations):,} conversations", end="", flush=True)
    print(f" in {time.perf_counter() - started:.0f} s")
    return user


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the temporary database")
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="chatsite-large-account-bench-")
    os.environ["DATA_DIR"] = folder
    os.environ.setdefault("CHAT_INSECURE_FAST_PASSWORD_HASHER", "true")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    settings.ALLOWED_HOSTS = ["testserver"]
    call_command("migrate", verbosity=0)
    user = seed(args.conversations, args.messages)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("ANALYZE")
            cursor.execute(
                "INSERT INTO conversations_message_fts(conversations_message_fts) VALUES ('optimize')"
            )
        else:
            cursor.execute("ANALYZE")

    from conversations.models import Conversation

    client = Client()
    client.force_login(user)
    ids = list(Conversation.objects.filter(owner=user).values_list("public_id", flat=True))
    rng = random.Random(11)
    cursors = []
    page = client.get("/api/conversations").json()
    while page["next"] and len(cursors) < 50:
        cursors.append(page["next"])
        page = client.get("/api/conversations", {"cursor": page["next"]}).json()

    cases = {
        "sidebar": (lambda i: "/api/conversations", lambda i: {}),
        "sidebar page 50": (
            lambda i: "/api/conversations",
            lambda i: {"cursor": cursors[-1]} if cursors else {},
        ),
        "conversation": (lambda i: f"/api/conversations/{rng.choice(ids)}", lambda i: {}),
        "search": (
            lambda i: "/api/search",
            lambda i: {"q": " ".join(rng.sample(WORDS, 2)) if i % 2 else rng.choice(WORDS)[:4]},
        ),
    }
    print(
        f"\n{connection.vendor}: {args.conversations:,} conversations x {args.messages} messages, "
        f"{args.requests} requests each (Django test Client, in-process)"
    )
    print(f"{'endpoint':<18}{'p50 ms':>9}{'p95 ms':>9}{'goal p95':>10}")
    failed = False
    cases["turn checks"] = turn_checks(user, ids, rng)
    for name, (url, params) in cases.items():
        run = measure_calls if params is None else measure
        run(client, url, params, 5)  # warm caches
        p50, p95 = run(client, url, params, args.requests)
        ok = p95 < GOALS_MS[name]
        failed |= not ok
        print(f"{name:<18}{p50:>9.1f}{p95:>9.1f}{GOALS_MS[name]:>9} {'ok' if ok else 'MISSED'}")
    connection.close()
    if args.keep:
        print(f"(database kept in {folder})")
    else:
        shutil.rmtree(folder, ignore_errors=True)
    sys.exit(1 if failed else 0)


def turn_checks(user, ids, rng):
    """The reads a turn makes about its user and conversation (services/turns.py TurnBatch._read), as a
    call for measure_calls."""
    from conversations.services import access, limits

    def check(_i):
        limits.running_answers([user.pk])
        limits.recent_answers([user.pk])
        access.conversations_for_turns({rng.choice(ids)})

    return check, None


def measure_calls(_client, call, _params, requests: int) -> tuple[float, float]:
    timings = []
    for i in range(requests):
        started = time.perf_counter()
        call(i)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return statistics.median(timings), timings[max(0, round(0.95 * len(timings)) - 1)]


def measure(client, url, params, requests: int) -> tuple[float, float]:
    timings = []
    for i in range(requests):
        target, query = url(i), params(i)
        started = time.perf_counter()
        response = client.get(target, query)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content[:200]
    timings.sort()
    return statistics.median(timings), timings[max(0, round(0.95 * len(timings)) - 1)]


if __name__ == "__main__":
    main()
