"""The websocket handshake's origin check: scheme, host and port must all match a site origin.

Channels' AllowedHostsOriginValidator compares host names only, and cookies are not port-specific: a page
served by any other app on the same host (http://127.0.0.1:9999, https://localhost:4443) could open a socket
with the user's session cookie and drive their chats. So an origin is allowed only when its scheme, host and
port equal one of:

- CHAT_SITE_URL's origin (where people open the site),
- each of CSRF_TRUSTED_ORIGINS (the same list Django's CSRF check trusts, e.g. behind a TLS proxy),
- outside production mode only: the request's own origin (its Host header, http/https by ws/wss), so
  `./scripts/run` on another port, and test servers on free ports, work without configuration (its host
  must still be one of ALLOWED_HOSTS).

A missing Origin header, `null` (sandboxed frames, file: pages) and anything unparsable are refused.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}
SCHEME_OF_WEBSOCKET = {"ws": "http", "wss": "https"}

Origin = tuple[str, str, int]


def parse_origin(value: str) -> Origin | None:
    """(scheme, host, port) of an origin or URL, with the scheme's default port filled in; None if not one."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = (parts.scheme or "").lower()
    host = (parts.hostname or "").lower()
    if scheme not in DEFAULT_PORTS or not host:
        return None
    return scheme, host, port or DEFAULT_PORTS[scheme]


def allowed_origins(scope: dict) -> set[Origin]:
    origins = {parse_origin(url) for url in [settings.CHAT_SITE_URL, *settings.CSRF_TRUSTED_ORIGINS]}
    if not settings.PRODUCTION:
        own = _own_origin(scope)
        if own:
            origins.add(own)
    origins.discard(None)
    return origins  # type: ignore[return-value]


def _own_origin(scope: dict) -> Origin | None:
    """The origin the browser reached us at, if its host is one of ALLOWED_HOSTS (against DNS rebinding)."""
    host = _header(scope, b"host")
    if not host:
        return None
    own = parse_origin(f"{SCHEME_OF_WEBSOCKET.get(scope.get('scheme') or 'ws', 'http')}://{host}")
    if own is None or not validate_host(split_domain_port(host)[0], settings.ALLOWED_HOSTS):
        return None
    return own


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin1")
    return None


def origin_allowed(scope: dict) -> bool:
    origin = _header(scope, b"origin")
    if origin is None:
        return False
    parsed = parse_origin(origin)
    return parsed is not None and parsed in allowed_origins(scope)


class SiteOriginValidator:
    """ASGI middleware: a websocket handshake from another origin is refused (HTTP 403)."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
