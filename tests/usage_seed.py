"""Recorded usage for tests: answers as the engine saves them, created when the test says."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from conversations.models import Conversation, Message


def answer(
    user,
    *,
    cost: str | Decimal | None = "0",
    prompt: int | None = 0,
    completion: int | None = 0,
    cached: int | None = 0,
    model: str = "gpt-4o",
    provider: str = "Simulator",
    status: str = Message.Status.COMPLETE,
    ttft_ms: int | None = None,
    duration_ms: int | None = None,
    at: dt.datetime | None = None,
    conversation: Conversation | None = None,
    own_key: bool = False,
) -> Message:
    """One finished answer (with its question) in a conversation of `user`, optionally back-dated to `at`."""
    conversation = conversation or Conversation.objects.create(owner=user, title="seeded")
    question = Message.objects.create(conversation=conversation, role=Message.Role.USER, content="Q")
    message = Message.objects.create(
        conversation=conversation,
        parent=question,
        role=Message.Role.ASSISTANT,
        content="A",
        status=status,
        model_name=model,
        provider_name=provider,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cost=Decimal(cost) if cost is not None else None,
        ttft_ms=ttft_ms,
        duration_ms=duration_ms,
        own_key=own_key,
    )
    if at is not None:  # created_at is auto_now_add: back-date with an update
        Message.objects.filter(pk__in=[question.pk, message.pk]).update(created_at=at)
        message.created_at = at
    return message
