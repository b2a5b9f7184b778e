"""The streaming completion client: one shared httpx pool, retries, fallback across providers, watchdogs.

How the engine calls it::

    routes = await sync_to_async(routes_for_user)(chat_model, user)  # conversations/services, from the database
    async with open_stream(ChatRequest(messages, ChatParams.from_dict(conv.params), user.pk), routes) as stream:
        async for event in stream:
            match event:
                case Started(): ...          # once, before the first token: stream.route served it
                case TextDelta(text=t): ...
                case Finish(reason=r): ...
                case Usage(): ...
    # errors are LLMError subclasses with .user_message; stream.result has usage, ttft, truncated...

Rules (see also errors.py and retry.py):
- Retries and fallback happen only before the first token reaches the caller. A "token" is any text,
  refusal or reasoning delta; an immediate Finish commits too. After that, an error ends the stream.
- Per route: retryable failures (network, timeouts, 408/409/429/5xx, error events before any token) are
  retried up to `max_retries` times with backoff. Then, or at once for a non-retryable failure whose class
  allows it (dead key, no credits, model missing, permission), the next route is tried. Errors about the
  request itself (context too long, images, JSON mode, other 400s, 413) are raised at once: they would fail
  on every provider. When every route fails, the last error is raised; `stream.result.errors` has them all.
- Watchdogs: connect (httpx), time to first token (from the start of each attempt), stall (longest silence
  between events once streaming), total (the whole call, retries included). Keep-alive comments (OpenRouter's
  ": OPENROUTER PROCESSING", llama.cpp's ": ping") and role-only chunks are NOT progress: they prove the
  connection is alive, not that an answer is coming, and a person waiting sees nothing either way.
- A stream that ends without a finish reason or [DONE] raises UpstreamTruncated (never reported complete).
  One with a finish reason but no [DONE] is complete (its usage may be missing).
- Closing the stream (leaving `async with`, `aclose()`, task cancellation) closes the upstream response at
  once, which closes the connection, so the provider stops generating (and billing).
- CPU per token matters (a read per token, hundreds of answers at once; bench/client_read.py): the shared
  pool runs on transport.py's asyncio socket layer and http11.py's exchanges (h11 writes requests, httptools
  parses responses, a body piece per socket read rather than per token), and the watchdogs share one lazily re-armed timer per stream (`_Watchdog`) instead of an asyncio.timeout per read.
- Paced reads (`open_stream(..., pacer=)`, pacing.py): after the first token, each time every received event
  has been yielded and the stream is about to wait for the network, `await pacer.idle()` is called; the bytes
  that arrive before the time it returns stay in the kernel and are read in one go then. The watchdogs and
  cancellation work as without a pacer.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import logging
import math
import threading
import urllib.request
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx

from conversations.llm.errors import (
    ConnectTimeout,
    FirstTokenTimeout,
    ImagesNotSupported,
    LLMError,
    NetworkError,
    NoRouteAvailable,
    ProviderMisconfigured,
    StallTimeout,
    TotalTimeout,
    UpstreamTimeout,
    UpstreamTruncated,
    error_from_response,
    error_from_stream_payload,
)
from conversations.llm.events import (
    TOKEN_EVENTS,
    ChunkEvent,
    Finish,
    RefusalDelta,
    Started,
    StreamEvent,
    StreamResult,
    TextDelta,
    Usage,
)
from conversations.llm.pacing import Pacer, current_pacer
from conversations.llm.request import ChatRequest, build_body, build_headers
from conversations.llm.retry import plan_retry
from conversations.llm.routes import Route
from conversations.llm.sse import SSEProtocolError, StreamDecoder, parse_usage
from conversations.llm.transport import AsyncioTransport

# Told before each retry's wait: (the attempt about to start, attempts per route, the provider's name).
RetryListener = Callable[[int, int, str], Awaitable[None]]

logger = logging.getLogger(__name__)

USER_AGENT = "chatsite/0.1 (httpx)"
# Generous: a busy site holds one connection per streaming answer (with 200 here, the 201st concurrent answer
# of a process waited for one to end: seconds of added TTFT at N = 500 in bench/load.py). Keep-alive saves a
# TLS handshake per turn. Django projects set them with CHAT_UPSTREAM_MAX_CONNECTIONS / CHAT_UPSTREAM_KEEPALIVE.
POOL_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100, keepalive_expiry=30.0)


def _pool_limits() -> httpx.Limits:
    try:
        from django.conf import settings

        return httpx.Limits(
            max_connections=settings.CHAT_UPSTREAM_MAX_CONNECTIONS,
            max_keepalive_connections=settings.CHAT_UPSTREAM_KEEPALIVE,
            keepalive_expiry=POOL_LIMITS.keepalive_expiry,
        )
    except Exception:  # no Django settings (the client used on its own): the defaults
        return POOL_LIMITS


# After [DONE], how long to wait for the end of the HTTP body so the connection can go back to the pool.
DRAIN_TIMEOUT = 0.25


@dataclass(frozen=True, slots=True)
class ClientConfig:
    connect_timeout: float = 5.0
    first_token_timeout: float = 60.0
    stall_timeout: float = 60.0
    total_timeout: float = 600.0
    max_retries: int = 2
    retry_max_delay: float = 20.0  # longest Retry-After we honour
    backoff_initial: float = 0.5
    backoff_cap: float = 8.0
    # After the finish chunk, how long to wait for the usage chunk and [DONE] before calling it a day.
    usage_grace: float = 10.0
    site_url: str = ""
    site_name: str = ""
    user_secret: str = field(default="", repr=False)  # keys the `user` hash

    @classmethod
    def from_settings(cls, **overrides: Any) -> ClientConfig:
        from django.conf import settings

        values: dict[str, Any] = {
            "connect_timeout": settings.CHAT_CONNECT_TIMEOUT,
            "first_token_timeout": settings.CHAT_FIRST_TOKEN_TIMEOUT,
            "stall_timeout": settings.CHAT_STALL_TIMEOUT,
            "total_timeout": settings.CHAT_TOTAL_TIMEOUT,
            "max_retries": settings.CHAT_MAX_RETRIES,
            "retry_max_delay": settings.CHAT_RETRY_MAX_DELAY,
            "site_url": settings.CHAT_SITE_URL or "",
            "site_name": settings.CHAT_SITE_NAME or "",
            "user_secret": settings.SECRET_KEY,
        }
        values.update(overrides)
        return cls(**values)


class Observer:
    """Told about failed attempts and retries, for metrics: conversations/metrics.py installs one that counts
    them (this package imports nothing of the site's). Called on the event loop: must be cheap, never raise."""

    def provider_error(self, provider: str, kind: str) -> None:
        """An attempt at `provider` failed with an error of this kind (`LLMError.kind`)."""

    def provider_retry(self, provider: str) -> None:
        """The request is about to be tried again at `provider`."""


observer = Observer()  # the default counts nothing


# ------------------------------------------------------------------------------------------- shared pool

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)
_clients_lock = threading.Lock()


class _NoCookies(http.cookiejar.CookieJar):
    """The shared client's cookie jar, which keeps nothing. One client serves every user of the site: a cookie
    a provider sets on one answer (Cloudflare's __cf_bm on api.openai.com, a load balancer's affinity cookie)
    would otherwise ride along on everyone's next requests. Keeping none also skips the standard library's
    cookie parsing, which built an email.message of every response's headers (about 0.1 ms an answer)."""

    def extract_cookies(self, response, request) -> None:
        return None

    def set_cookie(self, cookie) -> None:
        return None


def shared_client() -> httpx.AsyncClient:
    """The process's pooled client for the running event loop.

    httpx connections belong to the loop that opened them, so there is one client per loop (in production a
    single one; tests run many loops). A closed client is replaced.
    """
    loop = asyncio.get_running_loop()
    with _clients_lock:
        client = _clients.get(loop)
        if client is None or client.is_closed:
            limits = _pool_limits()
            client = httpx.AsyncClient(
                # Our asyncio socket layer (transport.py) unless the environment sets a proxy: passing a
                # transport turns httpx's HTTP(S)_PROXY/ALL_PROXY handling off, so keep httpx's own then.
                transport=None if _environment_proxies() else AsyncioTransport(limits=limits),
                limits=limits,
                timeout=httpx.Timeout(60.0, connect=5.0),  # per-request timeouts override this
                headers={"User-Agent": USER_AGENT},
                cookies=_NoCookies(),
                follow_redirects=False,  # a redirect would resend the key elsewhere; fail loudly instead
            )
            _clients[loop] = client
    return client


def _environment_proxies() -> bool:
    """Whether httpx would route some requests through a proxy from the environment (it reads the same)."""
    return any(scheme in ("http", "https", "all") for scheme in urllib.request.getproxies())


async def aclose_shared_client() -> None:
    """Close the running loop's shared client (ASGI lifespan shutdown, test teardown)."""
    loop = asyncio.get_running_loop()
    with _clients_lock:
        client = _clients.pop(loop, None)
    if client is not None:
        await client.aclose()


# ------------------------------------------------------------------------------------------------ stream


def open_stream(
    request: ChatRequest,
    routes: Sequence[Route],
    config: ClientConfig | None = None,
    *,
    client: httpx.AsyncClient | None = None,
    pacer: Pacer | None = None,
    on_retry: RetryListener | None = None,
) -> ChatStream:
    """A stream of events for `request`, served by the first route that works. Use as `async with`.

    `on_retry(attempt, attempts, provider_name)`: awaited before each retry's wait, so a person can be told
    "Retrying (2 of 3)…" (`attempts`: tries per route, CHAT_MAX_RETRIES + 1). Its errors are logged, never raised.

    `pacer`: after the first token, `await pacer.idle()` runs each time the stream has yielded every event it
    received and is about to wait for the network; nothing is read before the loop time it returns (None:
    read now). See pacing.py and README.md ("Paced reads").
    """
    return ChatStream(
        request, routes, config or ClientConfig.from_settings(), client, pacer=pacer, on_retry=on_retry
    )


@dataclass
class _Attempt:
    """One HTTP response being read. `stack` closes the response (and so the connection if unfinished)."""

    route: Route
    number: int
    stack: AsyncExitStack
    decoder: StreamDecoder
    chunks: AsyncIterator[bytes] | None  # None when the whole answer came as one JSON body
    request_id: str | None
    first_events: list[ChunkEvent]
    eof: bool = False


class ChatStream:
    """Async iterator of StreamEvents and async context manager that guarantees the upstream is closed."""

    def __init__(
        self,
        request: ChatRequest,
        routes: Sequence[Route],
        config: ClientConfig,
        client: httpx.AsyncClient | None = None,
        *,
        pacer: Pacer | None = None,
        on_retry: RetryListener | None = None,
    ) -> None:
        self.request = request
        self.on_retry = on_retry
        self.routes = list(routes)
        self.config = config
        self._client = client
        self.pacer = pacer
        self.result = StreamResult()
        self._gen = self._run()

    @property
    def route(self) -> Route | None:
        """The route serving the answer; None until the Started event."""
        return self.result.route

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> StreamEvent:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        await self._gen.aclose()

    # -- the state machine ---------------------------------------------------------------------------------

    async def _run(self) -> AsyncIterator[StreamEvent]:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._started_at = loop.time()
        self._total_deadline = self._started_at + self.config.total_timeout
        self._watchdog = _Watchdog(loop)
        try:
            attempt = await self._connect_any()
            async with attempt.stack:
                self._commit(attempt)
                yield Started.for_route(attempt.route, attempt.number, attempt.request_id)
                for event in attempt.first_events:
                    self._note(event)
                    yield event
                async for event in self._rest(attempt):
                    self._note(event)
                    yield event
        except LLMError as err:
            route = self.result.route
            if route is not None:  # failed after the commit: say who failed
                err.provider_name = err.provider_name or route.provider_name
                err.model_id = err.model_id or route.model_id
                err.request_id = err.request_id or self.result.request_id
                logger.warning("Completion stream failed after the first token: %s", err)
                observer.provider_error(route.provider_name, err.kind)
            if isinstance(err, UpstreamTruncated):
                self.result.truncated = True
            raise
        finally:
            self._watchdog.close()
            self.result.duration = loop.time() - self._started_at

    async def _connect_any(self) -> _Attempt:
        """Try routes in order until one produces a first token; raise the last error if none does."""
        config = self.config
        if not self.routes:
            raise NoRouteAvailable()
        last_error: LLMError | None = None
        number = 0
        for route in self.routes:
            if route.key_unreadable:
                last_error = self._failed(ProviderMisconfigured(), route, number, "next route")
                continue
            if self.request.has_images and not route.supports_images:
                last_error = self._failed(ImagesNotSupported(), route, number, "next route")
                continue
            retries_done = 0
            while True:
                number += 1
                try:
                    return await self._start_attempt(route, number)
                except LLMError as err:
                    last_error = err
                    delay = plan_retry(
                        err,
                        retries_done,
                        max_retries=config.max_retries,
                        max_delay=config.retry_max_delay,
                        initial=config.backoff_initial,
                        cap=config.backoff_cap,
                    )
                    if delay is not None and self._loop.time() + delay >= self._total_deadline:
                        delay = None  # the wait alone would blow the time budget
                    if delay is not None:
                        self._failed(err, route, number, f"retry in {delay:.2f}s")
                        observer.provider_retry(route.provider_name)
                        await self._tell_retry(retries_done + 2, config.max_retries + 1, route.provider_name)
                        await asyncio.sleep(delay)
                        retries_done += 1
                        continue
                    if not err.fallback:
                        self._failed(err, route, number, "giving up")
                        raise
                    self._failed(err, route, number, "next route")
                    break
        assert last_error is not None
        raise last_error

    async def _tell_retry(self, attempt: int, attempts: int, provider_name: str) -> None:
        if self.on_retry is None:
            return
        try:
            await self.on_retry(attempt, attempts, provider_name)
        except Exception:  # telling the person must never cost the answer
            logger.exception("on_retry listener failed")

    def _failed(self, err: LLMError, route: Route, number: int, action: str) -> LLMError:
        err.provider_name = err.provider_name or route.provider_name
        err.model_id = err.model_id or route.model_id
        self.result.errors.append(err)
        self.result.attempts = number
        logger.warning("Completion attempt %d failed (%s): %s", number, action, err)
        observer.provider_error(route.provider_name, err.kind)
        return err

    def _commit(self, attempt: _Attempt) -> None:
        result = self.result
        result.route = attempt.route
        result.attempts = attempt.number
        result.request_id = attempt.request_id
        result.ttft = self._loop.time() - self._started_at
        logger.info(
            "Completion started: provider=%s model=%s attempt=%d request_id=%s ttft=%.3fs",
            attempt.route.provider_name,
            attempt.route.model_id,
            attempt.number,
            attempt.request_id,
            result.ttft,
        )

    def _note(self, event: StreamEvent) -> None:
        if type(event) is Finish:
            self.result.finish_reason = event.reason
        elif type(event) is Usage:
            self.result.usage = event

    # -- one attempt, up to the first token ----------------------------------------------------------------

    async def _start_attempt(self, route: Route, number: int) -> _Attempt:
        config = self.config
        loop = self._loop
        ttft_deadline = min(loop.time() + config.first_token_timeout, self._total_deadline)
        client = self._client or shared_client()
        http_request = client.build_request(
            "POST",
            route.chat_url,
            json=build_body(self.request, route, user_secret=config.user_secret),
            headers=build_headers(route, site_url=config.site_url, site_name=config.site_name),
            timeout=httpx.Timeout(
                connect=config.connect_timeout, read=None, write=None, pool=config.connect_timeout
            ),
        )
        stack = AsyncExitStack()
        request_id: str | None = None
        try:
            try:
                async with asyncio.timeout_at(ttft_deadline):
                    response = await client.send(http_request, stream=True)
            except TimeoutError:
                raise self._timeout(
                    ttft_deadline, FirstTokenTimeout(timeout=config.first_token_timeout)
                ) from None
            except httpx.ConnectTimeout:
                raise ConnectTimeout(timeout=config.connect_timeout) from None
            except httpx.TimeoutException as exc:
                raise UpstreamTimeout(_describe(exc)) from None
            except httpx.HTTPError as exc:
                raise NetworkError(_describe(exc)) from None
            stack.callback(_let_go, response)  # after the close below (an exit stack runs last-in first)
            stack.push_async_callback(response.aclose)
            request_id = response.headers.get("x-request-id") or response.headers.get("x-generation-id")

            if response.status_code >= 300:
                body = await self._read_body(response, ttft_deadline)
                err = error_from_response(
                    response.status_code,
                    body,
                    response.headers,
                    model_id=route.model_id,
                    provider_name=route.provider_name,
                )
                raise err

            decoder = StreamDecoder(route.model_id)
            content_type = response.headers.get("content-type", "")
            if "text/html" in content_type:
                # A web page with status 200: a login portal or a UI at the base URL, not an API.
                raise SSEProtocolError("answered with an HTML page instead of an event stream", status=200)
            if "json" in content_type and "event-stream" not in content_type:
                # The server ignored stream:true and sent the whole answer at once (some local servers do).
                body = await self._read_body(response, ttft_deadline)
                events = _events_from_completion(body, decoder, route)
                return _Attempt(route, number, stack, decoder, None, request_id, events, eof=True)

            chunks = response.aiter_bytes()
            stack.push_async_callback(chunks.aclose)  # type: ignore[attr-defined]
            attempt = _Attempt(route, number, stack, decoder, chunks, request_id, [])
            await self._read_to_first_token(attempt, ttft_deadline)
            return attempt
        except LLMError as err:
            err.provider_name = err.provider_name or route.provider_name
            err.model_id = err.model_id or route.model_id
            err.request_id = err.request_id or request_id
            await stack.aclose()
            raise
        except BaseException:
            await stack.aclose()  # cancelled while connecting: still close the response
            raise

    async def _read_to_first_token(self, attempt: _Attempt, ttft_deadline: float) -> None:
        decoder = attempt.decoder
        pending = attempt.first_events
        while True:
            piece = await self._read(
                attempt, ttft_deadline, FirstTokenTimeout, self.config.first_token_timeout
            )
            if piece is None:
                pending.extend(decoder.close())
                if not decoder.finished:
                    raise UpstreamTruncated("the stream ended before the first token")
                return
            events = decoder.feed(piece)
            if events:
                pending.extend(events)
                if decoder.finished or any(type(e) in TOKEN_EVENTS for e in events):
                    return

    # -- after the commit ----------------------------------------------------------------------------------

    async def _rest(self, attempt: _Attempt) -> AsyncIterator[ChunkEvent]:
        config = self.config
        loop = self._loop
        decoder = attempt.decoder
        total_deadline = self._total_deadline
        stall_timeout = config.stall_timeout
        last_progress = loop.time()
        while not attempt.eof and not decoder.done:
            decoder.raise_pending()  # an error that came in the same read as the events before it
            if decoder.finish_reason is not None:
                deadline = min(last_progress + config.usage_grace, total_deadline)
            else:
                deadline = min(last_progress + stall_timeout, total_deadline)
            try:
                piece = await self._read(attempt, deadline, StallTimeout, stall_timeout, self.pacer)
            except UpstreamTimeout:
                if decoder.finish_reason is not None:
                    logger.info("No [DONE] within the grace period after the finish chunk; ending the stream")
                    return
                raise
            if piece is None:
                events = decoder.close()
                for event in events:
                    yield event
                if not decoder.finished:
                    raise UpstreamTruncated("the connection closed before the answer finished")
                return
            events = decoder.feed(piece)
            if events:
                for event in events:
                    yield event
                # Measured after the caller has handled the events: a slow consumer is not a stalled upstream.
                last_progress = loop.time()
        if decoder.done and not attempt.eof:
            await self._drain(attempt)

    async def _drain(self, attempt: _Attempt) -> None:
        """Read the end of the HTTP body after [DONE] so the connection can be reused; don't wait long."""
        deadline = self._loop.time() + DRAIN_TIMEOUT
        try:
            while await self._read(attempt, deadline, StallTimeout, None) is not None:
                pass
        except LLMError:
            pass  # closing the response will close this connection instead of pooling it

    # -- reading with deadlines ----------------------------------------------------------------------------

    async def _read(
        self,
        attempt: _Attempt,
        deadline: float,
        on_timeout: type[UpstreamTimeout],
        seconds: float | None,
        pacer: Pacer | None = None,
    ) -> bytes | None:
        """The next piece of the body; None at its end (or when the connection broke). Past `deadline`, raise
        `on_timeout(timeout=seconds)`, or TotalTimeout if that is the deadline that passed. With `pacer`, the
        transport paces the socket reads this makes (pacing.py)."""
        assert attempt.chunks is not None
        watchdog = self._watchdog
        task = watchdog.watch(deadline)
        paced = current_pacer.set(pacer) if pacer is not None else None
        try:
            return await attempt.chunks.__anext__()
        except StopAsyncIteration:
            attempt.eof = True
            return None
        except asyncio.CancelledError:
            # Ours (the deadline passed) unless someone else cancelled the task too: then theirs wins, as
            # with asyncio.timeout.
            if watchdog.expired and task.uncancel() == 0:
                raise self._timeout(deadline, on_timeout(timeout=seconds)) from None
            raise
        except httpx.HTTPError as exc:
            # A dropped connection (incomplete chunked body, reset): whether that truncated the answer
            # depends on whether it had finished, which the caller knows.
            logger.info("Completion stream connection ended: %s", _describe(exc))
            attempt.eof = True
            return None
        finally:
            watchdog.unwatch()
            if paced is not None:
                current_pacer.reset(paced)

    def _timeout(self, deadline: float, phase_error: LLMError) -> LLMError:
        if deadline >= self._total_deadline:
            return TotalTimeout(timeout=self.config.total_timeout)
        return phase_error

    async def _read_body(self, response: httpx.Response, deadline: float) -> bytes:
        try:
            async with asyncio.timeout_at(min(deadline, self._loop.time() + 10.0)):
                return await response.aread()
        except (TimeoutError, httpx.HTTPError):
            return b""


_CLOSED_STREAM = httpx.ByteStream(b"")


def _let_go(response: httpx.Response) -> None:
    """A closed response's stream, replaced by an empty one. httpx's AsyncClient wraps the stream in a
    BoundAsyncStream that refers back to the response: a reference cycle holding the response, its request,
    their headers and our transport's stream (about 35 objects an answer) that only Python's cycle collector
    could free, in collections that took up to 85-120 ms of the event loop at 100 answers a second (bench/
    README.md, "Session 16"). Nothing reads a closed response's stream (httpx raises StreamClosed first)."""
    response.stream = _CLOSED_STREAM


class _Watchdog:
    """The read deadline of one stream, kept by one timer instead of an asyncio.timeout per read.

    asyncio.timeout costs a Timeout object and a timer handle (scheduled, then cancelled) for every read, and
    an answer is a read per token. Here the timer is re-armed lazily: moving the deadline later, which every
    event does for the stall watchdog, costs nothing; when the timer fires before the current deadline it
    re-arms itself for it, so a stream needs a new timer about once per stall period. An earlier deadline
    (first token -> usage grace, drain) reschedules it. When the deadline has passed during a read it cancels
    the reading task like asyncio.timeout does, and `_read` turns that into the timeout error (`uncancel`, so
    a cancellation from outside still propagates).
    """

    __slots__ = ("_handle", "_loop", "_task", "_when", "deadline", "expired")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self._when = math.inf  # when the timer will fire
        self._task: asyncio.Task[Any] | None = None  # the task reading, None between reads
        self.deadline = math.inf
        self.expired = False

    def watch(self, deadline: float) -> asyncio.Task[Any]:
        """Start of a read that must end by `deadline`: returns the reading task."""
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self.deadline = deadline
        self.expired = False
        if self._handle is None or deadline < self._when:
            if self._handle is not None:
                self._handle.cancel()
            self._when = deadline
            self._handle = self._loop.call_at(deadline, self._fire)
        return task

    def unwatch(self) -> None:
        self._task = None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        if self._task is None:
            return  # between reads: the next read arms it again
        if self.deadline > self._when:
            self._when = self.deadline
            self._handle = self._loop.call_at(self.deadline, self._fire)
            return
        self.expired = True
        self._task.cancel()


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _events_from_completion(body: bytes, decoder: StreamDecoder, route: Route) -> list[ChunkEvent]:
    """Events for a non-streamed chat.completion body (a server that ignored stream:true)."""
    try:
        obj = json.loads(body)
    except ValueError:
        raise UpstreamTruncated("the answer was not valid JSON") from None
    if not isinstance(obj, dict):
        raise UpstreamTruncated("the answer was not a JSON object")
    if obj.get("error") or obj.get("object") == "error":
        raise error_from_stream_payload(obj, model_id=route.model_id)
    events: list[ChunkEvent] = []
    choices = obj.get("choices") or []
    if choices and isinstance(choices[0], dict):
        message = choices[0].get("message") or {}
        if isinstance(message.get("refusal"), str) and message["refusal"]:
            events.append(RefusalDelta(message["refusal"]))
        if isinstance(message.get("content"), str) and message["content"]:
            events.append(TextDelta(message["content"]))
        reason = choices[0].get("finish_reason") or "stop"
        decoder.finish_reason = reason
        events.append(Finish(reason))
    if isinstance(obj.get("usage"), dict):
        decoder.usage = parse_usage(obj["usage"])
        events.append(decoder.usage)
    decoder.done = True
    if decoder.finish_reason is None:
        raise UpstreamTruncated("the answer had no choices")
    return events


# ------------------------------------------------------------------------------------------ conveniences


@dataclass(slots=True)
class Completion:
    text: str
    refusal: str
    result: StreamResult


async def complete(
    request: ChatRequest, routes: Sequence[Route], config: ClientConfig | None = None
) -> Completion:
    """The whole answer at once (titles, summaries), with the same retries, fallback and errors."""
    text: list[str] = []
    refusal: list[str] = []
    async with open_stream(request, routes, config) as stream:
        async for event in stream:
            if type(event) is TextDelta:
                text.append(event.text)
            elif type(event) is RefusalDelta:
                refusal.append(event.text)
    return Completion("".join(text), "".join(refusal), stream.result)
