"""Running an answer: stream it from the provider, fan it out to every open tab, save it, survive faults.

A generation is an asyncio task owned by the process, not by the socket that asked for it, so closing the
tab does not stop the answer. While it runs:

- text is coalesced into `delta` frames, each carrying the message id and the character offset it starts
  at, sent to the conversation's group. The first text goes out at once (time to first token); after that
  at most one frame every CHAT_FRAME_INTERVAL (sooner past CHAT_FRAME_MAX_CHARS), an interval stretched
  under load so that the whole process sends at most PROCESS_FRAMES_PER_SECOND frames: a frame costs the
  same CPU whatever its size, so many concurrent answers get fewer, larger frames instead of a backlog;
- the partial text and a heartbeat are saved every CHAT_CHECKPOINT_INTERVAL, never per token, without
  holding up the frames;
- it listens on its own control group (`gen.<message>`) for `stop` and `sync` requests from any socket in
  any process. A `sync` is answered with the text the asker lacks, sent in order with the live frames, which
  is what makes resume exact.

Offsets count Unicode code points (Python `len`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass

from asgiref.sync import SyncToAsync
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.db import close_old_connections
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from django.utils import timezone

from conversations import metrics  # metrics
from conversations.llm import errors as llm_errors
from conversations.llm.client import ClientConfig, open_stream
from conversations.llm.events import Finish, RefusalDelta, Started, TextDelta, Usage
from conversations.llm.tokens import estimate_text_tokens
from conversations.metrics import database_sync_to_async  # metrics: channels' own, timing the queue wait
from conversations.models import ChatModel, Message
from conversations.services import groups, shutdown, titles
from conversations.services.context import build_request
from conversations.services.personal_keys import routes_for_user
from conversations.services.serialize import message_dict
from conversations.services.sweep import INTERRUPTED_ERROR
from conversations.services.turns import history_for

logger = logging.getLogger(__name__)

# Running generations of this process, by message pk. Holding the task here keeps it alive (asyncio only
# keeps weak references) and lets tests and shutdown find them.
RUNNING: dict[int, Generation] = {}

# Frames a second for all the answers of one process together (see the module docstring), about half a core
# of frame handling (bench/load.py): with the in-memory layer a frame costs about 0.25 ms of CPU; through
# Redis pub/sub (conversations/layers.py) about 0.15 ms more for publishing and receiving it. Below budget
# times CHAT_FRAME_INTERVAL concurrent answers, every answer gets frames at that interval.
PROCESS_FRAMES_PER_SECOND = {"in-memory": 2000, "redis": 1500}


TEXT_EVENTS = (TextDelta, RefusalDelta)  # the events whose text is the answer's

# How long a generation waits for its listener to take the "done" message before cancelling it anyway.
LISTENER_STOP_TIMEOUT = 5.0


def frame_interval(layer) -> float:
    """Seconds between two frames of one answer: CHAT_FRAME_INTERVAL, longer when many answers run."""
    budget = PROCESS_FRAMES_PER_SECOND["in-memory" if isinstance(layer, InMemoryChannelLayer) else "redis"]
    return max(settings.CHAT_FRAME_INTERVAL, len(RUNNING) / budget)


# How long the database thread of consumers and generations keeps its connection when CONN_MAX_AGE is 0.
ENGINE_CONN_MAX_AGE = 600.0


@receiver(connection_created, dispatch_uid="engine_keeps_its_connection")
def _keep_engine_connection(sender, connection, **kwargs) -> None:
    """Every ORM call of the websocket consumers and generations runs on asgiref's one sync thread, and
    channels closes that thread's connection after each call when CONN_MAX_AGE is 0 (the default, right for
    Django's per-request threads under ASGI). Here that would mean a new connection for every checkpoint;
    on SQLite closing the last connection also checkpoints and deletes the WAL file. That long-lived thread
    keeps its connection instead; it is still health-checked before reuse and replaced after errors."""
    if connection.settings_dict.get("CONN_MAX_AGE") != 0:
        return
    if threading.current_thread() in getattr(SyncToAsync.single_thread_executor, "_threads", ()):
        connection.close_at = time.monotonic() + ENGINE_CONN_MAX_AGE


@dataclass
class Outcome:
    status: str
    finish_reason: str = ""
    error: str = ""


def start_generation(
    message: Message, prepared: Prepared | Exception | None = None, received_at: float | None = None
) -> asyncio.Task:
    """Start answering the placeholder `message` in the background. Call from the event loop.

    `prepared`: what `prepare` returned (or raised) in the same database call that saved the turn, so the
    request leaves without another trip to the database thread; None to prepare it here. `received_at`:
    time.monotonic() when the turn frame arrived (metrics: the server's share of the time to first token)."""
    message_pk = message.pk
    generation = Generation(message_pk, str(message.public_id), str(message.conversation.public_id))
    generation.prepared = prepared
    generation.received_at = received_at or time.monotonic()  # metrics
    task = asyncio.get_running_loop().create_task(generation.run(), name=f"generation-{message_pk}")
    generation.task = task
    RUNNING[message_pk] = generation
    task.add_done_callback(lambda _t: RUNNING.pop(message_pk, None))
    metrics.stream_started()  # metrics
    task.add_done_callback(metrics.stream_ended)  # metrics
    shutdown.install()  # in a daphne process: SIGTERM lets running answers finish or save (idempotent)
    return task


class Generation:
    def __init__(self, message_pk: int, message_id: str, conversation_id: str) -> None:
        self.message_pk = message_pk
        self.message_id = message_id
        self.conversation_id = conversation_id
        self.conversation_group = groups.conversation_group(conversation_id)
        self.task: asyncio.Task | None = None
        self.layer = get_channel_layer()
        self.sent_text = ""  # broadcast so far
        self.pending: list[str] = []  # received, not yet broadcast
        self.pending_chars = 0
        self.lock = asyncio.Lock()  # one frame at a time: keeps sync replies in order with live frames
        self.loop = asyncio.get_running_loop()
        self.last_flush = -float("inf")  # loop time the last frame was cut: the first text goes out at once
        self.flush_timer: asyncio.TimerHandle | None = None  # the next coalesced frame, when one is due
        self.flush_tasks: set[asyncio.Task] = set()
        self.reader: asyncio.Task | None = None
        self.stop_requested = False
        self.shutdown_requested = False
        self.finished = False
        self.prepared: Prepared | Exception | None = None
        self.frame_max_chars = settings.CHAT_FRAME_MAX_CHARS  # read per token: not through the settings proxy

    # --- text and frames --------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        return self.sent_text + "".join(self.pending)

    def _add_text(self, text: str) -> bool:
        """Queue streamed text. True: flush now (the first text, or a full frame); else a timer will."""
        self.pending.append(text)
        self.pending_chars += len(text)
        if self.pending_chars >= self.frame_max_chars:
            return True
        if self.flush_timer is None:
            wait = self.last_flush + frame_interval(self.layer) - self.loop.time()
            if wait <= 0:
                return True
            self.flush_timer = self.loop.call_later(wait, self._flush_later)
        return False

    def _flush_later(self) -> None:
        self.flush_timer = None
        if self.pending and not self.finished:
            task = self.loop.create_task(self._flush())
            self.flush_tasks.add(task)
            task.add_done_callback(self.flush_tasks.discard)

    async def _flush(self) -> None:
        async with self.lock:
            if not self.pending:
                return
            if self.flush_timer is not None:
                self.flush_timer.cancel()
                self.flush_timer = None
            chunk = "".join(self.pending)
            offset = len(self.sent_text)
            metrics.frame_sent(len(self.pending))  # metrics: one text delta per token
            self.pending.clear()
            self.pending_chars = 0
            self.sent_text += chunk
            self.last_flush = self.loop.time()
            await self.layer.group_send(
                self.conversation_group,
                groups.frame({"type": "delta", "conversation": self.conversation_id, "message": self.message_id,
                              "offset": offset, "text": chunk}),
            )  # fmt: skip
            if not offset:  # metrics: the first frame (its text arrived at last_flush)
                metrics.first_frame(self.received_at, self.requested_at, self.last_flush)

    async def _answer_sync(self, reply_to: str, offset: int) -> None:
        async with self.lock:
            offset = max(0, min(offset, len(self.sent_text)))
            try:
                await self.layer.send(
                    reply_to,
                    groups.frame({"type": "delta", "conversation": self.conversation_id,
                                  "message": self.message_id, "offset": offset, "text": self.sent_text[offset:]}),
                )  # fmt: skip
            except ChannelFull:  # that socket is far behind; it asks again at its next gap
                logger.warning(
                    "sync reply for answer %s dropped: the asking socket's channel is full", self.message_pk
                )

    async def _broadcast(self, frame: dict) -> None:
        await self.layer.group_send(self.conversation_group, groups.frame(frame))

    # --- background helpers ----------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Save the partial text and the heartbeat every CHAT_CHECKPOINT_INTERVAL until the stream ends."""
        while True:
            await asyncio.sleep(settings.CHAT_CHECKPOINT_INTERVAL)
            await database_sync_to_async(_save_checkpoint)(self.message_pk, self.text)

    async def _listen(self) -> None:
        """Stop and sync requests, from any socket in any process, until `_stop_listening`."""
        while True:
            message = await self.layer.receive(self.control_channel)
            kind = message.get("type")
            if kind == "gen.done":
                return
            if kind == "gen.stop":
                self.stop_requested = True
                if self.reader is not None:
                    self.reader.cancel()
            elif kind == "gen.sync" and isinstance(message.get("reply_to"), str):
                try:
                    await self._answer_sync(message["reply_to"], int(message.get("offset") or 0))
                except Exception:  # a bad request must not end the listener: Stop still has to work
                    logger.exception("sync request for answer %s failed", self.message_pk)

    async def _stop_listening(self, listener: asyncio.Task) -> None:
        """Leave the control group and end the listener with a message, not by cancelling it: a cancelled
        channels-redis receive() can drop a message it already popped for another socket of this process
        (django/channels_redis#366), which that socket would see as a gap."""
        await self.layer.group_discard(groups.generation_group(self.message_id), self.control_channel)
        if not listener.done():
            with contextlib.suppress(Exception):
                await self.layer.send(self.control_channel, {"type": "gen.done"})
                await asyncio.wait({listener}, timeout=LISTENER_STOP_TIMEOUT)
        if not listener.done():
            listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        discard_channel = getattr(self.layer, "discard_channel", None)  # Redis pub/sub: unsubscribe it
        if discard_channel is not None:
            with contextlib.suppress(Exception):
                await discard_channel(self.control_channel)

    def interrupt(self) -> None:
        """The process is shutting down: stop reading and save the answer as interrupted, text kept."""
        self.shutdown_requested = True
        if self.reader is not None:
            self.reader.cancel()

    # --- the run ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        if shutdown.draining():  # SIGTERM arrived: start nothing new in a process about to exit
            final = await database_sync_to_async(_fail_unprepared)(self.message_pk, shutdown.RESTARTING_ERROR)
            await self._broadcast({"type": "end", "conversation": self.conversation_id, "message": final})
            return
        started = time.monotonic()
        # Listen for stop and sync before anything slow, so an early Stop is not lost.
        self.control_channel = await self.layer.new_channel()
        await self.layer.group_add(groups.generation_group(self.message_id), self.control_channel)
        listener = asyncio.create_task(self._listen())
        try:
            prepared = self.prepared
            if isinstance(prepared, Exception):
                raise prepared
            if prepared is None:
                prepared = await database_sync_to_async(_prepare)(self.message_pk)
        except Exception as exc:
            logger.exception("generation %s could not be prepared", self.message_pk)
            await self._stop_listening(listener)
            error = (
                exc.user_message
                if isinstance(exc, llm_errors.LLMError)
                else "The answer could not be started."
            )
            final = await database_sync_to_async(_fail_unprepared)(self.message_pk, error)
            await self._broadcast({"type": "end", "conversation": self.conversation_id, "message": final})
            return
        heartbeat = asyncio.create_task(self._heartbeat())
        result_holder: dict = {}
        try:
            self.reader = asyncio.create_task(self._read(prepared, result_holder))
            if self.stop_requested or self.shutdown_requested:  # arrived while the prompt was being built
                self.reader.cancel()
            try:
                outcome = await self.reader
            except asyncio.CancelledError:
                if self.stop_requested:
                    outcome = Outcome(Message.Status.CANCELLED, finish_reason="stopped")
                elif self.shutdown_requested:  # SIGTERM's grace period is over: save what we have
                    outcome = Outcome(Message.Status.INTERRUPTED, "interrupted", INTERRUPTED_ERROR)
                else:
                    raise  # cancelled from outside: leave it to the sweep (interrupted)
        finally:
            self.finished = True
            if self.flush_timer is not None:
                self.flush_timer.cancel()
            heartbeat.cancel()
            await asyncio.gather(heartbeat, *self.flush_tasks, return_exceptions=True)
            await self._stop_listening(listener)
        await self._flush()
        duration = time.monotonic() - started
        final = await database_sync_to_async(_finish)(
            self.message_pk, self.text, outcome, result_holder.get("result"), prepared, duration
        )
        await self._broadcast({"type": "end", "conversation": self.conversation_id, "message": final})
        if prepared.needs_title and outcome.status == Message.Status.COMPLETE:
            route = getattr(result_holder.get("result"), "route", None)
            await titles.write_title(
                prepared.conversation_pk,
                prepared.owner_id,
                self.conversation_id,
                own_key_routes=prepared.routes if route is not None and route.personal_key else None,
            )

    async def _read(self, prepared: Prepared, result_holder: dict) -> Outcome:
        config = ClientConfig.from_settings()
        self.requested_at = time.monotonic()  # metrics
        try:
            async with open_stream(prepared.request, prepared.routes, config=config) as stream:
                result_holder["result"] = stream.result
                async for event in stream:
                    if type(event) in TEXT_EVENTS:
                        if self._add_text(event.text):
                            await self._flush()
                    elif isinstance(event, Started):
                        await self._broadcast(
                            {"type": "status", "conversation": self.conversation_id, "message": self.message_id,
                             "status": Message.Status.STREAMING, "provider": event.provider_name,
                             "model": event.model_id}
                        )  # fmt: skip
                    elif isinstance(event, Finish | Usage):
                        pass  # both end up in stream.result
                result = stream.result
        except llm_errors.LLMError as exc:
            logger.warning("generation %s failed: %s", self.message_pk, exc)
            reason = "truncated" if isinstance(exc, llm_errors.UpstreamTruncated) else ""
            return Outcome(Message.Status.ERROR, finish_reason=reason, error=exc.user_message)
        if result.truncated:
            return Outcome(
                Message.Status.ERROR,
                finish_reason="truncated",
                error="The connection to the provider ended before the answer was complete.",
            )
        return Outcome(Message.Status.COMPLETE, finish_reason=result.finish_reason or "stop")


# --- database steps (sync, run in the ORM thread) -----------------------------------------------------------


@dataclass
class Prepared:
    message_id: str
    conversation_id: str
    conversation_pk: int
    owner_id: int
    request: object
    routes: list
    chat_model_pk: int | None
    trimmed: bool
    prompt_estimate: int
    needs_title: bool
    message: Message  # as loaded here, parent included: the final save updates it without reading it again
    chat_model: ChatModel


def prepare(message: Message, conversation=None, owner=None) -> Prepared:
    """Everything the answer to the placeholder `message` needs before its request can leave: the prompt
    (history, context budget) and the routes. Sync (ORM). When a turn has just saved the placeholder, pass
    the objects it holds (message with model and parent, the conversation, its owner): then only the
    history and the routes are read."""
    conversation, path = history_for(message, conversation)
    chat_model = message.model
    if chat_model is None:
        raise llm_errors.NoRouteAvailable("the answer's model was deleted")
    prepared_context = build_request(conversation, path, chat_model)
    # The owner's own key, if they brought one. A given owner has just been checked against the model.
    routes = (
        routes_for_user(chat_model, owner, checked_model_pk=chat_model.pk)
        if owner is not None
        else routes_for_user(chat_model, conversation.owner_id)
    )
    if prepared_context.trimmed:
        Message.objects.filter(pk=message.pk).update(context_trimmed=True)
        message.context_trimmed = True
    return Prepared(
        message_id=str(message.public_id),
        conversation_id=str(conversation.public_id),
        conversation_pk=conversation.pk,
        owner_id=conversation.owner_id,
        request=prepared_context.request,
        routes=routes,
        chat_model_pk=chat_model.pk,
        trimmed=prepared_context.trimmed,
        prompt_estimate=prepared_context.prompt_estimate,
        needs_title=not conversation.title,
        message=message,
        chat_model=chat_model,
    )


def _prepare(message_pk: int) -> Prepared:
    close_old_connections()
    return prepare(Message.objects.select_related("model__provider", "parent").get(pk=message_pk))


def _fail_unprepared(message_pk: int, error: str) -> dict:
    Message.objects.filter(pk=message_pk).update(
        status=Message.Status.ERROR, error=error, reserved_cost=None, heartbeat_at=None
    )
    frame = message_dict(Message.objects.select_related("parent").get(pk=message_pk))
    frame.pop("siblings")
    return frame


def _save_checkpoint(message_pk: int, text: str) -> None:
    Message.objects.filter(pk=message_pk, status__in=Message.ACTIVE_STATUSES).update(
        content=text, status=Message.Status.STREAMING, heartbeat_at=timezone.now(), updated_at=timezone.now()
    )


def _finish(
    message_pk: int, text: str, outcome: Outcome, result, prepared: Prepared, duration: float
) -> dict:
    """The final save: one UPDATE with everything we learned, no reads. Returns the message as a frame dict."""
    message = prepared.message
    message.content = text
    message.status = outcome.status
    message.finish_reason = outcome.finish_reason
    message.error = outcome.error
    message.duration_ms = round(duration * 1000)
    message.heartbeat_at = None
    message.reserved_cost = None
    route = getattr(result, "route", None)
    served_by = prepared.chat_model_pk
    if route is not None:
        message.provider_id = route.provider_id
        message.provider_name = route.provider_name
        message.own_key = route.personal_key  # else as the turn saw it: own key when every route had it
        served_by = route.chat_model_id or served_by
    if result is not None and result.ttft is not None:
        message.ttft_ms = round(result.ttft * 1000)
    usage = getattr(result, "usage", None)
    if usage is not None:
        message.prompt_tokens = usage.prompt_tokens
        message.completion_tokens = usage.completion_tokens
        message.cached_tokens = usage.cached_tokens
        prompt, completion, cached = usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens
    else:
        # No usage reported (a cut stream, LM Studio...): bill our estimate, so budgets still hold.
        prompt, completion, cached = prepared.prompt_estimate, estimate_text_tokens(text), 0
    if served_by == prepared.chat_model.pk:
        chat_model = prepared.chat_model
    else:  # a fallback route served it: its own copy of the model, with its own prices
        chat_model = ChatModel.objects.filter(pk=served_by).first() if served_by else None
    if chat_model is not None:
        message.model_name = chat_model.canonical_id or chat_model.model_id
        if outcome.status != Message.Status.ERROR or text:
            message.cost = chat_model.cost(prompt, completion, cached)
    message.save(force_update=True)  # a deleted conversation fails loudly here instead of re-creating the row
    frame = message_dict(message)
    frame.pop("siblings")  # the client already knows the branch layout from the acknowledgement
    return frame
