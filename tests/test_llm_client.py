"""The streaming client over real HTTP against the upstream simulator: faults, retries, fallback, watchdogs,
cancellation. Routes come from unsaved Provider/ChatModel instances, so no test here touches the database."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import gc
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
import time

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conversations.llm import (
    ChatMessage,
    ChatRequest,
    ClientConfig,
    Finish,
    ImagePart,
    ReasoningDelta,
    RefusalDelta,
    Route,
    Started,
    TextDelta,
    Usage,
    aclose_shared_client,
    complete,
    open_stream,
)
from conversations.llm.client import shared_client
from conversations.llm.errors import (
    ContextTooLong,
    FirstTokenTimeout,
    ImagesNotSupported,
    InvalidAPIKey,
    MidStreamError,
    ModelNotFound,
    NetworkError,
    NoRouteAvailable,
    ProviderMisconfigured,
    ProviderRateLimited,
    QuotaExceeded,
    RequestTooLarge,
    StallTimeout,
    TotalTimeout,
    UpstreamError,
    UpstreamTruncated,
)
from conversations.llm.sse import SSEProtocolError
from conversations.llm.transport import AsyncioStream, AsyncioTransport, httpx_error_class
from conversations.models import ChatModel, Provider
from conversations.services.routes import route_for_model, route_for_provider
from conversations.testing.upstream import Fault, Reply

CONFIG = ClientConfig(
    connect_timeout=1.0,
    first_token_timeout=2.0,
    stall_timeout=1.0,
    total_timeout=10.0,
    max_retries=2,
    retry_max_delay=2.0,
    backoff_initial=0.01,
    backoff_cap=0.05,
    usage_grace=0.5,
    site_url="https://chat.example.org",
    site_name="Chatsite tests",
    user_secret="test-secret",
)
HELLO = ChatRequest([ChatMessage("system", "Be brief."), ChatMessage("user", "Hello?")], user_id=42)


@pytest.fixture(autouse=True)
async def _close_pool():
    yield
    await aclose_shared_client()


def make_route(
    upstream, name: str = "Primary", key: str = "sk-primary", model: str = "gpt-4o", **kw
) -> Route:
    provider = Provider(name=name, kind=Provider.Kind.OPENAI, base_url=upstream.base_url)
    provider.api_key = key
    return route_for_provider(provider, model, **kw)


def config(**changes) -> ClientConfig:
    return dataclasses.replace(CONFIG, **changes)


async def collect(routes, request=HELLO, cfg=CONFIG):
    """(events, stream, error) for one call; error is None when the stream ended normally."""
    events = []
    stream = open_stream(request, routes, cfg)
    try:
        async with stream:
            async for event in stream:
                events.append(event)
    except Exception as exc:
        return events, stream, exc
    return events, stream, None


def text_of(events) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def disconnect_after(upstream, since: float, timeout: float = 0.5):
    """The first disconnect recorded at or after `since` (skips any left over from an earlier test)."""
    deadline = time.monotonic() + timeout
    while True:
        found = await upstream.await_disconnect(max(0.01, deadline - time.monotonic()))
        if found.at >= since:
            return found


# --- Streaming ---------------------------------------------------------------------------------------------


async def test_it_streams_text_then_finish_then_usage(upstream):
    upstream.enqueue(Reply(text="Hi there, friend.", prompt_tokens=12, cached_tokens=4))
    events, stream, error = await collect([make_route(upstream)])
    assert error is None
    assert isinstance(events[0], Started)
    assert events[0].provider_name == "Primary" and events[0].attempt == 1
    assert events[0].request_id and events[0].request_id.startswith("req_")
    assert "sk-primary" not in repr(dataclasses.asdict(events[0]))  # safe to serialise to the browser
    assert text_of(events) == "Hi there, friend."
    assert events[-2:] == [Finish("stop"), Usage(12, 3, 4, 0)]
    assert stream.route.provider_name == "Primary"
    assert stream.result.complete and stream.result.usage == Usage(12, 3, 4, 0)
    assert stream.result.ttft is not None and stream.result.duration >= stream.result.ttft


async def test_it_survives_crlf_keepalive_comments_and_one_byte_writes(upstream):
    text = "Grüße, 世界! 🙂 Done."
    upstream.enqueue(Reply(text=text, crlf=True, keepalive=True, split_writes=True, split_sizes=(1, 2, 3)))
    events, stream, error = await collect([make_route(upstream)])
    assert error is None
    assert text_of(events) == text
    assert stream.result.complete


async def test_it_streams_reasoning_and_refusals_as_their_own_events(upstream):
    upstream.enqueue(
        Reply(text="42", reasoning="Let me think.", reasoning_field="reasoning_content"),
        Reply(refusal="I can't help with that."),
    )
    events, _, _ = await collect([make_route(upstream)])
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "Let me think."
    assert text_of(events) == "42"
    events, _, _ = await collect([make_route(upstream)])
    assert "".join(e.text for e in events if isinstance(e, RefusalDelta)) == "I can't help with that."
    assert text_of(events) == ""


async def test_a_stream_with_a_finish_chunk_but_no_done_is_complete(upstream):
    upstream.enqueue(Reply(text="All here.", fault=Fault.NO_DONE))
    events, stream, error = await collect([make_route(upstream)])
    assert error is None
    assert text_of(events) == "All here." and stream.result.complete
    assert isinstance(events[-1], Usage)


async def test_done_without_a_finish_reason_counts_as_stop(upstream):
    raw = ['data: {"choices":[{"delta":{"content":"ok"}}]}\n\n', "data:\n\n", "data: [DONE]\n\n"]
    upstream.enqueue(Reply(raw_sse=raw))
    events, _stream, error = await collect([make_route(upstream)])
    assert error is None
    assert events[1:] == [TextDelta("ok"), Finish("stop")]


async def test_a_server_that_ignores_stream_true_still_works(upstream):
    body = {
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Whole."}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1},
    }
    upstream.enqueue(Reply(raw_body=json.dumps(body), content_type="application/json"))
    events, _, error = await collect([make_route(upstream)])
    assert error is None
    assert events[1:] == [TextDelta("Whole."), Finish("stop"), Usage(5, 1)]


async def test_complete_returns_the_whole_answer(upstream):
    upstream.enqueue(Reply(text="A short title"))
    result = await complete(HELLO, [make_route(upstream)], CONFIG)
    assert result.text == "A short title"
    assert result.result.finish_reason == "stop"


async def test_consecutive_streams_reuse_one_pooled_connection(upstream):
    route = make_route(upstream)
    await collect([route])
    await collect([route])
    first, second = upstream.chat_requests
    assert first.client == second.client
    assert shared_client() is shared_client()


async def test_the_shared_client_keeps_no_cookie_a_provider_sets(upstream):
    """One client serves every user: a cookie from one answer's response (Cloudflare's __cf_bm on
    api.openai.com, a load balancer's affinity cookie) must not ride along on the next person's request."""
    route = make_route(upstream)
    upstream.enqueue(
        Reply(text="First.", headers={"Set-Cookie": "__cf_bm=abc123; path=/; HttpOnly"}),
        Reply(text="Second."),
    )
    await collect([route])
    events, _stream, error = await collect([route])
    assert error is None and text_of(events) == "Second."
    _first, second = upstream.chat_requests
    assert "cookie" not in second.headers
    assert not shared_client().cookies


# --- Faults map to typed errors ----------------------------------------------------------------------------


async def test_an_invalid_key_is_reported_and_not_retried(upstream):
    upstream.enqueue(Reply(fault=Fault.INVALID_KEY))
    _, stream, error = await collect([make_route(upstream)])
    assert isinstance(error, InvalidAPIKey)
    assert 'provider "Primary" rejected the API key' in error.user_message
    assert "sk-primary" not in str(error) + error.user_message
    assert error.request_id
    assert len(upstream.chat_requests) == 1
    assert stream.result.errors == [error]


async def test_a_retired_model_says_so_and_suggests_gpt_4o(upstream):
    upstream.enqueue(Reply(fault=Fault.MODEL_NOT_FOUND))
    _, _, error = await collect([make_route(upstream, model="gpt-4")])
    assert isinstance(error, ModelNotFound)
    assert "OpenAI retired it from its API on 2026-10-23" in error.user_message
    assert "gpt-4o" in error.user_message


async def test_insufficient_quota_is_never_retried(upstream):
    upstream.default = Reply(fault=Fault.INSUFFICIENT_QUOTA, retry_after_ms=10)
    _, _, error = await collect([make_route(upstream)])
    assert isinstance(error, QuotaExceeded)
    assert "out of credits" in error.user_message
    assert len(upstream.chat_requests) == 1


async def test_it_retries_503_then_succeeds(upstream):
    upstream.enqueue(Reply(fault=Fault.SERVER_ERROR, status=503), Reply(text="Recovered."))
    events, stream, error = await collect([make_route(upstream)])
    assert error is None
    assert text_of(events) == "Recovered."
    assert events[0].attempt == 2
    assert len(upstream.chat_requests) == 2
    assert [type(e) for e in stream.result.errors] == [UpstreamError]


async def test_it_gives_up_after_the_configured_number_of_retries(upstream):
    upstream.default = Reply(fault=Fault.SERVER_ERROR, status=503)
    _, _, error = await collect([make_route(upstream)])
    assert isinstance(error, UpstreamError) and error.status == 503
    assert "server error (HTTP 503)" in error.user_message
    assert len(upstream.chat_requests) == 1 + CONFIG.max_retries


async def test_x_should_retry_false_stops_retries(upstream):
    upstream.default = Reply(fault=Fault.SERVER_ERROR, status=503, headers={"x-should-retry": "false"})
    _, _, error = await collect([make_route(upstream)])
    assert isinstance(error, UpstreamError)
    assert len(upstream.chat_requests) == 1


async def test_rate_limits_are_retried_then_reported(upstream):
    upstream.default = Reply(fault=Fault.RATE_LIMIT)
    _, _, error = await collect([make_route(upstream)])
    assert isinstance(error, ProviderRateLimited)
    assert len(upstream.chat_requests) == 3


async def test_backoff_honours_retry_after_ms(upstream):
    upstream.enqueue(Reply(fault=Fault.RATE_LIMIT, retry_after_ms=300), Reply(text="ok"))
    started = time.monotonic()
    events, _, error = await collect([make_route(upstream)])
    first, second = upstream.chat_requests
    assert error is None and text_of(events) == "ok"
    assert second.at - first.at >= 0.28
    assert time.monotonic() - started < 1.5


async def test_backoff_honours_retry_after_seconds(upstream):
    upstream.enqueue(Reply(fault=Fault.RATE_LIMIT, retry_after="0.4"), Reply(text="ok"))
    _, _, error = await collect([make_route(upstream)])
    first, second = upstream.chat_requests
    assert error is None
    assert second.at - first.at >= 0.38


async def test_a_retry_after_longer_than_the_maximum_is_not_waited_for(upstream):
    upstream.default = Reply(fault=Fault.RATE_LIMIT, retry_after=3600)
    started = time.monotonic()
    _, _, error = await collect([make_route(upstream)])
    assert isinstance(error, ProviderRateLimited)
    assert "Wait about 3600 seconds" in error.user_message
    assert len(upstream.chat_requests) == 1
    assert time.monotonic() - started < 1


async def test_a_cloudflare_html_413_is_request_too_large(upstream):
    upstream.enqueue(Reply(fault=Fault.HTML_413))
    _, _, error = await collect([make_route(upstream), make_route(upstream, "Backup", "sk-backup")])
    assert isinstance(error, RequestTooLarge)
    assert error.detail == "413 Request Entity Too Large"
    assert len(upstream.chat_requests) == 1  # no fallback: the request itself is the problem


async def test_context_too_long_does_not_fall_back(upstream):
    upstream.enqueue(Reply(fault=Fault.CONTEXT_TOO_LONG))
    _, _, error = await collect([make_route(upstream), make_route(upstream, "Backup", "sk-backup")])
    assert isinstance(error, ContextTooLong)
    assert "too long for gpt-4o" in error.user_message
    assert len(upstream.chat_requests) == 1


async def test_images_sent_to_a_text_only_model_are_reported(upstream):
    request = ChatRequest([ChatMessage("user", "What is this?", (ImagePart("data:image/png;base64,iVBOR"),))])
    _, _, error = await collect([make_route(upstream, model="gpt-4")], request)
    assert isinstance(error, ImagesNotSupported)
    assert "gpt-4 can't read images" in error.user_message


async def test_routes_that_cannot_read_images_are_skipped_without_a_request(upstream):
    request = ChatRequest([ChatMessage("user", "What is this?", (ImagePart("https://example.org/cat.png"),))])
    blind = make_route(upstream, "Blind", supports_images=False)
    _, _, error = await collect([blind], request)
    assert isinstance(error, ImagesNotSupported)
    assert upstream.chat_requests == []
    upstream.enqueue(Reply(text="A cat."))
    _events, stream, error = await collect([blind, make_route(upstream, "Sighted")], request)
    assert error is None and stream.route.provider_name == "Sighted"
    assert len(upstream.chat_requests) == 1


async def test_an_openai_error_mid_stream_is_raised_and_not_retried(upstream):
    upstream.enqueue(Reply(text="one two three four", fault=Fault.MIDSTREAM_ERROR_OPENAI, fault_after=2))
    events, stream, error = await collect([make_route(upstream)])
    assert isinstance(error, MidStreamError)
    assert error.provider_name == "Primary" and error.request_id
    assert text_of(events) == "one two"
    assert len(upstream.chat_requests) == 1
    assert not stream.result.complete


async def test_an_openrouter_error_mid_stream_is_raised(upstream):
    upstream.enqueue(Reply(text="one two", fault=Fault.MIDSTREAM_ERROR_OPENROUTER, fault_after=1))
    events, _, error = await collect([make_route(upstream)])
    assert isinstance(error, MidStreamError)
    assert error.status == 502 and "Provider returned error" in error.user_message
    assert text_of(events) == "one"


async def test_an_error_event_before_the_first_token_is_retried(upstream):
    upstream.enqueue(Reply(fault=Fault.MIDSTREAM_ERROR_OPENAI, fault_after=0), Reply(text="second time"))
    events, _, error = await collect([make_route(upstream)])
    assert error is None and text_of(events) == "second time"
    assert len(upstream.chat_requests) == 2


async def test_nothing_is_retried_after_the_first_token(upstream):
    upstream.enqueue(Reply(text="one two three four five", fault=Fault.DROP, fault_after=3))
    upstream.default = Reply(text="must not be asked for")
    events, stream, error = await collect([make_route(upstream), make_route(upstream, "Backup", "sk-backup")])
    assert isinstance(error, UpstreamTruncated)
    assert "ended before the answer was complete" in error.user_message
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["one", " two", " three"]
    assert stream.result.truncated and not stream.result.complete
    assert len(upstream.chat_requests) == 1


async def test_a_drop_before_the_first_token_is_retried(upstream):
    upstream.enqueue(Reply(fault=Fault.DROP, fault_after=0), Reply(text="fine"))
    events, _, error = await collect([make_route(upstream)])
    assert error is None and text_of(events) == "fine"
    assert len(upstream.chat_requests) == 2


async def test_a_stream_cut_without_finish_or_done_is_truncated(upstream):
    upstream.enqueue(Reply(raw_sse=['data: {"choices":[{"delta":{"content":"half"}}]}\n\n']))
    events, stream, error = await collect([make_route(upstream)])
    assert isinstance(error, UpstreamTruncated)
    assert text_of(events) == "half" and stream.result.truncated


async def test_a_web_page_instead_of_an_event_stream_points_at_the_base_url(upstream):
    upstream.enqueue(Reply(raw_body="<html><body>Sign in</body></html>", content_type="text/html"))
    _, _, error = await collect([make_route(upstream)])
    assert isinstance(error, SSEProtocolError)
    assert "base URL" in error.user_message
    assert len(upstream.chat_requests) == 1


async def test_a_refused_connection_is_a_network_error(upstream):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    route = dataclasses.replace(make_route(upstream), base_url=f"http://127.0.0.1:{port}/v1")
    _, stream, error = await collect([route])
    assert isinstance(error, NetworkError)
    assert 'Couldn\'t reach the provider "Primary"' in error.user_message
    assert stream.result.attempts == 1 + CONFIG.max_retries


# --- Fallback ----------------------------------------------------------------------------------------------


async def test_fallback_moves_to_the_next_provider_and_records_it(upstream):
    primary = make_route(upstream, "Primary", "sk-primary")
    backup = make_route(upstream, "Backup", "sk-backup")
    upstream.enqueue(*[Reply(fault=Fault.SERVER_ERROR, status=503)] * 3, Reply(text="From the backup."))
    events, stream, error = await collect([primary, backup])
    assert error is None
    assert text_of(events) == "From the backup."
    started = events[0]
    assert started.provider_name == "Backup" and started.attempt == 4
    assert stream.route is backup
    requests = upstream.chat_requests
    assert [r.headers["authorization"] for r in requests] == ["Bearer sk-primary"] * 3 + ["Bearer sk-backup"]
    assert [type(e) for e in stream.result.errors] == [UpstreamError] * 3


@pytest.mark.parametrize("fault", [Fault.INVALID_KEY, Fault.INSUFFICIENT_QUOTA, Fault.MODEL_NOT_FOUND])
async def test_a_dead_key_or_empty_account_falls_back_at_once(upstream, fault):
    upstream.enqueue(Reply(fault=fault), Reply(text="Backup here."))
    _events, stream, error = await collect(
        [make_route(upstream), make_route(upstream, "Backup", "sk-backup")]
    )
    assert error is None and stream.route.provider_name == "Backup"
    assert len(upstream.chat_requests) == 2


async def test_when_every_route_fails_the_last_error_is_raised(upstream):
    upstream.enqueue(Reply(fault=Fault.INVALID_KEY), Reply(fault=Fault.INSUFFICIENT_QUOTA))
    _, stream, error = await collect([make_route(upstream), make_route(upstream, "Backup", "sk-backup")])
    assert isinstance(error, QuotaExceeded) and error.provider_name == "Backup"
    assert [type(e) for e in stream.result.errors] == [InvalidAPIKey, QuotaExceeded]


async def test_a_provider_whose_key_cannot_be_decrypted_is_skipped(upstream):
    broken = dataclasses.replace(make_route(upstream, "Broken"), key_unreadable=True)
    upstream.enqueue(Reply(text="ok"))
    _events, stream, error = await collect([broken, make_route(upstream, "Backup")])
    assert error is None and stream.route.provider_name == "Backup"
    assert isinstance(stream.result.errors[0], ProviderMisconfigured)
    assert len(upstream.chat_requests) == 1


async def test_no_routes_is_a_clear_error(upstream):
    _, _, error = await collect([])
    assert isinstance(error, NoRouteAvailable)
    assert "No enabled provider" in error.user_message


def test_routes_are_built_from_unsaved_models_without_queries(upstream):
    provider = Provider(
        name="OpenRouter", kind=Provider.Kind.OPENROUTER, base_url=upstream.openrouter_base_url
    )
    provider.api_key = "sk-or-test"
    model = ChatModel(
        provider=provider, model_id="openai/gpt-4o", canonical_id="gpt-4o", supports_images=True
    )
    route = route_for_model(model)  # pytest-django would fail this test on any query
    assert route.api_key == "sk-or-test" and route.model_id == "openai/gpt-4o"
    assert route.chat_url == f"{upstream.openrouter_base_url}/chat/completions"
    assert "sk-or-test" not in repr(route)


# --- Watchdogs -------------------------------------------------------------------------------------------


async def test_the_first_token_watchdog_fires(upstream):
    upstream.enqueue(Reply(ttft=5.0))
    started = time.monotonic()
    _, _, error = await collect([make_route(upstream)], cfg=config(first_token_timeout=0.3, max_retries=0))
    assert isinstance(error, FirstTokenTimeout)
    assert 0.28 <= time.monotonic() - started < 1.0
    assert "didn't start answering within 0.3 seconds" in error.user_message
    await disconnect_after(upstream, started)  # we hung up on it


async def test_keepalive_comments_do_not_hold_off_the_first_token_watchdog(upstream):
    upstream.enqueue(Reply(raw_sse=[": OPENROUTER PROCESSING\n\n"] * 40, token_delay=0.05))
    started = time.monotonic()
    _, _, error = await collect([make_route(upstream)], cfg=config(first_token_timeout=0.3, max_retries=0))
    assert isinstance(error, FirstTokenTimeout)
    assert time.monotonic() - started < 1.0


async def test_a_first_token_timeout_is_retried(upstream):
    upstream.enqueue(Reply(ttft=5.0), Reply(text="quick"))
    events, _, error = await collect(
        [make_route(upstream)], cfg=config(first_token_timeout=0.3, max_retries=1)
    )
    assert error is None and text_of(events) == "quick"
    assert len(upstream.chat_requests) == 2


async def test_the_stall_watchdog_fires_after_tokens(upstream):
    upstream.enqueue(Reply(text="a b c d", fault=Fault.STALL, fault_after=2, stall_seconds=5))
    started = time.monotonic()
    events, _stream, error = await collect([make_route(upstream)], cfg=config(stall_timeout=0.3))
    assert isinstance(error, StallTimeout)
    assert "stopped sending the answer for more than 0.3 seconds" in error.user_message
    assert text_of(events) == "a b"
    assert 0.28 <= time.monotonic() - started < 1.0
    assert len(upstream.chat_requests) == 1


async def test_the_total_watchdog_fires(upstream):
    upstream.enqueue(Reply(tokens=["x"] * 100, token_delay=0.05))
    started = time.monotonic()
    events, _, error = await collect([make_route(upstream)], cfg=config(total_timeout=0.4))
    assert isinstance(error, TotalTimeout)
    assert 0 < len(text_of(events)) < 100
    assert time.monotonic() - started < 1.0


async def test_tokens_that_keep_coming_hold_off_the_stall_watchdog(upstream):
    # The watchdog's one timer fires after stall_timeout, sees progress since, and re-arms: no timeout.
    upstream.enqueue(Reply(tokens=["x"] * 25, token_delay=0.04))
    events, stream, error = await collect([make_route(upstream)], cfg=config(stall_timeout=0.3))
    assert error is None and text_of(events) == "x" * 25
    assert stream.result.duration > 0.9


async def test_after_the_finish_chunk_it_waits_only_the_usage_grace(upstream):
    finish = 'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n'
    raw = ['data: {"choices":[{"delta":{"content":"ok"}}]}\n\n', finish] + [": ping\n\n"] * 40
    upstream.enqueue(Reply(raw_sse=raw, token_delay=0.05))
    started = time.monotonic()
    events, stream, error = await collect([make_route(upstream)], cfg=config(usage_grace=0.3))
    assert error is None and events[1:] == [TextDelta("ok"), Finish("stop")]
    assert stream.result.complete and stream.result.usage is None
    assert 0.3 <= time.monotonic() - started < 1.0


# --- Memory ----------------------------------------------------------------------------------------------


async def test_a_finished_stream_leaves_nothing_for_the_cycle_collector(upstream):
    """httpx's response and the stream wrapper AsyncClient gives it refer to each other: left as they are,
    every answer's response, request and headers wait for a cycle collection (client._let_go)."""
    upstream.enqueue(Reply(tokens=["tok "] * 20))
    upstream.enqueue(Reply(status=500))  # an error response takes the same way out
    route = make_route(upstream)
    await collect([route])  # the pool's connection and the client exist before we look
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        await collect([route])
        with contextlib.suppress(UpstreamError):
            await collect([route], cfg=config(max_retries=0))
        gc.collect()
        left = [
            o for o in gc.garbage if type(o).__module__.startswith(("httpx", "httpcore", "conversations"))
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == []


# --- Cancellation ------------------------------------------------------------------------------------------


async def test_leaving_the_stream_early_closes_the_upstream_connection(upstream):
    upstream.enqueue(Reply(tokens=["tok "] * 500, token_delay=0.01))
    async with open_stream(HELLO, [make_route(upstream)], CONFIG) as stream:
        async for event in stream:
            if isinstance(event, TextDelta) and event.text:
                break
        left = time.monotonic()
    disconnect = await disconnect_after(upstream, left)
    assert disconnect.at - left < 0.5
    assert disconnect.tokens_sent < 500


async def test_cancelling_the_consumer_task_closes_the_upstream_connection(upstream):
    upstream.enqueue(Reply(tokens=["tok "] * 500, token_delay=0.01))
    first_token = asyncio.Event()

    async def consume():
        async with open_stream(HELLO, [make_route(upstream)], CONFIG) as stream:
            async for event in stream:
                if isinstance(event, TextDelta):
                    first_token.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_token.wait(), 2)
    cancelled = time.monotonic()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    disconnect = await disconnect_after(upstream, cancelled)
    assert disconnect.at - cancelled < 0.5


async def test_cancelling_while_waiting_for_the_first_token_closes_the_connection(upstream):
    upstream.enqueue(Reply(ttft=10.0))

    async def consume():
        async with open_stream(HELLO, [make_route(upstream)], CONFIG) as stream:
            async for _ in stream:
                pass

    task = asyncio.create_task(consume())
    await upstream.await_requests(1, timeout=2)
    cancelled = time.monotonic()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    disconnect = await disconnect_after(upstream, cancelled)
    assert disconnect.at - cancelled < 0.5
    assert disconnect.tokens_sent == 0


# --- The asyncio transport (transport.py) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """(cert.pem, key.pem) of a self-signed certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chatsite test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(folder / "cert.pem"), str(folder / "key.pem")


@contextlib.asynccontextmanager
async def tls_front(upstream, certificate):
    """An HTTPS port in front of the simulator (TLS terminated here, bytes passed through): its port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)

    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def handle(reader, writer):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream.port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    async with server:
        yield server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def silent_server():
    """A port that accepts connections and never says or reads anything: its port."""
    held = []

    async def handle(reader, writer):
        held.append(writer)
        await asyncio.sleep(30)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]
        for writer in held:
            writer.close()


def test_the_shared_client_uses_the_asyncio_transport_unless_a_proxy_is_set(monkeypatch):
    async def transport_of_a_new_client():
        try:
            return shared_client()._transport
        finally:
            await aclose_shared_client()

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(asyncio.run(transport_of_a_new_client()), AsyncioTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")  # httpx's own transport honours it
    assert type(asyncio.run(transport_of_a_new_client())) is httpx.AsyncHTTPTransport


async def test_it_streams_over_tls(upstream, certificate):
    upstream.enqueue(Reply(text="Secret hello.", token_delay=0.005))
    async with tls_front(upstream, certificate) as port:
        route = dataclasses.replace(make_route(upstream), base_url=f"https://127.0.0.1:{port}/v1")
        transport = AsyncioTransport(verify=ssl.create_default_context(cafile=certificate[0]))
        async with httpx.AsyncClient(transport=transport) as client:
            events = []
            async with open_stream(HELLO, [route], CONFIG, client=client) as stream:
                async for event in stream:
                    events.append(event)
    assert text_of(events) == "Secret hello." and stream.result.complete
    assert upstream.chat_requests[0].headers["authorization"] == "Bearer sk-primary"


async def test_an_untrusted_certificate_is_a_connect_error(upstream, certificate):
    # The system's CAs don't know the front's certificate.
    async with (
        tls_front(upstream, certificate) as port,
        httpx.AsyncClient(transport=AsyncioTransport()) as client,
    ):
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(f"https://127.0.0.1:{port}/v1/models")


async def test_leaving_a_tls_stream_early_closes_the_connection(upstream, certificate):
    upstream.enqueue(Reply(tokens=["tok "] * 500, token_delay=0.01))
    async with tls_front(upstream, certificate) as port:
        route = dataclasses.replace(make_route(upstream), base_url=f"https://127.0.0.1:{port}/v1")
        transport = AsyncioTransport(verify=ssl.create_default_context(cafile=certificate[0]))
        async with httpx.AsyncClient(transport=transport) as client:
            async with open_stream(HELLO, [route], CONFIG, client=client) as stream:
                async for event in stream:
                    if isinstance(event, TextDelta):
                        break
                left = time.monotonic()
            # The front closes its upstream side when ours goes: the simulator sees the hang-up.
            disconnect = await disconnect_after(upstream, left)
    assert disconnect.at - left < 0.5
    assert disconnect.tokens_sent < 500


async def test_httpcore_read_timeouts_are_honoured():
    async with silent_server() as port, httpx.AsyncClient(transport=AsyncioTransport()) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"http://127.0.0.1:{port}/", timeout=httpx.Timeout(2.0, read=0.2))
        assert 0.18 <= time.monotonic() - started < 1.0


async def test_a_tls_handshake_that_never_ends_is_a_connect_timeout():
    async with silent_server() as port, httpx.AsyncClient(transport=AsyncioTransport()) as client:
        with pytest.raises(httpx.ConnectTimeout):
            await client.get(f"https://127.0.0.1:{port}/", timeout=httpx.Timeout(2.0, connect=0.2))


async def test_a_connection_that_never_opens_is_a_connect_timeout(monkeypatch):
    loop = asyncio.get_running_loop()

    async def never(*args, **kwargs):
        await asyncio.sleep(30)

    monkeypatch.setattr(loop, "create_connection", never)
    async with httpx.AsyncClient(transport=AsyncioTransport()) as client:
        with pytest.raises(httpx.ConnectTimeout):
            await client.get("http://127.0.0.1:9/", timeout=httpx.Timeout(2.0, connect=0.2))


async def test_a_refused_connection_is_a_connect_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with httpx.AsyncClient(transport=AsyncioTransport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_a_peer_that_stops_reading_is_a_write_timeout():
    async with silent_server() as port, httpx.AsyncClient(transport=AsyncioTransport()) as client:
        with pytest.raises(httpx.WriteTimeout):
            await client.post(
                f"http://127.0.0.1:{port}/", content=b"x" * 32_000_000, timeout=httpx.Timeout(2.0, write=0.2)
            )


HTTPCORE_ERRORS = [
    "TimeoutException",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "NetworkError",
    "ConnectError",
    "ReadError",
    "WriteError",
    "ProxyError",
    "UnsupportedProtocol",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
]


@pytest.mark.parametrize("name", HTTPCORE_ERRORS)
def test_httpcore_errors_become_the_httpx_errors_of_the_same_name(name):
    assert httpx_error_class(getattr(httpcore, name)("boom")) is getattr(httpx, name)


def test_other_errors_are_not_mapped():
    assert httpx_error_class(ValueError("boom")) is None
    assert httpx_error_class(OSError("boom")) is None


def test_the_transport_is_its_own_httpx_transport():
    transport = AsyncioTransport()
    assert isinstance(transport, httpx.AsyncBaseTransport)
    assert not isinstance(transport, httpx.AsyncHTTPTransport)


async def test_responses_carry_httpcore_extensions_and_our_network_stream(upstream):
    async with httpx.AsyncClient(transport=AsyncioTransport()) as client:
        response = await client.get(f"{upstream.base_url}/models")
    assert response.status_code == 200 and response.json()["object"] == "list"
    assert response.http_version == "HTTP/1.1" and response.reason_phrase == "OK"
    assert isinstance(response.extensions["network_stream"], AsyncioStream)


async def test_a_body_cut_mid_chunk_is_an_httpx_remote_protocol_error(upstream):
    upstream.enqueue(Reply(tokens=["a "] * 5, fault=Fault.DROP, fault_after=2))
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    url = f"{upstream.base_url}/chat/completions"
    async with (
        httpx.AsyncClient(transport=AsyncioTransport()) as client,
        client.stream("POST", url, json=body) as response,
    ):
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read") as caught:
            async for _ in response.aiter_bytes():
                pass
    assert isinstance(caught.value.__cause__, httpcore.RemoteProtocolError)


async def test_a_server_that_does_not_speak_http_is_an_httpx_remote_protocol_error():
    async def handle(reader, writer):
        await reader.read(1024)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server, httpx.AsyncClient(transport=AsyncioTransport()) as client:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"http://127.0.0.1:{port}/")


def test_the_llm_package_imports_no_engine_channels_or_services():
    # A fresh interpreter: what `import conversations.llm` pulls in on its own (pacing and transport included).
    code = (
        "import sys, conversations.llm, conversations.llm.pacing, conversations.llm.transport;"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('channels', 'daphne')"
        " or m.startswith(('conversations.engine', 'conversations.services', 'conversations.consumers')))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []


# --- HTTP/1.1 exchanges (http11.py) ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def chunked_server(chunks: list[bytes], *, close_after: bool = False):
    """A port answering every request with `chunks` as a chunked body, all in one write: its port."""

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
                connection = b"close" if close_after else b"keep-alive"
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: " + connection
                    + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + body
                )  # fmt: skip
                await writer.drain()
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_a_body_comes_as_one_piece_per_receive_not_one_per_chunk():
    chunks = [b"data: token %d\n\n" % i for i in range(50)]
    async with (
        chunked_server(chunks) as port,
        httpx.AsyncClient(transport=AsyncioTransport()) as client,
        client.stream("POST", f"http://127.0.0.1:{port}/", content=b"{}") as response,
    ):
        pieces = [piece async for piece in response.aiter_raw()]
    assert b"".join(pieces) == b"".join(chunks)
    # One write of 50 chunks: h11 parses them all from one receive (two at most if the kernel split it).
    assert len(pieces) <= 2


async def test_connections_are_kept_alive_and_reused_per_origin():
    async with chunked_server([b"hello"]) as port, httpx.AsyncClient(transport=AsyncioTransport()) as client:
        streams = []
        for _ in range(3):
            response = await client.post(f"http://127.0.0.1:{port}/", content=b"{}")
            assert response.content == b"hello"
            streams.append(response.extensions["network_stream"])
    assert streams[0] is streams[1] is streams[2]


async def test_a_connection_the_server_closes_is_not_reused():
    async with (
        chunked_server([b"bye"], close_after=True) as port,
        httpx.AsyncClient(transport=AsyncioTransport()) as client,
    ):
        first = await client.post(f"http://127.0.0.1:{port}/", content=b"{}")
        second = await client.post(f"http://127.0.0.1:{port}/", content=b"{}")
    assert first.content == second.content == b"bye"
    assert first.extensions["network_stream"] is not second.extensions["network_stream"]


async def test_a_body_left_half_read_closes_its_connection():
    chunks = [b"x" * 1000] * 200
    async with chunked_server(chunks) as port, httpx.AsyncClient(transport=AsyncioTransport()) as client:
        async with client.stream("POST", f"http://127.0.0.1:{port}/", content=b"{}") as response:
            first = response.extensions["network_stream"]
            async for _ in response.aiter_raw():
                break
        response = await client.post(f"http://127.0.0.1:{port}/", content=b"{}")
    assert response.content == b"".join(chunks)
    assert response.extensions["network_stream"] is not first


async def test_past_max_connections_a_request_waits_for_one_then_times_out():
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with (
        chunked_server([b"one"]) as port,
        httpx.AsyncClient(transport=AsyncioTransport(limits=limits)) as client,
    ):
        url = f"http://127.0.0.1:{port}/"
        async with client.stream("POST", url, content=b"{}") as held:
            with pytest.raises(httpx.PoolTimeout):
                await client.post(url, content=b"{}", timeout=httpx.Timeout(2.0, pool=0.2))
            waiting = asyncio.create_task(client.post(url, content=b"{}"))
            await asyncio.sleep(0.1)
            assert not waiting.done()
            await held.aread()
        assert (await waiting).content == b"one"
