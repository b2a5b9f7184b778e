"""The public, read-only page of a shared conversation: works logged out, shows only the share's snapshot."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from conversations.services import sharing
from conversations.services.errors import NotFound
from conversations.views.chat import import_map


@require_GET
def shared(request: HttpRequest, token: str) -> HttpResponse:
    try:
        snapshot = sharing.shared_snapshot(token)
    except NotFound as exc:
        raise Http404("No such link.") from exc
    response = render(request, "conversations/shared.html", {"share": snapshot, "import_map": import_map()})
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"
    return response
