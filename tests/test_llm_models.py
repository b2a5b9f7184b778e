"""Model listings (OpenAI, OpenRouter, AI/ML API) fetched from the simulator, and the fallback candidates query."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from conversations.llm import aclose_shared_client
from conversations.llm.errors import EndpointNotFound
from conversations.llm.models_sync import (
    ListedModel,
    alist_models,
    list_models,
    models_url,
    parse_models,
    per_million,
)
from conversations.llm.routes import Route
from conversations.models import ChatModel, Provider
from conversations.services.routes import candidates_for, route_for_provider


def provider(kind: str, base_url: str, key: str = "sk-test") -> Provider:
    p = Provider(name=f"{kind} provider", kind=kind, base_url=base_url)
    p.api_key = key
    return p


def route(kind: str, base_url: str) -> Route:
    return route_for_provider(provider(kind, base_url), "")


def by_id(models: list[ListedModel]) -> dict[str, ListedModel]:
    return {m.model_id: m for m in models}


def test_it_lists_openai_chat_models_and_fills_in_known_facts(upstream):
    models = by_id(list_models(route(Provider.Kind.OPENAI, upstream.base_url)))
    assert "gpt-4o" in models and "chatgpt-4o-latest" in models
    assert not {"text-embedding-3-small", "dall-e-3", "whisper-1"} & models.keys()
    assert models["gpt-4o"] == ListedModel(
        "gpt-4o", "gpt-4o", 128_000, 16_384, True, Decimal("2.50"), Decimal("1.25"), Decimal("10.00")
    )
    assert models["gpt-4"].supports_images is False
    [sent] = upstream.requests
    assert sent.path == "/v1/models" and sent.headers["authorization"] == "Bearer sk-test"


def test_it_lists_openrouter_models_with_prices_per_million(upstream):
    models = by_id(list_models(route(Provider.Kind.OPENROUTER, upstream.openrouter_base_url)))
    gpt4o = models["openai/gpt-4o"]
    assert gpt4o.display_name == "OpenAI: GPT-4o"
    assert gpt4o.context_window == 128_000 and gpt4o.max_output_tokens == 16_384
    assert gpt4o.supports_images is True
    assert gpt4o.input_price == Decimal("2.5000") and gpt4o.output_price == Decimal("10.0000")
    assert models["openai/gpt-4"].supports_images is False
    assert models["meta-llama/llama-3.1-8b-instruct"].input_price == Decimal("0.0200")


def test_it_lists_aimlapi_chat_models_from_a_bare_array(upstream):
    aimlapi = route(Provider.Kind.AIMLAPI, "https://api.aimlapi.com/v1")
    assert models_url(aimlapi) == "https://api.aimlapi.com/models"
    models = by_id(list_models(aimlapi, url=upstream.aimlapi_models_url))
    assert set(models) == {"gpt-4o", "gpt-4o-mini", "gpt-4"}  # dall-e-3 is not a chat model
    assert models["gpt-4o"].supports_images and not models["gpt-4"].supports_images
    assert models["gpt-4"].context_window == 8192 and models["gpt-4"].max_output_tokens == 8192


async def test_it_lists_models_from_async_code_too(upstream):
    try:
        models = await alist_models(route(Provider.Kind.OPENAI, upstream.base_url))
    finally:
        await aclose_shared_client()
    assert "gpt-4o" in by_id(models)


def test_a_wrong_base_url_is_a_clear_error(upstream):
    with pytest.raises(EndpointNotFound):
        list_models(route(Provider.Kind.OPENAI, upstream.origin + "/nope"))


def test_openrouter_prices_become_per_million_decimals():
    assert per_million("0.0000025") == Decimal("2.5000")
    assert per_million("0.00000015") == Decimal("0.1500")
    assert per_million("-1") is None  # "varies" (openrouter/auto)
    assert per_million("n/a") is None and per_million(None) is None


def test_the_payload_shape_picks_the_parser():
    assert (
        parse_models([{"id": "x", "type": "chat-completion", "info": {"contextLength": 10}}])[
            0
        ].context_window
        == 10
    )
    assert parse_models({"data": [{"id": "y", "context_length": 5, "pricing": {}}]})[0].context_window == 5
    assert parse_models({"data": [{"id": "llama3", "object": "model"}]}, "openai_compatible") == [
        ListedModel("llama3", "llama3")
    ]


# --- candidates_for (needs the database) --------------------------------------------------------------------


@pytest.mark.django_db
def test_candidates_are_the_picked_model_then_its_twins_by_priority_and_retired_last():
    def make(name: str, priority: int, enabled: bool = True) -> Provider:
        p = Provider(
            name=name, kind=Provider.Kind.OPENAI_COMPATIBLE, base_url="http://x/v1", priority=priority
        )
        p.api_key = f"sk-{name}"
        p.enabled = enabled
        p.save()
        return p

    a, b, c, off = make("A", 50), make("B", 10), make("C", 20), make("Off", 1, enabled=False)
    picked = ChatModel.objects.create(provider=a, model_id="m-a", canonical_id="twin-test", display_name="M")
    ChatModel.objects.create(provider=b, model_id="m-b", canonical_id="twin-test", display_name="M")
    ChatModel.objects.create(
        provider=c, model_id="m-c", canonical_id="twin-test", display_name="M", retired_on=dt.date(2020, 1, 1)
    )
    ChatModel.objects.create(provider=off, model_id="m-off", canonical_id="twin-test", display_name="M")
    ChatModel.objects.create(
        provider=b, model_id="m-b2", canonical_id="twin-test", display_name="M", enabled=False
    )
    ChatModel.objects.create(provider=b, model_id="other", canonical_id="other-model", display_name="O")

    routes = candidates_for(picked)
    assert [(r.provider_name, r.model_id) for r in routes] == [("A", "m-a"), ("B", "m-b"), ("C", "m-c")]
    assert routes[1].api_key == "sk-B" and routes[1].chat_model_id is not None
