"""Provider errors as people read them (issue 16, finding 6): an unreachable provider showed "[Errno 111]
Connect call failed ('127.0.0.1', 9599)". Users get plain words naming the provider and what to do; staff
also get the technical detail (the message's Details panel), and the log has it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from conversations.llm import errors
from conversations.models import ChatModel, Message, Provider
from tests.conftest import session_cookie_for
from tests.live import free_port
from tests.wsclient import ChatSocket

LEAKS = ("Errno", "127.0.0.1", "Connect call failed", "Traceback")


def test_a_network_error_names_the_provider_and_what_to_do_without_addresses():
    exc = errors.NetworkError("[Errno 111] Connect call failed ('127.0.0.1', 9599)", provider_name="Local")
    text = exc.user_message
    assert 'provider "Local"' in text and "Try again" in text and "administrator" in text
    assert not any(leak in text for leak in (*LEAKS, "9599"))
    assert "[Errno 111] Connect call failed ('127.0.0.1', 9599)" in str(exc)  # the log keeps it


@pytest.mark.parametrize(
    "detail",
    [
        "[Errno -2] Name or service not known",
        "connect to 10.1.2.3:8443 failed",
        "upstream [::1]:11434 refused",
        "socket ('192.168.0.7', 443, 0, 0) reset",
    ],
)
def test_no_user_message_carries_error_numbers_or_addresses(detail):
    for cls in (errors.LLMError, errors.MidStreamError, errors.BadRequest, errors.NetworkError):
        text = cls(detail, provider_name="P").user_message
        for leak in ("Errno", "10.1.2.3", "8443", "::1", "192.168.0.7"):
            assert leak not in text, (cls.__name__, text)


STACK = (
    'Traceback (most recent call last):\n  File "/srv/vllm/engine.py", line 12, in run\n'
    '    raise RuntimeError("CUDA out of memory")\nRuntimeError: CUDA out of memory'
)


@pytest.mark.parametrize(
    ("detail", "leaks", "kept"),
    [
        (STACK, ("Traceback", "/srv/vllm", "line 12", "raise "), "RuntimeError: CUDA out of memory"),
        ('Internal error at File "/app/server.py", line 88', ("/app/server.py", "line 88"), "Internal error"),
        (
            "Bad gateway: http://internal-llm.corp.local:8000/v1/chat failed",
            ("internal-llm", "8000", "corp.local"),
            "Bad gateway",
        ),
        ("no route to llm-gateway.internal:9000", ("llm-gateway", "9000"), "no route to"),
        ("proxy http://localhost/v1 refused", ("localhost",), "refused"),
    ],
)
def test_no_user_message_carries_stack_text_or_internal_addresses(detail, leaks, kept):
    for cls in (errors.LLMError, errors.MidStreamError, errors.BadRequest):
        text = cls(detail, provider_name="P").user_message
        for leak in leaks:
            assert leak not in text, (cls.__name__, text)
        assert kept in text, (cls.__name__, text)
        assert detail.split()[0] in str(cls(detail, provider_name="P"))  # the log and staff keep it all


def test_a_public_documentation_link_stays():
    detail = "Invalid value for 'n'. See https://platform.openai.com/docs/api-reference/chat for details"
    text = errors.BadRequest(detail, provider_name="OpenAI").user_message
    assert "https://platform.openai.com/docs/api-reference/chat" in text


@pytest.fixture
def unreachable_model(db):
    provider = Provider(
        name="Local server",
        kind=Provider.Kind.OPENAI_COMPATIBLE,
        base_url=f"http://127.0.0.1:{free_port()}/v1",
    )
    provider.api_key = "sk-local-0000"
    provider.save()
    return ChatModel.objects.create(
        provider=provider,
        model_id="gpt-4o",
        canonical_id="gpt-4o",
        display_name="GPT-4o",
        context_window=128_000,
        max_output_tokens=4096,
        input_price=Decimal("2.5"),
        output_price=Decimal("10"),
    )


def failed_answer(server, user) -> tuple[dict, dict]:
    with ChatSocket(server, session_cookie_for(Client(), user)) as sock:
        sock.send(type="send", text="Anyone there?")
        ack = sock.wait_type("ack")
        end = sock.wait_end(ack["assistant_message"]["id"], timeout=30)
        sock.send(type="open", conversation=ack["conversation"]["id"], ref="reload")
        snapshot = sock.wait_for(lambda f: f["type"] == "conversation" and f["ref"] == "reload")
    return end, snapshot["messages"][-1]


@pytest.mark.django_db(transaction=True)
def test_a_user_reads_plain_words_and_staff_also_get_the_detail(
    live_server_daphne, alice, admin_user, unreachable_model
):
    end, reloaded = failed_answer(live_server_daphne, alice)
    assert end["status"] == "error"
    assert 'Couldn\'t reach the provider "Local server"' in end["error"]
    for message in (end, reloaded):
        assert not any(leak in message["error"] for leak in LEAKS)
        assert "error_detail" not in message
    saved = Message.objects.get(public_id=end["id"])
    assert "NetworkError" in saved.error_detail and "Local server" in saved.error_detail

    end, reloaded = failed_answer(live_server_daphne, admin_user)
    assert not any(leak in end["error"] for leak in LEAKS)
    for message in (end, reloaded):
        assert message["error_detail"].startswith("NetworkError provider=Local server")
        assert "detail=" in message["error_detail"]
