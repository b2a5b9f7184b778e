"""Fixtures every test module shares: named people, the upstream simulator, a live daphne, Chromium.

- alice owns things; charlie must never see alice's things; admin is a superuser.
- `upstream` is the project's OpenAI-compatible simulator on 127.0.0.1 (reset for each test).
- `live_server_daphne` is a real daphne subprocess reading the same database as the tests. Tests that use it
  must be `@pytest.mark.django_db(transaction=True)` so what they create is committed and visible to it.
  Transactional tests empty every table afterwards, the seeded model catalog included: tests create the
  providers and models they need (see `sim_model`).
- Browser tests are marked `browser` and run last: Playwright's sync API keeps an event loop running in the
  main thread, which would break every later async test.
"""

from __future__ import annotations

import os
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test.utils import override_settings

from conversations import crypto
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


def pytest_collection_modifyitems(config, items):
    # Browser tests last (see the module docstring); stable order otherwise.
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture(scope="session", autouse=True)
def _test_environment(tmp_path_factory):
    """Fast password hashing; media and static files in temporary folders (static collected once)."""
    with override_settings(
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        MEDIA_ROOT=str(tmp_path_factory.mktemp("media")),
        STATIC_ROOT=str(tmp_path_factory.mktemp("static")),
    ):
        crypto.reset_cache()
        call_command("collectstatic", interactive=False, verbosity=0)
        yield
    crypto.reset_cache()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    # A file, not SQLite's in-memory default, so a daphne subprocess can open the same test database.
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
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
        is_default=True,
    )


# --- A live daphne --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def live_server_daphne(django_db_setup, tmp_path_factory):
    server = DaphneServer(tmp_path_factory.mktemp("daphne"))
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


@pytest.fixture
def browser_orm():
    """Browser tests may seed data with the ORM although Playwright's loop runs in this thread."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
