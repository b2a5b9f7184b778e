from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from conversations.services import library
from conversations.services.access import get_conversation_for_user
from conversations.services.errors import NotFound


@login_required
def home(request: HttpRequest, conversation_id=None) -> HttpResponse:
    """The chat page; /c/<id> opens one of the user's conversations (404 for anyone else's)."""
    if conversation_id is not None:
        try:
            get_conversation_for_user(request.user, conversation_id)
        except NotFound as exc:
            raise Http404("No such conversation.") from exc
    boot = {
        "conversation": str(conversation_id) if conversation_id else None,
        "models": library.available_models(),
        "user": {"username": request.user.get_username(), "is_staff": request.user.is_staff},
    }
    return render(request, "conversations/home.html", {"boot": boot})
