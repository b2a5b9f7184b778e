"""httpx's transport on a plain asyncio socket layer, with h11 doing HTTP/1.1 (http11.py) and no httpcore pool.

httpx stays the client every caller uses; this is what sits beneath it. By default httpx goes through
httpcore, which reads through anyio (a resume, an event and a pause of the transport's reading per read,
inside a cancel scope, plus a `fail_after`), and hands every body chunk up its own generators: a streamed
answer is one chunk per token, so that ladder was the largest share of the client's CPU (bench/client_read.py,
bench/README.md "Load"). Here a protocol keeps reading enabled, queues what arrives and wakes one waiting
reader; a timer exists only when a read/write timeout is asked for (our streaming reads ask for none:
client.py's watchdog times them); and http11.py gives the body as one piece per receive.

Paced reads (pacing.py): when the reading task has a pacer and the read queue is empty, `read` asks it when
to read next; until then the socket's reading stays paused (arriving tokens wake nothing and wait in the
kernel), then one recv() takes all of them. While a pacer is in use, reading is paused again after every
receive, so nothing is taken from the socket unless a reader is waiting for it.

`AsyncioTransport` is an `httpx.AsyncBaseTransport` (public API). Network errors are raised as httpcore's
exception classes (httpx already depends on httpcore) and mapped to httpx's exactly as httpx's own
AsyncHTTPTransport maps them (httpx 0.28, `httpx/_transports/default.py`). Proxies are not handled here:
`client.shared_client` keeps httpx's default transport when the environment configures one.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any

import httpcore
import httpx

from conversations.llm import http11
from conversations.llm.pacing import Pacer, current_pacer

# Stop reading from the socket when this much is queued and unread (a slow consumer of a fast body).
HIGH_WATER = 256 * 1024
# RFC 8305's recommended delay before racing the next address (anyio, httpcore's default, uses the same).
HAPPY_EYEBALLS_DELAY = 0.25
DEFAULT_LIMITS = httpx.Limits()
# What one recv() can take (httpcore asks for at most 64 KiB per read).
RECEIVE_BUFFER = 64 * 1024
# The longest a pacer may keep a read waiting (a pacer asking for more is a bug: don't let it look like a stall).
MAX_PACE = 2.0


class _Protocol(asyncio.BufferedProtocol):
    """Receives into a queue; `read` waits on one future when the queue is empty.

    A BufferedProtocol because a plain Protocol's transport allocates a fresh 256 KiB bytes object for every
    recv() and shrinks it: measured, that alone was a third of the CPU of reading a small event per token.
    Here the kernel writes into one buffer shared by the backend's connections, and each read is copied out of
    it at once (the loop calls get_buffer, recv_into, buffer_updated back to back, so sharing is safe).
    """

    def __init__(self, buffer: memoryview) -> None:
        self.buffer = buffer
        self.transport: asyncio.Transport | None = None  # what delivers to us (over TLS: the TLS transport)
        self.socket_transport: asyncio.Transport | None = None  # the one over the socket (TLS or not)
        self.queue: collections.deque[bytes] = collections.deque()
        self.queued = 0
        self.eof = False
        self.error: BaseException | None = None  # why the connection was lost, if not a clean close
        self.reading_paused = False
        self.waiter: asyncio.Future[None] | None = None  # a reader waiting for data or EOF
        self.writing_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        # Pacing: `paced` while the reads have a pacer (reading pauses after every receive); `held` while the
        # socket's reading is paused for it.
        self.paced = False
        self.held = False
        self.receives = 0  # buffer_updated calls: recv()s that delivered bytes (tests count them)
        self.resumes = 0  # a paced reader's waits that had to resume the socket's reading (tests count them)
        self.filled = False  # the last receive filled the whole buffer: more is probably waiting

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.socket_transport = transport  # type: ignore[assignment]  # start_tls keeps this one

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(self.buffer[:nbytes])
        self.queue.append(data)
        self.queued += nbytes
        self.receives += 1
        self.filled = nbytes == len(self.buffer)
        if self.paced and not self.held:
            self.hold()
        if self.queued > HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def hold(self) -> None:
        """Pacing: leave what arrives in the kernel (over TLS, pause the socket, not the TLS layer: the raw
        reads are the wake-ups to save)."""
        if not self.held and self.socket_transport is not None:
            self.held = True
            if not (self.reading_paused and self.socket_transport is self.transport):
                self.socket_transport.pause_reading()

    def release(self) -> None:
        """Pacing: take from the socket again (a timer calls this at the time the pacer asked for). A reader
        waiting for this moment gets what arrived meanwhile at once: it is read from here, with the socket's
        reading still paused, and stays paused. Resuming it meant an epoll registration, a pass of the loop
        to learn it was readable, and an unregistration after the read: two system calls and a wake-up a
        frame, 5% of the process at 100 turns/s (bench/README.md, "Session 13"). Reading resumes only when
        the kernel had nothing (over TLS: no whole record)."""
        if not self.held or self.socket_transport is None:
            return
        if self.waiter is not None and self._read_now():
            return
        self.held = False
        if not (self.reading_paused and self.socket_transport is self.transport):
            self.resumes += 1
            self.socket_transport.resume_reading()

    def _read_now(self) -> bool:
        """One read of the paused socket, as the event loop would make when it is readable; True when it
        delivered bytes (or the end). Through the selector transport's read handler, a private method of
        asyncio's: where it is missing (another event loop), False, and reading resumes as before."""
        transport = self.socket_transport
        read = getattr(transport, "_read_ready", None)
        if read is None or transport.is_closing() or self.reading_paused:
            return False
        receives = self.receives
        read()
        return self.receives != receives or self.eof

    def resume_after_high_water(self) -> None:
        self.reading_paused = False
        if self.transport is not None and not (self.held and self.socket_transport is self.transport):
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close our side too (over TLS the return value is ignored)

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        if exc is not None:
            self.error = exc
        self._wake()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _time_out(waiter: asyncio.Future[None], error: type[Exception], message: str) -> None:
    if not waiter.done():
        waiter.set_exception(error(message))


async def _wait(
    waiter: asyncio.Future[None], timeout: float | None, error: type[Exception], message: str
) -> None:
    """Wait for `waiter`; past `timeout` (None: no limit) it fails with `error(message)`. A timer (and the
    error) only when a timeout is asked for: streaming reads ask for none."""
    timer = None
    if timeout is not None:
        timer = asyncio.get_running_loop().call_later(timeout, _time_out, waiter, error, message)
    try:
        await waiter
    finally:
        if timer is not None:
            timer.cancel()


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._closed = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.queue and not protocol.eof:
            if self._closed:
                raise httpcore.ReadError("the connection is closed")
            pacer = current_pacer.get()
            if pacer is not None or protocol.paced:
                await self._wait_paced(pacer, timeout)
            else:
                protocol.waiter = self._loop.create_future()
                try:
                    await _wait(protocol.waiter, timeout, httpcore.ReadTimeout, "read timed out")
                finally:
                    protocol.waiter = None
        queue = protocol.queue
        if not queue:
            if self._closed or protocol.error is not None:
                raise httpcore.ReadError(str(protocol.error or "the connection is closed"))
            return b""  # the peer closed cleanly: httpcore decides whether that cut a response short
        data = queue.popleft()
        if queue and len(data) + len(queue[0]) <= max_bytes:
            # Several recv()s since the last read (a busy loop): hand them to h11 in one go.
            parts = [data]
            size = len(data)
            while queue and size + len(queue[0]) <= max_bytes:
                parts.append(queue.popleft())
                size += len(parts[-1])
            data = b"".join(parts)
        if len(data) > max_bytes:
            data, rest = data[:max_bytes], data[max_bytes:]
            queue.appendleft(rest)
        protocol.queued -= len(data)
        if protocol.reading_paused and protocol.queued <= HIGH_WATER // 4 and not protocol.eof:
            protocol.resume_after_high_water()
        return data

    async def _wait_paced(self, pacer: Pacer | None, timeout: float | None) -> None:
        """`read` with an empty queue when the reads have a pacer (or just had one): ask it when to read,
        keep the socket's reading paused until then, wait for data."""
        protocol = self._protocol
        loop = self._loop
        started = loop.time()
        resume_at = None
        if pacer is None:  # the pacer's reads are over (the drain after [DONE], the next request)
            protocol.paced = False
        else:
            protocol.paced = True
            token = current_pacer.set(None)  # whatever idle() reads itself is not paced by it
            try:
                until = await pacer.idle()
            finally:
                current_pacer.reset(token)
            if until is not None and not protocol.filled:
                # Never past half a read timeout (the held bytes would look like a timeout) or MAX_PACE.
                limit = MAX_PACE if timeout is None else min(MAX_PACE, timeout / 2)
                resume_at = min(until, started + limit)
            if protocol.queue or protocol.eof:  # arrived while idle() ran (reading was not held yet)
                return
            if self._closed:
                raise httpcore.ReadError("the connection is closed")
        timer = None
        if resume_at is not None and resume_at > loop.time():
            protocol.hold()
            timer = loop.call_at(resume_at, protocol.release)
        else:
            protocol.release()
        if timeout is not None:  # the read's timeout counts from its start, idle() included
            timeout = max(0.0, started + timeout - loop.time())
        protocol.waiter = loop.create_future()
        try:
            await _wait(protocol.waiter, timeout, httpcore.ReadTimeout, "read timed out")
        finally:
            protocol.waiter = None
            if timer is not None:
                timer.cancel()

    def unpace(self) -> None:
        """The response is over: read (and so notice the server closing) like an unpaced connection."""
        self._protocol.paced = False
        self._protocol.release()

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if self._closed or protocol.eof or self._transport.is_closing():
            raise httpcore.WriteError(str(protocol.error or "the connection is closed"))
        self._transport.write(buffer)
        if not protocol.writing_paused:
            return
        protocol.drain_waiter = self._loop.create_future()
        try:
            await _wait(protocol.drain_waiter, timeout, httpcore.WriteTimeout, "write timed out")
        finally:
            protocol.drain_waiter = None
        if protocol.eof and protocol.error is not None:
            raise httpcore.WriteError(str(protocol.error))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._transport.get_extra_info("sslcontext") is not None:
            # Like httpcore's anyio backend, no TLS close_notify exchange: just drop the socket. close() would
            # wait for the peer's answer (up to 30 s) before closing it, and a provider we hang up on mid-answer
            # must see the connection go at once.
            self._transport.abort()
        else:
            self._transport.close()
        self._protocol._wake()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                transport = await self._loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            await self.aclose()
            raise httpcore.ConnectTimeout("TLS handshake timed out") from None
        except (OSError, EOFError) as exc:  # ssl.SSLError and certificate errors are OSErrors
            await self.aclose()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        if transport is None:  # the peer closed during the handshake
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        self._closed = True  # the TLS transport owns the socket now
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol)

    @property
    def receives(self) -> int:
        """How many recv()s delivered bytes on this connection so far (over TLS: decrypted deliveries)."""
        return self._protocol.receives

    @property
    def resumes(self) -> int:
        """How many times pacing resumed the socket's reading (the kernel had nothing when a read was due)."""
        return self._protocol.resumes

    def get_extra_info(self, info: str) -> Any:
        transport = self._transport
        if info == "ssl_object":
            return transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        if info == "socket":
            return transport.get_extra_info("socket")
        if info == "is_readable":
            # httpcore asks before reusing an idle connection: readable means the server closed it (or sent
            # something unasked). We read all the time, so the protocol already knows, unless a pacer left
            # reading paused (the response is unpaced when it closes, so only a stray case): don't reuse it.
            protocol = self._protocol
            return protocol.eof or bool(protocol.queue) or protocol.held
        return None


@functools.lru_cache(maxsize=256)
def _is_ip_address(host: str) -> bool:
    """An address, not a name: there is one address to connect to and nothing to race (asyncio's happy
    eyeballs would still start a staggered race of one, a task and its bookkeeping per connection)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connections for one event loop (they share its receive buffer)."""

    def __init__(self) -> None:
        self._buffer = memoryview(bytearray(RECEIVE_BUFFER))

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        options: dict[str, Any] = {}
        if not _is_ip_address(host) and isinstance(loop, asyncio.BaseEventLoop):
            options["happy_eyeballs_delay"] = HAPPY_EYEBALLS_DELAY  # uvloop has no such option
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    lambda: _Protocol(self._buffer),
                    host,
                    port,
                    local_addr=(local_address, 0) if local_address else None,
                    **options,
                )
        except TimeoutError:  # before OSError: TimeoutError is one
            raise httpcore.ConnectTimeout("connecting timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        sock: socket.socket = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)  # asyncio already set TCP_NODELAY
        return AsyncioStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# httpcore's exceptions -> httpx's, the same pairs as httpx's own transport (whose table is private). Looked up
# along the raised class's MRO, so the most specific pair wins (httpcore.ReadTimeout -> httpx.ReadTimeout, not
# httpx.TimeoutException), as in httpx.
_ERRORS: dict[type[Exception], type[httpx.HTTPError]] = {
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.ProtocolError: httpx.ProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
}


def httpx_error_class(exc: Exception) -> type[httpx.HTTPError] | None:
    """The httpx exception class for an httpcore exception; None for anything else (raised as it is)."""
    for cls in type(exc).__mro__:
        mapped = _ERRORS.get(cls)
        if mapped is not None:
            return mapped
    return None


class _ResponseStream(httpx.AsyncByteStream):
    """A response body as httpx wants it (http11.Connection.body, errors mapped); closing it gives the
    connection back to the pool, or closes it when the body was not read to its end."""

    def __init__(self, connection: http11.Connection, pool: http11.Pool, timeout: float | None) -> None:
        self._connection = connection
        self._pool = pool
        self._timeout = timeout
        self._complete = False
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._connection.body(self._timeout):
                yield part
        except Exception as exc:
            mapped = httpx_error_class(exc)
            if mapped is None:
                raise
            raise mapped(str(exc)) from exc
        self._complete = True

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        connection = self._connection
        if isinstance(connection.stream, AsyncioStream):
            connection.stream.unpace()  # before the connection may carry another request
        await self._pool.release(connection, self._complete and connection.finished_cleanly())


class AsyncioTransport(httpx.AsyncBaseTransport):
    """What httpx.AsyncHTTPTransport(verify=..., limits=...) does (HTTP/1.1, no proxy), on AsyncioBackend,
    with the exchanges of http11.py: h11 over our sockets, a body piece per receive instead of per chunk.
    Responses carry httpcore's extensions (`http_version`, `reason_phrase`, `network_stream`)."""

    def __init__(
        self, *, verify: ssl.SSLContext | bool = True, limits: httpx.Limits = DEFAULT_LIMITS
    ) -> None:
        self._pool = http11.Pool(AsyncioBackend(), httpx.create_ssl_context(verify=verify), limits)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{url.scheme}://'.")
        origin = (scheme, url.raw_host, url.port or (443 if scheme == b"https" else 80))
        pool = self._pool
        try:
            connection = await pool.acquire(origin, request)
        except Exception as exc:
            mapped = httpx_error_class(exc)
            if mapped is None:
                raise
            raise mapped(str(exc)) from exc
        try:
            await connection.send(request)
            head = await connection.receive_head(request)
        except BaseException as exc:
            await pool.release(connection, False)
            mapped = httpx_error_class(exc) if isinstance(exc, Exception) else None
            if mapped is None:
                raise
            raise mapped(str(exc)) from exc
        status, version, headers, reason = head
        return httpx.Response(
            status_code=status,
            headers=headers,
            stream=_ResponseStream(connection, pool, request.extensions.get("timeout", {}).get("read")),
            extensions={
                "http_version": b"HTTP/" + version,
                "reason_phrase": reason,
                "network_stream": connection.stream,
            },
        )

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def __aenter__(self) -> AsyncioTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()
