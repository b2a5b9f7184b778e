"""Turns: what happens in the database when a user sends, regenerates, edits or switches branches.

All functions are synchronous ORM code (consumers call them through database_sync_to_async, views call
them directly). Each `do_*` checks ownership and limits, then writes in one transaction, and returns what
the caller needs to start the generation and acknowledge the command.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from conversations.llm.tokens import image_tokens
from conversations.models import Attachment, ChatModel, Conversation, Message, UserQuota
from conversations.services import access, answers, context, limits, personal_keys, quotas, titles, tree
from conversations.services.access import get_conversation_for_turn, get_message_for_user
from conversations.services.errors import EMPTY_MESSAGE, Busy, InvalidInput, NotFound
from conversations.services.model_choices import ModelChoices
from conversations.services.row_inserts import insert_rows
from conversations.services.row_updates import update_rows
from conversations.services.serialize import conversation_dict, message_dict

logger = logging.getLogger(__name__)

PARAM_KEYS = (
    "temperature",
    "top_p",
    "max_tokens",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
    "json_mode",
)


@dataclass
class TurnStarted:
    conversation: Conversation
    assistant: Message
    user_message: Message | None = None
    created_conversation: bool = False
    attachments: list[Attachment] = field(default_factory=list)


def resolve_model(
    requested: int | str | None,
    conversation: Conversation | None = None,
    user=None,
    choices: ModelChoices | None = None,
) -> ChatModel:
    """The copy a turn starts on (services/model_choices.ModelChoices.resolve): the model asked for (a canonical
    id, or a copy's pk), else the conversation's canonical model, else the site default, each on the first
    provider serving it that is open to `user` (the conversation's owner when not given)."""
    if user is None and conversation is not None:
        user = conversation.owner
    return (choices or ModelChoices()).resolve(requested, conversation, user)


def _check_not_empty(text: str, images: list) -> None:
    """A turn needs words or at least one image (an image alone asks the model about the picture)."""
    if not text.strip() and not images:
        raise InvalidInput(EMPTY_MESSAGE, code="empty_message")


BUSY_MESSAGE = "An answer is still being written in this conversation. Stop it or wait for it to finish."


def _check_idle(conversation: Conversation) -> None:
    if conversation.messages.filter(status__in=Message.ACTIVE_STATUSES).exists():
        raise Busy(BUSY_MESSAGE)


def _limits(user) -> quotas.Limits:
    """The user's limits. Their quota row usually came with them (access.user_from_session loads both for
    every command), so a changed quota applies from the user's next command; otherwise one query."""
    try:
        quota = user.quota
    except UserQuota.DoesNotExist:
        return quotas.site_limits()
    return quotas.limits_for(user, quota)


def _claim_attachments(user, attachment_ids: list, chat_model: ChatModel) -> list[Attachment]:
    """The user's own uploads not yet sent, in the order given; refused for a model that can't read images."""
    if not attachment_ids:
        return []
    wanted = list(dict.fromkeys(str(i) for i in attachment_ids))
    if len(wanted) > settings.CHAT_MAX_IMAGES_PER_TURN:
        raise InvalidInput(
            f"A message can carry at most {settings.CHAT_MAX_IMAGES_PER_TURN} images. Remove some.",
            code="too_many_images",
        )
    found = list(Attachment.objects.filter(owner=user, public_id__in=wanted, message__isnull=True))
    if len(found) != len(wanted):
        raise NotFound("One of the images no longer exists. Attach it again.")
    _check_vision(chat_model)
    found.sort(key=lambda a: wanted.index(str(a.public_id)))
    return found


def _check_vision(chat_model: ChatModel) -> None:
    if not chat_model.supports_images:
        raise InvalidInput(
            f"{chat_model.display_name} can't read images. Pick a model that supports images, or remove them.",
            code="images_not_supported",
        )


def _image_tokens(
    conversation: Conversation,
    chat_model: ChatModel,
    newest: list[Attachment],
    history: tree.History | None = None,
) -> int:
    """Prompt tokens the images of this turn's prompt may cost, for the reservation: the newest message's,
    plus (CHAT_KEEP_OLD_IMAGES) every earlier image of the conversation, all branches: it leans high. From
    `history` when the turn's batch read it, else one query."""
    if not chat_model.supports_images:
        return 0
    sizes = [(a.width, a.height) for a in newest]
    if settings.CHAT_KEEP_OLD_IMAGES and conversation.pk is not None:
        if history is not None:
            sizes += [(a.width, a.height) for images in history.images.values() for a in images]
        else:
            earlier = Attachment.objects.filter(message__conversation=conversation).exclude(
                pk__in=[a.pk for a in newest]
            )
            sizes += list(earlier.values_list("width", "height"))
    detail = settings.CHAT_IMAGE_DETAIL
    return sum(image_tokens(w, h, detail, chat_model.model_id) for w, h in sizes)


def _unsaved_placeholder(
    conversation: Conversation,
    parent: Message | None,
    chat_model: ChatModel,
    images: list[Attachment] | None = None,
    *,
    user,
    user_limits: quotas.Limits,
    history: tree.History | None = None,
) -> Message:
    """The answer-to-be, holding its budget reservation (images included), not saved yet. The caller holds
    lock_user; `user` is the conversation's owner (passed in: reading it again would cost a query per turn)."""
    max_output = conversation.params.get("max_tokens") if isinstance(conversation.params, dict) else None
    # When every route carries the user's own key, the answer can't spend the site's budget: hold none.
    # No query when personal keys are off (the default), one when on.
    own_key = personal_keys.covers_every_route(user, chat_model)
    reserved = (
        None
        if own_key
        else limits.reserve(
            user,
            chat_model,
            max_output if isinstance(max_output, int) else None,
            limits=user_limits,
            image_tokens=_image_tokens(conversation, chat_model, images or [], history),
        )
    )
    return Message(
        conversation=conversation,
        parent=parent,
        role=Message.Role.ASSISTANT,
        status=Message.Status.PENDING,
        model=chat_model,
        model_name=chat_model.canonical_id or chat_model.model_id,
        heartbeat_at=timezone.now(),
        own_key=own_key,
        reserved_cost=None if reserved is None else reserved.cost,
        reserved_tokens=None if reserved is None else reserved.tokens,
    )


def _placeholder(conversation: Conversation, parent: Message | None, chat_model: ChatModel, *args, **kwargs):
    """_unsaved_placeholder, saved."""
    message = _unsaved_placeholder(conversation, parent, chat_model, *args, **kwargs)
    message.save(force_insert=True)
    return message


def _remember_model(conversation: Conversation, chat_model: ChatModel) -> None:
    """The conversation continues with `chat_model`'s canonical model; a pin holds only while its copy is it."""
    if conversation.model_pinned and conversation.model_id != chat_model.pk:
        # The person picked another model: the admin's pin was for the old one.
        conversation.model_pinned = False
    conversation.model = chat_model
    conversation.canonical_model = chat_model.canonical_id


def apply_send_settings(conversation: Conversation, data: dict, chat_model: ChatModel) -> None:
    """What a send's frame sets on its conversation: its parameters and system prompt, when given, and the
    model it is answered by."""
    if data["params"] is not None:
        conversation.params = {k: v for k, v in data["params"].items() if k in PARAM_KEYS}
    if data["system_prompt"] is not None:
        conversation.system_prompt = data["system_prompt"]
    _remember_model(conversation, chat_model)


def _finish_turn(conversation: Conversation, assistant: Message, chat_model: ChatModel) -> None:
    """Point the conversation at the new answer and bump it to the top of the sidebar."""
    conversation.current_leaf = assistant
    _remember_model(conversation, chat_model)
    conversation.save(
        update_fields=[
            "current_leaf", "model", "canonical_model", "model_pinned", "params", "system_prompt", "updated_at",
        ]
    )  # fmt: skip


def do_send_turn(
    user,
    *,
    conversation_id: str | None,
    text: str,
    model_pk: int | str | None = None,
    params: dict | None = None,
    system_prompt: str | None = None,
    attachment_ids: list | None = None,
) -> TurnStarted:
    """Save the user's message and an assistant placeholder, before anything is sent upstream.

    About a dozen statements, no row read twice (bench/load.py counts them); a TurnBatch reads the shared
    rows of many turns at once. `text` may be empty when `attachment_ids` isn't."""
    _check_not_empty(text, attachment_ids or [])
    with transaction.atomic():
        limits.lock_user(user)
        conversation = None if conversation_id is None else get_conversation_for_turn(user, conversation_id)
        if conversation is not None and conversation.busy:
            raise Busy(BUSY_MESSAGE)
        chat_model = resolve_model(model_pk, conversation, user)
        return _send(user, conversation, chat_model, text, params, system_prompt, attachment_ids or [])


def _send(
    user,
    conversation: Conversation | None,
    chat_model: ChatModel,
    text: str,
    params: dict | None,
    system_prompt: str | None,
    attachment_ids: list,
    history: tree.History | None = None,
) -> TurnStarted:
    """The writes of a send, once the conversation (None: a new one) and the model are known and checked.
    The caller holds the transaction and the user's lock; `history`: the conversation's, if read already."""
    created = conversation is None
    if created:
        conversation = Conversation(owner=user)
    conversation.owner = user  # the same row, already loaded: spares the reservation a query
    user_limits = _limits(user)
    limits.check_rate(user, user_limits)
    attachments = _claim_attachments(user, attachment_ids, chat_model)
    if params is not None:
        conversation.params = {k: v for k, v in params.items() if k in PARAM_KEYS}
    if system_prompt is not None:
        conversation.system_prompt = system_prompt
    _remember_model(conversation, chat_model)
    if created:  # titled at once from the prompt; the title model's title replaces it (engine/titles.py)
        conversation.title = titles.provisional_title(text, len(attachments))
        conversation.title_provisional = True
        conversation.save()
    user_message = Message.objects.create(
        conversation=conversation,
        parent=None if created else conversation.current_leaf,
        role=Message.Role.USER,
        content=text,
    )
    if attachments:  # in the order the user attached them
        for position, attachment in enumerate(attachments):
            attachment.message, attachment.position = user_message, position
        Attachment.objects.bulk_update(attachments, ["message", "position"])
    assistant = _placeholder(
        conversation,
        user_message,
        chat_model,
        attachments,
        user=user,
        user_limits=user_limits,
        history=history,
    )
    _finish_turn(conversation, assistant, chat_model)
    return TurnStarted(conversation, assistant, user_message, created, attachments)


def _reopen(user, message_id: str, role: str, refusal: str) -> tuple[Message, Conversation]:
    """The opening checks of a regenerate or an edit (the caller holds a transaction): lock the user, find
    their message of `role` (else `refusal`), and refuse while an answer is still being written there."""
    limits.lock_user(user)
    old = get_message_for_user(user, message_id)
    if old.role != role:
        raise InvalidInput(refusal)
    conversation = old.conversation
    _check_idle(conversation)
    conversation.owner = user
    return old, conversation


def _model_within_limits(
    user, conversation: Conversation | None, requested: int | str | None, choices: ModelChoices | None = None
) -> tuple[ChatModel, quotas.Limits]:
    """The turn's model, after the rate limit: what every turn checks before it writes."""
    chat_model = resolve_model(requested, conversation, user, choices)
    user_limits = _limits(user)
    limits.check_rate(user, user_limits)
    return chat_model, user_limits


def do_regenerate(
    user, message_id: str, model_pk: int | str | None = None, choices: ModelChoices | None = None
) -> TurnStarted:
    """A new answer beside an existing one (a sibling), which becomes the active branch."""
    with transaction.atomic():
        old, conversation = _reopen(
            user, message_id, Message.Role.ASSISTANT, "Only answers can be regenerated."
        )
        chat_model, user_limits = _model_within_limits(user, conversation, model_pk, choices)
        images = list(old.parent.attachments.all()) if old.parent_id else []
        if images:
            _check_vision(chat_model)  # the question it answers has images
        assistant = _placeholder(
            conversation, old.parent, chat_model, images, user=user, user_limits=user_limits
        )
        _finish_turn(conversation, assistant, chat_model)
    return TurnStarted(conversation, assistant)


def do_edit(
    user, message_id: str, text: str, model_pk: int | str | None = None, choices: ModelChoices | None = None
) -> TurnStarted:
    """An edited copy of a user message as a new branch, answered afresh. The original branch stays. The copy
    keeps the original's images, so its text may be empty if there are any."""
    with transaction.atomic():
        old, conversation = _reopen(
            user, message_id, Message.Role.USER, "Only your own messages can be edited."
        )
        images = list(old.attachments.all())
        _check_not_empty(text, images)
        chat_model, user_limits = _model_within_limits(user, conversation, model_pk, choices)
        if images:
            _check_vision(chat_model)
        user_message = Message.objects.create(
            conversation=conversation, parent=old.parent, role=Message.Role.USER, content=text
        )
        # The edited message keeps the original's images: new rows sharing the same files.
        copies = Attachment.objects.bulk_create(
            [
                Attachment(
                    owner=user, message=user_message, file=a.file.name, mime=a.mime,
                    width=a.width, height=a.height, bytes=a.bytes, sha256=a.sha256, position=a.position,
                )
                for a in images
            ]
        )  # fmt: skip
        assistant = _placeholder(
            conversation, user_message, chat_model, copies, user=user, user_limits=user_limits
        )
        _finish_turn(conversation, assistant, chat_model)
    return TurnStarted(conversation, assistant, user_message, attachments=copies)


def do_select_branch(user, message_id: str) -> Conversation:
    """Show the branch through `message_id`: follow the newest child down to a leaf."""
    message = get_message_for_user(user, message_id)
    conversation = message.conversation
    children: dict[int | None, list[int]] = {}
    for pk, parent_id in conversation.messages.order_by("created_at", "id").values_list("pk", "parent_id"):
        children.setdefault(parent_id, []).append(pk)
    leaf = message.pk
    while children.get(leaf):
        leaf = children[leaf][-1]
    conversation.current_leaf_id = leaf
    conversation.save(update_fields=["current_leaf"])
    return conversation


# --- A turn from the websocket, in one database call ----------------------------------------------------


def turn_ack(turn: TurnStarted, history: tree.History | None = None) -> dict:
    """The new messages of a turn, for the acknowledgement frame. `history`: the conversation's messages as
    read before the turn (a TurnBatch's), else the siblings are read."""
    if turn.user_message is not None:
        # Sent or edited: the answer is the only child of a message created in this turn.
        assistant_siblings = [str(turn.assistant.public_id)]
    else:
        assistant_siblings = _siblings(turn.assistant)
    ack = {
        "conversation": conversation_dict(turn.conversation),
        "created": turn.created_conversation,
        "assistant_message": message_dict(turn.assistant, siblings=assistant_siblings),
        "user_message": None,
    }
    if turn.user_message is not None:
        if turn.created_conversation:
            user_siblings = [str(turn.user_message.public_id)]
        elif history is not None:
            parent = turn.user_message.parent_id
            user_siblings = [str(m.public_id) for m in history.messages if m.parent_id == parent and m.pk]
            user_siblings.append(str(turn.user_message.public_id))
        else:
            user_siblings = _siblings(turn.user_message)
        ack["user_message"] = message_dict(
            turn.user_message, siblings=user_siblings, attachments=turn.attachments
        )
    return ack


def _siblings(message: Message) -> list[str]:
    return [
        str(pid)
        for pid in Message.objects.filter(
            conversation_id=message.conversation_id, parent_id=message.parent_id
        )
        .order_by("created_at", "id")
        .values_list("public_id", flat=True)
    ]


@dataclass
class StartedTurn:
    """A saved turn, ready for its answer to start. `prepared` is None when the answer could not be prepared:
    it was then saved as failed, and `failed_answer` is that message for its `end` frame."""

    user: AbstractBaseUser
    turn: TurnStarted
    ack: dict
    prepared: context.Prepared | None
    failed_answer: dict | None = None


@dataclass(frozen=True)
class TurnRequest:
    """A send, regenerate or edit from the websocket: the socket's session and the parsed frame's data."""

    session_key: str | None
    command: str
    data: dict
    # A send started early from the process's memory (engine/send_ahead.py) names its rows in advance: the
    # answer's public id (its generation already runs under it) and a new conversation's.
    answer_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None


# SQLite: a batch's prepared requests go to the engine in groups of this many (one hop to the event loop
# each), as the batch is planned.
HAND_OFF_EVERY = 16


@dataclass
class _PlannedSend:
    """A send that passed every check, its rows built but not written yet (TurnBatch writes them in bulk)."""

    index: int
    user: AbstractBaseUser
    turn: TurnStarted
    chat_model: ChatModel
    history: tree.History | None  # the conversation's messages before the turn (None: a new conversation)
    # Its answer's request, or why it could not be prepared; None until prepared (TurnBatch._prepare_now).
    prepared: context.Prepared | Exception | None = None


class TurnBatch:
    """Websocket turns that arrived together, read together, written together.

        with TurnBatch(requests) as batch:
            outcomes = batch.start_all(on_started)  # a StartedTurn or the ServiceError that refused it, each

    The rows every turn reads (sessions and users, the conversations sent to, the model catalogue, their
    messages) are read once for the batch. Each send is then checked (ownership, busy, the model, images,
    the rate limit, the budget) and its rows built in memory; the checked sends are written together: one
    INSERT for the new conversations, one for the questions, one for the answer placeholders, then one
    UPDATE for the conversations, so a burst of turns costs a handful of statements whatever its size
    (bench/README.md, "Load"). Each checked send's request is prepared from the rows in memory
    (context.prepare_send) and handed to `on_started`, which starts the answer (engine/admission.py): with
    SQLite as the batch is checked, HAND_OFF_EVERY at a time, before any write; with PostgreSQL after the
    inserts (`_write` says why); either way the
    provider thinks while the turns are written and committed. A refused turn writes nothing. Regenerates and edits (rarer) are written one at a
    time, each in its own savepoint. A user who sends twice in one batch has the first send written before
    the second is checked, so the rate limit and the budget see it.

    With PostgreSQL (several processes) the batch is one transaction that locks every user of the batch
    before reading, so the conversations it read cannot change under it. SQLite's writers are serialised
    anyway (one process, one thread for turns), and a long transaction there would hold up the answer saves'
    thread: SQLite makes a writer that finds the lock taken sleep and retry (1, 2, 5 ... 100 ms), so two
    threads that hold it for long starve each other. There the reads run outside any transaction and each
    group of writes is a short transaction of its own.
    """

    def __init__(self, requests: list[TurnRequest]) -> None:
        self.requests = requests
        self._transaction = transaction.atomic() if connection.features.has_select_for_update else None
        self._handing: list[tuple[int, context.Prepared]] = []  # prepared, not yet handed to on_started

    def __enter__(self) -> TurnBatch:
        if self._transaction is not None:
            self._transaction.__enter__()
        try:
            self._read()
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self._transaction is not None:
            self._transaction.__exit__(*exc_info)

    def _read(self) -> None:
        self.sessions = access.SessionUsers(r.session_key for r in self.requests)
        if self._transaction is not None:
            limits.lock_users(self.sessions.user_ids())
        ids = {r.data.get("conversation") for r in self.requests if r.command == "send"} - {None}
        self.conversations = access.conversations_for_turns(ids)
        self.choices = ModelChoices()
        self.histories = tree.histories([c.pk for c in self.conversations.values()])
        self._claimed: set[int] = set()  # conversations that got an answer in this batch: busy now
        # Answers each user has running (any process), counted up as this batch starts more; and answers each
        # asked for in the last minute (the rate limit), likewise: one query each for the whole batch, where
        # a query per turn was a round trip per turn inside the batch's transaction (bench/README.md,
        # "Session 11").
        self.running = limits.running_answers(self.sessions.user_ids())
        rated = [user.pk for user in self.sessions.users() if _limits(user).turns_per_minute]
        self.recent = limits.recent_answers(rated)

    def start_all(self, on_started=None) -> list[StartedTurn | Exception]:
        """Check, prepare and write every turn; `on_started([(index, prepared), ...])` is called with the
        answers' prepared requests as soon as they are known: a send's before its rows are written, a
        regenerate's or an edit's once it is written (the batch's transaction not yet committed). Returns each turn's
        StartedTurn, or the exception that refused it (a ServiceError) or failed it."""
        outcomes: list[StartedTurn | Exception | None] = [None] * len(self.requests)
        planned: list[_PlannedSend] = []
        for index, request in enumerate(self.requests):
            try:
                user = self.sessions.user(request.session_key)
                running = self.running.get(user.pk, 0)
                limits.check_running(user, running)  # CHAT_MAX_RUNNING_PER_USER, this batch's turns counted
                if any(p.user.pk == user.pk for p in planned) or request.command != "send":
                    self._write(planned, outcomes, on_started)  # what this turn's checks must see
                    planned = []
                if request.command == "send":
                    planned.append(self._plan_send(index, user, request))
                    if self._transaction is None:  # SQLite: its request may leave now (_write says why)
                        self._prepare_now(planned[-1], on_started)
                else:
                    with transaction.atomic():
                        turn = self._reopened(user, request)
                        self._claimed.add(turn.conversation.pk)
                        outcomes[index] = started = self._started(user, turn, None)
                    if on_started is not None and started.prepared is not None:
                        on_started([(index, started.prepared)])
                self.running[user.pk] = running + 1
                self.recent[user.pk] = self.recent.get(user.pk, 0) + 1
            except Exception as exc:  # that turn alone is refused (a ServiceError) or failed
                outcomes[index] = exc
        self._write(planned, outcomes, on_started)
        return outcomes  # type: ignore[return-value]

    def _reopened(self, user, request: TurnRequest) -> TurnStarted:
        data = request.data
        match request.command:
            case "regenerate":
                return do_regenerate(user, data["message"], data["model"], self.choices)
            case "edit":
                return do_edit(user, data["message"], data["text"], data["model"], self.choices)
        raise ValueError(f"not a turn command: {request.command}")

    def _plan_send(self, index: int, user, request: TurnRequest) -> _PlannedSend:
        """do_send_turn's checks with the rows read for the batch, and its rows built, not written."""
        data = request.data
        _check_not_empty(data["text"], data["attachments"] or [])
        # No lock_user here: the batch locked every user it serves (PostgreSQL; SQLite needs none).
        conversation = None
        if data["conversation"] is not None:
            conversation = access.owned_for_turn(self.conversations, user, data["conversation"])
            if conversation.busy or conversation.pk in self._claimed:
                raise Busy(BUSY_MESSAGE)
        chat_model = self.choices.resolve(data["model"], conversation, user)
        history = self.histories.get(conversation.pk) if conversation is not None else None
        created = conversation is None
        if created:
            conversation = Conversation(owner=user)
            if request.conversation_id is not None:
                conversation.public_id = request.conversation_id
        conversation.owner = user  # the same row, already loaded: spares the reservation a query
        user_limits = _limits(user)
        limits.check_rate(user, user_limits, self.recent.get(user.pk, 0))
        attachments = _claim_attachments(user, data["attachments"] or [], chat_model)
        apply_send_settings(conversation, data, chat_model)
        if created:  # titled at once from the prompt; the title model's title replaces it (engine/titles.py)
            conversation.title = titles.provisional_title(data["text"], len(attachments))
            conversation.title_provisional = True
        question = Message(
            conversation=conversation,
            parent=None if created else conversation.current_leaf,
            role=Message.Role.USER,
            content=data["text"],
        )
        assistant = _unsaved_placeholder(
            conversation,
            question,
            chat_model,
            attachments,
            user=user,
            user_limits=user_limits,
            history=history,
        )
        if request.answer_id is not None:
            assistant.public_id = request.answer_id
        if not created:
            self._claimed.add(conversation.pk)
        turn = TurnStarted(conversation, assistant, question, created, attachments)
        return _PlannedSend(index, user, turn, chat_model, history)

    def _write(self, planned: list[_PlannedSend], outcomes: list, on_started) -> None:
        """Prepare checked sends, hand their requests to `on_started`, then write them together; each turn's
        outcome goes into `outcomes` (all fail together if the writes do: the caller abandons the answers it
        started for them)."""
        if not planned:
            return
        # SQLite: the requests first (prepared and handed over as the sends were planned: _prepare_now). A
        # send's prompt and routes are known once it is planned, and its request need not wait for its rows
        # (the provider thinks while they are written; the answer is let go only after the commit and the
        # acknowledgement): at N=1 the writes' few milliseconds less before the request. PostgreSQL: after the inserts, as before. There each statement is a round trip, after
        # which this thread must win the GIL back from an event loop busy sending the batch's requests: the
        # batch's transaction, which holds its users' locks, lasted longer and every acknowledgement waited
        # (two processes, N=400: added TTFT p95 2.0 / 2.2 s -> 3.3 / 3.1 s; bench/README.md, "Session 9").
        ready = None
        if self._transaction is None:
            self._hand_off(on_started)
            ready = [(p, p.prepared) for p in planned]
        try:
            with transaction.atomic():
                new = [p.turn.conversation for p in planned if p.turn.created_conversation]
                insert_rows(new)  # plain INSERTs (services/row_inserts.py), like bulk_create
                for (
                    p
                ) in planned:  # the primary key of a related row inserted meanwhile is not copied by itself
                    p.turn.user_message.conversation = p.turn.conversation
                insert_rows([p.turn.user_message for p in planned])
                for p in planned:
                    p.turn.assistant.conversation = p.turn.conversation
                    p.turn.assistant.parent = p.turn.user_message
                insert_rows([p.turn.assistant for p in planned])
                if ready is None:
                    ready = self._prepare_sends(planned, on_started)
                now = timezone.now()
                for p, prepared in ready:
                    conversation = p.turn.conversation
                    conversation.current_leaf = p.turn.assistant
                    conversation.updated_at = now  # bulk_update does not apply auto_now
                    ack = turn_ack(p.turn, p.history)
                    if isinstance(prepared, context.Prepared):
                        outcomes[p.index] = StartedTurn(p.user, p.turn, ack, prepared)
                    else:  # the turn is saved; its answer ends at once with the reason
                        failed = answers.fail(p.turn.assistant.pk, answers.start_error(prepared))
                        outcomes[p.index] = StartedTurn(p.user, p.turn, ack, None, failed)
                claimed = []
                for p in planned:  # in the order the user attached them
                    for position, attachment in enumerate(p.turn.attachments):
                        attachment.message, attachment.position = p.turn.user_message, position
                        claimed.append(attachment)
                if claimed:
                    Attachment.objects.bulk_update(claimed, ["message", "position"])
                fields = [
                    "current_leaf",
                    "model",
                    "canonical_model",
                    "model_pinned",
                    "params",
                    "system_prompt",
                ]
                update_rows([p.turn.conversation for p in planned], [*fields, "updated_at"])
        except Exception as exc:
            logger.exception("writing %d turns failed", len(planned))
            for p in planned:
                outcomes[p.index] = exc

    def _prepare_now(self, p: _PlannedSend, on_started) -> None:
        """SQLite: prepare a send as soon as it is planned; its request is handed over with the next
        HAND_OFF_EVERY, not after the whole batch is planned: in a burst a batch is up to MAX_BATCH turns
        (engine/admission.py), and its first requests waited for the last one's checks."""
        p.prepared = self._prepare_send(p)
        if isinstance(p.prepared, context.Prepared):
            self._handing.append((p.index, p.prepared))
            if len(self._handing) >= HAND_OFF_EVERY:
                self._hand_off(on_started)

    def _hand_off(self, on_started) -> None:
        if self._handing and on_started is not None:
            on_started(self._handing)
        self._handing = []

    def _prepare_sends(self, planned: list[_PlannedSend], on_started) -> list:
        """Each planned send with its prepared request (or why it could not be prepared), the prepared ones
        handed to `on_started`."""
        ready = [(p, self._prepare_send(p)) for p in planned]
        if on_started is not None:
            on_started(
                [(p.index, prepared) for p, prepared in ready if isinstance(prepared, context.Prepared)]
            )
        return ready

    def _prepare_send(self, p: _PlannedSend) -> context.Prepared | Exception:
        """The request of a planned send, its rows written or not yet; or why it could not be prepared (the
        turn is still saved, its answer then ends at once with the reason)."""
        try:
            return context.prepare_send(
                p.turn.assistant,
                p.turn.user_message,
                p.turn.conversation,
                p.user,
                self.choices,
                p.history,
                p.turn.attachments,
            )
        except Exception as exc:
            logger.exception("the answer to a send could not be prepared")
            return exc

    def _started(self, user, turn: TurnStarted, history: tree.History | None) -> StartedTurn:
        """The acknowledgement and the answer's prepared request of a written regenerate or edit."""
        ack = turn_ack(turn, history)
        try:
            prepared = context.prepare(turn.assistant, turn.conversation, user, self.choices, history)
        except Exception as exc:  # the turn is saved; its answer ends at once with the reason
            logger.exception("answer %s could not be prepared", turn.assistant.pk)
            failed = answers.fail(turn.assistant.pk, answers.start_error(exc))
            return StartedTurn(user, turn, ack, None, failed)
        return StartedTurn(user, turn, ack, prepared)


def start_turn(session_key: str | None, command: str, data: dict) -> StartedTurn:
    """One websocket turn on its own (a batch of one); raises what refused it."""
    with TurnBatch([TurnRequest(session_key, command, data)]) as batch:
        (outcome,) = batch.start_all()
    if isinstance(outcome, Exception):
        raise outcome
    return outcome
