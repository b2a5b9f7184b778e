"""The websocket endpoint through the full ASGI stack of a live daphne: origin check and session auth."""

import json

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import session_cookie_for

pytestmark = pytest.mark.django_db(transaction=True)


def open_socket(server, cookie=None, origin=None):
    headers = {"Cookie": f"sessionid={cookie}"} if cookie else {}
    return connect(
        f"{server.ws_url}/ws/chat/", origin=origin or server.url, additional_headers=headers, open_timeout=5
    )


def test_it_completes_the_handshake_for_a_logged_in_user(live_server_daphne, client, alice):
    cookie = session_cookie_for(client, alice)
    with open_socket(live_server_daphne, cookie) as ws:
        assert json.loads(ws.recv(timeout=5)) == {"type": "hello", "protocol": 1}
        ws.send(json.dumps({"type": "ping", "id": 7}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong", "id": 7}


def test_it_refuses_an_anonymous_socket(live_server_daphne):
    with pytest.raises(InvalidStatus) as excinfo:
        open_socket(live_server_daphne)
    assert excinfo.value.response.status_code == 403


def test_it_refuses_a_forged_session_cookie(live_server_daphne):
    with pytest.raises(InvalidStatus) as excinfo:
        open_socket(live_server_daphne, cookie="not-a-real-session-key")
    assert excinfo.value.response.status_code == 403


def test_it_refuses_a_deactivated_user(live_server_daphne, client, alice):
    cookie = session_cookie_for(client, alice)
    alice.is_active = False
    alice.save()
    with pytest.raises(InvalidStatus) as excinfo:
        open_socket(live_server_daphne, cookie)
    assert excinfo.value.response.status_code == 403


def test_it_refuses_a_foreign_origin_even_with_a_valid_session(live_server_daphne, client, alice):
    cookie = session_cookie_for(client, alice)
    with pytest.raises(InvalidStatus) as excinfo:
        open_socket(live_server_daphne, cookie, origin="http://evil.example")
    assert excinfo.value.response.status_code == 403
