"""Acceptance tests of the upstream simulator: each fault mode puts on the wire what it claims to.

These talk to a real simulator over real HTTP (httpx, or a raw socket where the exact bytes and the way
they are cut into reads matter). They need no Django: `pytest tests/test_simulator.py -p no:django` works.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from conversations.testing.upstream import (
    DEMO_REPLY_TEXT,
    Fault,
    Reply,
    UpstreamSimulator,
    split_tokens,
)

MODEL = "gpt-4o"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello, please."}]


# ------------------------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def server() -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator() as sim:
        yield sim


@pytest.fixture
def sim(server: UpstreamSimulator) -> Iterator[UpstreamSimulator]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def client(sim: UpstreamSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=sim.base_url, timeout=5.0, headers={"authorization": "Bearer sk-test-1234"}
    ) as c:
        yield c


def chat_body(stream: bool = True, include_usage: bool = False, **extra: Any) -> dict:
    body: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "stream": stream, **extra}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return body


@dataclass
class Sse:
    """An SSE body split into events (data strings, with "[DONE]" kept as is) and comment lines."""

    data: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    @property
    def chunks(self) -> list[dict]:
        return [json.loads(d) for d in self.data if d != "[DONE]"]

    @property
    def done(self) -> bool:
        return bool(self.data) and self.data[-1] == "[DONE]"


def parse_sse(payload: bytes) -> Sse:
    """Split on blank lines *before* decoding (as a robust client must), then decode each event."""
    normalized = payload.replace(b"\r\n", b"\n")
    sse = Sse()
    for block in normalized.split(b"\n\n"):
        if not block.strip():
            continue
        data_lines = []
        for line in block.decode("utf-8").split("\n"):
            if line.startswith(":"):
                sse.comments.append(line[1:].strip())
            elif line.startswith("data:"):
                data_lines.append(line[5:].removeprefix(" "))
        if data_lines:
            sse.data.append("\n".join(data_lines))
    return sse


def stream_raw(client: httpx.Client, body: dict) -> tuple[httpx.Response, list[bytes]]:
    """POST a streaming request and collect the body pieces exactly as httpx hands them over."""
    with client.stream("POST", "/chat/completions", json=body) as response:
        return response, list(response.iter_raw())


def content_of(sse: Sse) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in sse.chunks if c["choices"])


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    reads: list[bytes]  # the socket reads of the body, as they arrived
    payload: bytes  # the de-chunked body
    terminated: bool  # the chunked body ended with its 0-length chunk


def decode_chunked(body: bytes) -> tuple[bytes, bool]:
    out, pos = bytearray(), 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            return bytes(out), False
        size = int(body[pos:eol], 16)
        if size == 0:
            return bytes(out), True
        if eol + 2 + size > len(body):  # cut in the middle of a chunk
            out += body[eol + 2 :]
            return bytes(out), False
        out += body[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2


def raw_post(
    sim: UpstreamSimulator,
    body: bytes | dict,
    *,
    recv_timeout: float = 3.0,
    path: str = "/v1/chat/completions",
) -> RawResponse:
    """One request with `Connection: close` on a raw socket; read every recv() until the server closes."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", sim.port), timeout=recv_timeout) as sock:
        sock.sendall(head + data)
        received, reads = bytearray(), []
        while chunk := sock.recv(65536):
            received += chunk
            reads.append(chunk)
    head_end = received.index(b"\r\n\r\n")
    status_line, *header_lines = received[:head_end].decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    raw_body = bytes(received[head_end + 4 :])
    if headers.get("transfer-encoding") == "chunked":
        payload, terminated = decode_chunked(raw_body)
    else:
        payload, terminated = raw_body, True
    # Drop the head from the first reads so `reads` is about the body only.
    body_reads, skip = [], head_end + 4
    for chunk in reads:
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        body_reads.append(chunk[skip:])
        skip = 0
    return RawResponse(int(status_line.split()[1]), headers, body_reads, payload, terminated)


# ---------------------------------------------------------------------------------------- normal streams


def test_it_streams_role_then_content_then_finish_then_done(sim, client):
    sim.enqueue(Reply(text="Hello there, friend."))
    response, pieces = stream_raw(client, chat_body())

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.headers["x-request-id"].startswith("req_")
    sse = parse_sse(b"".join(pieces))
    chunks = sse.chunks
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hello"},
        {"content": " there,"},
        {"content": " friend."},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, None, "stop"]
    assert sse.data[-1] == "[DONE]" and sse.data.count("[DONE]") == 1
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {MODEL}
    assert len({c["created"] for c in chunks}) == 1
    assert all("usage" not in c for c in chunks)  # no include_usage: no usage key at all


def test_it_sends_usage_after_the_finish_chunk(sim, client):
    sim.enqueue(Reply(text="One two three", prompt_tokens=42, cached_tokens=7))
    _, pieces = stream_raw(client, chat_body(include_usage=True))

    sse = parse_sse(b"".join(pieces))
    chunks = sse.chunks
    assert sse.done
    *streamed, finish, usage_chunk = chunks
    assert all(c["usage"] is None for c in [*streamed, finish])
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage_chunk["choices"] == []
    assert usage_chunk["id"] == finish["id"]
    assert usage_chunk["usage"]["prompt_tokens"] == 42
    assert usage_chunk["usage"]["completion_tokens"] == 3
    assert usage_chunk["usage"]["total_tokens"] == 45
    assert usage_chunk["usage"]["prompt_tokens_details"]["cached_tokens"] == 7


def test_it_estimates_prompt_tokens_from_the_request_when_not_scripted(sim, client):
    _, pieces = stream_raw(client, chat_body(include_usage=True))
    usage = parse_sse(b"".join(pieces)).chunks[-1]["usage"]
    assert usage["prompt_tokens"] > 5
    assert usage["completion_tokens"] == len(split_tokens(sim.default.text))


def test_it_streams_explicit_tokens_and_finish_reason(sim, client):
    sim.enqueue(Reply(tokens=["a", "b", "", "c"], finish_reason="length"))
    _, pieces = stream_raw(client, chat_body())
    chunks = parse_sse(b"".join(pieces)).chunks
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]] == ["a", "b", "", "c"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_it_streams_reasoning_before_content(sim, client):
    sim.enqueue(Reply(text="Answer.", reasoning="Let me think."))
    _, pieces = stream_raw(client, chat_body())
    deltas = [c["choices"][0]["delta"] for c in parse_sse(b"".join(pieces)).chunks]
    assert deltas[1:-1] == [
        {"reasoning": "Let"},
        {"reasoning": " me"},
        {"reasoning": " think."},
        {"content": "Answer."},
    ]


def test_it_streams_a_refusal_instead_of_content(sim, client):
    sim.enqueue(Reply(refusal="I can't help with that."))
    _, pieces = stream_raw(client, chat_body())
    deltas = [c["choices"][0]["delta"] for c in parse_sse(b"".join(pieces)).chunks]
    assert deltas[0] == {"role": "assistant", "content": None, "refusal": ""}
    assert "".join(d.get("refusal", "") for d in deltas) == "I can't help with that."
    assert all("content" not in d for d in deltas[1:])


def test_it_echoes_the_request_model_unless_the_reply_names_one(sim, client):
    sim.enqueue(Reply(model="gpt-4o-2024-08-06"))
    _, pieces = stream_raw(client, chat_body())
    assert {c["model"] for c in parse_sse(b"".join(pieces)).chunks} == {"gpt-4o-2024-08-06"}


def test_it_answers_a_non_streamed_request_with_a_chat_completion(sim, client):
    sim.enqueue(Reply(text="Plain answer.", cached_tokens=3))
    response = client.post("/chat/completions", json=chat_body(stream=False))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    obj = response.json()
    assert obj["object"] == "chat.completion" and obj["id"].startswith("chatcmpl-")
    assert obj["model"] == MODEL
    assert obj["choices"][0]["message"]["role"] == "assistant"
    assert obj["choices"][0]["message"]["content"] == "Plain answer."
    assert obj["choices"][0]["finish_reason"] == "stop"
    usage = obj["usage"]
    assert usage["completion_tokens"] == 2
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 3


def test_it_takes_queued_replies_in_order_then_the_default(sim, client):
    sim.enqueue(Reply(text="first"), Reply(text="second"))
    sim.default = Reply(text="fallback")
    texts = [client.post("/chat/completions", json=chat_body(stream=False)).json() for _ in range(3)]
    assert [t["choices"][0]["message"]["content"] for t in texts] == ["first", "second", "fallback"]
    assert sim.pending == 0
    sim.reset()
    assert sim.default.text != "fallback"


def test_it_serves_two_requests_on_one_keep_alive_connection(sim, client):
    first = client.post("/chat/completions", json=chat_body(stream=False))
    _, pieces = stream_raw(client, chat_body())
    assert first.status_code == 200
    assert parse_sse(b"".join(pieces)).done
    one, two = sim.wait_for_requests(2)
    assert one.client == two.client  # same peer address: the same TCP connection


# ---------------------------------------------------------------------------------------- recording


def test_it_records_method_path_headers_and_json_body(sim, client):
    client.post("/chat/completions?x=1", json=chat_body(stream=False), headers={"X-Title": "chatsite"})
    (request,) = sim.wait_for_requests(1)
    assert request.method == "POST"
    assert request.path == "/v1/chat/completions" and request.query == "x=1"
    assert request.headers["authorization"] == "Bearer sk-test-1234"
    assert request.headers["x-title"] == "chatsite"
    assert request.headers["content-type"] == "application/json"
    assert request.json == chat_body(stream=False)
    assert json.loads(request.body) == request.json
    assert request.model == MODEL
    assert sim.chat_requests == [request]


def test_it_records_requests_on_every_path(sim, client):
    client.get("/models")
    client.get("/nope")
    assert [(r.method, r.path) for r in sim.wait_for_requests(2)] == [
        ("GET", "/v1/models"),
        ("GET", "/v1/nope"),
    ]
    assert sim.chat_requests == []


def test_waiting_for_more_requests_than_arrive_times_out(sim):
    with pytest.raises(TimeoutError):
        sim.wait_for_requests(1, timeout=0.05)
    with pytest.raises(TimeoutError):
        sim.wait_for_disconnect(timeout=0.05)


async def test_async_waits_do_not_block_the_event_loop(sim):
    sim.enqueue(Reply(text="slow answer here", ttft=2.0))

    async def give_up_early() -> None:
        async with (
            httpx.AsyncClient(base_url=sim.base_url) as aclient,
            aclient.stream("POST", "/chat/completions", json=chat_body()) as response,
        ):
            async for _ in response.aiter_raw():
                break  # the role chunk came; leave during the ttft

    task = asyncio.create_task(give_up_early())
    requests = await sim.await_requests(1, timeout=2)
    disconnect = await sim.await_disconnect(timeout=2)
    await task
    assert disconnect.request_index == requests[0].index
    assert disconnect.tokens_sent == 0


def test_it_accepts_a_chunked_request_body(sim, client):
    def gen() -> Iterator[bytes]:
        yield b'{"model": "gpt-4o", '
        yield b'"messages": []}'

    response = client.post("/chat/completions", content=gen(), headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert sim.wait_for_requests(1)[0].json == {"model": "gpt-4o", "messages": []}


# ---------------------------------------------------------------------------------------- HTTP error faults


@pytest.mark.parametrize(
    ("fault", "status", "error_type", "code"),
    [
        (Fault.INVALID_KEY, 401, "invalid_request_error", "invalid_api_key"),
        (Fault.MODEL_NOT_FOUND, 404, "invalid_request_error", "model_not_found"),
        (Fault.RATE_LIMIT, 429, "requests", "rate_limit_exceeded"),
        (Fault.INSUFFICIENT_QUOTA, 429, "insufficient_quota", "insufficient_quota"),
        (Fault.SERVER_ERROR, 500, "server_error", None),
        (Fault.CONTEXT_TOO_LONG, 400, "invalid_request_error", "context_length_exceeded"),
    ],
)
def test_each_http_error_fault_answers_with_an_openai_error_json(
    sim, client, fault, status, error_type, code
):
    sim.enqueue(Reply(fault=fault))
    response = client.post("/chat/completions", json=chat_body())
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == error_type
    assert error["code"] == code
    assert error["message"]


def test_the_invalid_key_error_masks_the_key_like_openai(sim, client):
    sim.enqueue(Reply(fault=Fault.INVALID_KEY))
    message = client.post("/chat/completions", json=chat_body()).json()["error"]["message"]
    assert message.startswith("Incorrect API key provided: sk-")
    assert message.count("1234") == 1 and "sk-test-1234" not in message


def test_the_model_not_found_error_names_the_model(sim, client):
    sim.enqueue(Reply(fault=Fault.MODEL_NOT_FOUND))
    error = client.post("/chat/completions", json=chat_body(model="gpt-9")).json()["error"]
    assert error["message"] == "The model `gpt-9` does not exist or you do not have access to it."


def test_the_rate_limit_sends_retry_after_headers(sim, client):
    sim.enqueue(Reply(fault=Fault.RATE_LIMIT, retry_after=2, retry_after_ms=1500))
    response = client.post("/chat/completions", json=chat_body())
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.headers["retry-after-ms"] == "1500"


def test_errors_without_scripted_retry_headers_send_none(sim, client):
    sim.enqueue(Reply(fault=Fault.RATE_LIMIT))
    response = client.post("/chat/completions", json=chat_body())
    assert "retry-after" not in response.headers and "retry-after-ms" not in response.headers


@pytest.mark.parametrize("status", [500, 502, 503])
def test_the_server_error_uses_the_scripted_status(sim, client, status):
    sim.enqueue(Reply(fault=Fault.SERVER_ERROR, status=status, retry_after="1"))
    response = client.post("/chat/completions", json=chat_body())
    assert response.status_code == status
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["type"] == "server_error"


def test_the_413_is_a_cloudflare_html_page(sim, client):
    sim.enqueue(Reply(fault=Fault.HTML_413))
    response = client.post("/chat/completions", json=chat_body())
    assert response.status_code == 413
    assert response.headers["content-type"] == "text/html"
    assert response.text.startswith("<html>")
    assert "413 Request Entity Too Large" in response.text and "cloudflare" in response.text
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_an_http_error_fault_keeps_the_connection_usable(sim, client):
    sim.enqueue(Reply(fault=Fault.RATE_LIMIT), Reply(text="ok"))
    assert client.post("/chat/completions", json=chat_body(stream=False)).status_code == 429
    assert client.post("/chat/completions", json=chat_body(stream=False)).json()["choices"][0]["message"] == {
        "role": "assistant",
        "content": "ok",
        "refusal": None,
        "annotations": [],
    }


def test_a_body_over_the_size_limit_gets_the_html_413_unread(sim, client):
    sim.max_body_bytes = 1000
    sim.enqueue(Reply(text="for the next request"))
    response = client.post(
        "/chat/completions", json=chat_body(messages=[{"role": "user", "content": "x" * 5000}])
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "text/html"
    assert response.headers["connection"] == "close"
    assert "413 Request Entity Too Large" in response.text
    assert sim.wait_for_requests(1)[0].body == b""  # never read
    assert sim.pending == 1  # the edge answered: the scripted reply is still there for the next request
    sim.reset()
    assert sim.max_body_bytes > 1000


def test_it_answers_expect_100_continue_before_reading_the_body(sim):
    body = json.dumps(chat_body(stream=False)).encode()
    with socket.create_connection(("127.0.0.1", sim.port), timeout=2) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")


def test_it_rejects_images_for_a_text_only_model(sim, client):
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        }
    ]
    response = client.post("/chat/completions", json=chat_body(model="gpt-4", messages=messages))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "Invalid content type. image_url is only supported by certain models."
    assert error["param"] == "messages.[0].content.[1].type"
    ok = client.post("/chat/completions", json=chat_body(stream=False, messages=messages))
    assert ok.status_code == 200  # gpt-4o sees images


def test_it_rejects_an_image_url_given_as_a_string(sim, client):
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": "https://x/cat.png"}]}]
    error = client.post("/chat/completions", json=chat_body(messages=messages)).json()["error"]
    assert error["code"] == "invalid_type"


def test_it_rejects_a_body_that_is_not_json(sim, client):
    response = client.post(
        "/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "could not parse the JSON body" in error["message"]
    assert sim.wait_for_requests(1)[0].json is None


def test_it_answers_unknown_paths_with_a_404_json_error(sim, client):
    response = client.post("/completions/nope", json={})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (POST /v1/completions/nope)"


def test_a_required_api_key_is_enforced(sim, client):
    sim.required_api_key = "sk-right"
    try:
        assert client.post("/chat/completions", json=chat_body()).status_code == 401
        good = client.post(
            "/chat/completions", json=chat_body(), headers={"authorization": "Bearer sk-right"}
        )
        assert good.status_code == 200
    finally:
        sim.required_api_key = None


# ---------------------------------------------------------------------------------------- mid-stream faults


def test_an_openai_midstream_error_sends_an_error_event_and_no_done(sim):
    sim.enqueue(Reply(text="one two three four", fault=Fault.MIDSTREAM_ERROR_OPENAI, fault_after=2))
    raw = raw_post(sim, chat_body(include_usage=True))
    assert raw.status == 200 and raw.terminated
    sse = parse_sse(raw.payload)
    *chunks, error_event = [json.loads(d) for d in sse.data]
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "one"},
        {"content": " two"},
    ]
    assert error_event == {
        "error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    assert "[DONE]" not in sse.data
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)


def test_an_openrouter_midstream_error_sends_an_error_chunk_with_finish_reason_error(sim):
    sim.enqueue(Reply(text="one two three", fault=Fault.MIDSTREAM_ERROR_OPENROUTER, fault_after=1))
    raw = raw_post(sim, chat_body())
    sse = parse_sse(raw.payload)
    chunks = sse.chunks
    assert [c["choices"][0]["delta"] for c in chunks[:2]] == [
        {"role": "assistant", "content": ""},
        {"content": "one"},
    ]
    last = chunks[-1]
    assert len(chunks) == 3
    assert isinstance(last["error"]["code"], int)
    assert last["error"]["message"]
    assert last["choices"][0]["finish_reason"] == "error"
    assert "[DONE]" not in sse.data


def test_a_drop_ends_the_connection_without_finish_or_done(sim):
    sim.enqueue(Reply(text="one two three", fault=Fault.DROP, fault_after=2))
    raw = raw_post(sim, chat_body(include_usage=True))
    assert raw.status == 200
    assert not raw.terminated  # the chunked body never got its terminator: the TCP connection just ended
    sse = parse_sse(raw.payload)
    assert [c["choices"][0]["delta"] for c in sse.chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "one"},
        {"content": " two"},
    ]
    assert all(c["choices"][0]["finish_reason"] is None for c in sse.chunks)
    assert "[DONE]" not in sse.data
    assert sim.disconnects == []  # the server hung up, not the client


def test_a_drop_is_an_incomplete_body_for_httpx(sim, client):
    sim.enqueue(Reply(fault=Fault.DROP, fault_after=1))
    with pytest.raises(httpx.RemoteProtocolError):
        stream_raw(client, chat_body())


def test_a_stall_sends_no_bytes_and_records_the_client_giving_up(sim):
    sim.enqueue(Reply(text="one two three", fault=Fault.STALL, fault_after=1, stall_seconds=10))
    body = json.dumps(chat_body()).encode()
    with socket.create_connection(("127.0.0.1", sim.port), timeout=2) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        received = b""
        while b'"content":"one"' not in received:
            received += sock.recv(65536)
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):  # the stall: not one byte
            sock.recv(65536)
        closed_at = time.monotonic()
    disconnect = sim.wait_for_disconnect(timeout=2)
    assert disconnect.tokens_sent == 1
    assert disconnect.request_index == sim.requests[0].index
    assert disconnect.at - closed_at < 1.0  # noticed right away, not at the end of the stall


def test_a_stall_resumes_the_stream_when_it_is_over(sim, client):
    sim.enqueue(Reply(text="one two", fault=Fault.STALL, fault_after=1, stall_seconds=0.2))
    started = time.monotonic()
    _, pieces = stream_raw(client, chat_body())
    assert time.monotonic() - started >= 0.2
    sse = parse_sse(b"".join(pieces))
    assert content_of(sse) == "one two" and sse.done


def test_a_client_that_leaves_mid_stream_is_recorded_with_the_tokens_sent(sim, client):
    sim.enqueue(Reply(text="a b c d e f g h", token_delay=0.05))
    with client.stream("POST", "/chat/completions", json=chat_body()) as response:
        seen = 0
        for piece in response.iter_raw():
            seen += piece.count(b'"content":"')
            if seen == 4:  # the role chunk and three deltas
                break
    disconnect = sim.wait_for_disconnect(timeout=2)
    assert 3 <= disconnect.tokens_sent < 8


def test_a_stop_does_not_hang_on_a_stalled_stream():
    with UpstreamSimulator() as own:
        own.default = Reply(fault=Fault.STALL, stall_seconds=30)
        failures: list[BaseException] = []

        def read() -> None:
            try:
                with httpx.stream("POST", own.base_url + "/chat/completions", json=chat_body()) as r:
                    for _ in r.iter_raw():
                        pass
            except httpx.HTTPError as exc:
                failures.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        own.wait_for_requests(1)
        time.sleep(0.05)
        started = time.monotonic()
    assert time.monotonic() - started < 1.0
    reader.join(2)
    assert not reader.is_alive() and failures


def test_no_done_sends_the_finish_and_usage_but_no_done(sim):
    sim.enqueue(Reply(text="fine", fault=Fault.NO_DONE))
    raw = raw_post(sim, chat_body(include_usage=True))
    assert raw.terminated
    sse = parse_sse(raw.payload)
    assert sse.chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert sse.chunks[-1]["usage"]["completion_tokens"] == 1
    assert "[DONE]" not in sse.data


# ---------------------------------------------------------------------------------------- wire shapes


def test_keepalive_puts_comment_lines_between_events(sim, client):
    sim.enqueue(Reply(text="a b", keepalive=True))
    _, pieces = stream_raw(client, chat_body())
    payload = b"".join(pieces)
    assert payload.startswith(b": OPENROUTER PROCESSING\n\n")
    sse = parse_sse(payload)
    assert "OPENROUTER PROCESSING" in sse.comments and "ping" in sse.comments
    assert len(sse.comments) == 1 + len(sse.data) - 1  # one before the stream, one between each two events
    assert content_of(sse) == "a b" and sse.done


def test_keepalive_interval_sends_comments_while_waiting_for_the_first_token(sim, client):
    sim.enqueue(Reply(text="late", ttft=0.3, keepalive=True, keepalive_interval=0.05))
    _, pieces = stream_raw(client, chat_body())
    payload = b"".join(pieces)
    before_content = payload[: payload.index(b'"content":"late"')]
    assert before_content.count(b": OPENROUTER PROCESSING\n\n") >= 4
    assert content_of(parse_sse(payload)) == "late"


def test_crlf_ends_every_line_with_crlf(sim, client):
    sim.enqueue(Reply(text="a b\nc", crlf=True, keepalive=True))
    _, pieces = stream_raw(client, chat_body(include_usage=True))
    payload = b"".join(pieces)
    assert b"\r\n\r\n" in payload
    assert payload.count(b"\n") == payload.count(b"\r\n")  # no bare LF anywhere
    assert payload.endswith(b"data: [DONE]\r\n\r\n")
    assert content_of(parse_sse(payload)) == "a b\nc"


def test_split_writes_arrive_in_many_small_reads_that_reassemble_to_the_same_events(sim):
    text = "Split me."
    # A pause after each 5-byte piece, so the reader thread keeps up and the pieces stay separate reads.
    sim.enqueue(Reply(text=text), Reply(text=text, split_writes=True, split_sizes=(5,), split_delay=0.001))
    whole = raw_post(sim, chat_body())
    split = raw_post(sim, chat_body())

    assert len(whole.reads) < 10
    assert len(split.reads) > 50
    sizes = sorted(len(r) for r in split.reads)
    assert sizes[len(sizes) // 2] <= 5 + 8  # the median read: one piece and its chunk framing

    def comparable(payload: bytes) -> list[dict]:
        return [
            {k: v for k, v in c.items() if k not in ("id", "created", "system_fingerprint")}
            for c in parse_sse(payload).chunks
        ]

    assert comparable(whole.payload) == comparable(split.payload)
    assert parse_sse(split.payload).done


def test_split_writes_cut_multibyte_characters_and_event_boundaries_for_httpx_too(sim, client):
    text = "héllo 世界 🎉"
    sim.enqueue(Reply(text=text, split_writes=True))
    _, pieces = stream_raw(client, chat_body())

    assert max(len(p) for p in pieces) <= 3
    undecodable = 0
    for piece in pieces:
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            undecodable += 1
    assert undecodable > 0  # some pieces hold part of a character
    assert content_of(parse_sse(b"".join(pieces))) == text


def test_multibyte_text_arrives_intact_and_unescaped(sim, client):
    text = "héllo 世界 🎉"
    sim.enqueue(Reply(text=text))
    _, pieces = stream_raw(client, chat_body())
    payload = b"".join(pieces)
    assert "世界".encode() in payload  # raw UTF-8, not \\u escapes
    assert content_of(parse_sse(payload)) == text


def test_raw_sse_pieces_are_sent_verbatim(sim, client):
    sim.enqueue(Reply(raw_sse=["data: \n\n", ": ping\n\n", 'data: {"x":1}\n\n']))
    _, pieces = stream_raw(client, chat_body())
    assert b"".join(pieces) == b'data: \n\n: ping\n\ndata: {"x":1}\n\n'


# ---------------------------------------------------------------------------------------- model lists


def test_it_lists_models_like_openai(sim, client):
    response = client.get("/models")
    assert response.status_code == 200
    listing = response.json()
    assert listing["object"] == "list"
    ids = [m["id"] for m in listing["data"]]
    assert {"gpt-4o", "gpt-4o-mini", "gpt-4"} <= set(ids)
    for model in listing["data"]:
        assert set(model) == {"id", "object", "created", "owned_by"}
        assert model["object"] == "model" and isinstance(model["created"], int)
    assert client.get("/models/gpt-4o").json()["id"] == "gpt-4o"
    assert client.get("/models/nope").json()["error"]["code"] == "model_not_found"


def test_it_lists_models_like_openrouter_and_aimlapi(sim):
    with httpx.Client() as c:
        openrouter = c.get(sim.openrouter_base_url + "/models").json()["data"]
        aimlapi = c.get(sim.aimlapi_models_url).json()
    gpt4o = next(m for m in openrouter if m["id"] == "openai/gpt-4o")
    assert gpt4o["context_length"] == 128000
    assert "image" in gpt4o["architecture"]["input_modalities"]
    assert gpt4o["pricing"]["prompt"] == "0.0000025" and gpt4o["pricing"]["completion"] == "0.00001"
    gpt4 = next(m for m in openrouter if m["id"] == "openai/gpt-4")
    assert gpt4["architecture"]["input_modalities"] == ["text"]
    assert isinstance(aimlapi, list)
    entry = next(m for m in aimlapi if m["id"] == "gpt-4o")
    assert entry["info"]["contextLength"] == 128000
    assert "openai/chat-completion.vision" in entry["features"]


def test_the_demo_reply_mentions_the_simulator_and_has_a_code_block():
    assert "simulator" in DEMO_REPLY_TEXT and "```" in DEMO_REPLY_TEXT
