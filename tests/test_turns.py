"""The service layer behind a turn: limits, budget reservations, branches and the prompt it builds."""

from __future__ import annotations

from decimal import Decimal

import pytest

from conversations.models import Conversation, Message
from conversations.services import errors, tree, turns
from conversations.services.context import build_request

pytestmark = pytest.mark.django_db


def test_it_saves_the_question_and_a_placeholder_holding_a_reservation(alice, sim_model):
    turn = turns.do_send_turn(alice, conversation_id=None, text="Hello")
    assert turn.created_conversation
    assert turn.user_message.content == "Hello" and turn.user_message.parent is None
    assert (turn.assistant.status, turn.assistant.parent) == ("pending", turn.user_message)
    # 4,000 prompt tokens at $2.50/M plus the whole 16,384-token allowance at $10/M.
    assert turn.assistant.reserved_cost == Decimal("0.173840")
    assert Conversation.objects.get().current_leaf == turn.assistant


def test_it_limits_turns_per_minute(alice, sim_model, settings):
    settings.CHAT_TURNS_PER_MINUTE = 2
    for _ in range(2):
        Message.objects.filter(status="pending").update(status="complete")
        turns.do_send_turn(alice, conversation_id=None, text="again")
    with pytest.raises(errors.RateLimited):
        turns.do_send_turn(alice, conversation_id=None, text="one too many")


def test_concurrent_turns_cannot_overspend_the_budget(alice, charlie, sim_model, settings):
    settings.CHAT_USER_MONTHLY_BUDGET = 0.30  # room for one reservation of $0.17, not two
    first = turns.do_send_turn(alice, conversation_id=None, text="first")
    with pytest.raises(errors.BudgetExceeded):
        turns.do_send_turn(alice, conversation_id=None, text="second, while the first runs")
    # Settling the first answer at its real cost frees the rest of the reservation.
    Message.objects.filter(pk=first.assistant.pk).update(
        status="complete", cost=Decimal("0.01"), reserved_cost=None
    )
    turns.do_send_turn(alice, conversation_id=None, text="third")
    # Budgets are per person.
    turns.do_send_turn(charlie, conversation_id=None, text="charlie's own")


def test_it_refuses_a_disabled_model(alice, sim_model):
    sim_model.enabled = False
    sim_model.save()
    with pytest.raises(errors.InvalidInput) as excinfo:
        turns.do_send_turn(alice, conversation_id=None, text="hi", model_pk=sim_model.pk)
    assert excinfo.value.code == "model_unavailable"
    assert not Message.objects.exists()


def test_it_refuses_images_for_a_text_only_model(alice, sim_model, gpt4):
    from django.core.files.base import ContentFile

    from conversations.models import Attachment

    text_only = gpt4
    attachment = Attachment(owner=alice, mime="image/png", width=1, height=1, bytes=3, sha256="0" * 64)
    attachment.file.save("x.png", ContentFile(b"png"), save=True)
    with pytest.raises(errors.InvalidInput) as excinfo:
        turns.do_send_turn(
            alice,
            conversation_id=None,
            text="look",
            model_pk=text_only.pk,
            attachment_ids=[attachment.public_id],
        )
    assert excinfo.value.code == "images_not_supported"
    assert not Message.objects.exists()


def test_it_refuses_someone_elses_attachment(alice, charlie, sim_model):
    from django.core.files.base import ContentFile

    from conversations.models import Attachment

    attachment = Attachment(owner=alice, mime="image/png", width=1, height=1, bytes=3, sha256="0" * 64)
    attachment.file.save("x.png", ContentFile(b"png"), save=True)
    with pytest.raises(errors.NotFound):
        turns.do_send_turn(charlie, conversation_id=None, text="mine?", attachment_ids=[attachment.public_id])


def make_history(owner, chat_model, pairs: int, words: int = 100) -> Conversation:
    conversation = Conversation.objects.create(owner=owner, model=chat_model, system_prompt="Be brief.")
    parent = None
    for i in range(pairs):
        question = Message.objects.create(
            conversation=conversation, parent=parent, role="user", content=f"q{i} " + "word " * words
        )
        parent = Message.objects.create(
            conversation=conversation, parent=question, role="assistant", content=f"a{i} " + "word " * words
        )
    conversation.current_leaf = parent
    conversation.save()
    return conversation


def test_it_sends_the_whole_branch_when_it_fits(alice, sim_model):
    conversation = make_history(alice, sim_model, pairs=3)
    path = tree.active_path(tree.load_messages(conversation), conversation.current_leaf_id)
    prepared = build_request(conversation, path, sim_model)
    assert not prepared.trimmed
    roles = [m.role for m in prepared.request.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant"]


def test_it_trims_the_oldest_turns_to_fit_the_context_window(alice, sim_model):
    sim_model.context_window = 1_000
    sim_model.max_output_tokens = 400
    conversation = make_history(alice, sim_model, pairs=6)
    question = Message.objects.create(
        conversation=conversation,
        parent=conversation.current_leaf,
        role="user",
        content="the newest question",
    )
    path = tree.active_path(tree.load_messages(conversation), question.pk)
    prepared = build_request(conversation, path, sim_model)
    messages = prepared.request.messages
    assert prepared.trimmed
    assert messages[0].role == "system" and messages[0].text == "Be brief."
    assert messages[1].role == "user", "the trimmed history still starts with a question"
    assert messages[-1].text == "the newest question"
    assert len(messages) < 14
    assert prepared.prompt_estimate <= 600
    assert prepared.request.params.max_output_tokens == 400


def test_select_branch_follows_the_newest_child(alice, sim_model):
    conversation = make_history(alice, sim_model, pairs=2, words=1)
    first_question = tree.load_messages(conversation)[0]
    edited = Message.objects.create(conversation=conversation, parent=None, role="user", content="edited")
    edited_answer = Message.objects.create(
        conversation=conversation, parent=edited, role="assistant", content="b"
    )
    turns.do_select_branch(alice, str(first_question.public_id))
    conversation.refresh_from_db()
    assert conversation.current_leaf.content.startswith("a1")
    turns.do_select_branch(alice, str(edited.public_id))
    conversation.refresh_from_db()
    assert conversation.current_leaf == edited_answer


@pytest.mark.parametrize(
    ("reply", "title"),
    [
        ("Title: \u201cTrip plans\u201d", "Trip plans"),
        ("**Python tips**\n\nHere is why I chose it.", "Python tips"),
        ("`asyncio` basics.", "asyncio basics"),
        ("Hi! I'm the **upstream simulator**: a stand-in", "Hi! I'm the upstream simulator: a stand-in"),
    ],
)
def test_a_title_is_the_first_line_of_the_reply_as_plain_text(reply, title):
    from conversations.services.titles import clean_title

    assert clean_title(reply) == title
