"""An answer's life in the database after its request left (services/context.prepare built it): checkpointed
while it streams, saved once at the end, or marked interrupted when the process that wrote it died.

Synchronous ORM code only. The realtime engine (conversations/engine/generation.py and sweeper.py) runs
these through database_sync_to_async; nothing here touches the channel layer or the network.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from conversations.llm import errors as llm_errors
from conversations.llm.events import StreamResult
from conversations.llm.tokens import estimate_text_tokens
from conversations.models import ChatModel, Message
from conversations.services import db_busy
from conversations.services.context import Prepared
from conversations.services.row_updates import update_rows, update_values
from conversations.services.serialize import message_dict

logger = logging.getLogger(__name__)

INTERRUPTED_ERROR = (
    "The server stopped while writing this answer. The text so far is kept; regenerate to retry."
)
RESTARTING_ERROR = "The server is restarting, so this answer was not started. Regenerate it in a moment."
NOT_STARTED_ERROR = "The answer could not be started."
FAILED_ERROR = "Something went wrong on the server while writing this answer. The text so far is kept; regenerate to retry."


@dataclass
class Outcome:
    status: str
    finish_reason: str = ""
    error: str = ""  # for the person: what happened and what to do
    detail: str = ""  # for staff and the log: the technical detail (Message.error_detail)


def start_error(exc: Exception) -> str:
    """What the user reads when their answer could not be prepared."""
    return exc.user_message if isinstance(exc, llm_errors.LLMError) else NOT_STARTED_ERROR


def fail(message_pk: int, error: str) -> dict:
    """End an answer that never started, with `error`. Returns the message as a frame dict."""
    Message.objects.filter(pk=message_pk).update(
        status=Message.Status.ERROR, error=error, reserved_cost=None, heartbeat_at=None
    )
    return message_dict(Message.objects.select_related("parent").get(pk=message_pk))


def save_checkpoints(texts: dict[int, str]) -> None:
    """The partial text of each running answer (by message pk) and a fresh heartbeat, in one transaction of
    plain UPDATEs (services/row_updates.py): a live answer is never swept. Answers that ended meanwhile are
    left alone."""
    now = Message._meta.get_field("heartbeat_at").get_db_prep_save(timezone.now(), connection)
    status = Message.Status.STREAMING.value
    with transaction.atomic():
        update_values(
            Message,
            CHECKPOINT_FIELDS,
            list(texts),
            [(text, status, now, now) for text in texts.values()],
            only_if=("status", Message.ACTIVE_STATUSES),
        )


CHECKPOINT_FIELDS = ("content", "status", "heartbeat_at", "updated_at")


FINAL_FIELDS = (
    "content", "status", "finish_reason", "error", "error_detail", "duration_ms", "heartbeat_at", "reserved_cost", "provider",
    "provider_name", "own_key", "ttft_ms", "prompt_tokens", "completion_tokens", "cached_tokens",
    "model_name", "cost", "updated_at",
)  # fmt: skip


@db_busy.retry_when_locked()  # one UPDATE, safe to repeat; nobody waits on it but the `end` frame
def finish(
    text: str, outcome: Outcome, result: StreamResult | None, prepared: Prepared, duration: float
) -> dict:
    """The final save: one UPDATE with everything we learned, no reads. Returns the message as a frame dict."""
    message = prepared.message
    message.content = text
    message.status = outcome.status
    message.finish_reason = outcome.finish_reason
    message.error = outcome.error
    message.error_detail = outcome.detail or None
    message.duration_ms = round(duration * 1000)
    message.heartbeat_at = None
    message.reserved_cost = None
    route = result.route if result is not None else None
    served_by = prepared.chat_model.pk
    if route is not None:
        message.provider_id = route.provider_id
        message.provider_name = route.provider_name
        message.own_key = route.personal_key  # else as the turn saw it: own key when every route had it
        served_by = route.chat_model_id or served_by
    if result is not None and result.ttft is not None:
        message.ttft_ms = round(result.ttft * 1000)
    usage = result.usage if result is not None else None
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
        chat_model = ChatModel.objects.filter(pk=served_by).first()
    if chat_model is not None:
        message.model_name = chat_model.canonical_id or chat_model.model_id
        if outcome.status != Message.Status.ERROR or text:
            message.cost = chat_model.cost(prompt, completion, cached)
    message.updated_at = timezone.now()
    # Only what an answer's end changes, as a plain UPDATE (services/row_updates.py: Model.save compiled its
    # SQL every time); a deleted conversation fails loudly here instead of re-creating the row.
    if not update_rows([message], FINAL_FIELDS):
        raise DatabaseError(f"answer {message.pk} is gone: its final save updated no row")
    # With the technical detail: the `end` frame goes to the owner's sockets only, and the consumer drops it
    # for anyone but staff (ChatConsumer.chat_frame).
    return message_dict(message, with_detail=True)


def sweep_stale(
    conversation_pk: int | None = None, alive: frozenset[int] = frozenset()
) -> list[tuple[str, dict]]:
    """Mark answers whose process died (heartbeat older than CHAT_STALE_AFTER) interrupted, text kept, except
    those in `alive` (the message pks the calling process is answering itself: under overload a live answer's
    heartbeat can fall behind). Returns (conversation id, message dict) for each, to broadcast."""
    cutoff = timezone.now() - dt.timedelta(seconds=settings.CHAT_STALE_AFTER)
    stale = Message.objects.filter(status__in=Message.ACTIVE_STATUSES, heartbeat_at__lt=cutoff)
    if alive:
        stale = stale.exclude(pk__in=alive)
    if conversation_pk is not None:
        stale = stale.filter(conversation_id=conversation_pk)
    swept = []
    for message in stale.select_related("conversation", "parent"):
        # Conditional update: a generation that is alive after all (a late heartbeat) wins the race.
        updated = Message.objects.filter(pk=message.pk, heartbeat_at=message.heartbeat_at).update(
            status=Message.Status.INTERRUPTED,
            error=INTERRUPTED_ERROR,
            finish_reason="interrupted",
            heartbeat_at=None,
            reserved_cost=None,
        )
        if not updated:
            continue
        message.status = Message.Status.INTERRUPTED
        message.error = INTERRUPTED_ERROR
        message.finish_reason = "interrupted"
        swept.append((str(message.conversation.public_id), message_dict(message)))
        logger.warning(
            "marked answer %s interrupted (last heartbeat %s)", message.public_id, message.heartbeat_at
        )
    return swept
