"""Service errors as HTTP answers, the same way for every JSON view.

One status per kind of error (`STATUS`) and one body, `{"error": {"code": ..., "message": ...}}`: `code` is the
error's stable code (conversations/services/errors.py), `message` what the page shows. The chat page's fetch
helpers read `error.message` (static/js/chat/sidebar.js, attachments.js, the import page's script).
"""

from __future__ import annotations

from functools import wraps

from django.http import HttpRequest, JsonResponse

from conversations.services.errors import (
    BudgetExceeded,
    Busy,
    InvalidInput,
    NotAllowed,
    NotFound,
    RateLimited,
    ServiceError,
    TooLarge,
    Unauthenticated,
)

# Most specific first: TooLarge is also InvalidInput.
STATUS: tuple[tuple[type[ServiceError], int], ...] = (
    (Unauthenticated, 401),
    (NotAllowed, 403),
    (NotFound, 404),
    (Busy, 409),
    (TooLarge, 413),
    (InvalidInput, 400),
    (RateLimited, 429),
    (BudgetExceeded, 429),
)
DEFAULT_STATUS = 400


def status_for(error: ServiceError) -> int:
    return next((status for cls, status in STATUS if isinstance(error, cls)), DEFAULT_STATUS)


def error_response(error: ServiceError) -> JsonResponse:
    body = {"error": {"code": error.code, "message": error.message}}
    return JsonResponse(body, status=status_for(error))


def json_api(view):
    """For JSON views: log-in required (401 JSON, not a redirect to the login page), and service errors
    answered through `error_response`."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            return error_response(Unauthenticated("Log in again."))
        try:
            return view(request, *args, **kwargs)
        except ServiceError as exc:
            return error_response(exc)

    return wrapper
