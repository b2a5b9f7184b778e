"""A send's answer starts as its frame arrives, before its turn reaches the database thread, when the process
can tell what its request will be: a new conversation's, or a follow-up in a conversation whose last answer
this process streamed.

A turn's request used to leave once the turns' database thread had checked and prepared it. Under load that
thread is the queue every turn waits in (bench/README.md, "Session 15": at 96 turns/s the request left up to
128 ms after the frame at p95, nearly all of it waiting for the thread). The provider then thinks for 200 ms
or more, with nothing for the database thread to do for that turn.

So when a session sends into a new conversation with a model it used for its previous new conversation, the
request is built from what that turn's batch prepared (services/send_guess.py: the model's routes and keys,
the owner's custom instructions, kept here per session and model); and when it sends into a conversation
whose last answer this process streamed for it, from that answer's request and text (the branch as the model
saw it, if it was not trimmed and had no images; kept per session, conversation and model until its next
send). Either is sent at once, held
(generation.start_held): no frame, no save, no acknowledgement. The batch then checks and prepares the turn
from the database as always, under the ids minted here; engine/admission.py keeps the early answer only if
the batch prepared exactly the same request for the same routes (`settle`), and otherwise abandons it (the
request is cancelled, nothing of it reaches anyone) and starts the batch's own. So the memory here decides
nothing: the session is re-checked, the limits and the budget applied, the rows read, as before; a changed
catalogue, key, instruction or a revoked session costs one cancelled request, not a wrong answer.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict

from conversations import metrics
from conversations.engine import generation, registry
from conversations.services import send_guess
from conversations.services.context import Prepared
from conversations.services.send_guess import FollowUp, SendTemplate
from conversations.services.turns import StartedTurn, TurnRequest

# Templates and follow-ups are not used once this old (each turn's batch stores them afresh), and the oldest
# beyond MAX_TEMPLATES go: a session that went quiet starts its next answer from the database thread again.
TEMPLATE_TTL = 600.0
MAX_TEMPLATES = 20_000

# (session key, the model the frame asked for) -> (the template, when it was stored: time.monotonic()).
_templates: OrderedDict[tuple[str, object], tuple[SendTemplate, float]] = OrderedDict()

# Follow-ups hold a conversation's text: fewer of them, and none for a long conversation (the batch reads it).
MAX_FOLLOW_UPS = 1_000
MAX_FOLLOW_UP_CHARS = 32_000

# Conversation public id -> (its follow-up, when stored, and for which session and requested model).
_follow_ups: OrderedDict[str, tuple[FollowUp, float, tuple[str, object]]] = OrderedDict()


def start(
    session_key: str | None, data: dict, received_at: float
) -> tuple[TurnRequest, generation.Generation | None]:
    """The turn's request for the batch, and its answer started early when the process can guess it."""
    request = TurnRequest(session_key, "send", data)
    if session_key is None or registry.draining():
        return request, None
    now = time.monotonic()
    if send_guess.can_guess(data):
        entry = _templates.get((session_key, data.get("model")))
        if entry is None or now - entry[1] > TEMPLATE_TTL:
            return request, None
        answer_id, conversation_id = uuid.uuid4(), uuid.uuid4()
        prepared = send_guess.guess(entry[0], data, answer_id, conversation_id)
        request = TurnRequest(session_key, "send", data, answer_id, conversation_id)
    elif send_guess.can_follow_up(data):
        # Used once, whatever comes of it: this turn's answer leaves the next one.
        found = _follow_ups.pop(str(data["conversation"]), None)
        if found is None or found[2] != (session_key, data.get("model")) or now - found[1] > TEMPLATE_TTL:
            return request, None
        answer_id = uuid.uuid4()
        prepared = send_guess.guess_follow_up(found[0], data, answer_id)
        request = TurnRequest(session_key, "send", data, answer_id)
    else:
        return request, None
    return request, generation.start_held(prepared, received_at, session_key=session_key)


def settle(early: generation.Generation, prepared: Prepared) -> bool:
    """The batch prepared the early answer's turn: True when it asked for exactly what was sent (the early
    answer goes on as the batch's), False when not (the caller abandons it and starts the batch's)."""
    if send_guess.same_request(early.prepared, prepared):
        early.adopt(prepared)
        metrics.sent_ahead("kept")
        return True
    metrics.sent_ahead("redone")
    return False


def remember(request: TurnRequest, started: StartedTurn, answer: generation.Generation | None) -> None:
    """After a saved turn (send, regenerate, edit): its session's next new conversation with that model can
    start early, and, once `answer` is saved, the next send into this conversation."""
    # Whatever was kept for the conversation is stale now (a regenerate, an edit, a send that was not guessed
    # moved it on); the turn's answer, once saved, is what the next send follows.
    forget_conversation(str(started.turn.conversation.public_id))
    prepared = started.prepared
    if request.session_key is None or prepared is None:
        return
    created = started.turn.created_conversation
    if request.command == "send" and created and send_guess.can_guess(request.data):
        key = (request.session_key, request.data.get("model"))
        _templates[key] = (send_guess.template_of(prepared), time.monotonic())
        _templates.move_to_end(key)
        while len(_templates) > MAX_TEMPLATES:
            _templates.popitem(last=False)
    if answer is not None and answer.task is not None:
        asker = (request.session_key, request.data.get("model"))
        answer.task.add_done_callback(lambda task: _answered(asker, answer, task))


def _answered(asker: tuple[str, object], answer: generation.Generation, task) -> None:
    """The answer's task ended: if it was saved, the conversation's next send can be guessed from it."""
    if task.cancelled() or task.exception() is not None or not answer.finished:
        return
    text = answer.text
    follow_up = send_guess.follow_up_of(answer.prepared, text)
    if follow_up is None or sum(len(m.text) for m in follow_up.turns) > MAX_FOLLOW_UP_CHARS:
        return
    key = answer.prepared.conversation_id
    _follow_ups[key] = (follow_up, time.monotonic(), asker)
    _follow_ups.move_to_end(key)
    while len(_follow_ups) > MAX_FOLLOW_UPS:
        _follow_ups.popitem(last=False)


def forget_user(user_id) -> None:
    """The user's access changed (engine/revocation.py): their templates go."""
    for key in [k for k, (t, _) in _templates.items() if str(t.owner.pk) == str(user_id)]:
        del _templates[key]
    for key in [k for k, (f, _, _) in _follow_ups.items() if str(f.template.owner.pk) == str(user_id)]:
        del _follow_ups[key]


def forget_conversation(conversation_id: str) -> None:
    """The conversation changed in a way its kept follow-up does not know (another branch selected)."""
    _follow_ups.pop(conversation_id, None)
