"""Imports: our own export (JSON, or the zip with images) and ChatGPT's data export (conversations.json, or
its zip). Every file is parsed and checked in full first, then written in one transaction: a malformed file
imports nothing. Each importer turns its input into `Draft`s; `write_drafts` stores them.

Large files run in a background thread (`start_import`) that records progress on an ImportJob row the page
polls; `import_file` is the same work, synchronously.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import threading
import zipfile
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import close_old_connections, transaction
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from conversations.models import Attachment, ChatModel, Conversation, ImportJob, Message, attachment_path
from conversations.services import custom_instructions, export, uploads
from conversations.services.access import parse_uuid
from conversations.services.errors import InvalidInput, NotFound, TooLarge

logger = logging.getLogger(__name__)

IMAGE_PLACEHOLDER = "[image not included in export]"
MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
# Tests set this to run imports in the request (background threads don't see the test transaction).
RUN_INLINE = False


@dataclass
class DraftImage:
    data: bytes
    mime: str
    width: int
    height: int


@dataclass
class DraftMessage:
    key: str
    parent: str | None
    role: str
    content: str
    created_at: dt.datetime
    status: str = Message.Status.COMPLETE
    error: str = ""
    finish_reason: str = ""
    model_name: str = ""
    provider_name: str = ""
    images: list[DraftImage] = field(default_factory=list)


@dataclass
class Draft:
    title: str
    created_at: dt.datetime
    updated_at: dt.datetime
    messages: list[DraftMessage]  # parents before children, siblings in order
    current_leaf: str | None
    pinned: bool = False
    archived: bool = False
    system_prompt: str = ""
    params: dict = field(default_factory=dict)
    model: str | None = None


@dataclass
class Report:
    conversations: int = 0
    messages: int = 0
    images: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    instructions: dict | None = None  # custom instructions found in the file (our format), checked
    instructions_imported: bool = False  # ...and applied (the user had written none of their own)

    def to_dict(self) -> dict:
        return {
            "conversations": self.conversations,
            "messages": self.messages,
            "images": self.images,
            "skipped": [{"reason": reason, "count": n} for reason, n in sorted(self.skipped.items())],
            "custom_instructions": self.instructions_imported,
        }


def _when(value, fallback: dt.datetime) -> dt.datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return fallback
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return fallback


def _fail(message: str):
    raise InvalidInput(f"This file can't be imported: {message} Nothing was imported.", code="bad_import")


# --- Our format ---------------------------------------------------------------------------------------------


def _image(data: bytes, expected_mime: str | None = None) -> DraftImage | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            mime = MIMES.get(image.format or "")
            size = image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    if mime is None or size[0] * size[1] > settings.CHAT_MAX_IMAGE_PIXELS:
        return None
    return DraftImage(data, mime, size[0], size[1])


def parse_ours(payload: dict, files: dict[str, bytes] | None, report: Report) -> list[Draft]:
    if payload.get("version") != export.VERSION:
        _fail(f"it is version {payload.get('version')!r} of our format; this site reads {export.VERSION}.")
    conversations = payload.get("conversations")
    if not isinstance(conversations, list):
        _fail("it has no list of conversations.")
    try:
        report.instructions = custom_instructions.parse_export(payload.get("custom_instructions"))
    except InvalidInput as exc:
        _fail(exc.message)
    drafts = []
    now = timezone.now()
    for index, item in enumerate(conversations):
        if not isinstance(item, dict) or not isinstance(item.get("messages"), list):
            _fail(f"conversation {index + 1} is not an object with messages.")
        keys: set[str] = set()
        messages = []
        for m in item["messages"]:
            if (
                not isinstance(m, dict)
                or not isinstance(m.get("id"), str)
                or not isinstance(m.get("content"), str)
            ):
                _fail(f"a message of conversation {index + 1} lacks an id or its text.")
            if m.get("role") not in Message.Role.values:
                _fail(f"a message of conversation {index + 1} has the unknown role {m.get('role')!r}.")
            parent = m.get("parent")
            if parent is not None and parent not in keys:
                _fail(f"a message of conversation {index + 1} comes before its parent.")
            images = []
            for ref in m.get("attachments") or []:
                data = (files or {}).get(ref.get("file", "")) if isinstance(ref, dict) else None
                image = _image(data) if data is not None else None
                if image is None:
                    report.skipped["image missing from the file (import the zip to keep images)"] += 1
                    continue
                images.append(image)
            status = m.get("status") if m.get("status") in Message.Status.values else Message.Status.COMPLETE
            if status in Message.ACTIVE_STATUSES:
                status = Message.Status.INTERRUPTED
            messages.append(
                DraftMessage(
                    key=m["id"],
                    parent=parent,
                    role=m["role"],
                    content=m["content"],
                    created_at=_when(m.get("created_at"), now),
                    status=status,
                    error=str(m.get("error") or ""),
                    finish_reason=str(m.get("finish_reason") or "")[:32],
                    model_name=str(m.get("model") or "")[:200],
                    provider_name=str(m.get("provider") or "")[:100],
                    images=images,
                )
            )
            keys.add(m["id"])
        leaf = item.get("current_leaf")
        config = item.get("settings") if isinstance(item.get("settings"), dict) else {}
        drafts.append(
            Draft(
                title=str(item.get("title") or "")[:200],
                created_at=_when(item.get("created_at"), now),
                updated_at=_when(item.get("updated_at"), now),
                messages=messages,
                current_leaf=leaf if leaf in keys else (messages[-1].key if messages else None),
                pinned=bool(item.get("pinned")),
                archived=bool(item.get("archived")),
                system_prompt=str(config.get("system_prompt") or ""),
                params=config.get("params") if isinstance(config.get("params"), dict) else {},
                model=config.get("model") if isinstance(config.get("model"), str) else None,
            )
        )
    return drafts


# --- ChatGPT's export -----------------------------------------------------------------------------------------


def _chatgpt_text(message: dict) -> tuple[str | None, str]:
    """(text or None to skip, reason when skipped)."""
    content = message.get("content")
    if not isinstance(content, dict):
        return None, "message without content"
    kind = content.get("content_type")
    if kind in ("text", "multimodal_text"):
        pieces = []
        for part in content.get("parts") or []:
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, dict) and (
                part.get("content_type") == "image_asset_pointer" or "asset_pointer" in part
            ):
                pieces.append(IMAGE_PLACEHOLDER)
        text = "\n\n".join(p for p in pieces if p)
        return (text, "") if text.strip() else (None, "empty message")
    if kind == "code" and isinstance(content.get("text"), str):
        return f"```\n{content['text']}\n```", ""
    return None, f"unsupported content ({kind or 'unknown'})"


def parse_chatgpt(payload: list, report: Report) -> list[Draft]:
    drafts = []
    now = timezone.now()
    for index, item in enumerate(payload):
        if not isinstance(item, dict) or not isinstance(item.get("mapping"), dict):
            _fail(f"conversation {index + 1} has no message mapping.")
        mapping: dict = item["mapping"]
        created = _when(item.get("create_time"), now)
        system_prompt = ""
        kept: dict[str, DraftMessage] = {}
        order: list[str] = []

        # Depth-first from the roots in the order ChatGPT lists children, so siblings keep their order.
        roots = [
            k for k, node in mapping.items() if isinstance(node, dict) and node.get("parent") not in mapping
        ]
        stack = [(k, None) for k in reversed(roots)]  # (node id, nearest kept ancestor)
        visited: set[str] = set()
        nearest: dict[str, str | None] = {}
        last_time = created
        while stack:
            node_id, ancestor = stack.pop()
            if node_id in visited or node_id not in mapping:
                continue
            visited.add(node_id)
            node = mapping[node_id] if isinstance(mapping[node_id], dict) else {}
            message = node.get("message")
            keep_as = ancestor
            if not isinstance(message, dict):
                report.skipped["empty node (no message)"] += 1
            else:
                role = (message.get("author") or {}).get("role")
                metadata = message.get("metadata") or {}
                text, reason = _chatgpt_text(message)
                if role == "system":
                    if metadata.get("is_user_system_message") and text:
                        system_prompt = text
                    report.skipped["system message"] += 1
                elif role not in ("user", "assistant"):
                    report.skipped[f"{role or 'unknown'} message (tools and plugins)"] += 1
                elif metadata.get("is_visually_hidden_from_conversation"):
                    report.skipped["hidden message"] += 1
                elif text is None:
                    report.skipped[reason] += 1
                else:
                    when = _when(message.get("create_time"), last_time)
                    last_time = max(last_time, when)
                    model = metadata.get("model_slug") if role == "assistant" else ""
                    kept[node_id] = DraftMessage(
                        key=node_id,
                        parent=ancestor,
                        role=role,
                        content=text,
                        created_at=when,
                        model_name=str(model or "")[:200],
                        provider_name="ChatGPT" if role == "assistant" else "",
                    )
                    order.append(node_id)
                    keep_as = node_id
            nearest[node_id] = keep_as
            children = [c for c in node.get("children") or [] if isinstance(c, str)]
            stack += [(c, keep_as) for c in reversed(children)]
        current = item.get("current_node")
        leaf = nearest.get(current) if isinstance(current, str) else None
        messages = [kept[k] for k in order]
        if leaf is None and messages:
            leaf = messages[-1].key
        drafts.append(
            Draft(
                title=str(item.get("title") or "")[:200],
                created_at=created,
                updated_at=_when(item.get("update_time"), created),
                messages=messages,
                current_leaf=leaf,
                system_prompt=system_prompt,
                model=item.get("default_model_slug")
                if isinstance(item.get("default_model_slug"), str)
                else None,
            )
        )
    return drafts


# --- Reading a file -------------------------------------------------------------------------------------------


def parse(data: bytes, report: Report) -> list[Draft]:
    """Drafts from an uploaded file: JSON (ours or ChatGPT's) or a zip holding conversations.json."""
    files: dict[str, bytes] | None = None
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = set(archive.namelist())
                if "conversations.json" not in names:
                    _fail("the zip holds no conversations.json.")
                files = {
                    name: archive.read(name)
                    for name in names
                    if name.startswith("images/") or name == "conversations.json"
                }
        except zipfile.BadZipFile:
            _fail("it is not a readable zip file.")
        data = files.pop("conversations.json")
    try:
        payload = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        _fail("it is not valid JSON.")
    if isinstance(payload, dict) and payload.get("format") == export.FORMAT:
        return parse_ours(payload, files, report)
    if isinstance(payload, list):
        return parse_chatgpt(payload, report)
    _fail("it is neither a Chatsite export nor ChatGPT's conversations.json.")
    return []


def write_drafts(user, drafts: list[Draft], report: Report, progress=None, saved: list | None = None) -> None:
    """Store the drafts (the caller holds the transaction). Queries per conversation: one per tree level.
    Names of the image files written are appended to `saved`, so a failed transaction can remove them."""
    models = {}
    for name in {d.model for d in drafts if d.model}:
        models[name] = (
            ChatModel.objects.filter(canonical_id=name)
            .order_by("-provider__enabled", "-enabled", "provider__priority", "pk")
            .first()
        )
    for number, draft in enumerate(drafts, 1):
        conversation = Conversation.objects.create(
            owner=user,
            title=draft.title,
            pinned=draft.pinned,
            archived=draft.archived,
            system_prompt=draft.system_prompt,
            params=draft.params,
            model=models.get(draft.model) if draft.model else None,
            # The canonical model, when this site knows it: another provider may serve it later.
            canonical_model=draft.model if draft.model and models.get(draft.model) else "",
        )
        pks: dict[str, int] = {}
        rows: dict[str, Message] = {}
        level = [m for m in draft.messages if m.parent is None]
        remaining = [m for m in draft.messages if m.parent is not None]
        while level:
            created = Message.objects.bulk_create(
                [
                    Message(
                        conversation=conversation,
                        parent_id=pks[m.parent] if m.parent else None,
                        role=m.role,
                        content=m.content,
                        status=m.status,
                        error=m.error,
                        finish_reason=m.finish_reason,
                        model_name=m.model_name,
                        provider_name=m.provider_name,
                    )
                    for m in level
                ]
            )
            for draft_message, row in zip(level, created, strict=True):
                pks[draft_message.key] = row.pk
                rows[draft_message.key] = row
                row.created_at = row.updated_at = draft_message.created_at
            level, remaining = (
                [m for m in remaining if m.parent in pks],
                [m for m in remaining if m.parent not in pks],
            )
        if rows:
            Message.objects.bulk_update(list(rows.values()), ["created_at", "updated_at"], batch_size=500)
        for m in draft.messages:
            for position, image in enumerate(m.images):  # in the order the file lists them
                attachment = Attachment(
                    owner=user,
                    message_id=pks[m.key],
                    position=position,
                    mime=image.mime,
                    width=image.width,
                    height=image.height,
                    bytes=len(image.data),
                    sha256=hashlib.sha256(image.data).hexdigest(),
                )
                # Stored as uploads are (services/uploads.py): one file per owner and content, shared by rows.
                name = attachment_path(attachment, f"image.{export.EXTENSIONS[image.mime]}")
                if not default_storage.exists(name):
                    default_storage.save(name, ContentFile(image.data))
                    if saved is not None:
                        saved.append(name)
                attachment.file.name = name
                attachment.save()
                report.images += 1
        Conversation.objects.filter(pk=conversation.pk).update(
            current_leaf_id=pks.get(draft.current_leaf) if draft.current_leaf else None,
            created_at=draft.created_at,
            updated_at=draft.updated_at,
        )
        report.conversations += 1
        report.messages += len(rows)
        if progress is not None:
            progress(number)


def import_file(user, data: bytes, progress=None) -> Report:
    """Parse and store one file in one transaction. InvalidInput (nothing written) if it is malformed."""
    report = Report()
    drafts = parse(data, report)
    _write(user, drafts, report, progress)
    return report


def _write(user, drafts: list[Draft], report: Report, progress=None) -> None:
    saved: list[str] = []
    try:
        with transaction.atomic():
            write_drafts(user, drafts, report, progress, saved)
            report.instructions_imported = custom_instructions.import_instructions(user, report.instructions)
    except Exception:
        for name in saved:  # the rows went with the transaction; the files it wrote must go too
            uploads._delete_file_if_unused(name)
        raise


# --- In the background ----------------------------------------------------------------------------------------


def check_size(size: int) -> None:
    """Refuses a file over CHAT_IMPORT_MAX_BYTES; the view asks before it reads the upload into memory."""
    if size > settings.CHAT_IMPORT_MAX_BYTES:
        raise TooLarge(f"That file is larger than {settings.CHAT_IMPORT_MAX_BYTES // 1_000_000} MB.")


def start_import(user, data: bytes) -> ImportJob:
    check_size(len(data))
    job = ImportJob.objects.create(owner=user)
    if RUN_INLINE:
        _run(job.pk, data)
    else:
        threading.Thread(
            target=_run_in_thread, args=(job.pk, data), daemon=True, name=f"import-{job.pk}"
        ).start()
    return job


def _run_in_thread(job_pk: int, data: bytes) -> None:
    try:
        _run(job_pk, data)
    finally:
        close_old_connections()


def _run(job_pk: int, data: bytes) -> None:
    job = ImportJob.objects.select_related("owner").get(pk=job_pk)
    report = Report()
    try:
        drafts = parse(data, report)
        ImportJob.objects.filter(pk=job_pk).update(total=len(drafts))
        _write(job.owner, drafts, report, _progress_reporter(job_pk))
    except InvalidInput as exc:
        ImportJob.objects.filter(pk=job_pk).update(status=ImportJob.Status.FAILED, error=exc.message)
        return
    except Exception:
        logger.exception("import %s failed", job_pk)
        ImportJob.objects.filter(pk=job_pk).update(
            status=ImportJob.Status.FAILED, error="The import failed on the server. Nothing was imported."
        )
        return
    ImportJob.objects.filter(pk=job_pk).update(
        status=ImportJob.Status.DONE, done=report.conversations, report=report.to_dict()
    )


def _progress_reporter(job_pk: int):
    """Progress inside the file's transaction goes through the cache (the row's update would not be seen)."""
    from django.core.cache import cache

    def progress(done: int) -> None:
        if done % 25 == 0:
            cache.set(f"import-progress:{job_pk}", done, 3600)

    return progress


def job_status(user, job_id: str) -> dict:
    from django.core.cache import cache

    job = ImportJob.objects.filter(public_id=parse_uuid(job_id), owner=user).first()
    if job is None:
        raise NotFound("No such import.")
    done = job.done if job.status != ImportJob.Status.RUNNING else cache.get(f"import-progress:{job.pk}", 0)
    return {
        "id": str(job.public_id),
        "status": job.status,
        "total": job.total,
        "done": done,
        "report": job.report or None,
        "error": job.error,
    }
