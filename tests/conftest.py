"""Fixtures every test module shares: named people, the upstream simulator, a live daphne, Chromium.

- alice owns things; charlie must never see alice's things; admin is a superuser.
- `upstream` is the project's OpenAI-compatible simulator on 127.0.0.1 (reset for each test).
- `live_server_daphne` is a real daphne subprocess reading the same database as the tests. Tests that use it
  must be `@pytest.mark.django_db(transaction=True)` so what they create is committed and visible to it.
  Transactional tests empty every table afterwards, the seeded model catalog included: tests create the
  providers and models they need (see `sim_model`).
- `crashable_daphne` is a daphne of the test's own, to kill and start again (same rules).
- Browser tests are marked `browser` and run last: Playwright's sync API keeps an event loop running in the
  main thread, which would break every later async test.

The PostgreSQL + Redis lane: `scripts/test` runs the suite a second time with DATABASE_URL, REDIS_URL and
CHAT_TEST_LANE=backends set. That run keeps only the tests whose behaviour depends on the database or the
channel layer: those marked `django_db` or `backends`, and those using a live daphne; browser tests run in the
default lane only. Tests that need several processes skip themselves unless REDIS_URL is set.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings
from django.core.management import call_command
from django.db import connections
from django.test.utils import override_settings

from conversations import crypto
from conversations.engine import db_threads
from conversations.testing.upstream import UpstreamSimulator
from tests.live import DaphneServer

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ORIGIN = "http://127.0.0.1"
PASSWORD = "correct horse battery staple"

# Fixtures kept in their own module: seed_env, three_providers (the three seed providers on the simulator).
pytest_plugins = ["tests.three_providers"]


BACKENDS_LANE = os.environ.get("CHAT_TEST_LANE") == "backends"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "backends: runs again in the PostgreSQL + Redis lane (added to database tests by default)"
    )


def _depends_on_backends(item) -> bool:
    if item.get_closest_marker("browser") is not None:
        return False
    return (
        item.get_closest_marker("django_db") is not None
        or item.get_closest_marker("backends") is not None
        or "live_server_daphne" in getattr(item, "fixturenames", ())
    )


def pytest_collection_modifyitems(config, items):
    if BACKENDS_LANE:
        # The PostgreSQL + Redis lane: only what the database or the channel layer can change.
        deselected = [item for item in items if not _depends_on_backends(item)]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if _depends_on_backends(item)]
    # Browser tests last (see the module docstring); stable order otherwise.
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture(scope="session", autouse=True)
def _test_environment(request, tmp_path_factory):
    """Fast password hashing; media and static files in temporary folders (static collected once).

    When browser tests are in the run, the test database is created now, before Playwright starts its event
    loop in this thread (after that, migrations would raise SynchronousOnlyOperation).
    """
    if any(item.get_closest_marker("browser") for item in request.session.items):
        request.getfixturevalue("django_db_setup")
    with override_settings(
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        MEDIA_ROOT=str(tmp_path_factory.mktemp("media")),
        STATIC_ROOT=str(tmp_path_factory.mktemp("static")),
    ):
        crypto.reset_cache()
        call_command("collectstatic", interactive=False, verbosity=0)
        yield
    crypto.reset_cache()


@pytest.fixture(scope="session", autouse=True)
def _flush_retries_a_deadlock():
    """PostgreSQL lane: a transactional test's flush (one TRUNCATE of every table, locking them one by one)
    can deadlock with a write the live daphne is still finishing (a cancelled answer's save, a title), and
    PostgreSQL then aborts one of the two. The daphne's side fails and logs; the flush is tried again."""
    if not BACKENDS_LANE:
        yield
        return
    from django.db import OperationalError
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown

    def teardown(self):
        for attempt in range(3):
            try:
                return original(self)
            except Exception as exc:  # flush wraps the OperationalError in a CommandError
                deadlock = isinstance(exc.__cause__ or exc, OperationalError) and "deadlock" in str(
                    exc.__cause__ or exc
                )
                if not deadlock or attempt == 2:
                    raise
                time.sleep(0.2)

    TransactionTestCase._fixture_teardown = teardown
    yield
    TransactionTestCase._fixture_teardown = original


@pytest.fixture(scope="session", autouse=True)
def _flush_lane_redis():
    """The lane's Redis database starts and ends empty (only in the lane: never flush a developer's Redis)."""
    if not (BACKENDS_LANE and settings.REDIS_URL):
        yield
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield
    client.flushdb()
    client.close()


@pytest.fixture(autouse=True)
def _close_sync_thread_connection(request):
    """Async tests run ORM calls on the engine's database threads (asgiref's single sync thread, and the
    answer-saves thread), whose connections would outlive the test (and PostgreSQL refuses to drop a test
    database still in use): close them after each database test."""
    yield
    if request.node.get_closest_marker("django_db") is None:
        return
    for executor in (SyncToAsync.single_thread_executor, db_threads.SAVES):
        if isinstance(executor, ThreadPoolExecutor):
            executor.submit(connections.close_all).result(timeout=30)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    # A file, not SQLite's in-memory default, so a daphne subprocess can open the same test database.
    db = settings.DATABASES["default"]
    if db["ENGINE"] in ("django.db.backends.sqlite3", "chatsite.sqlite"):
        db.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


# --- People ----------------------------------------------------------------------------------------------------


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.com", PASSWORD)


@pytest.fixture
def charlie(django_user_model):
    """Should have no access to alice's things."""
    return django_user_model.objects.create_user("charlie", "charlie@example.com", PASSWORD)


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)


# --- The upstream simulator -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def upstream_server():
    with UpstreamSimulator() as sim:
        yield sim


@pytest.fixture
def upstream(upstream_server):
    upstream_server.reset()
    yield upstream_server
    upstream_server.reset()


@pytest.fixture
def sim_provider(upstream):
    """An enabled provider pointing at the simulator."""
    from conversations.models import Provider

    provider = Provider(name="Simulator", kind=Provider.Kind.OPENAI_COMPATIBLE, base_url=upstream.base_url)
    provider.api_key = "sk-sim-test-0000"
    provider.save()
    return provider


@pytest.fixture
def sim_model(sim_provider):
    """gpt-4o on the simulator: vision, priced like OpenAI's."""
    from conversations.models import ChatModel

    return ChatModel.objects.create(
        provider=sim_provider,
        model_id="gpt-4o",
        canonical_id="gpt-4o",
        display_name="GPT-4o",
        supports_images=True,
        context_window=128_000,
        max_output_tokens=16_384,
        input_price=Decimal("2.50"),
        cached_input_price=Decimal("1.25"),
        output_price=Decimal("10.00"),
    )


@pytest.fixture
def gpt4(sim_provider):
    """A text-only model on the simulator, priced like OpenAI's gpt-4."""
    from conversations.models import ChatModel

    return ChatModel.objects.create(
        provider=sim_provider,
        model_id="gpt-4",
        canonical_id="gpt-4",
        display_name="GPT-4",
        supports_images=False,
        context_window=8192,
        max_output_tokens=4096,
        input_price=Decimal("30"),
        output_price=Decimal("60"),
    )


# --- A live daphne --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def live_server_daphne(django_db_setup, tmp_path_factory):
    server = DaphneServer(tmp_path_factory.mktemp("daphne"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def crashable_daphne(django_db_setup, tmp_path):
    """A daphne of its own for one test, to kill (`kill()`, a crash) and start again, with short heartbeat,
    checkpoint and sweep intervals so an answer it was writing is found interrupted within seconds."""
    server = DaphneServer(
        tmp_path,
        {"CHAT_STALE_AFTER": "1.5", "CHAT_CHECKPOINT_INTERVAL": "0.2", "CHAT_SWEEP_INTERVAL": "0.5"},
    )
    server.start()
    yield server
    server.stop()


def session_cookie_for(client, user) -> str:
    """Log `user` in through Django's test client and return the session id a browser would hold."""
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


# --- Chromium through pytest-playwright ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(autouse=True)
def browser_orm(request):
    """Browser tests may use the ORM (seeding, assertions, pytest-django's flush) although Playwright's event
    loop runs in this thread. Autouse, so it is set before `page`; it stays set for the rest of the session
    because pytest-django flushes the database after this fixture's teardown, and browser tests run last.
    """
    if request.node.get_closest_marker("browser") is not None:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
