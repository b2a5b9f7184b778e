"""Share links: the owner's side (GET/POST/DELETE /api/conversations/<id>/share) and the public, read-only
page of a shared conversation (works logged out, shows only the share's snapshot)."""

from __future__ import annotations

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods

from conversations.services import sharing
from conversations.services.errors import NotFound
from conversations.views import error_pages
from conversations.views.chat import import_map
from conversations.views.errors import json_api


@require_http_methods(["GET", "POST", "DELETE"])
@json_api
def share_link(request: HttpRequest, conversation_id) -> JsonResponse:
    if request.method == "POST":
        return JsonResponse({"share": sharing.create_share(request.user, str(conversation_id))}, status=201)
    if request.method == "DELETE":
        sharing.revoke_share(request.user, str(conversation_id))
        return JsonResponse({"share": None})
    return JsonResponse({"share": sharing.get_share_for_owner(request.user, str(conversation_id))})


@require_GET
def shared(request: HttpRequest, token: str) -> HttpResponse:
    try:
        snapshot = sharing.shared_snapshot(token)
    except sharing.ShareTurnedOff:
        return error_pages.error_page(request, 404, error_pages.SHARE_TURNED_OFF)
    except NotFound:
        return error_pages.error_page(request, 404, error_pages.SHARE_NOT_FOUND)
    context = {"share": snapshot, "token": token, "import_map": import_map()}
    response = render(request, "conversations/shared.html", context)
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"
    return response


@require_GET
def shared_image(request: HttpRequest, token: str, number: int) -> HttpResponse:
    """An image of a shared chat, through the share's token: public while the link is live, gone once it is
    turned off (so never cached for long)."""
    try:
        attachment = sharing.shared_image(token, number)
        handle = attachment.file.open("rb")
    except (NotFound, OSError):
        return error_pages.error_page(request, 404, error_pages.IMAGE_NOT_FOUND)
    response = FileResponse(handle, content_type=attachment.mime, as_attachment=False)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-cache"
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"
    return response
