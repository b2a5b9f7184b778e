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

from conversations.llm.request import ChatMessage
from conversations.llm.routes import Route
from conversations.models import ChatModel, Conversation, Message
from conversations.services.context import Prepared, PreparedContext, build_from_turns, build_request
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


def can_follow_up(data: dict) -> bool:
    """A send into an existing conversation, with no images."""
    return data.get("conversation") is not None and not data.get("attachments")


def guess(template: SendTemplate, data: dict, answer_id: uuid.UUID, conversation_id: uuid.UUID) -> Prepared:
    """The prepared answer of the send `data` into a new conversation, as the batch would prepare it from the
    rows it reads, given that they still say what `template` says."""
    chat_model = template.chat_model
    conversation = Conversation(owner=template.owner, public_id=conversation_id)
    apply_send_settings(conversation, data, chat_model)
    question = Message(conversation=conversation, role=Message.Role.USER, content=data["text"])
    built = build_request(conversation, [question], chat_model, {None: []}, template.instructions)
    return _prepared(template, conversation, answer_id, built, template.routes, needs_title=True)


def _prepared(
    template: SendTemplate,
    conversation: Conversation,
    answer_id: uuid.UUID,
    built: PreparedContext,
    routes: list[Route],
    needs_title: bool,
) -> Prepared:
    """A guessed answer, shaped as context.prepare makes them (its placeholder unsaved)."""
    answer = Message(
        conversation=conversation,
        public_id=answer_id,
        role=Message.Role.ASSISTANT,
        status=Message.Status.PENDING,
        model=template.chat_model,
    )
    return Prepared(
        message_id=str(answer_id),
        conversation_id=str(conversation.public_id),
        owner_id=conversation.owner_id,
        request=built.request,
        routes=routes,
        trimmed=built.trimmed,
        prompt_estimate=built.prompt_estimate,
        needs_title=needs_title,
        message=answer,
        chat_model=template.chat_model,
        conversation=conversation,
        instructions=template.instructions,
    )


def same_request(guessed: Prepared, prepared: Prepared) -> bool:
    """The batch prepared what was guessed: the same messages and parameters, to the same routes (keys
    included), under the same ids. (Whether the answer titles its conversation is not part of the request:
    the batch's answer says, Generation.adopt.)"""
    return (
        guessed.message_id == prepared.message_id
        and guessed.request == prepared.request
        and guessed.routes == prepared.routes
        and guessed.trimmed == prepared.trimmed
    )


@dataclass(frozen=True)
class FollowUp:
    """A conversation as its last answer left it: enough to guess the request of the next send into it."""

    template: SendTemplate
    conversation: Conversation  # its settings then (never changed here: `guess_follow_up` copies them)
    turns: tuple[ChatMessage, ...]  # the branch as the model saw it, untrimmed, the last answer included


def follow_up_of(prepared: Prepared, answer: str) -> FollowUp | None:
    """What the next send into the answer's conversation can be guessed from, once the answer was saved with
    the text `answer`; None when its request was trimmed or carried images (the batch reads those)."""
    request = prepared.request
    if prepared.trimmed or any(message.images for message in request.messages):
        return None
    conversation = prepared.conversation
    system = sum(1 for text in (prepared.instructions, conversation.system_prompt) if text)
    turns = list(request.messages[system:])
    if answer:  # an answer with no text says nothing to the model (context._chat_message)
        turns.append(ChatMessage(role="assistant", text=answer))
    return FollowUp(template_of(prepared), conversation, tuple(turns))


def guess_follow_up(follow_up: FollowUp, data: dict, answer_id: uuid.UUID) -> Prepared:
    """The prepared answer of the send `data` into the follow-up's conversation, as the batch would prepare it
    if the conversation is still as its last answer left it."""
    template, chat_model = follow_up.template, follow_up.template.chat_model
    known = follow_up.conversation
    conversation = Conversation(
        pk=known.pk,
        public_id=known.public_id,
        owner=template.owner,
        title=known.title,
        params=known.params,
        system_prompt=known.system_prompt,
        model=known.model,
        canonical_model=known.canonical_model,
        model_pinned=known.model_pinned,
    )
    apply_send_settings(conversation, data, chat_model)
    text = data["text"] if data["text"].strip() else ""
    turns = [*follow_up.turns, ChatMessage(role="user", text=text)]
    built = build_from_turns(conversation, turns, chat_model, template.instructions)
    routes = template.routes
    if conversation.model_pinned and conversation.model_id == chat_model.pk:  # as context._prepare
        routes = [route for route in routes if route.chat_model_id == chat_model.pk]
    # Whether it titles the conversation is the batch's answer's to say (Generation.adopt).
    return _prepared(template, conversation, answer_id, built, routes, needs_title=False)
