"""Search over the user's conversations: GET /api/search?q= (services/search.py does the work)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from conversations.services import search
from conversations.views.errors import json_api


@require_GET
@json_api
def search_conversations(request: HttpRequest) -> JsonResponse:
    query = request.GET.get("q", "").strip()[:200]
    return JsonResponse({"query": query, "results": search.search(request.user, query)})
