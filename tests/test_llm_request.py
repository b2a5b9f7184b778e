"""Request building per provider kind, proven both on plain dataclasses and by what the simulator received."""

from __future__ import annotations

import hashlib
import hmac
import logging

import pytest

from conversations.llm import (
    ChatMessage,
    ChatParams,
    ChatRequest,
    ClientConfig,
    ImagePart,
    Route,
    aclose_shared_client,
    open_stream,
)
from conversations.llm.request import build_body, build_headers, user_hash
from conversations.models import Provider
from conversations.services.routes import route_for_provider
from conversations.testing.upstream import Reply

SECRET = "test-secret"
CONFIG = ClientConfig(
    first_token_timeout=2.0,
    total_timeout=5.0,
    backoff_initial=0.01,
    site_url="https://chat.example.org",
    site_name="Chatsite tests",
    user_secret=SECRET,
)
PARAMS = ChatParams(
    temperature=0.3,
    top_p=0.9,
    presence_penalty=0.5,
    frequency_penalty=-0.5,
    max_output_tokens=300,
    seed=7,
    stop=("END",),
    json_mode=True,
)
REQUEST = ChatRequest(
    [
        ChatMessage("system", "Answer in JSON."),
        ChatMessage("user", "What is in this picture?", (ImagePart("data:image/png;base64,iVBOR", "low"),)),
    ],
    PARAMS,
    user_id="alice-id-17",
)


@pytest.fixture(autouse=True)
async def _close_pool():
    yield
    await aclose_shared_client()


def provider(kind: str, base_url: str, key: str = "sk-test", **fields) -> Provider:
    p = Provider(name=f"{kind} provider", kind=kind, base_url=base_url, **fields)
    p.api_key = key
    return p


async def send(route: Route, request: ChatRequest = REQUEST) -> None:
    async with open_stream(request, [route], CONFIG) as stream:
        async for _ in stream:
            pass


# --- Over HTTP: what each kind really sends ---------------------------------------------------------------------


async def test_openai_gets_max_completion_tokens_org_project_store_false_and_include_usage(upstream):
    p = provider(Provider.Kind.OPENAI, upstream.base_url, organization="org-123", project="proj_456")
    p.extra_headers = {"X-Custom": "yes"}
    await send(route_for_provider(p, "gpt-4o"))
    [sent] = upstream.chat_requests
    body, headers = sent.json, sent.headers
    assert sent.path == "/v1/chat/completions"
    assert body["model"] == "gpt-4o"
    assert body["max_completion_tokens"] == 300 and "max_tokens" not in body
    assert body["store"] is False
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9
    assert body["presence_penalty"] == 0.5 and body["frequency_penalty"] == -0.5
    assert body["seed"] == 7 and body["stop"] == ["END"]
    assert body["response_format"] == {"type": "json_object"}
    assert headers["authorization"] == "Bearer sk-test"
    assert headers["openai-organization"] == "org-123" and headers["openai-project"] == "proj_456"
    assert headers["x-custom"] == "yes"
    assert "http-referer" not in headers and "x-title" not in headers


async def test_openrouter_gets_attribution_headers_and_max_tokens(upstream):
    p = provider(Provider.Kind.OPENROUTER, upstream.openrouter_base_url, organization="ignored")
    await send(route_for_provider(p, "openai/gpt-4o"))
    [sent] = upstream.chat_requests
    assert sent.path == "/api/v1/chat/completions"
    assert sent.headers["http-referer"] == "https://chat.example.org"
    assert sent.headers["x-title"] == "Chatsite tests"
    assert sent.json["max_tokens"] == 300 and "max_completion_tokens" not in sent.json
    assert "store" not in sent.json
    assert sent.json["stream_options"] == {"include_usage": True}
    assert "openai-organization" not in sent.headers


async def test_a_local_server_without_a_key_gets_no_authorization_and_max_tokens(upstream):
    p = provider(Provider.Kind.OPENAI_COMPATIBLE, upstream.base_url, key="")
    await send(route_for_provider(p, "llama3.1:8b"))
    [sent] = upstream.chat_requests
    assert "authorization" not in sent.headers
    assert sent.json["max_tokens"] == 300
    assert "store" not in sent.json and "max_completion_tokens" not in sent.json
    assert sent.json["stream_options"] == {"include_usage": True}  # vLLM only reports usage when asked


async def test_aimlapi_gets_max_tokens_and_include_usage(upstream):
    await send(route_for_provider(provider(Provider.Kind.AIMLAPI, upstream.base_url), "gpt-4o"))
    [sent] = upstream.chat_requests
    assert sent.json["max_tokens"] == 300 and sent.json["stream_options"] == {"include_usage": True}
    assert "store" not in sent.json


async def test_the_user_field_is_a_keyed_hash_not_the_user_id(upstream):
    await send(route_for_provider(provider(Provider.Kind.OPENAI, upstream.base_url), "gpt-4o"))
    [sent] = upstream.chat_requests
    expected = hmac.new(SECRET.encode(), b"chatsite-user:alice-id-17", hashlib.sha256).hexdigest()
    assert sent.json["user"] == expected
    assert "alice" not in sent.body.decode()


async def test_images_are_sent_as_image_url_objects(upstream):
    await send(route_for_provider(provider(Provider.Kind.OPENAI, upstream.base_url), "gpt-4o"))
    [sent] = upstream.chat_requests
    system, user = sent.json["messages"]
    assert system == {"role": "system", "content": "Answer in JSON."}
    assert user["content"] == [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR", "detail": "low"}},
    ]


async def test_the_key_never_reaches_the_logs(upstream, caplog):
    upstream.enqueue(
        Reply(status=401, raw_body='{"error": {"message": "bad key", "code": "invalid_api_key"}}')
    )
    caplog.set_level(logging.DEBUG)
    p = provider(Provider.Kind.OPENAI, upstream.base_url, key="sk-very-secret-key")
    with pytest.raises(Exception, match="InvalidAPIKey"):
        await send(route_for_provider(p, "gpt-4o"))
    assert "sk-very-secret-key" not in caplog.text


# --- Plain dataclasses ----------------------------------------------------------------------------------------


def route(kind: str, **fields) -> Route:
    return Route(provider_name="P", kind=kind, base_url="http://x/v1", model_id="m", **fields)


def test_max_output_is_clamped_to_what_the_model_allows():
    body = build_body(
        ChatRequest([], ChatParams(max_output_tokens=100_000)), route("openai", max_output_tokens=16_384)
    )
    assert body["max_completion_tokens"] == 16_384


def test_unset_parameters_are_left_out():
    body = build_body(ChatRequest([ChatMessage("user", "hi")]), route("openai_compatible"))
    assert body == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_an_unknown_kind_is_treated_as_openai_compatible():
    assert "max_tokens" in build_body(
        ChatRequest([], ChatParams(max_output_tokens=5)), route("something-new")
    )


def test_extra_headers_override_defaults():
    headers = build_headers(route("openai", api_key="k", extra_headers={"Authorization": "Token custom"}))
    assert headers["Authorization"] == "Token custom"


def test_params_from_a_conversation_are_validated_and_clamped():
    params = ChatParams.from_dict(
        {"temperature": 9, "top_p": "high", "max_tokens": 500, "seed": True, "stop": "###", "json_mode": True}
    )
    assert params == ChatParams(temperature=2.0, max_output_tokens=500, stop=("###",), json_mode=True)
    assert ChatParams.from_dict(None) == ChatParams()


def test_the_user_hash_is_stable_and_depends_on_the_secret():
    assert user_hash(5, "a") == user_hash("5", "a")
    assert user_hash(5, "a") != user_hash(5, "b")
    assert len(user_hash(5, "a")) == 64


def test_no_user_field_without_a_user():
    assert "user" not in build_body(ChatRequest([ChatMessage("user", "x")]), route("openai"), user_secret="s")
