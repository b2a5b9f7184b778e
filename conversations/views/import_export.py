"""Export (one conversation as Markdown or JSON, or everything as a zip), import with progress, and the
Import / export page. Thin: parse, call services/export.py or services/imports/, answer."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from conversations.services import export, imports
from conversations.services.errors import InvalidInput
from conversations.views import downloads
from conversations.views.errors import json_api


@require_GET
@json_api
def export_conversation(request: HttpRequest, conversation_id) -> HttpResponse:
    fmt = request.GET.get("format", "json")
    if fmt not in ("json", "md"):
        raise InvalidInput("format is md or json.")
    body, content_type, name = export.export_one(request.user, str(conversation_id), fmt)
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = downloads.attachment(name)
    return response


@require_GET
@json_api
def export_all(request: HttpRequest) -> StreamingHttpResponse:
    response = StreamingHttpResponse(export.stream_zip(request.user), content_type="application/zip")
    response["Content-Disposition"] = downloads.attachment(export.zip_name(request.user))
    return response


@csrf_exempt  # only so the upload handler can be set before the CSRF check reads the body: checked below
@require_POST
def import_start(request: HttpRequest) -> JsonResponse:
    # The upload goes to a temporary file on disk whatever its size, never into memory.
    request.upload_handlers = [TemporaryFileUploadHandler(request)]
    return _import_start(request)


@csrf_protect
@json_api
def _import_start(request: HttpRequest) -> JsonResponse:
    upload = request.FILES.get("file")
    if upload is None:
        raise InvalidInput("Choose a file to import.")
    job = imports.start_import(request.user, upload)
    return JsonResponse(imports.job_status(request.user, str(job.public_id)), status=202)


@require_GET
@json_api
def import_status(request: HttpRequest, job_id) -> JsonResponse:
    return JsonResponse(imports.job_status(request.user, str(job_id)))


@require_GET
@login_required
def page(request: HttpRequest) -> HttpResponse:
    """Import / export: download everything, upload a file (conversations/import_export.js drives the upload)."""
    return render(request, "conversations/import_export.html", {})
