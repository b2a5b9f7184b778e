"""Error pages people see in the browser, in the site's look with a way back to the chat: Django's 404, 403
and 500 handlers (chatsite/urls.py), and the cases a view knows more about: a deleted or unknown chat, a share
link its owner turned off, an image you can't see. JSON views answer JSON instead (views/errors.py)."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, HttpResponseServerError
from django.shortcuts import render

logger = logging.getLogger(__name__)

DEFAULTS = {
    403: ("You can't open this", "This page isn't open to your account."),
    404: ("Page not found", "There is nothing at this address. It may have been moved or deleted."),
    500: (
        "Something went wrong",
        "The site ran into an error and couldn't show this page. Try again in a moment.",
    ),
}
CHAT_NOT_FOUND = (
    "This chat isn't here",
    "It was deleted, or the link is wrong. Your other chats are in the sidebar.",
)
SHARE_TURNED_OFF = ("Link turned off", "This link was turned off by its owner.")
SHARE_NOT_FOUND = (
    "Link not found",
    "There is no shared chat at this address. Check the link you were given.",
)
IMAGE_NOT_FOUND = ("Image not available", "This image doesn't exist any more, or it isn't yours to see.")


def error_page(request: HttpRequest, status: int, page: tuple[str, str] | None = None) -> HttpResponse:
    heading, message = page or DEFAULTS[status]
    context = {"status": status, "heading": heading, "message": message}
    return render(request, "error.html", context, status=status)


def wants_html(request: HttpRequest) -> bool:
    """A browser opening the address itself (a navigation), not a script asking for data."""
    return request.method in ("GET", "HEAD") and "text/html" in request.headers.get("Accept", "")


def not_found(request: HttpRequest, exception=None) -> HttpResponse:
    return error_page(request, 404)


def forbidden(request: HttpRequest, exception=None) -> HttpResponse:
    return error_page(request, 403)


def server_error(request: HttpRequest) -> HttpResponse:
    try:
        return error_page(request, 500)
    except Exception:  # the page itself failed (database down...): a plain answer rather than none
        logger.exception("the 500 page could not be rendered")
        return HttpResponseServerError(
            "Something went wrong. Try again in a moment.", content_type="text/plain"
        )
