"""Conversation titles: what the title model is asked, what it read, and saving the result. Sync ORM code;
the realtime engine (conversations/engine/titles.py) makes the call and pushes the title to the sidebars.

Titles are written once after the first answer. A short call to CHAT_TITLE_MODEL (or the conversation's own model) names the chat; if that fails for any
reason the first words of the prompt do ("Image" for a chat that starts with images alone). A title never
blocks or breaks the answer itself. It goes through the user's own key whenever they have one for the title
model's provider; when the answer itself was served through their own key, the title uses that answer's
own-key routes and never the site's key.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from django.conf import settings

from conversations.llm.request import ChatMessage, ChatParams, ChatRequest
from conversations.llm.routes import Route
from conversations.models import ChatModel, Conversation, Message
from conversations.services.personal_keys import routes_for_user

logger = logging.getLogger(__name__)

TITLE_MAX_CHARS = 80
TITLE_PROMPT = (
    "Write a short title (at most six words) for the conversation below. Reply with the title only: no quotes, "
    "no trailing period."
)


def fallback_title(prompt: str, images: int = 0) -> str:
    words = prompt.split()
    title = " ".join(words[:6])
    if len(words) > 6:
        title += "…"
    if not title and images:
        return "Image" if images == 1 else f"{images} images"
    return title[:TITLE_MAX_CHARS] or "New chat"


def _user_line(prompt: str, images: int) -> str:
    """What the title model reads of the first message. It never sees the images themselves (the title model
    may be text-only): an image-only message is described in words, and the answer says what it showed."""
    if prompt.strip():
        return prompt[:1500]
    if images:
        return "(sent an image, no text)" if images == 1 else f"(sent {images} images, no text)"
    return "(no text)"


def clean_title(raw: str) -> str:
    """The model's reply as a sidebar title: its first line, without a "Title:" label, Markdown emphasis or code
    marks (the sidebar shows plain text), surrounding quotes or a final period."""
    first_line = next((line for line in raw.splitlines() if line.strip()), "")
    title = re.sub(r"^title\s*:\s*", "", " ".join(first_line.split()), flags=re.IGNORECASE)
    title = re.sub(r"\*\*|__|`", "", title)
    return title.strip(" \"'\u201c\u201d\u2018\u2019.*#")[:TITLE_MAX_CHARS]  # quotes, curly quotes


@dataclass
class TitleJob:
    """What the title model reads (the first question and answer) and the routes to ask it through."""

    prompt: str
    images: int
    answer: str
    routes: list[Route]

    def request(self, owner_id: int) -> ChatRequest:
        return ChatRequest(
            messages=[
                ChatMessage(role="system", text=TITLE_PROMPT),
                ChatMessage(
                    role="user",
                    text=f"User: {_user_line(self.prompt, self.images)}\n\nAssistant: {self.answer[:1500]}",
                ),
            ],
            params=ChatParams(max_output_tokens=24, temperature=0.2),
            user_id=owner_id,
        )


def title_job(
    conversation_pk: int, owner_id: int, own_key_routes: list[Route] | None = None
) -> TitleJob | None:
    """None when the conversation already has a title. `own_key_routes`: the answer's routes, when the route
    that served it carried the user's own key (the title is then the user's spend too)."""
    conversation = Conversation.objects.select_related("model").get(pk=conversation_pk)
    if conversation.title:
        return None
    first = list(conversation.messages.order_by("created_at", "id")[:2])
    question = next((m for m in first if m.role == Message.Role.USER), None)
    prompt = question.content if question is not None else ""
    answer = next((m.content for m in first if m.role == Message.Role.ASSISTANT), "")
    # Only an image-only first message costs the query: its images are what the chat is about.
    images = question.attachments.count() if question is not None and not prompt.strip() else 0
    if own_key_routes:  # the answer was the user's spend: so is its title
        return TitleJob(prompt, images, answer, [r for r in own_key_routes if r.personal_key])
    model = None
    if settings.CHAT_TITLE_MODEL:
        model = (
            ChatModel.objects.available()
            .filter(canonical_id=settings.CHAT_TITLE_MODEL)
            .order_by("provider__priority")
            .first()
        )
    model = model or conversation.model
    routes = routes_for_user(model, owner_id) if model is not None else []
    return TitleJob(prompt, images, answer, routes)


def save_title(conversation_pk: int, title: str) -> bool:
    # Only if still untitled: the user may have renamed it meanwhile.
    return bool(Conversation.objects.filter(pk=conversation_pk, title="").update(title=title))
