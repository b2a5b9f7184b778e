"""Conversation titles: what the title model is asked, what it read, and saving the result. Sync ORM code;
the realtime engine (conversations/engine/titles.py) makes the call and pushes the title to the sidebars.

A new chat is titled at once with the first words of its prompt, as plain text (`provisional_title`, "Image"
for a chat that starts with images alone). As soon as the first answer has about a sentence (`answer_is_enough`)
a short call to CHAT_TITLE_MODEL (or the conversation's own model) replaces it; if that call fails, or the
answer fails, the provisional title stays. A title never blocks or breaks the answer itself. It goes through the user's own key whenever they have one for the title
model's provider; when the answer itself was served through their own key, the title uses that answer's
own-key routes and never the site's key.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q

from conversations.llm.request import ChatMessage, ChatParams, ChatRequest
from conversations.llm.routes import Route
from conversations.models import ChatModel, Conversation, Message
from conversations.services.personal_keys import routes_for_user
from conversations.services.plaintext import plain_text

logger = logging.getLogger(__name__)

TITLE_MAX_CHARS = 80
TITLE_PROMPT = (
    "Write a short title (at most six words) for the conversation below. Reply with the title only: no quotes, "
    "no trailing period."
)


PROVISIONAL_MAX_CHARS = 60
# The first answer is worth a title once it has a sentence of at least this many characters, or this many
# characters without one (a list, a code block...).
ANSWER_SENTENCE_MIN_CHARS = 40
ANSWER_ENOUGH_CHARS = 300
_SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f](?:\s|$)")  # and CJK full stops


def provisional_title(prompt: str, images: int = 0) -> str:
    """The title a new chat gets at once: its prompt as plain text, cut at a word."""
    text = plain_text(prompt)
    if not text:
        return ("Image" if images == 1 else f"{images} images") if images else "New chat"
    if len(text) <= PROVISIONAL_MAX_CHARS:
        return text
    cut = text[: PROVISIONAL_MAX_CHARS + 1].rsplit(" ", 1)[0] if " " in text[:PROVISIONAL_MAX_CHARS] else ""
    return (cut or text[:PROVISIONAL_MAX_CHARS]).rstrip(" ,;:.-") + "…"


fallback_title = provisional_title  # what stays when the title model can't be asked


def answer_is_enough(text: str) -> bool:
    """Whether a streaming first answer says enough to be titled from: about its first sentence."""
    if len(text) >= ANSWER_ENOUGH_CHARS:
        return True
    if len(text) < ANSWER_SENTENCE_MIN_CHARS:
        return False
    return _SENTENCE_END.search(text, ANSWER_SENTENCE_MIN_CHARS - 1) is not None


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
    first_line = next((line for line in raw.splitlines() if plain_text(line)), "")
    title = re.sub(r"^title\s*:\s*", "", plain_text(first_line), flags=re.IGNORECASE)
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
    conversation_pk: int,
    owner_id: int,
    own_key_routes: list[Route] | None = None,
    answer: str | None = None,
) -> TitleJob | None:
    """None when the conversation already has a title that isn't provisional. `own_key_routes`: the answer's
    routes, when the route that served it carried the user's own key (the title is then the user's spend
    too). `answer`: the first answer's text so far (a running answer's saved text lags); None: as saved."""
    conversation = Conversation.objects.select_related("model").get(pk=conversation_pk)
    if conversation.title and not conversation.title_provisional:
        return None
    first = list(conversation.messages.order_by("created_at", "id")[:2])
    question = next((m for m in first if m.role == Message.Role.USER), None)
    prompt = question.content if question is not None else ""
    if answer is None:
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
    """Replace an empty or provisional title (never one the user gave it: they may have renamed it meanwhile).
    True when saved and changed."""
    rows = Conversation.objects.filter(pk=conversation_pk).filter(Q(title="") | Q(title_provisional=True))
    return bool(
        rows.exclude(title=title, title_provisional=False).update(title=title, title_provisional=False)
    )
