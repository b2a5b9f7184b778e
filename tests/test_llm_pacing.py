"""Paced reads (conversations/llm/pacing.py, transport.py) over real HTTP against the upstream simulator: every
token once and in order, about one socket read per frame instead of one per token, the first token not held
back, and the watchdogs, cancellation, EOF and resets working as without a pacer."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import ssl
import struct
import time

import httpx
import pytest

from conversations.llm import FramePacer, TextDelta, aclose_shared_client, open_stream
from conversations.llm.errors import StallTimeout, UpstreamTruncated
from conversations.llm.pacing import current_pacer
from conversations.llm.transport import AsyncioBackend, AsyncioTransport
from conversations.testing.upstream import Fault, Reply
from tests.test_llm_client import (
    CONFIG,
    HELLO,
    certificate,  # noqa: F401  (a fixture)
    config,
    disconnect_after,
    make_route,
    silent_server,
    text_of,
    tls_front,
)

TOKENS = [f"t{i} " for i in range(200)]


@pytest.fixture(autouse=True)
async def _close_pool():
    yield
    await aclose_shared_client()


@pytest.fixture
def connections(monkeypatch):
    """Every AsyncioStream the asyncio transport opens during the test, in order."""
    opened = []
    connect_tcp = AsyncioBackend.connect_tcp

    async def recording(self, *args, **kwargs):
        stream = await connect_tcp(self, *args, **kwargs)
        opened.append(stream)
        return stream

    monkeypatch.setattr(AsyncioBackend, "connect_tcp", recording)
    return opened


class RecordingPacer(FramePacer):
    """A FramePacer that notes when idle() ran and what it answered, and when its frames were cut."""

    def __init__(self, interval: float) -> None:
        super().__init__(interval, self._frame)
        self.idles: list[tuple[float, float | None]] = []
        self.frames: list[float] = []
        self.idle_called = asyncio.Event()

    async def _frame(self) -> None:
        self.frames.append(asyncio.get_running_loop().time())

    async def idle(self) -> float | None:
        until = await super().idle()
        self.idles.append((asyncio.get_running_loop().time(), until))
        self.idle_called.set()
        return until


async def collect(routes, pacer, cfg=CONFIG):
    """(events, stream, error, loop time of each event) for one paced call."""
    loop = asyncio.get_running_loop()
    events, times = [], []
    stream = open_stream(HELLO, routes, cfg, pacer=pacer)
    try:
        async with stream:
            async for event in stream:
                events.append(event)
                times.append(loop.time())
    except Exception as exc:
        return events, stream, exc, times
    return events, stream, None, times


# --- Reading ------------------------------------------------------------------------------------------------


async def test_every_token_arrives_once_in_order_with_about_one_socket_read_per_frame(upstream, connections):
    upstream.enqueue(Reply(tokens=TOKENS, token_delay=0.01))
    pacer = RecordingPacer(0.04)
    started = asyncio.get_running_loop().time()
    events, stream, error, _ = await collect([make_route(upstream)], pacer)
    duration = asyncio.get_running_loop().time() - started
    assert error is None and stream.result.complete
    assert [e.text for e in events if isinstance(e, TextDelta)] == TOKENS
    (connection,) = connections
    frames = duration / 0.04  # about 50 over the 2 s of the answer
    # One read per frame (plus the head and the first token's), not one per token (200).
    assert connection.receives <= frames * 1.25 + 5, (connection.receives, frames)
    assert len(pacer.idles) <= connection.receives  # idle() only when about to wait for the network


async def test_a_paced_read_takes_what_waits_without_resuming_the_socket(upstream, connections):
    """What arrived while the reads were held is read at the frame's time straight from the paused socket:
    resuming its reading (an epoll registration and a pass of the loop, then unregistering it) is only for a
    read that finds nothing waiting."""
    upstream.enqueue(Reply(tokens=TOKENS[:100], token_delay=0.01))
    pacer = RecordingPacer(0.05)
    events, _, error, _ = await collect([make_route(upstream)], pacer)
    assert error is None and [e.text for e in events if isinstance(e, TextDelta)] == TOKENS[:100]
    (connection,) = connections
    assert len(pacer.frames) >= 10  # a frame every 50 ms over about a second
    assert connection.resumes <= 3, (connection.resumes, len(pacer.frames))


async def test_without_a_pacer_reads_follow_the_tokens(upstream, connections):
    # The contrast for the test above (on a busy machine one read may carry several tokens, so loosely).
    upstream.enqueue(Reply(tokens=TOKENS[:50], token_delay=0.01))
    events, _, error, _ = await collect([make_route(upstream)], None)
    assert error is None and [e.text for e in events if isinstance(e, TextDelta)] == TOKENS[:50]
    assert connections[0].receives > 25


async def test_the_first_token_is_not_held_back(upstream, connections):
    # A 0.3 s frame, a first token 0.05 s after the role chunk: a paced read of the role chunk would hold it.
    upstream.enqueue(Reply(tokens=["first ", "second ", "third"], ttft=0.05, token_delay=0.01))
    pacer = RecordingPacer(0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    events, _, error, times = await collect([make_route(upstream)], pacer)
    assert error is None and text_of(events) == "first second third"
    texts = [
        (event.text, at) for event, at in zip(events, times, strict=True) if isinstance(event, TextDelta)
    ]
    assert texts[0][1] - started < 0.2
    assert pacer.idles[0][0] >= texts[0][1]  # pacing starts after the first token went out
    # The next two came 10 and 20 ms later but were read together at the next frame.
    assert texts[1][1] - texts[0][1] >= 0.25
    assert texts[2][1] - texts[1][1] < 0.01


async def test_a_pacer_that_says_read_now_reads_as_tokens_come(upstream):
    class Eager:
        calls = 0

        async def idle(self):
            Eager.calls += 1
            return None

    upstream.enqueue(Reply(tokens=TOKENS[:30], token_delay=0.01))
    events, _, error, _ = await collect([make_route(upstream)], Eager())
    assert error is None and [e.text for e in events if isinstance(e, TextDelta)] == TOKENS[:30]
    assert Eager.calls > 10


async def test_the_connection_goes_back_to_the_pool_unpaced(upstream, connections):
    upstream.enqueue(Reply(tokens=TOKENS[:20], token_delay=0.01), Reply(text="Second answer."))
    route = make_route(upstream)
    _, _, error, _ = await collect([route], RecordingPacer(0.04))
    assert error is None
    events, _, error, _ = await collect([route], None)
    assert error is None and text_of(events) == "Second answer."
    assert len(connections) == 1
    first, second = upstream.chat_requests
    assert first.client == second.client


async def test_paced_reads_over_tls(upstream, certificate, connections):  # noqa: F811
    upstream.enqueue(Reply(tokens=TOKENS[:100], token_delay=0.01))
    async with tls_front(upstream, certificate) as port:
        route = dataclasses.replace(make_route(upstream), base_url=f"https://127.0.0.1:{port}/v1")
        transport = AsyncioTransport(verify=ssl.create_default_context(cafile=certificate[0]))
        async with httpx.AsyncClient(transport=transport) as client:
            pacer = RecordingPacer(0.04)
            events = []
            async with open_stream(HELLO, [route], CONFIG, client=client, pacer=pacer) as stream:
                async for event in stream:
                    events.append(event)
    assert [e.text for e in events if isinstance(e, TextDelta)] == TOKENS[:100]
    assert stream.result.complete
    assert connections[0].receives < 50  # about 25 frames in 1 s, not 100 tokens


# --- Watchdogs, cancellation, faults ----------------------------------------------------------------------


async def test_cancelling_while_the_reads_are_held_closes_the_upstream_connection(upstream):
    upstream.enqueue(Reply(tokens=["tok "] * 500, token_delay=0.01))
    pacer = RecordingPacer(1.0)

    async def consume():
        async with open_stream(HELLO, [make_route(upstream)], CONFIG, pacer=pacer) as stream:
            async for _ in stream:
                pass

    task = asyncio.create_task(consume())
    await asyncio.wait_for(pacer.idle_called.wait(), 2)
    await asyncio.sleep(0.1)  # well inside the 1 s hold
    assert not task.done() and len(pacer.idles) == 1
    cancelled = time.monotonic()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    disconnect = await disconnect_after(upstream, cancelled)
    assert disconnect.at - cancelled < 0.2
    assert disconnect.tokens_sent < 500


async def test_a_stall_is_still_a_stall_timeout(upstream):
    upstream.enqueue(
        Reply(tokens=TOKENS[:20], token_delay=0.01, fault=Fault.STALL, fault_after=10, stall_seconds=5)
    )
    started = time.monotonic()
    events, _, error, _ = await collect(
        [make_route(upstream)], RecordingPacer(0.04), cfg=config(stall_timeout=0.3)
    )
    assert isinstance(error, StallTimeout)
    assert text_of(events) == "".join(TOKENS[:10])
    assert 0.28 <= time.monotonic() - started < 1.0


async def test_a_connection_closed_while_held_is_a_cut_stream(upstream):
    upstream.enqueue(Reply(tokens=TOKENS, token_delay=0.002, fault=Fault.DROP, fault_after=50))
    events, stream, error, _ = await collect([make_route(upstream)], RecordingPacer(0.04))
    assert isinstance(error, UpstreamTruncated) and stream.result.truncated
    assert text_of(events) == "".join(TOKENS[:50])


@contextlib.asynccontextmanager
async def resetting_server(tokens: int):
    """A port answering every request with a stream of `tokens` content deltas 10 ms apart, then a TCP reset."""

    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        for i in range(tokens):
            event = b'data: {"choices":[{"index":0,"delta":{"content":"t%d "}}]}\n\n' % i
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        writer.transport.abort()  # SO_LINGER 0: the close is a reset

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def body_and_error(port: int, pacer) -> tuple[bytes, Exception | None]:
    """What httpx reads of the body (with `pacer` set for the reads) and the error that ended it."""
    body = b""
    async with (
        httpx.AsyncClient(transport=AsyncioTransport()) as client,
        client.stream("GET", f"http://127.0.0.1:{port}/") as response,
    ):
        token = current_pacer.set(pacer)
        try:
            async for piece in response.aiter_raw():
                body += piece
        except Exception as exc:
            return body, exc
        finally:
            current_pacer.reset(token)
    return body, None


async def test_a_reset_while_held_is_the_same_error_as_without_a_pacer(upstream):
    async with resetting_server(tokens=4) as port:
        unpaced_body, unpaced_error = await body_and_error(port, None)
        pacer = RecordingPacer(0.3)  # the reset comes ~40 ms into the first hold
        started = time.monotonic()
        paced_body, paced_error = await body_and_error(port, pacer)
        elapsed = time.monotonic() - started

        route = dataclasses.replace(make_route(upstream), base_url=f"http://127.0.0.1:{port}/v1")
        events, stream, error, _ = await collect([route], RecordingPacer(0.3))
    assert isinstance(unpaced_error, httpx.ReadError)
    assert type(paced_error) is type(unpaced_error) and str(paced_error) == str(unpaced_error)
    assert paced_body == unpaced_body  # what had arrived before the reset is still read
    assert elapsed >= 0.25 and pacer.idles  # it was noticed at the end of a hold, not before
    # Through the client: a connection that breaks after the first token is a cut answer, as without a pacer.
    assert isinstance(error, UpstreamTruncated) and stream.result.truncated
    assert text_of(events) == "t0 t1 t2 t3 "


async def test_httpcore_read_timeouts_count_the_held_time():
    async with silent_server() as port, httpx.AsyncClient(transport=AsyncioTransport()) as client:
        token = current_pacer.set(FramePacer(5.0))
        try:
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                await client.get(f"http://127.0.0.1:{port}/", timeout=httpx.Timeout(2.0, read=0.2))
            assert 0.18 <= time.monotonic() - started < 0.5
        finally:
            current_pacer.reset(token)
