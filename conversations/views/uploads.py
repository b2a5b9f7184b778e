"""Images for prompts over HTTP: POST /api/uploads stores one (before the turn that uses it is sent), GET
/api/uploads/<id> serves it to its owner (or staff), DELETE /api/uploads/<id> removes one not yet sent.

Thin: the byte limit is enforced while the body is parsed (an upload handler that stops counting past
CHAT_MAX_IMAGE_BYTES); checking and storing is services/images.py and services/uploads.py.
"""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from conversations.services import images, uploads
from conversations.services.errors import InvalidInput, NotFound
from conversations.services.serialize import attachment_dict
from conversations.views import error_pages
from conversations.views.errors import json_api

# Room for the multipart framing around the file (boundaries, part headers, the CSRF field).
MULTIPART_OVERHEAD = 64 * 1024
CACHE_SECONDS = 7 * 24 * 3600


class CappedUploadHandler(FileUploadHandler):
    """Counts each file's bytes as they are parsed and stops the upload once one passes the limit, before
    the rest is kept in memory or on disk. Sits in front of Django's own handlers, which store the data."""

    def __init__(self, request=None, limit: int | None = None) -> None:
        super().__init__(request)
        self.limit = settings.CHAT_MAX_IMAGE_BYTES if limit is None else limit
        self.received = 0
        self.exceeded = False

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler builds the file


@csrf_exempt  # checked by csrf_protect below, once the upload handler is in place (reading the token parses)
@require_http_methods(["POST"])
@json_api
def upload_collection(request: HttpRequest) -> HttpResponse:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.CHAT_MAX_IMAGE_BYTES + MULTIPART_OVERHEAD:
        raise images.ImageTooLarge()  # refused from the header: the body is never parsed
    handler = CappedUploadHandler(request)
    request.upload_handlers.insert(0, handler)
    return _store_upload(request, handler)


@csrf_protect
def _store_upload(request: HttpRequest, handler: CappedUploadHandler) -> HttpResponse:
    files = request.FILES.getlist("file")
    if handler.exceeded:
        raise images.ImageTooLarge()
    if len(files) != 1:
        raise InvalidInput("Send exactly one image in the form field “file”.")
    with files[0].open("rb") as stream:
        data = images.read_capped(stream)
    attachment, prepared = uploads.do_upload(request.user, data)
    body = {**attachment_dict(attachment), "bytes": attachment.bytes, "notice": prepared.notice}
    return JsonResponse(body, status=201)


def _image_error_page_for_browsers(view):
    """An image opened in its own tab that isn't there or isn't yours gets the site's error page, not JSON."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if response.status_code in (401, 403, 404) and error_pages.wants_html(request):
            return error_pages.error_page(request, 404, error_pages.IMAGE_NOT_FOUND)
        return response

    return wrapper


@require_http_methods(["GET", "HEAD", "DELETE"])
@_image_error_page_for_browsers
@json_api
def upload_item(request: HttpRequest, upload_id) -> HttpResponse:
    if request.method == "DELETE":
        uploads.do_remove_upload(request.user, upload_id)
        return HttpResponse(status=204)
    attachment = uploads.get_attachment_for_user(request.user, upload_id)
    etag = f'"{attachment.sha256}"'
    if request.headers.get("If-None-Match") == etag:
        response: HttpResponse = HttpResponseNotModified()
    else:
        try:
            handle = attachment.file.open("rb")
        except OSError as exc:
            raise NotFound("This image is no longer available.") from exc
        extension = attachment.file.name.rsplit(".", 1)[-1]
        response = FileResponse(
            handle, content_type=attachment.mime, as_attachment=False, filename=f"image.{extension}"
        )
    response["ETag"] = etag
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = f"private, max-age={CACHE_SECONDS}"
    return response
