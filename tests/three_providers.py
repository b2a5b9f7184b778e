"""A site set up as the README says, with the three seed providers from the environment, all played by the
simulator: OpenAI at /v1, OpenRouter at /api/v1 (attribution headers, error chunks), AI/ML API at /aimlapi/v1
(its bare-array model list one level up). Bootstrap, then Test connection and Sync models on each.
Import the fixtures into a test module: `from tests.three_providers import seed_env, three_providers`."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import call_command
from django.db import connections

from conversations.models import Provider
from conversations.services import model_choices, providers

OPENAI, OPENROUTER, AIMLAPI = "OpenAI", "OpenRouter", "AI/ML API"
PATHS = {
    OPENAI: "/v1/chat/completions",
    OPENROUTER: "/api/v1/chat/completions",
    AIMLAPI: "/aimlapi/v1/chat/completions",
}


@pytest.fixture
def seed_env(upstream, monkeypatch):
    """The environment of `OPENAI_API_KEY=... OPENROUTER_API_KEY=... AIMLAPI_API_KEY=... ./scripts/run`,
    pointed at the simulator."""
    env = {
        "OPENAI_API_KEY": "sk-openai-test-1111",
        "OPENAI_BASE_URL": upstream.base_url,
        "OPENROUTER_API_KEY": "sk-or-test-2222",
        "OPENROUTER_BASE_URL": upstream.openrouter_base_url,
        "AIMLAPI_API_KEY": "aiml-test-3333",
        "AIMLAPI_BASE_URL": upstream.aimlapi_base_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def bootstrap() -> str:
    """`manage.py bootstrap`, as ./scripts/run runs it on every start; what it printed."""
    out = io.StringIO()
    call_command("bootstrap", stdout=out)
    return out.getvalue()


@pytest.fixture
def three_providers(seed_env, upstream):
    bootstrap()
    # OPENAI_BASE_URL at the simulator makes it a generic server; the site in the issue spoke to OpenAI itself.
    Provider.objects.filter(name=OPENAI).update(kind=Provider.Kind.OPENAI)
    model_choices.catalogue_changed()  # update() sends no signal
    for provider in Provider.objects.order_by("priority"):
        report = _in_a_thread(providers.test_connection, provider)
        assert report.ok, (provider.name, report.message)
        providers.sync_models(provider)
    upstream.reset()
    return {p.name: p for p in Provider.objects.all()}


def _in_a_thread(function, *args):
    """Test connection runs its one-token call with async_to_sync, which refuses the thread where Playwright's
    event loop runs (browser tests): run it in a thread of its own, as the admin's request thread would."""

    def call():
        try:
            return function(*args)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


def switch_off(name: str) -> None:
    Provider.objects.filter(name=name).update(enabled=False)
    model_choices.catalogue_changed()  # update() sends no signal
