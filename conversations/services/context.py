"""The request for an answer: the system prompt plus the active branch, trimmed to fit the model, and the routes
that may serve it (`prepare`, in the same database call as the turn that asked for it).

Trimming drops the oldest turns first and always keeps the system prompt and the newest user message; the
answer records that it happened (Message.context_trimmed) so the UI can say so.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings

from conversations.llm import errors as llm_errors
from conversations.llm.request import ChatMessage, ChatParams, ChatRequest, ImagePart
from conversations.llm.routes import Route
from conversations.llm.tokens import estimate_message_tokens, estimate_prompt_tokens
from conversations.models import Attachment, ChatModel, Conversation, Message
from conversations.services import custom_instructions
from conversations.services.model_choices import ModelChoices
from conversations.services.personal_keys import routes_for_user
from conversations.services.tree import History, history_of

logger = logging.getLogger(__name__)

IMAGE_OMITTED = "[An image was shared here; it is not included any more.]"


@dataclass
class PreparedContext:
    request: ChatRequest
    trimmed: bool
    prompt_estimate: int


def _image_part(attachment: Attachment) -> ImagePart | None:
    """The stored file as a data URL (never a link: the provider can't reach us, and shouldn't)."""
    try:
        with attachment.file.open("rb") as handle:
            data = base64.b64encode(handle.read()).decode("ascii")
    except OSError:
        logger.warning(
            "image %s is missing from storage; sending its message without it", attachment.public_id
        )
        return None
    return ImagePart(
        url=f"data:{attachment.mime};base64,{data}",
        detail=settings.CHAT_IMAGE_DETAIL,
        width=attachment.width,
        height=attachment.height,
    )


def _chat_message(
    message: Message, with_images: bool = True, images_of: Mapping[int, list[Attachment]] | None = None
) -> ChatMessage | None:
    if message.role == Message.Role.ASSISTANT:
        # A failed answer with no text says nothing to the model; a partial one is still context.
        if not message.content:
            return None
        return ChatMessage(role="assistant", text=message.content)
    # Read already (a tree.History), prefetched, or one query.
    attachments = images_of.get(message.pk, []) if images_of is not None else list(message.attachments.all())
    images: tuple[ImagePart, ...] = ()
    if with_images:
        images = tuple(part for part in map(_image_part, attachments) if part is not None)
    text = message.content if message.content.strip() else ""
    if not text and not images:
        # An image-only message whose images are left out (CHAT_KEEP_OLD_IMAGES, a lost file): an empty user
        # message is refused by some providers, and the model should know something was shown there.
        if not attachments:
            return None
        text = IMAGE_OMITTED
    # With images and no text, the wire content is the image parts alone (request.message_to_wire).
    return ChatMessage(role=message.role, text=text, images=images)


def build_request(
    conversation: Conversation,
    path: list[Message],
    chat_model: ChatModel,
    images_of: Mapping[int, list[Attachment]] | None = None,
    instructions: str = "",
) -> PreparedContext:
    """`images_of`: each user message's images by pk, when read already (a tree.History); else each message's
    `attachments`, prefetched or one query each."""
    # CHAT_KEEP_OLD_IMAGES=false: only the newest user message carries its images (older turns keep their text).
    newest_user = next((m.pk for m in reversed(path) if m.role == Message.Role.USER), None)
    keep_all = settings.CHAT_KEEP_OLD_IMAGES
    turns = [
        m
        for m in (
            _chat_message(message, keep_all or message.pk == newest_user, images_of) for message in path
        )
        if m is not None
    ]
    return build_from_turns(conversation, turns, chat_model, instructions)


def build_from_turns(
    conversation: Conversation, turns: list[ChatMessage], chat_model: ChatModel, instructions: str = ""
) -> PreparedContext:
    """The request for the branch `turns` (the messages as the model sees them, oldest first, untrimmed):
    the system messages in front, the oldest turns dropped until it fits (`turns` is consumed)."""
    params = ChatParams.from_dict(conversation.params)
    max_output = min(params.max_output_tokens or chat_model.max_output_tokens, chat_model.max_output_tokens)
    if params.max_output_tokens is None:
        # Send the allowance we reserved for, so the reservation really bounds the cost.
        params = ChatParams.from_dict({**(conversation.params or {}), "max_tokens": max_output})
    # The person's custom instructions come first, then the chat's own system prompt; trimming keeps both.
    system = [
        ChatMessage(role="system", text=text) for text in (instructions, conversation.system_prompt) if text
    ]
    allowance = max(chat_model.context_window - max_output, 0)
    model_id = chat_model.model_id
    total = estimate_prompt_tokens(system + turns, model_id)
    trimmed = False
    while total > allowance and len(turns) > 1:
        dropped = turns.pop(0)
        total -= estimate_message_tokens(dropped, model_id)
        trimmed = True
    # The model must see a conversation that starts with the user, not with an orphaned answer.
    while len(turns) > 1 and turns[0].role == "assistant":
        total -= estimate_message_tokens(turns.pop(0), model_id)
        trimmed = True
    request = ChatRequest(messages=system + turns, params=params, user_id=conversation.owner_id)
    return PreparedContext(request=request, trimmed=trimmed, prompt_estimate=total)


@dataclass
class Prepared:
    """Everything an answer needs once its request has left: read in the same database call as the turn.

    A send's answer is prepared before its rows are written (`prepare_send`): `message` and `conversation`
    get their pks when the turn's batch inserts them, before the answer is let go."""

    message_id: str
    conversation_id: str
    owner_id: int
    request: ChatRequest
    routes: list[Route]
    trimmed: bool
    prompt_estimate: int
    needs_title: bool
    message: Message  # as loaded here, parent included: the final save updates it without reading it again
    chat_model: ChatModel
    conversation: Conversation
    instructions: str = ""  # the owner's custom instructions as the system message they make ("": none)

    @property
    def message_pk(self) -> int:
        return self.message.pk

    @property
    def conversation_pk(self) -> int:
        return self.conversation.pk


def prepare(
    message: Message,
    conversation: Conversation,
    owner,
    choices: ModelChoices | None = None,
    history: History | None = None,
) -> Prepared:
    """The prompt (history, context budget) and the routes for the placeholder `message`, which a turn has
    just saved with its model and parent loaded, for `owner`, just checked against the model. A TurnBatch
    passes what it read for every turn: the model `choices` and the conversation's `history` (with the new
    message); else they are read here."""
    history = history if history is not None else history_of(conversation)
    return _prepare(
        message, conversation, owner, choices, history.branch_to(message.parent_id), history.images
    )


def prepare_send(
    answer: Message,
    question: Message,
    conversation: Conversation,
    owner,
    choices: ModelChoices | None,
    history: History | None,
    images: list[Attachment],
) -> Prepared:
    """`prepare` for a send, its rows written or not yet (services/turns.TurnBatch: with SQLite its request
    leaves before the writes): the branch is the conversation's current one as read before the turn
    (`history`, None for a new conversation) plus `question`, whose images are `images`."""
    earlier = history.branch_to(question.parent_id) if history is not None else []
    # An unsaved question has no pk yet: its images then go under None, which no saved message has.
    images_of = {**(history.images if history is not None else {}), question.pk: images}
    return _prepare(answer, conversation, owner, choices, [*earlier, question], images_of)


def _prepare(
    message: Message,
    conversation: Conversation,
    owner,
    choices: ModelChoices | None,
    path: list[Message],
    images_of: Mapping[int | None, list[Attachment]],
) -> Prepared:
    chat_model = message.model
    if chat_model is None:
        raise llm_errors.NoRouteAvailable("the answer's model was deleted")
    instructions = custom_instructions.system_text(owner)
    prepared_context = build_request(conversation, path, chat_model, images_of, instructions)
    # The owner's own key, if they brought one.
    routes = routes_for_user(chat_model, owner, checked_model_pk=chat_model.pk, choices=choices)
    if conversation.model_pinned and conversation.model_id == chat_model.pk:
        # An admin pinned this chat to one provider's copy: no fallback to another provider.
        routes = [route for route in routes if route.chat_model_id == chat_model.pk]
    if prepared_context.trimmed:
        if message.pk is not None:  # saved already; an unsaved answer is inserted with the flag
            Message.objects.filter(pk=message.pk).update(context_trimmed=True)
        message.context_trimmed = True
    return Prepared(
        message_id=str(message.public_id),
        conversation_id=str(conversation.public_id),
        owner_id=conversation.owner_id,
        request=prepared_context.request,
        routes=routes,
        trimmed=prepared_context.trimmed,
        prompt_estimate=prepared_context.prompt_estimate,
        needs_title=not conversation.title or conversation.title_provisional,
        message=message,
        chat_model=chat_model,
        conversation=conversation,
        instructions=instructions,
    )
