"""HTTP/1.1 exchanges for transport.AsyncioTransport: over our asyncio sockets, a body piece per receive.

httpcore drives h11 one event at a time and hands each body chunk up through its own generators, then
httpx's, then ours: a provider sends one chunk per token, so a streamed answer paid that whole ladder about
200 times even when one socket read had brought twenty tokens (about a fifth of the event loop at 200
concurrent answers: bench/README.md, "Load", "Session 6"). Here the body iterator gives everything parsed
from the bytes at hand as one piece, and reads the socket again only when it has handed all of it over,
which is also when the pacer (pacing.py) is consulted.

No HTTP parsing of our own: h11 writes each request (validating the head, framing the body) and httptools
(llhttp, the parser Node.js uses, in C) reads each response. The pool is small because it only has to do what
the completion client needs: keep-alive per origin with an expiry, a cap on connections (waiting for a free
one up to the pool timeout), nothing shared between event loops. Errors are httpcore's exception classes,
which transport.py maps to httpx's exactly as httpx's own transport does.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator

import h11
import httpcore
import httptools
import httpx

READ_SIZE = 64 * 1024

Origin = tuple[bytes, bytes, int]  # scheme, host, port


def _timeouts(request: httpx.Request) -> dict:
    return request.extensions.get("timeout", {})


class _Response:
    """httptools' callbacks for one response: the head as it is parsed, then the body's pieces."""

    __slots__ = ("body", "complete", "head_done", "headers", "keep_alive", "parser", "reason")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.reason = b""
        self.head_done = False
        self.body: list[bytes] = []
        self.complete = False
        self.keep_alive = False
        self.parser: httptools.HttpResponseParser | None = None

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        # Asked now: llhttp forgets it once the callback returns (it gets ready for the next message).
        self.keep_alive = self.parser is not None and self.parser.should_keep_alive()
        self.parser = None


class Connection:
    """One HTTP/1.1 connection over an AsyncioStream (transport.py). h11 writes each request (it validates
    the head and frames the body); httptools (llhttp, in C) reads each response: h11's parsing in Python, a
    chunk at a time, cost about 1.7 ms per 200-token answer, httptools about 0.04 ms (bench/README.md)."""

    def __init__(self, origin: Origin, stream) -> None:
        self.origin = origin
        self.stream = stream
        self.idle_since = 0.0
        self.closed = False
        self.busy = False  # an exchange is under way (a connection is reused only between exchanges)
        self.keep_alive = False  # the last response allows another exchange on this connection
        self._response: _Response | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._eof = False

    def reusable(self, now: float, expiry: float | None) -> bool:
        """Idle, within its keep-alive expiry, and the server has not closed it (or sent something unasked)."""
        if self.closed or self.busy or not self.keep_alive:
            return False
        if expiry is not None and now - self.idle_since > expiry:
            return False
        return not self.stream.get_extra_info("is_readable")

    async def send(self, request: httpx.Request) -> None:
        self.busy = True
        self.keep_alive = False
        self._response = _Response()
        self._parser = self._response.parser = httptools.HttpResponseParser(self._response)
        timeout = _timeouts(request).get("write")
        writer = h11.Connection(our_role=h11.CLIENT)  # one per request: only its writing side is used
        try:
            head = writer.send(
                h11.Request(method=request.method, target=request.url.raw_path, headers=request.headers.raw)
            )
        except h11.LocalProtocolError as exc:
            raise httpcore.LocalProtocolError(str(exc)) from exc
        await self.stream.write(head, timeout)
        assert isinstance(request.stream, httpx.AsyncByteStream)
        async for part in request.stream:
            if part:
                await self.stream.write(writer.send(h11.Data(data=part)), timeout)
        end = writer.send(h11.EndOfMessage())
        if end:
            await self.stream.write(end, timeout)

    async def _receive(self, timeout: float | None) -> None:
        """Read the socket once and parse what came (paced reads happen in that read)."""
        data = await self.stream.read(READ_SIZE, timeout)
        assert self._parser is not None and self._response is not None
        if not data:
            self._eof = True
            self._at_eof(self._response)
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            raise httpcore.RemoteProtocolError("the server switched protocols") from exc
        except httptools.HttpParserError as exc:
            raise httpcore.RemoteProtocolError(f"malformed response: {exc}") from exc

    def _at_eof(self, response: _Response) -> None:
        """The server closed the connection: the end of a body delimited by the close, else an error."""
        if response.complete:
            return
        if not response.head_done:
            raise httpcore.RemoteProtocolError("Server disconnected without sending a response.")
        names = {name.lower() for name, _ in response.headers}
        if b"transfer-encoding" in names:
            raise httpcore.RemoteProtocolError(
                "peer closed connection without sending complete message body: incomplete chunked read"
            )
        if b"content-length" in names:
            raise httpcore.RemoteProtocolError(
                "peer closed connection without sending complete message body: fewer bytes than Content-Length"
            )
        response.complete = True  # neither: the body runs until the connection closes

    async def receive_head(
        self, request: httpx.Request
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes]:
        """(status, HTTP version, headers, reason) of the response, skipping 1xx interim ones."""
        timeout = _timeouts(request).get("read")
        response = self._response
        assert response is not None and self._parser is not None
        while True:
            while not response.head_done:
                await self._receive(timeout)
            status = self._parser.get_status_code()
            if status >= 200:
                version = self._parser.get_http_version().encode("ascii")
                return status, version, response.headers, response.reason
            # An interim response (100 Continue...): llhttp parses the real one next from the same parser.
            response.headers, response.reason, response.head_done, response.complete = [], b"", False, False
            response.parser = self._parser

    async def body(self, timeout: float | None) -> AsyncIterator[bytes]:
        """The response body: each piece is everything parsed from the bytes received so far."""
        response = self._response
        assert response is not None
        parts = response.body
        while True:
            if parts:  # hand over what we have before waiting for the network
                piece = parts[0] if len(parts) == 1 else b"".join(parts)
                parts.clear()
                yield piece
            if response.complete:
                self.keep_alive = response.keep_alive and not self._eof
                return
            await self._receive(timeout)

    def finished_cleanly(self) -> bool:
        """The exchange is over and the connection may carry another."""
        self.busy = False
        return self.keep_alive

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
        self._wake_one()

    def _wake_one(self) -> None:
        """A connection came free (closed, or idle for any origin): the longest waiter may try again."""
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
            self._wake_one()  # same origin: it takes this one; another: it closes this one to make room
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
