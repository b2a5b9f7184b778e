"""A new conversation's answer starts as its frame arrives, before its turn reaches the database thread.

A turn's request used to leave once the turns' database thread had checked and prepared it. Under load that
thread is the queue every turn waits in (bench/README.md, "Session 15": at 96 turns/s the request left up to
128 ms after the frame at p95, nearly all of it waiting for the thread). The provider then thinks for 200 ms
or more, with nothing for the database thread to do for that turn.

So when a session sends into a new conversation with a model it used for its previous new conversation, the
request is built from what that turn's batch prepared (services/send_guess.py: the model's routes and keys,
the owner's custom instructions, kept here per session and model) and sent at once, held
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
from conversations.services.send_guess import SendTemplate
from conversations.services.turns import StartedTurn, TurnRequest

# Templates are forgotten after this long unused, and the least recently used beyond MAX_TEMPLATES: a session
# that went quiet starts its next answer from the database thread again, which refreshes it.
TEMPLATE_TTL = 600.0
MAX_TEMPLATES = 20_000

# (session key, the model the frame asked for) -> (the template, when it was stored: time.monotonic()).
_templates: OrderedDict[tuple[str, object], tuple[SendTemplate, float]] = OrderedDict()


def start(
    session_key: str | None, data: dict, received_at: float
) -> tuple[TurnRequest, generation.Generation | None]:
    """The turn's request for the batch, and its answer started early when the process can guess it."""
    request = TurnRequest(session_key, "send", data)
    if session_key is None or not send_guess.can_guess(data) or registry.draining():
        return request, None
    key = (session_key, data.get("model"))
    entry = _templates.get(key)
    if entry is None or time.monotonic() - entry[1] > TEMPLATE_TTL:
        return request, None
    answer_id, conversation_id = uuid.uuid4(), uuid.uuid4()
    prepared = send_guess.guess(entry[0], data, answer_id, conversation_id)
    request = TurnRequest(session_key, "send", data, answer_id, conversation_id)
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


def remember(request: TurnRequest, started: StartedTurn) -> None:
    """After a saved send: its session's next new conversation with that model can start early."""
    prepared = started.prepared
    if (
        request.session_key is None
        or prepared is None
        or not started.turn.created_conversation
        or not send_guess.can_guess(request.data)
    ):
        return
    key = (request.session_key, request.data.get("model"))
    _templates[key] = (send_guess.template_of(prepared), time.monotonic())
    _templates.move_to_end(key)
    while len(_templates) > MAX_TEMPLATES:
        _templates.popitem(last=False)


def forget_user(user_id) -> None:
    """The user's access changed (engine/revocation.py): their templates go."""
    for key in [k for k, (t, _) in _templates.items() if str(t.owner.pk) == str(user_id)]:
        del _templates[key]


def clear() -> None:
    """Forget every template (tests; a change to the catalogue need not call it: see the docstring)."""
    _templates.clear()
