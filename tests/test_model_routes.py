"""People pick models, providers are routes (issue 18): a site set up as the README says, with the three seed
providers from the environment, all played by the simulator (OpenAI at /v1, OpenRouter at /api/v1 with its
attribution headers and error chunks, AI/ML API at /aimlapi/v1 with its bare-array model list), Test
connection and Sync models run on each. Then the admin switches providers off, as one does when a key runs
out, and new and existing GPT-4o chats carry on through the next provider serving GPT-4o."""

from __future__ import annotations

import pytest

from conversations.models import Conversation, Message, Provider
from conversations.services import model_choices
from conversations.testing.upstream import Fault, Reply
from tests.conftest import session_cookie_for
from tests.three_providers import AIMLAPI, OPENAI, OPENROUTER, PATHS, bootstrap, switch_off
from tests.wsclient import ChatSocket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice_socket(live_server_daphne, client, alice):
    sock = ChatSocket(live_server_daphne, session_cookie_for(client, alice))
    yield sock
    sock.close()


def answer(sock: ChatSocket, upstream, conversation: str | None = None, **extra) -> tuple[dict, dict, object]:
    """Send a turn; returns its ack, the ended answer, and the completion request that served it."""
    before = len(upstream.chat_requests)
    sock.send(type="send", text="Hello there.", conversation=conversation, ref="t", **extra)
    ack = sock.wait_type("ack")
    final = sock.wait_end(ack["assistant_message"]["id"])
    assert final["status"] == "complete", final
    served = [r for r in upstream.chat_requests[before:] if not is_title_request(r)]
    return ack, final, served[-1]


def is_title_request(request) -> bool:
    """The title call after a first answer (max_tokens or, for OpenAI, max_completion_tokens 24)."""
    body = request.json or {}
    return 24 in (body.get("max_tokens"), body.get("max_completion_tokens"))


def test_the_menu_lists_gpt4o_once_with_its_three_routes_in_priority_order(client, alice, three_providers):
    # A model outside the catalog (synced disabled for review), switched on by the admin.
    three_providers[OPENROUTER].models.filter(model_id="meta-llama/llama-3.1-8b-instruct").update(
        enabled=True
    )
    client.force_login(alice)
    models = client.get("/api/models").json()["models"]
    gpt4o = [m for m in models if m["name"] == "GPT-4o"]
    assert len(gpt4o) == 1
    assert gpt4o[0]["id"] == "gpt-4o" and gpt4o[0]["default"]
    assert gpt4o[0]["providers"] == [OPENAI, OPENROUTER, AIMLAPI]
    ids = [m["id"] for m in models]
    assert len(ids) == len(set(ids)), "every model is listed once"
    # A model only OpenRouter serves is listed under its own name, once.
    [llama] = [m for m in models if m["id"] == "meta-llama/llama-3.1-8b-instruct"]
    assert (llama["name"], llama["providers"]) == ("Meta: Llama 3.1 8B Instruct", [OPENROUTER])
    assert llama["description"] == "OpenRouter's own model."
    assert [m["providers"] for m in models if m["id"] == "gpt-4o-mini"] == [[OPENAI, OPENROUTER, AIMLAPI]]


def test_new_chats_stay_on_gpt4o_through_openrouter_then_aimlapi(upstream, three_providers, alice_socket):
    _, final, request = answer(alice_socket, upstream)
    assert (request.path, request.json["model"], final["provider"]) == (PATHS[OPENAI], "gpt-4o", OPENAI)

    switch_off(OPENAI)
    ack, final, request = answer(alice_socket, upstream)
    assert (request.path, request.json["model"]) == (PATHS[OPENROUTER], "openai/gpt-4o")
    assert final["provider"] == OPENROUTER and final["model"] == "gpt-4o"
    assert ack["conversation"]["model"] == "gpt-4o"
    # OpenRouter's attribution headers went with it.
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["http-referer"] and headers["x-title"]

    switch_off(OPENROUTER)
    _, final, request = answer(alice_socket, upstream)
    assert (request.path, request.json["model"], final["provider"]) == (PATHS[AIMLAPI], "gpt-4o", AIMLAPI)
    assert "http-referer" not in {k.lower() for k in request.headers}


def test_an_existing_gpt4o_chat_continues_through_each_switch(upstream, three_providers, alice_socket):
    ack, final, request = answer(alice_socket, upstream)
    conversation = ack["conversation"]["id"]
    assert final["provider"] == OPENAI

    switch_off(OPENAI)
    ack, final, request = answer(alice_socket, upstream, conversation)
    assert ack["conversation"]["id"] == conversation and not ack["created"]
    assert (request.path, request.json["model"], final["provider"]) == (
        PATHS[OPENROUTER], "openai/gpt-4o", OPENROUTER,
    )  # fmt: skip
    # The model saw the whole conversation, whichever provider served the earlier turns.
    assert [m["role"] for m in request.json["messages"]] == ["user", "assistant", "user"]

    switch_off(OPENROUTER)
    _, final, request = answer(alice_socket, upstream, conversation)
    assert (request.path, final["provider"]) == (PATHS[AIMLAPI], AIMLAPI)

    chat = Conversation.objects.get(public_id=conversation)
    assert chat.canonical_model == "gpt-4o"
    served = list(
        Message.objects.filter(conversation=chat, role="assistant")
        .order_by("created_at")
        .values_list("provider_name", flat=True)
    )
    assert served == [OPENAI, OPENROUTER, AIMLAPI]


def test_an_openrouter_error_chunk_before_the_first_token_falls_back_to_aimlapi(
    upstream, three_providers, alice_socket
):
    switch_off(OPENAI)
    # OpenRouter's in-stream error (HTTP 200, an error field and finish_reason "error"), three times: the first
    # attempt and its two retries. Then the next route, AI/ML API, answers.
    error = Reply(fault=Fault.MIDSTREAM_ERROR_OPENROUTER, fault_after=0, keepalive=True)
    upstream.enqueue(error, error, error, Reply(text="From the next route."))
    _, final, _ = answer(alice_socket, upstream)
    paths = [r.path for r in upstream.chat_requests if not is_title_request(r)]
    assert paths[:4] == [PATHS[OPENROUTER]] * 3 + [PATHS[AIMLAPI]]
    assert (final["provider"], final["content"]) == (AIMLAPI, "From the next route.")


def test_a_chat_whose_model_no_provider_serves_any_more_says_so(upstream, three_providers, alice_socket):
    ack, _, _ = answer(alice_socket, upstream)
    for name in (OPENAI, OPENROUTER, AIMLAPI):
        switch_off(name)
    alice_socket.send(type="send", text="Still there?", conversation=ack["conversation"]["id"], ref="x")
    error = alice_socket.wait_type("error")
    assert error["code"] == "model_unavailable"


def test_a_restart_after_the_admin_switched_a_provider_off_leaves_it_off(
    admin_client, upstream, seed_env, three_providers, monkeypatch
):
    openrouter = three_providers[OPENROUTER]
    data = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-0-id": str(openrouter.pk),
        "form-0-priority": "5",  # tried first from now on; "enabled" unticked: switched off
        "_save": "Save",
    }
    assert admin_client.post("/admin/conversations/provider/?q=OpenRouter", data).status_code == 302
    Provider.objects.filter(pk=openrouter.pk).update(base_url=f"{upstream.origin}/api/v1/corrected")
    model_choices.catalogue_changed()  # update() sends no signal
    seed_env_key = "sk-or-rotated-9999"
    monkeypatch.setenv("OPENROUTER_API_KEY", seed_env_key)

    printed = bootstrap()  # ./scripts/run runs it on every start

    openrouter.refresh_from_db()
    assert not openrouter.enabled
    assert openrouter.priority == 5
    assert openrouter.base_url == f"{upstream.origin}/api/v1/corrected"
    assert openrouter.api_key == seed_env_key  # the key follows the environment
    assert seed_env_key not in printed
    assert "Kept provider OpenRouter; key updated" in printed
    # The provider's admin page says which values the environment holds.
    page = admin_client.get(f"/admin/conversations/provider/{openrouter.pk}/change/").content.decode()
    assert "The environment says otherwise" in page
    assert upstream.openrouter_base_url in page and "OPENROUTER_BASE_URL" in page
    assert seed_env_key not in page


def test_the_admin_index_and_the_log_say_when_no_enabled_provider_serves_the_default(
    admin_client, three_providers, caplog
):
    assert "served by no enabled provider" not in admin_client.get("/admin/").content.decode()
    for name in (OPENAI, OPENROUTER, AIMLAPI):
        switch_off(name)
    Provider.objects.create(
        name="Local", kind=Provider.Kind.OPENAI_COMPATIBLE, base_url="http://127.0.0.1:9/v1"
    )
    local = Provider.objects.get(name="Local")
    local.models.create(model_id="llama3", canonical_id="llama3", display_name="Llama 3")
    page = admin_client.get("/admin/").content.decode()
    assert "The default model gpt-4o is served by no enabled provider" in page
    with caplog.at_level("WARNING"):
        printed = bootstrap()
    assert "The default model gpt-4o is served by no enabled provider" in printed
    assert "served by no enabled provider" in caplog.text


def test_the_admin_index_says_so_when_every_provider_is_switched_off(admin_client, three_providers, caplog):
    """The key ran out everywhere: nothing serves the default, nor anything else. The index said nothing."""
    for name in (OPENAI, OPENROUTER, AIMLAPI):
        switch_off(name)
    page = admin_client.get("/admin/").content.decode()
    assert "The default model gpt-4o is served by no enabled provider, and no other model is either" in page
    assert "nobody can start or continue a chat" in page
    with caplog.at_level("WARNING"):
        printed = bootstrap()
    assert "nobody can start or continue a chat" in printed and "nobody can start" in caplog.text


def test_a_restart_after_the_admin_switched_a_provider_off_and_removed_its_key_leaves_it_off(
    admin_client, upstream, three_providers
):
    """The key ran out: the admin unticks Enabled and removes the stored key. A provider without a key used to
    count as "never set up", so the next start switched it back on with the environment's URL and priority."""
    openai = three_providers[OPENAI]
    data = {
        "name": OPENAI,
        "kind": "openai",
        "base_url": f"{upstream.origin}/v1/corrected",
        "api_key": "",
        "clear_api_key": "on",
        "extra_headers": "{}",
        "initial-extra_headers": "{}",
        "priority": "40",  # "enabled" unticked
        "models-TOTAL_FORMS": "0",
        "models-INITIAL_FORMS": "0",
    }
    response = admin_client.post(f"/admin/conversations/provider/{openai.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    openai.refresh_from_db()
    assert (openai.enabled, openai.api_key_encrypted) == (False, "")

    printed = bootstrap()

    openai.refresh_from_db()
    assert not openai.enabled
    assert (openai.base_url, openai.priority) == (f"{upstream.origin}/v1/corrected", 40)
    assert openai.api_key == "sk-openai-test-1111"  # the key follows the environment, as documented
    assert "Kept provider OpenAI; key updated" in printed
