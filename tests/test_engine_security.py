"""The websocket refuses what it must: other people's ids, stale sessions, and malformed frames."""

from __future__ import annotations

import contextlib
import json

import pytest
from websockets.exceptions import ConnectionClosed

from conversations.models import Conversation, Message
from conversations.testing.upstream import Reply
from tests.conftest import session_cookie_for
from tests.wsclient import ChatSocket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alices_conversation(upstream, sim_model, live_server_daphne, client, alice):
    """A finished conversation of alice's: one question, one answer."""
    upstream.enqueue(Reply(text="Alice's private answer."), Reply(text="Title"))
    with ChatSocket(live_server_daphne, session_cookie_for(client, alice)) as sock:
        sock.send(type="send", text="Alice's private question")
        ack = sock.wait_type("ack")
        sock.wait_end(ack["assistant_message"]["id"])
        sock.wait_type("title")
    return ack


def database_state():
    return sorted(
        Message.objects.values_list("public_id", "status", "content", "conversation__current_leaf_id")
    ), sorted(Conversation.objects.values_list("public_id", "title", "current_leaf_id"))


def test_charlie_can_touch_nothing_of_alices(
    alices_conversation, live_server_daphne, client, charlie, upstream
):
    conversation_id = alices_conversation["conversation"]["id"]
    question_id = alices_conversation["user_message"]["id"]
    answer_id = alices_conversation["assistant_message"]["id"]
    before = database_state()
    requests_before = len(upstream.requests)
    commands = [
        {"type": "open", "conversation": conversation_id},
        {"type": "send", "conversation": conversation_id, "text": "let me in"},
        {"type": "stop", "message": answer_id},
        {"type": "regenerate", "message": answer_id},
        {"type": "edit", "message": question_id, "text": "mine now"},
        {"type": "select", "message": answer_id},
        {"type": "sync", "message": answer_id, "offset": 0},
    ]
    with ChatSocket(live_server_daphne, session_cookie_for(client, charlie)) as sock:
        for number, command in enumerate(commands):
            sock.send(**command, ref=number)
            frame = sock.recv()
            assert frame["type"] == "error", (command, frame)
            assert (frame["code"], frame["ref"]) == ("not_found", number)
            assert "Alice" not in json.dumps(frame)
        sock.send(type="ping", id="still-alive")
        assert sock.recv() == {"type": "pong", "id": "still-alive"}
    assert database_state() == before
    assert len(upstream.requests) == requests_before


def test_a_deactivated_user_is_refused_on_an_open_socket(live_server_daphne, client, alice, sim_model):
    with ChatSocket(live_server_daphne, session_cookie_for(client, alice)) as sock:
        alice.is_active = False
        alice.save()
        sock.send(type="send", text="am I still here?", ref="late")
        frame = sock.recv()
        # The command's refusal, or (when this test process shares the server's channel layer, with Redis)
        # the push that closes the socket as soon as the deactivation commits (engine/revocation.py).
        assert (frame["type"], frame["code"]) == ("error", "unauthenticated")
        assert frame["ref"] in ("late", None)
        assert sock.wait_closed() == 4401
    assert not Message.objects.exists()


def test_a_user_logged_out_elsewhere_is_refused_on_an_open_socket(
    live_server_daphne, client, alice, sim_model
):
    """Refused at the next command, or before it: with Redis the log-out reaches the live server's sockets at
    once (tests/test_revocation.py), and the socket may be closed before the command is sent."""
    with ChatSocket(live_server_daphne, session_cookie_for(client, alice)) as sock:
        client.post("/accounts/logout/")  # deletes the session the socket was opened with
        with contextlib.suppress(ConnectionClosed):
            sock.send(type="send", text="hello?")
        assert sock.wait_closed() == 4401
        assert [f["code"] for f in sock.frames if f["type"] == "error"] == ["unauthenticated"]
    assert not Message.objects.exists()


MALFORMED = [
    ("not json", "bad_json"),
    ("[" * 100_000, "bad_json"),  # nested past the decoder's recursion limit (issue 16, finding 5)
    ('{"type": "send", "text": "hi", "params": ' + "[" * 50_000 + "]" * 50_000 + "}", "bad_json"),
    (b"\x00\x01binary", "bad_frame"),
    ("[1, 2, 3]", "bad_frame"),
    ('"just a string"', "bad_frame"),
    ("{}", "unknown_type"),
    ('{"type": "explode"}', "unknown_type"),
    ('{"type": 7}', "unknown_type"),
    ('{"type": "send"}', "empty_message"),  # neither text nor images
    ('{"type": "send", "text": 5}', "invalid"),
    ('{"type": "send", "text": "   "}', "empty_message"),
    ('{"type": "send", "text": "", "attachments": []}', "empty_message"),
    ('{"type": "edit", "message": "6f1c4a3e-0b8e-4a51-9a53-6b2a1d1f0c11"}', "invalid"),  # text missing
    ('{"type": "send", "text": "hi", "model": ""}', "invalid"),
    ('{"type": "send", "text": "hi", "model": "no-such-model"}', "model_unavailable"),
    ('{"type": "send", "text": "hi", "params": {"temperature": 9}}', "invalid"),
    ('{"type": "send", "text": "hi", "params": {"temperature": true}}', "invalid"),
    ('{"type": "send", "text": "hi", "params": {"rm -rf": 1}}', "invalid"),
    ('{"type": "send", "text": "hi", "surprise": 1}', "invalid"),
    ('{"type": "send", "text": "hi", "attachments": ["nope"]}', "invalid"),
    ('{"type": "open", "conversation": "not-a-uuid"}', "invalid"),
    ('{"type": "open", "conversation": "6f1c4a3e-0b8e-4a51-9a53-6b2a1d1f0c11"}', "not_found"),
    ('{"type": "stop", "message": ["x"]}', "invalid"),
    ('{"type": "sync", "message": "6f1c4a3e-0b8e-4a51-9a53-6b2a1d1f0c11", "offset": -1}', "invalid"),
    ('{"type": "send", "text": "hi", "model": 999999}', "model_unavailable"),
    (json.dumps({"type": "send", "text": "x" * 300_000}), "too_large"),
]


def test_each_malformed_frame_gets_an_error_and_the_socket_keeps_working(
    live_server_daphne, client, alice, upstream, sim_model
):
    with ChatSocket(live_server_daphne, session_cookie_for(client, alice)) as sock:
        for raw, code in MALFORMED:
            sock.send_raw(raw)
            frame = sock.recv()
            assert (frame["type"], frame["code"]) == ("error", code), raw[:80]
            assert frame["message"]
        assert not Message.objects.exists() and not Conversation.objects.exists()

        upstream.enqueue(Reply(text="Still fine."))
        sock.send(type="send", text="A normal turn")
        ack = sock.wait_type("ack")
        assert sock.wait_end(ack["assistant_message"]["id"])["content"] == "Still fine."


def test_a_deeply_nested_frame_is_a_bad_json_error_not_a_crash():
    from conversations.engine.protocol import ProtocolError, parse_frame

    for raw in ("[" * 100_000, "{" + '"a":{' * 40_000):
        with pytest.raises(ProtocolError) as excinfo:
            parse_frame(raw, None)
        assert excinfo.value.code == "bad_json"


def test_frames_encode_as_django_did_and_what_the_fast_encoder_refuses_still_goes_out():
    """engine/consumer.encode_frame: orjson, with dates, decimals and lazy strings through Django's encoder
    (the same text as before), and Django's encoder whole for what orjson refuses."""
    import datetime as dt
    import json
    import uuid
    from decimal import Decimal

    from django.core.serializers.json import DjangoJSONEncoder
    from django.utils.translation import gettext_lazy

    from conversations.engine.consumer import encode_frame

    frame = {
        "type": "end",
        "message": {
            "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "created_at": dt.datetime(2026, 12, 3, 21, 0, 1, 123456, tzinfo=dt.UTC),
            "cost": Decimal("0.000125"),
            "label": gettext_lazy("Cancel"),
            "text": "naïve 😀 <b>",
            "tokens": [1, 2.5, None, True],
        },
    }
    assert json.loads(encode_frame(frame)) == json.loads(DjangoJSONEncoder().encode(frame))
    assert '"created_at":"2026-12-03T21:00:01.123Z"' in encode_frame(frame)
    for awkward in ("half an emoji \ud83d", 2**70):  # a lone surrogate from a cut stream; a huge integer
        text = encode_frame({"type": "delta", "text": awkward})
        assert json.loads(text) == {"type": "delta", "text": awkward}
