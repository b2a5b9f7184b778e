"""Conversation history endpoints: search, undo a delete, export (one or all), import with progress, and the
owner's side of share links. Thin: parse, call the service, answer (errors as JSON through json_api)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from conversations.services import chat, export, importers, library, search, sharing
from conversations.services.errors import InvalidInput
from conversations.views.errors import json_api


@require_GET
@json_api
def search_conversations(request: HttpRequest) -> JsonResponse:
    query = request.GET.get("q", "").strip()[:200]
    return JsonResponse({"query": query, "results": search.search(request.user, query)})


@require_GET
@json_api
def older_messages(request: HttpRequest, conversation_id) -> JsonResponse:
    """Earlier turns of the active branch: ?before=<message id>&limit=<1..200>."""
    try:
        limit = min(max(int(request.GET.get("limit", 50)), 1), 200)
    except ValueError as exc:
        raise InvalidInput("limit is a number.") from exc
    before = request.GET.get("before", "")
    return JsonResponse(chat.older_messages(request.user, str(conversation_id), before, limit))


@require_POST
@json_api
def restore(request: HttpRequest, conversation_id) -> JsonResponse:
    return JsonResponse(library.restore_conversation(request.user, str(conversation_id)))


@require_GET
@json_api
def export_conversation(request: HttpRequest, conversation_id) -> HttpResponse:
    fmt = request.GET.get("format", "json")
    if fmt not in ("json", "md"):
        raise InvalidInput("format is md or json.")
    body, content_type, name = export.export_one(request.user, str(conversation_id), fmt)
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@require_GET
@json_api
def export_all(request: HttpRequest) -> StreamingHttpResponse:
    response = StreamingHttpResponse(export.stream_zip(request.user), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{export.zip_name(request.user)}"'
    return response


@require_POST
@json_api
def import_start(request: HttpRequest) -> JsonResponse:
    upload = request.FILES.get("file")
    if upload is None:
        raise InvalidInput("Choose a file to import.")
    if upload.size > settings.CHAT_IMPORT_MAX_BYTES:
        raise InvalidInput(f"That file is larger than {settings.CHAT_IMPORT_MAX_BYTES // 1_000_000} MB.")
    job = importers.start_import(request.user, upload.read())
    return JsonResponse(importers.job_status(request.user, str(job.public_id)), status=202)


@require_GET
@json_api
def import_status(request: HttpRequest, job_id) -> JsonResponse:
    return JsonResponse(importers.job_status(request.user, str(job_id)))


@require_http_methods(["GET", "POST", "DELETE"])
@json_api
def share(request: HttpRequest, conversation_id) -> JsonResponse:
    if request.method == "POST":
        return JsonResponse({"share": sharing.create_share(request.user, str(conversation_id))}, status=201)
    if request.method == "DELETE":
        sharing.revoke_share(request.user, str(conversation_id))
        return JsonResponse({"share": None})
    return JsonResponse({"share": sharing.get_share_for_owner(request.user, str(conversation_id))})


@require_GET
@login_required
def page(request: HttpRequest) -> HttpResponse:
    """Import / export: download everything, upload a file (static/js/history.js drives the upload)."""
    return render(request, "conversations/history.html", {})
