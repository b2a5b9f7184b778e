"""Older turns of a long conversation, page by page as the reader scrolls up: the snapshot holds only the newest
CHAT_HISTORY_PAGE_MESSAGES (static/js/chat/older_messages.js asks for the rest)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from conversations.services import transcript
from conversations.services.errors import InvalidInput
from conversations.views.errors import json_api


@require_GET
@json_api
def older_messages(request: HttpRequest, conversation_id) -> JsonResponse:
    """Earlier turns of the active branch: ?before=<message id>&limit=<1..200>."""
    try:
        limit = min(max(int(request.GET.get("limit", 50)), 1), 200)
    except ValueError as exc:
        raise InvalidInput("limit is a number.") from exc
    before = request.GET.get("before", "")
    return JsonResponse(transcript.older_messages(request.user, str(conversation_id), before, limit))
