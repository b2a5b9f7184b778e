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


# --- The origin: scheme, host and port (issue 16, finding 2) ---------------------------------------------


def refused_status(server, cookie, **kwargs) -> int:
    with pytest.raises(InvalidStatus) as excinfo:
        connect(
            f"{server.ws_url}/ws/chat/",
            additional_headers={"Cookie": f"sessionid={cookie}"},
            open_timeout=5,
            **kwargs,
        )
    return excinfo.value.response.status_code


def test_it_refuses_the_same_host_on_another_port(live_server_daphne, client, alice):
    cookie = session_cookie_for(client, alice)
    assert refused_status(live_server_daphne, cookie, origin="http://127.0.0.1:9999") == 403


def test_it_refuses_the_same_host_and_port_over_another_scheme(live_server_daphne, client, alice):
    cookie = session_cookie_for(client, alice)
    https_origin = live_server_daphne.url.replace("http://", "https://")
    assert refused_status(live_server_daphne, cookie, origin=https_origin) == 403
    assert refused_status(live_server_daphne, cookie, origin="https://localhost:4443") == 403


def test_it_refuses_a_null_origin(live_server_daphne, client, alice):
    cookie = session_cookie_for(client, alice)
    assert refused_status(live_server_daphne, cookie, origin="null") == 403


def test_it_refuses_a_missing_origin(live_server_daphne, client, alice):
    cookie = session_cookie_for(client, alice)
    assert refused_status(live_server_daphne, cookie, origin=None) == 403


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (b"https://chat.example.com", True),  # CHAT_SITE_URL
        (b"https://chat.example.com:443", True),  # the same origin, default port spelled out
        (b"https://proxy.example.net:8443", True),  # one of CSRF_TRUSTED_ORIGINS
        (b"http://chat.example.com", False),  # another scheme
        (b"https://chat.example.com:8443", False),  # another port
        (b"https://evil.example.com", False),
        (b"http://127.0.0.1:8000", False),  # the request's own origin counts in development only
        (b"null", False),
        (None, False),
    ],
)
async def test_in_production_only_the_site_and_trusted_origins_are_allowed(origin, allowed, settings):
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.testing import WebsocketCommunicator

    from chatsite.ws_origin import SiteOriginValidator

    settings.PRODUCTION = True
    settings.CHAT_SITE_URL = "https://chat.example.com"
    settings.CSRF_TRUSTED_ORIGINS = ["https://proxy.example.net:8443"]
    headers = [(b"host", b"127.0.0.1:8000")] + ([(b"origin", origin)] if origin else [])
    communicator = WebsocketCommunicator(
        SiteOriginValidator(AsyncWebsocketConsumer.as_asgi()), "/ws/chat/", headers=headers
    )
    connected, _ = await communicator.connect()
    assert connected is allowed
    await communicator.disconnect()
