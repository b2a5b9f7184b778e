"""The client's address for login throttling (django-axes calls `client_ip`).

Headers are trusted only when the operator said a proxy sets them: SECURE_PROXY_SSL_HEADER on (the site runs
behind a TLS proxy) and CHAT_CLIENT_IP_HEADER naming the header. Otherwise anyone could send
`X-Forwarded-For: <random>` with each guess and never be locked out by address.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    header = settings.CHAT_CLIENT_IP_HEADER
    if header and getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        value = request.META.get("HTTP_" + header.upper().replace("-", "_"), "")
        # X-Forwarded-For is "client, proxy1, proxy2": the last entry is the one our proxy added; earlier
        # ones came from the client and could be anything.
        candidate = value.split(",")[-1].strip()
        if _is_address(candidate):
            return candidate
    return request.META.get("REMOTE_ADDR") or None


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
