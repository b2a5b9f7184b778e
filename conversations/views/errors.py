"""Service errors as HTTP answers, the same way for every JSON view.

One status per kind of error (`STATUS`) and one body, `{"error": {"code": ..., "message": ...}}`: `code` is the
error's stable code (conversations/services/errors.py), `message` what the page shows. The chat page's fetch
helpers read `error.message` (static/js/chat/sidebar.js, attachments.js, the import page's script).
"""

from __future__ import annotations

from functools import wraps

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from conversations.services.db_busy import BUSY_MESSAGE, RETRY_AFTER_SECONDS, DatabaseBusy, is_database_locked
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
    (DatabaseBusy, 503),
)
DEFAULT_STATUS = 400


def status_for(error: ServiceError) -> int:
    return next((status for cls, status in STATUS if isinstance(error, cls)), DEFAULT_STATUS)


def error_response(error: ServiceError) -> JsonResponse:
    body = {"error": {"code": error.code, "message": error.message}}
    response = JsonResponse(body, status=status_for(error))
    if isinstance(error, DatabaseBusy):
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


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
        except OperationalError as exc:
            if not is_database_locked(exc):
                raise
            return error_response(DatabaseBusy(BUSY_MESSAGE))

    return wrapper


class DatabaseBusyMiddleware:
    """Any other view (pages, the admin, log in) whose write found SQLite locked: 503 with Retry-After, JSON
    for API paths, a short page otherwise, never a 500 (services/db_busy.py)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_database_locked(exception):
            return None
        if request.path.startswith("/api/") or "json" in request.headers.get("Accept", ""):
            return error_response(DatabaseBusy(BUSY_MESSAGE))
        response = HttpResponse(
            f"<!doctype html><title>Busy</title><h1>The site is busy</h1><p>{BUSY_MESSAGE}</p>", status=503
        )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
