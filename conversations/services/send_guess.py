"""A send's request guessed without the database, so it can leave before its turn is checked and saved.

A new conversation's first request depends on little: the text, the frame's parameters and system prompt, the
model the frame asked for (and so its routes and their keys) and the owner's custom instructions. The last
three come from a `SendTemplate`: what the turn batch (services/turns.TurnBatch) prepared for the same
session's previous new conversation with the same model. `guess` builds the request from it with the same
code the batch uses (context.build_request); engine/send_ahead.py sends it, held, and keeps it only if the
batch, which checks and prepares the turn from the database as always, prepared exactly the same request with
the same routes. Nothing is decided from the template: a wrong guess costs a request that is cancelled before
a byte of its answer reaches anyone.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser

from conversations.llm.routes import Route
from conversations.models import ChatModel, Conversation, Message
from conversations.services.context import Prepared, build_request
from conversations.services.turns import apply_send_settings


@dataclass(frozen=True)
class SendTemplate:
    """What a session's new conversations are answered with, for one requested model."""

    owner: AbstractBaseUser
    chat_model: ChatModel
    routes: list[Route]
    instructions: str


def template_of(prepared: Prepared) -> SendTemplate:
    """The template a saved send's prepared answer makes (a new conversation's, not pinned to one copy)."""
    return SendTemplate(
        owner=prepared.conversation.owner,
        chat_model=prepared.chat_model,
        routes=prepared.routes,
        instructions=prepared.instructions,
    )


def can_guess(data: dict) -> bool:
    """A send the template describes: into a new conversation, with no images (their files are read from
    storage; the batch does that)."""
    return data.get("conversation") is None and not data.get("attachments")


def guess(template: SendTemplate, data: dict, answer_id: uuid.UUID, conversation_id: uuid.UUID) -> Prepared:
    """The prepared answer of the send `data` into a new conversation, as the batch would prepare it from the
    rows it reads, given that they still say what `template` says."""
    chat_model = template.chat_model
    conversation = Conversation(owner=template.owner, public_id=conversation_id)
    apply_send_settings(conversation, data, chat_model)
    question = Message(conversation=conversation, role=Message.Role.USER, content=data["text"])
    answer = Message(
        conversation=conversation,
        public_id=answer_id,
        role=Message.Role.ASSISTANT,
        status=Message.Status.PENDING,
        model=chat_model,
    )
    built = build_request(conversation, [question], chat_model, {None: []}, template.instructions)
    return Prepared(
        message_id=str(answer_id),
        conversation_id=str(conversation_id),
        owner_id=conversation.owner_id,
        request=built.request,
        routes=template.routes,
        trimmed=built.trimmed,
        prompt_estimate=built.prompt_estimate,
        needs_title=True,
        message=answer,
        chat_model=chat_model,
        conversation=conversation,
        instructions=template.instructions,
    )


def same_request(guessed: Prepared, prepared: Prepared) -> bool:
    """The batch prepared what was guessed: the same messages and parameters, to the same routes (keys
    included), under the same ids."""
    return (
        guessed.message_id == prepared.message_id
        and guessed.request == prepared.request
        and guessed.routes == prepared.routes
        and guessed.trimmed == prepared.trimmed
        and guessed.needs_title == prepared.needs_title
    )
