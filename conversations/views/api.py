"""JSON endpoints the chat page uses besides the websocket: the sidebar (list, rename / pin / archive, delete and
its Undo), a conversation's snapshot, the models.

Thin: parse, call the service layer, answer. Service errors become JSON answers through views/errors.py.
"""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from conversations.services import model_menu, sidebar, transcript
from conversations.services.errors import InvalidInput
from conversations.views.errors import json_api


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
    page = sidebar.list_conversations(
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
            sidebar.update_conversation(request.user, str(conversation_id), _json_body(request))
        )
    sidebar.delete_conversation(request.user, str(conversation_id))
    return JsonResponse({"deleted": str(conversation_id)})


@require_POST
@json_api
def restore(request: HttpRequest, conversation_id) -> JsonResponse:
    return JsonResponse(sidebar.restore_conversation(request.user, str(conversation_id)))


@require_GET
@json_api
def models(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"models": model_menu.menu_for(request.user)})
