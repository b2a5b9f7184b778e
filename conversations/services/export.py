"""Exports: one conversation as Markdown or JSON, and all of a user's conversations as a streamed zip.

Our JSON format (FORMAT, VERSION) holds every branch: all messages with their parent ids, the current leaf,
the conversation's settings and references to its images (`images/<id>.<ext>` inside the zip). The zip is
written through a generator-backed sink, so a large export is sent as it is produced and never held in memory.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import zipfile
from collections.abc import Iterable, Iterator

from django.db.models import Prefetch
from django.utils import timezone

from conversations.models import Attachment, Conversation, Message
from conversations.services import custom_instructions, tree
from conversations.services.access import get_conversation_for_user

FORMAT = "chatsite.conversations"
VERSION = 1
BATCH = 50
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}


def image_name(attachment: Attachment) -> str:
    return f"images/{attachment.public_id}.{EXTENSIONS.get(attachment.mime, 'bin')}"


def attachment_dict(attachment: Attachment) -> dict:
    return {
        "id": str(attachment.public_id),
        "file": image_name(attachment),
        "mime": attachment.mime,
        "width": attachment.width,
        "height": attachment.height,
        "bytes": attachment.bytes,
        "sha256": attachment.sha256,
    }


def export_message_dict(message: Message, public_ids: dict[int, str]) -> dict:
    """Reads message.attachments: prefetch it."""
    return {
        "id": str(message.public_id),
        "parent": public_ids.get(message.parent_id) if message.parent_id else None,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "error": message.error,
        "finish_reason": message.finish_reason,
        "model": message.model_name,
        "provider": message.provider_name,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "cached_tokens": message.cached_tokens,
        "cost": str(message.cost) if message.cost is not None else None,
        "ttft_ms": message.ttft_ms,
        "duration_ms": message.duration_ms,
        "created_at": message.created_at.isoformat(),
        "attachments": [attachment_dict(a) for a in message.attachments.all()],
    }


def parents_first(messages: list[Message]) -> list[Message]:
    """Every message after its parent (siblings in time order), whatever the clocks said: imported answers
    are often stamped a few milliseconds before their question. One linear pass."""
    children: dict[int | None, list[Message]] = {}
    pks = {m.pk for m in messages}
    for m in messages:
        children.setdefault(m.parent_id if m.parent_id in pks else None, []).append(m)
    ordered: list[Message] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        message = stack.pop()
        ordered.append(message)
        stack.extend(reversed(children.get(message.pk, [])))
    return ordered


def export_conversation_dict(conversation: Conversation, messages: list[Message]) -> dict:
    public_ids = {m.pk: str(m.public_id) for m in messages}
    return {
        "id": str(conversation.public_id),
        "source": conversation.source_id,  # where an imported chat came from: re-importing it adds nothing
        "title": conversation.title,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "pinned": conversation.pinned,
        "archived": conversation.archived,
        "settings": {
            "model": conversation.canonical_model
            or (conversation.model.canonical_id if conversation.model else None),
            "system_prompt": conversation.system_prompt,
            "params": conversation.params or {},
        },
        "current_leaf": public_ids.get(conversation.current_leaf_id),
        "messages": [export_message_dict(m, public_ids) for m in parents_first(messages)],
    }


def envelope(conversations: list[dict], instructions: dict | None = None) -> dict:
    """Our JSON format. `instructions`: the account's custom instructions (the export of all chats only)."""
    data = {"format": FORMAT, "version": VERSION, "exported_at": timezone.now().isoformat()}
    if instructions is not None:
        data["custom_instructions"] = instructions
    data["conversations"] = conversations  # last: the zip streams the list after the head
    return data


def _messages(conversation: Conversation) -> list[Message]:
    return list(conversation.messages.prefetch_related("attachments").order_by("created_at", "id"))


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^( {0,3})(#{1,6})(?=\s|$)")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)\s*$")


def demote_headings(text: str, levels: int = 2) -> str:
    """`text`'s Markdown headings `levels` lower (at most h6), code blocks untouched: an answer's "# Title"
    must sit below the export's "## You" / "## Assistant", not above them."""
    lines = text.split("\n")
    out: list[str] = []
    fence = ""
    for line in lines:
        if fence:
            out.append(line)
            if line.lstrip().startswith(fence):
                fence = ""
            continue
        if match := _FENCE.match(line):
            fence = match.group(1)[0] * 3
            out.append(line)
            continue
        if match := _ATX.match(line):
            hashes = "#" * min(len(match.group(2)) + levels, 6)
            out.append(match.group(1) + hashes + line[match.end() :])
            continue
        setext = _SETEXT.match(line)
        previous = out[-1] if out else ""
        underlined = bool(setext) and previous.strip() and not _ATX.match(previous) and "|" not in previous
        # "- item" over "---" is a list and a rule, not a heading.
        if underlined and (setext.group(1)[0] == "=" or not previous.lstrip().startswith(("-", "*", "+"))):
            level = 1 if setext.group(1)[0] == "=" else 2
            out[-1] = "#" * min(level + levels, 6) + " " + previous.strip()
            continue
        out.append(line)
    return "\n".join(out)


def markdown(conversation: Conversation, messages: list[Message], *, image_links: bool = False) -> str:
    """The active branch as Markdown. Images are linked to the zip's copies, or noted by name."""
    path = tree.active_path(messages, conversation.current_leaf_id)
    lines = [f"# {conversation.title or 'New chat'}", ""]
    lines.append(
        f"_Exported {timezone.now():%Y-%m-%d %H:%M} UTC · started {conversation.created_at:%Y-%m-%d}_"
    )
    if conversation.system_prompt:
        lines += ["", "**System prompt:**", "", conversation.system_prompt]
    for message in path:
        who = {"user": "You", "assistant": "Assistant", "system": "System"}.get(message.role, message.role)
        model = f" ({message.model_name})" if message.role == "assistant" and message.model_name else ""
        lines += ["", f"## {who}{model}", ""]
        for attachment in message.attachments.all():
            lines.append(f"![image](../{image_name(attachment)})" if image_links else "[image]")
        lines.append(demote_headings(message.content))
    return "\n".join(lines).rstrip() + "\n"


def slug(title: str) -> str:
    return (re.sub(r"[^\w]+", "-", title.lower()).strip("-") or "chat")[:60]


def export_one(user, conversation_id: str, fmt: str) -> tuple[str, str, str]:
    """(body, content type, file name) for one conversation. Two queries after the access check."""
    conversation = get_conversation_for_user(user, conversation_id)
    messages = _messages(conversation)
    name = slug(conversation.title)
    if fmt == "md":
        return markdown(conversation, messages), "text/markdown; charset=utf-8", f"{name}.md"
    body = json.dumps(
        envelope([export_conversation_dict(conversation, messages)]), ensure_ascii=False, indent=2
    )
    return body, "application/json", f"{name}.json"


# --- The streamed zip of everything -------------------------------------------------------------------------


class _Sink(io.RawIOBase):
    """A write-only, unseekable file whose bytes are collected until the generator hands them on."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:  # zipfile asks for offsets even when it can't seek
        return self.position

    def drain(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


def _user_conversations(user) -> Iterator[Conversation]:
    rows = (
        Conversation.objects.filter(owner=user, deleted_at__isnull=True)
        .select_related("model")
        .prefetch_related(
            Prefetch(
                "messages",
                queryset=Message.objects.prefetch_related("attachments").order_by("created_at", "id"),
            )
        )
        .order_by("created_at", "id")
    )
    yield from rows.iterator(chunk_size=BATCH)


def stream_zip(user) -> Iterable[bytes]:
    """conversations.json (every conversation, our format), one Markdown file per conversation and the images.
    Two passes over the conversations (a member of a zip must be finished before the next begins), a few
    queries per BATCH conversations each; memory bounded by one batch and one image chunk."""
    sink = _Sink()
    stamp = timezone.now()
    date_time = (stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second)
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        listing = zipfile.ZipInfo("conversations.json", date_time)
        listing.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(listing, "w", force_zip64=True) as out:
            head = json.dumps(envelope([], custom_instructions.export_dict(user)), ensure_ascii=False)
            out.write(head[: head.rindex("[") + 1].encode())
            first = True
            for conversation in _user_conversations(user):
                data = export_conversation_dict(conversation, list(conversation.messages.all()))
                out.write((("" if first else ",") + "\n" + json.dumps(data, ensure_ascii=False)).encode())
                first = False
                yield sink.drain()
            out.write(b"\n]}\n")
        yield sink.drain()
        for conversation in _user_conversations(user):
            messages = list(conversation.messages.all())
            day, short = f"{conversation.created_at:%Y-%m-%d}", str(conversation.public_id)[:8]
            name = f"markdown/{day}-{slug(conversation.title)}-{short}.md"
            text = markdown(conversation, messages, image_links=True)
            archive.writestr(zipfile.ZipInfo(name, date_time), text.encode(), zipfile.ZIP_DEFLATED)
            for attachment in (a for m in messages for a in m.attachments.all()):
                info = zipfile.ZipInfo(image_name(attachment), date_time)
                info.compress_type = zipfile.ZIP_STORED  # images are compressed already
                try:
                    source = attachment.file.open("rb")
                except OSError:
                    continue  # a missing file: the JSON still references it; import reports it
                with source, archive.open(info, "w", force_zip64=True) as out:
                    while chunk := source.read(256 * 1024):
                        out.write(chunk)
                        yield sink.drain()
            yield sink.drain()
    yield sink.drain()


def zip_name(user) -> str:
    return f"chatsite-export-{dt.date.today():%Y-%m-%d}.zip"
