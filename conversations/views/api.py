"""JSON endpoints the chat page uses besides the websocket: the sidebar, conversation settings, models.

Thin: parse, call the service layer, answer. Errors from the service layer become JSON with a status.
"""

from __future__ import annotations

import json
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_http_methods

from conversations.services import library, transcript
from conversations.services.errors import InvalidInput, NotFound, ServiceError

STATUS = {NotFound: 404, InvalidInput: 400}


def json_api(view):
    """Log-in required (401 JSON, not a redirect) and service errors as JSON."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            return JsonResponse(
                {"error": {"code": "unauthenticated", "message": "Log in again."}}, status=401
            )
        try:
            return view(request, *args, **kwargs)
        except ServiceError as exc:
            status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 400)
            return JsonResponse({"error": {"code": exc.code, "message": exc.message}}, status=status)

    return wrapper


def _json_body(request: HttpRequest) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError as exc:
        raise InvalidInput("The request body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object.")
    return body


@require_GET
@json_api
def conversations(request: HttpRequest) -> JsonResponse:
    page = library.list_conversations(
        request.user,
        cursor=request.GET.get("cursor") or None,
        query=request.GET.get("q", "").strip()[:200],
        archived=request.GET.get("archived") == "1",
    )
    return JsonResponse(page)


@require_http_methods(["GET", "PATCH", "DELETE"])
@json_api
def conversation(request: HttpRequest, conversation_id) -> JsonResponse:
    if request.method == "GET":
        return JsonResponse(transcript.snapshot(request.user, str(conversation_id)))
    if request.method == "PATCH":
        return JsonResponse(
            library.update_conversation(request.user, str(conversation_id), _json_body(request))
        )
    library.delete_conversation(request.user, str(conversation_id))
    return JsonResponse({"deleted": str(conversation_id)})


@require_GET
@login_required
def models(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"models": library.available_models(request.user)})
