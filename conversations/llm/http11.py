"""HTTP/1.1 exchanges for transport.AsyncioTransport: h11 over our asyncio sockets, a body read per receive.

httpcore drives h11 one event at a time and hands each body chunk up through its own generators, then
httpx's, then ours: a provider sends one chunk per token, so a streamed answer paid that whole ladder about
200 times even when one socket read had brought twenty tokens (about a fifth of the event loop at 200
concurrent answers: bench/README.md, "Load", "Session 6"). Here the body iterator gives everything h11 has
parsed from the bytes at hand as one piece, and reads the socket again only when h11 needs more, which is
also when the pacer (pacing.py) is consulted: the reader has handed over every event it received.

h11 still does all of the HTTP/1.1 parsing and framing (no parser of our own); the pool is small because it
only has to do what the completion client needs: keep-alive per origin with an expiry, a cap on connections
(waiting for a free one up to the pool timeout), nothing shared between event loops. Errors are httpcore's
exception classes, which transport.py maps to httpx's exactly as httpx's own transport does.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator

import h11
import httpcore
import httpx

# h11 refuses a response head larger than this (its default is 16 KiB; providers' heads are small).
MAX_HEAD = 64 * 1024
READ_SIZE = 64 * 1024

Origin = tuple[bytes, bytes, int]  # scheme, host, port


def _timeouts(request: httpx.Request) -> dict:
    return request.extensions.get("timeout", {})


class Connection:
    """One HTTP/1.1 connection: an AsyncioStream (transport.py) and h11's state for it."""

    def __init__(self, origin: Origin, stream) -> None:
        self.origin = origin
        self.stream = stream
        self.h11 = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self.idle_since = 0.0
        self.closed = False

    def reusable(self, now: float, expiry: float | None) -> bool:
        """Idle, within its keep-alive expiry, and the server has not closed it (or sent something unasked)."""
        if self.closed or self.h11.our_state is not h11.IDLE or self.h11.their_state is not h11.IDLE:
            return False
        if expiry is not None and now - self.idle_since > expiry:
            return False
        return not self.stream.get_extra_info("is_readable")

    async def send(self, request: httpx.Request) -> None:
        timeout = _timeouts(request).get("write")
        url = request.url
        target = url.raw_path
        try:
            head = self.h11.send(
                h11.Request(method=request.method, target=target, headers=request.headers.raw)
            )
        except h11.LocalProtocolError as exc:
            raise httpcore.LocalProtocolError(str(exc)) from exc
        await self.stream.write(head, timeout)
        assert isinstance(request.stream, httpx.AsyncByteStream)
        async for part in request.stream:
            if part:
                await self.stream.write(self.h11.send(h11.Data(data=part)), timeout)
        await self.stream.write(self.h11.send(h11.EndOfMessage()) or b"", timeout)

    async def _next_event(self, timeout: float | None):
        """The next h11 event, reading the socket when h11 needs more (paced reads happen in that read)."""
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpcore.RemoteProtocolError(str(exc)) from exc
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.read(READ_SIZE, timeout)
            if data == b"" and self.h11.their_state is h11.SEND_RESPONSE:
                raise httpcore.RemoteProtocolError("Server disconnected without sending a response.")
            self.h11.receive_data(data)

    async def receive_head(self, request: httpx.Request) -> h11.Response:
        timeout = _timeouts(request).get("read")
        while True:
            event = await self._next_event(timeout)
            if isinstance(event, h11.Response):
                return event
            if isinstance(event, h11.InformationalResponse):
                continue  # 100 Continue and the like: the real head follows
            raise httpcore.RemoteProtocolError(f"unexpected {type(event).__name__} before the response")

    async def body(self, timeout: float | None) -> AsyncIterator[bytes]:
        """The response body: each piece is everything h11 parsed from the bytes received so far."""
        h11_connection = self.h11
        parts: list[bytes] = []
        while True:
            try:
                event = h11_connection.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpcore.RemoteProtocolError(str(exc)) from exc
            kind = type(event)
            if kind is h11.Data:
                parts.append(bytes(event.data))
            elif event is h11.NEED_DATA:
                if parts:  # hand over what we have before waiting for the network
                    yield parts[0] if len(parts) == 1 else b"".join(parts)
                    parts = []
                h11_connection.receive_data(await self.stream.read(READ_SIZE, timeout))
            elif kind is h11.EndOfMessage:
                if parts:
                    yield b"".join(parts)
                return
            else:  # ConnectionClosed or PAUSED mid-body: h11 would have raised for a cut body
                raise httpcore.RemoteProtocolError(f"unexpected {kind.__name__} in the response body")

    def finished_cleanly(self) -> bool:
        """Both sides are done with the exchange and the connection may carry another."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            return True
        return False

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.stream.aclose()


class Pool:
    """Connections of one transport: keep-alive per origin, at most `max_connections` open at once."""

    def __init__(self, backend, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
        self.backend = backend
        self.ssl_context = ssl_context
        self.max_connections = limits.max_connections
        self.max_keepalive = limits.max_keepalive_connections
        self.expiry = limits.keepalive_expiry
        self.idle: dict[Origin, collections.deque[Connection]] = {}
        self.idle_count = 0
        self.open = 0  # connections open or being opened, idle ones included
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, origin: Origin, request: httpx.Request) -> Connection:
        loop = asyncio.get_running_loop()
        timeouts = _timeouts(request)
        deadline = None if timeouts.get("pool") is None else loop.time() + timeouts["pool"]
        while True:
            connection = self._take_idle(origin, loop.time())
            if connection is not None:
                return connection
            if self.max_connections is None or self.open < self.max_connections:
                break
            if self.idle_count:  # full, but some are idle for other origins: make room
                await self._close_oldest_idle()
                continue
            waiter = loop.create_future()
            self.waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise httpcore.PoolTimeout("no connection became free in time") from None
            finally:
                if waiter in self.waiters:
                    self.waiters.remove(waiter)
        self.open += 1
        try:
            return await self._connect(origin, timeouts.get("connect"))
        except BaseException:
            self._closed_one()
            raise

    async def _connect(self, origin: Origin, timeout: float | None) -> Connection:
        scheme, host, port = origin
        stream = await self.backend.connect_tcp(host.decode("ascii"), port, timeout=timeout)
        if scheme == b"https":
            stream = await stream.start_tls(
                self.ssl_context, server_hostname=host.decode("ascii"), timeout=timeout
            )
        return Connection(origin, stream)

    def _take_idle(self, origin: Origin, now: float) -> Connection | None:
        queue = self.idle.get(origin)
        while queue:
            connection = queue.pop()  # the most recently used: the least likely to have been closed
            self.idle_count -= 1
            if connection.reusable(now, self.expiry):
                return connection
            self._discard(connection)
        return None

    async def _close_oldest_idle(self) -> None:
        for queue in self.idle.values():
            if queue:
                connection = queue.popleft()
                self.idle_count -= 1
                await connection.close()
                self._closed_one()
                return

    def _discard(self, connection: Connection) -> None:
        """Close a connection nobody uses without waiting (aclose on our streams does not block)."""
        connection.closed = True
        task = asyncio.get_running_loop().create_task(connection.stream.aclose())
        task.add_done_callback(lambda _t: None)
        self._closed_one()

    def _closed_one(self) -> None:
        self.open -= 1
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def release(self, connection: Connection, reusable: bool) -> None:
        """An exchange on `connection` is over: keep it for the next request to its origin, or close it."""
        keep = (
            reusable
            and not connection.closed
            and (self.max_keepalive is None or self.idle_count < self.max_keepalive)
        )
        if keep:
            connection.idle_since = asyncio.get_running_loop().time()
            self.idle.setdefault(connection.origin, collections.deque()).append(connection)
            self.idle_count += 1
            while self.waiters:  # someone waiting for a slot may take this one (same origin or not)
                waiter = self.waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    break
            return
        await connection.close()
        self._closed_one()

    async def aclose(self) -> None:
        for queue in self.idle.values():
            while queue:
                connection = queue.popleft()
                self.idle_count -= 1
                await connection.close()
                self._closed_one()
