"""GET /metrics: who may read it, and that real turns through a real daphne move the figures.

A daphne of this module's own serves with CHAT_METRICS_TOKEN set; the shared `live_server_daphne` has no token
(metrics off). Figures are cumulative per server, so each test compares a scrape before with one after.
"""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from conversations.models import Conversation, Message, UserQuota
from conversations.testing.upstream import Fault, Reply, split_tokens
from tests.conftest import session_cookie_for
from tests.live import BASE_DIR, DaphneServer
from tests.wsclient import ChatSocket

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "test-metrics-token-3f9a1c"
ANSWER = "".join(f"word{i} " for i in range(60)) + "done."


@pytest.fixture(scope="module")
def metrics_server(django_db_setup, tmp_path_factory):
    server = DaphneServer(tmp_path_factory.mktemp("metrics"), {"CHAT_METRICS_TOKEN": TOKEN})
    server.start()
    yield server
    server.stop()


def get(
    server, *, token: str | None = None, cookie: str | None = None, authorization: str | None = None
) -> httpx.Response:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if authorization is not None:
        headers["Authorization"] = authorization
    if cookie is not None:
        headers["Cookie"] = f"sessionid={cookie}"
    return httpx.get(f"{server.url}/metrics", headers=headers, timeout=10, follow_redirects=False)


class Figures:
    """One scrape, parsed: `figures["name", label=value...]`, 0 for a series not (yet) exported."""

    def __init__(self, text: str) -> None:
        self.samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(server) -> Figures:
    response = get(server, token=TOKEN)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Figures(response.text)


def wait_until(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
    return value


def wait_for_figure(server, name: str, value: float) -> Figures:
    """Scrape until `name` reads `value` (gauges follow sockets and answers a moment later)."""
    return wait_until(lambda: figures if (figures := scrape(server))(name) == value else None)


def send_turn(sock: ChatSocket, **extra) -> dict:
    sock.send(type="send", text="Tell me something.", ref="t1", **extra)
    return sock.wait_for(lambda f: f["type"] in ("ack", "error") and f.get("ref") == "t1")


# --- Who may read it ------------------------------------------------------------------------------------


def test_it_is_404_for_everyone_when_no_token_is_set(live_server_daphne, admin_user):
    staff = session_cookie_for(Client(), admin_user)
    assert get(live_server_daphne).status_code == 404
    assert get(live_server_daphne, token="anything").status_code == 404
    assert get(live_server_daphne, cookie=staff).status_code == 404


def test_it_answers_the_token(metrics_server):
    response = get(metrics_server, token=TOKEN)
    assert response.status_code == 200
    assert "chatsite_turns_admitted_total" in response.text
    assert "no-cache" in response.headers["cache-control"]


def test_a_wrong_or_missing_token_is_401(metrics_server):
    wrong = get(metrics_server, token=TOKEN + "x")
    assert wrong.status_code == 401 and "chatsite_" not in wrong.text
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    assert get(metrics_server, authorization=f"Basic {TOKEN}").status_code == 401
    assert get(metrics_server, authorization=f"Bearer  {TOKEN} extra").status_code == 401
    anonymous = get(metrics_server)
    assert anonymous.status_code == 401 and "location" not in anonymous.headers  # no login redirect


def test_a_staff_session_can_read_it(metrics_server, admin_user):
    response = get(metrics_server, cookie=session_cookie_for(Client(), admin_user))
    assert response.status_code == 200 and "chatsite_websocket_connections" in response.text


def test_charlie_who_is_not_staff_is_refused(metrics_server, charlie):
    response = get(metrics_server, cookie=session_cookie_for(Client(), charlie))
    assert response.status_code == 403 and "chatsite_" not in response.text


def test_a_wrong_token_is_refused_even_with_a_staff_session(metrics_server, admin_user):
    staff = session_cookie_for(Client(), admin_user)
    assert get(metrics_server, token="nope", cookie=staff).status_code == 401


# --- What it counts -------------------------------------------------------------------------------------


def test_a_turn_moves_the_counters(metrics_server, upstream, sim_model, alice):
    upstream.enqueue(Reply(text=ANSWER, ttft=0.3, token_delay=0.01), Reply(text="A title"))
    before = scrape(metrics_server)
    sock = ChatSocket(metrics_server, session_cookie_for(Client(), alice))
    try:
        sockets = before("chatsite_websocket_connections")
        wait_for_figure(metrics_server, "chatsite_websocket_connections", sockets + 1)
        ack = send_turn(sock, conversation=None)
        assert ack["type"] == "ack"
        answer_id = ack["assistant_message"]["id"]
        sock.wait_type("delta")
        during = scrape(metrics_server)
        assert during("chatsite_streams_running") == before("chatsite_streams_running") + 1
        sock.wait_end(answer_id)
        after = wait_for_figure(
            metrics_server, "chatsite_streams_running", before("chatsite_streams_running")
        )
    finally:
        sock.close()

    def moved(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    assert moved("chatsite_turns_admitted_total") == 1
    assert sum(v for (n, _), v in after.samples.items() if n == "chatsite_turns_refused_total") == sum(
        v for (n, _), v in before.samples.items() if n == "chatsite_turns_refused_total"
    )
    deltas = [f for f in sock.frames if f["type"] == "delta"]
    assert moved("chatsite_stream_frames_total") == len(deltas) > 1
    assert moved("chatsite_stream_tokens_total") == len(split_tokens(ANSWER))
    assert moved("chatsite_added_ttft_seconds_count") == 1
    assert moved("chatsite_upstream_ttft_seconds_count") == 1
    assert moved("chatsite_upstream_ttft_seconds_sum") >= 0.3  # the simulator's time to first token
    assert 0 <= moved("chatsite_added_ttft_seconds_sum") < 5
    assert moved("chatsite_db_queue_wait_seconds_count") >= 2  # the turn and the final save at least
    assert after("chatsite_websocket_connections") == sockets + 1
    wait_for_figure(metrics_server, "chatsite_websocket_connections", sockets)


def test_a_refused_turn_counts_its_reason(metrics_server, upstream, sim_model, alice):
    UserQuota.objects.create(user=alice, turns_per_minute=1)
    conversation = Conversation.objects.create(owner=alice, model=sim_model, title="Busy minute")
    question = Message.objects.create(conversation=conversation, role="user", content="Hi")
    Message.objects.create(
        conversation=conversation, parent=question, role="assistant", status="complete", content="Hello."
    )  # this minute's one answer
    before = scrape(metrics_server)
    with ChatSocket(metrics_server, session_cookie_for(Client(), alice)) as sock:
        error = send_turn(sock, conversation=str(conversation.public_id))
    assert (error["type"], error["code"]) == ("error", "rate_limited")
    after = scrape(metrics_server)
    assert after("chatsite_turns_refused_total", reason="rate_limited") == (
        before("chatsite_turns_refused_total", reason="rate_limited") + 1
    )
    assert after("chatsite_turns_admitted_total") == before("chatsite_turns_admitted_total")
    assert after("chatsite_added_ttft_seconds_count") == before("chatsite_added_ttft_seconds_count")


def test_provider_errors_and_retries_count_by_provider_and_kind(metrics_server, upstream, sim_model, alice):
    conversation = Conversation.objects.create(owner=alice, model=sim_model, title="Faults")
    upstream.enqueue(
        Reply(fault=Fault.SERVER_ERROR, status=503),  # retried at the same provider...
        Reply(text=ANSWER, fault=Fault.DROP, fault_after=5),  # ...which then cuts the stream
    )
    before = scrape(metrics_server)
    with ChatSocket(metrics_server, session_cookie_for(Client(), alice)) as sock:
        ack = send_turn(sock, conversation=str(conversation.public_id))
        assert sock.wait_end(ack["assistant_message"]["id"])["finish_reason"] == "truncated"
    after = scrape(metrics_server)
    assert after("chatsite_provider_retries_total", provider="Simulator") == (
        before("chatsite_provider_retries_total", provider="Simulator") + 1
    )
    for kind in ("upstream_error", "truncated"):
        assert after("chatsite_provider_errors_total", provider="Simulator", kind=kind) == (
            before("chatsite_provider_errors_total", provider="Simulator", kind=kind) + 1
        ), kind


# --- Several processes ----------------------------------------------------------------------------------


def test_two_processes_sharing_a_directory_report_the_sum(
    tmp_path, django_db_setup, upstream, sim_model, alice
):
    """Two daphne processes, one multi-process directory: either endpoint shows both processes' figures,
    and a killed process's sockets stop counting while its turns still do. (Each process streams its own
    answers here, so this needs no Redis; the PostgreSQL + Redis lane runs it again.)"""
    shared = tmp_path / "metrics"
    shared.mkdir()
    finished = subprocess.Popen(["true"])
    finished.wait()
    (shared / f"counter_{finished.pid}.db").write_bytes(b"left by a previous run")
    (shared / "notes.txt").write_text("not prometheus-client's")
    env = {"CHAT_METRICS_TOKEN": TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    servers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        servers.append(DaphneServer(tmp_path / name, env))
        servers[-1].start()
    a, b = servers
    # The first process of the site emptied the directory of prometheus-client's files, and only of those.
    assert not (shared / f"counter_{finished.pid}.db").exists() and (shared / "notes.txt").exists()
    cookie = session_cookie_for(Client(), alice)
    upstream.enqueue(Reply(text=ANSWER), Reply(text="Title"), Reply(text=ANSWER), Reply(text="Title"))
    try:
        with ChatSocket(a, cookie) as on_a, ChatSocket(b, cookie) as on_b:
            for sock in (on_a, on_b):
                ack = send_turn(sock, conversation=None)
                sock.wait_end(ack["assistant_message"]["id"])
            for server in (a, b):
                figures = scrape(server)
                assert figures("chatsite_turns_admitted_total") == 2
                assert figures("chatsite_websocket_connections") == 2
                assert figures("chatsite_added_ttft_seconds_count") == 2
                assert figures("chatsite_stream_tokens_total") == 2 * len(split_tokens(ANSWER))
            b.kill()  # SIGKILL: no chance to clean up after itself
            figures = scrape(a)
            assert figures("chatsite_websocket_connections") == 1  # only a's socket is alive
            assert figures("chatsite_turns_admitted_total") == 2  # b's turns still count
            assert figures("chatsite_streams_running") == 0

            # A management command imports the same code and leaves files of zeros: they go at the next scrape.
            command = subprocess.run(
                [sys.executable, "-c", "import os; import django; django.setup(); "
                 "from conversations import metrics; print(os.getpid())"],
                cwd=BASE_DIR, env=a.environment(), capture_output=True, text=True, timeout=60, check=True,
            )  # fmt: skip
            left = sorted(p.name for p in shared.glob(f"*_{command.stdout.strip()}.db"))
            assert left == [f"counter_{command.stdout.strip()}.db", f"histogram_{command.stdout.strip()}.db"]
            assert scrape(a)("chatsite_turns_admitted_total") == 2
            assert not list(shared.glob(f"*_{command.stdout.strip()}.db"))
            assert list(shared.glob(f"counter_{b.pid}.db")), "a dead process's counts stay"
    finally:
        for server in servers:
            server.kill()
