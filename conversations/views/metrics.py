"""GET /metrics: Prometheus's text exposition of conversations/metrics.py, for operators.

Off (404 to everyone) unless CHAT_METRICS_TOKEN is set. Then it answers `Authorization: Bearer <token>`
(compared in constant time, and never logged) or a logged-in staff session; a wrong or missing token gets
401, a signed-in person who isn't staff 403. No login redirect: a scraper can't follow one.
Async: the token check touches nothing; only a session is read through the database thread, and the
multi-process files are read on a worker thread.
"""

from __future__ import annotations

import hmac

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from conversations import metrics


def _unauthorized(error: str | None = None) -> HttpResponse:
    challenge = f'Bearer realm="metrics", error="{error}"' if error else 'Bearer realm="metrics"'
    return HttpResponse("A valid bearer token is required.\n", status=401, content_type="text/plain",
                        headers={"WWW-Authenticate": challenge})  # fmt: skip


@never_cache
@require_GET
async def scrape(request: HttpRequest) -> HttpResponse:
    token = settings.CHAT_METRICS_TOKEN
    if not token:
        raise Http404("Metrics are off.")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            return _unauthorized("invalid_token")
    else:
        user = await request.auser()
        if not user.is_authenticated:
            return _unauthorized()
        if not (user.is_active and user.is_staff):
            return HttpResponse("Staff only.\n", status=403, content_type="text/plain")
    body, content_type = await sync_to_async(metrics.render, thread_sensitive=False)()
    return HttpResponse(body, content_type=content_type)
