"""Writing drafts: in short transactions (a conversation's rows, at most CHUNK messages each), hidden until
the import publishes them all in one quick statement, removed if it fails.

A new conversation is written hidden: `deleted_at` is set (so every list, search and access check already
leaves it out) and `import_job` marks it as the import's, not the trash's. Messages that a re-import adds to
a conversation already here are written in one transaction per conversation, marked `imported_by`, so a failed
import removes them too. Ids: our export's ids are kept when free on this site; otherwise (and for every
other format) ids are derived from the source id, so importing the same file again finds what is here.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import tempfile
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from PIL import Image, UnidentifiedImageError

from conversations.models import Attachment, ChatModel, Conversation, ImportJob, Message, attachment_path
from conversations.services import images, uploads
from conversations.services.imports.drafts import IMAGE_MISSING, Draft, DraftMessage, Report, now

CHUNK = 250  # messages per transaction: a few milliseconds of the database each
PAUSE = 0.01  # seconds between two of the import's transactions
HIDDEN = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # deleted_at of a row still being imported
NAMESPACE = uuid.UUID("6f1d3c0e-6b1c-4a8e-9a51-1d0a2f4e7c11")
MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}
# Why an image was left out, in the report's words (an inline one stays a placeholder).
UNREADABLE = "images that could not be read"
DAMAGED = "images whose data was damaged (a placeholder marks each)"
NOT_AN_IMAGE = "files that were not images this site reads (a placeholder marks each)"


def _too_large() -> str:
    return f"images larger than {settings.CHAT_MAX_IMAGE_BYTES / 1024**2:g} MB (a placeholder marks each)"


class _Refused(Exception):
    """An image that can't be attached; `reason` is what the report says."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _clean(value: str) -> str:
    return value.replace("\x00", "") if "\x00" in value else value  # PostgreSQL refuses NUL in text


def _uuid(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


class Writer:
    def __init__(self, job: ImportJob, source, report: Report, heartbeat: Callable[[], None]):
        self.job = job
        self.user = job.owner
        self.source = source
        self.report = report
        self.heartbeat = heartbeat
        self.models: dict[str, ChatModel | None] = {}
        self.unfinished: int | None = None  # the hidden conversation being written

    def drop_unfinished(self) -> None:
        """After a failure half-way through a conversation: remove what of it was written."""
        if self.unfinished is not None:
            _delete_conversations([self.unfinished])
            self.unfinished = None

    # --- One conversation --------------------------------------------------------------------------------

    def write(self, draft: Draft) -> None:
        existing = self._existing(draft)
        if existing is not None:
            self._merge(existing, draft)
            return
        messages = draft.messages
        self._fill_times(draft)
        public_id = _uuid(draft.public_id)
        if public_id is None or Conversation.objects.filter(public_id=public_id).exists():
            public_id = (
                uuid.uuid5(NAMESPACE, f"{self.user.pk}:{draft.source_id}") if draft.source_id else None
            )
            if public_id is None or Conversation.objects.filter(public_id=public_id).exists():
                public_id = uuid.uuid4()
        # A conversation of at most CHUNK messages is one transaction; a longer one, one per CHUNK messages.
        small = len(messages) <= CHUNK
        with transaction.atomic() if small else _nothing():
            conversation = Conversation.objects.create(
                public_id=public_id,
                owner=self.user,
                title=_clean(draft.title),
                pinned=draft.pinned,
                archived=draft.archived,
                system_prompt=_clean(draft.system_prompt),
                params=draft.params,
                model=self._model(draft.model),
                # The canonical model, when this site knows it: another provider may serve it later.
                canonical_model=draft.model if draft.model and self._model(draft.model) else "",
                source_id=draft.source_id[:300],
                import_job=self.job,
                deleted_at=HIDDEN,
            )
            self.unfinished = conversation.pk
            pks = self._insert(conversation, messages, {}, atomic=not small)
            leaf = (
                draft.current_leaf if draft.current_leaf in pks else (messages[-1].key if messages else None)
            )
            Conversation.objects.filter(pk=conversation.pk).update(
                current_leaf_id=pks.get(leaf) if leaf else None,
                created_at=draft.created_at,
                updated_at=draft.updated_at,
            )
        self.unfinished = None
        self.report.conversations += 1
        _pause()

    def _existing(self, draft: Draft) -> Conversation | None:
        rows = Conversation.objects.filter(owner=self.user)
        found = None
        if draft.source_id:
            found = rows.filter(source_id=draft.source_id, deleted_at__isnull=True).first()
            found = found or rows.filter(source_id=draft.source_id, import_job=self.job).first()
        if found is None and _uuid(draft.public_id):  # our own export, restored where it came from
            found = rows.filter(public_id=_uuid(draft.public_id), deleted_at__isnull=True).first()
        return found

    def _merge(self, conversation: Conversation, draft: Draft) -> None:
        """Only what is new: messages whose id isn't in the conversation yet, under the parents it has."""
        here = dict(Message.objects.filter(conversation=conversation).values_list("public_id", "pk"))
        known: dict[str, int] = {}
        new: list[DraftMessage] = []
        for m in draft.messages:
            for candidate in (_uuid(m.public_id), self._derived(conversation, m.key)):
                if candidate in here:
                    known[m.key] = here[candidate]
                    break
            else:
                new.append(m)
        if not new:
            self.report.already_here += 1
            return
        self._fill_times(draft)
        with transaction.atomic():  # visible at once, with their parents in place
            self._insert(conversation, new, known, atomic=False)
        self.report.conversations += 1
        _pause()

    # --- Rows ----------------------------------------------------------------------------------------------

    def _derived(self, conversation: Conversation, key: str) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"{conversation.public_id}:{key}")

    def _fill_times(self, draft: Draft) -> None:
        """Missing times come from the parent (or the conversation); clock skew in the file is kept as is."""
        times: dict[str, dt.datetime] = {}
        start = (
            draft.created_at or next((m.created_at for m in draft.messages if m.created_at), None) or now()
        )
        for m in draft.messages:
            if m.created_at is None:
                m.created_at = times.get(m.parent) or start
            times[m.key] = m.created_at
        draft.created_at = draft.created_at or start
        latest = max(times.values(), default=draft.created_at)
        draft.updated_at = draft.updated_at or max(latest, draft.created_at)

    def _insert(
        self,
        conversation: Conversation,
        messages: list[DraftMessage],
        pks: dict[str, int],
        atomic: bool = True,
    ) -> dict[str, int]:
        """Parents come before children in `messages`; rows are created, then linked, CHUNK at a time."""
        free = self._free_ids(conversation, messages)
        for start in range(0, len(messages), CHUNK):
            batch = messages[start : start + CHUNK]
            with transaction.atomic() if atomic else _nothing():
                rows = Message.objects.bulk_create(
                    [
                        Message(
                            public_id=free[m.key],
                            conversation=conversation,
                            parent_id=pks.get(m.parent) if m.parent else None,
                            role=m.role,
                            content=_clean(m.content),
                            status=m.status,
                            error=_clean(m.error),
                            finish_reason=m.finish_reason,
                            model_name=m.model_name,
                            provider_name=m.provider_name,
                            prompt_tokens=m.prompt_tokens,
                            completion_tokens=m.completion_tokens,
                            cached_tokens=m.cached_tokens,
                            cost=m.cost,
                            ttft_ms=m.ttft_ms,
                            duration_ms=m.duration_ms,
                            imported_by=self.job,
                        )
                        for m in batch
                    ]
                )
                for m, row in zip(batch, rows, strict=True):
                    pks[m.key] = row.pk
                # auto_now_add stamped the rows now, and a parent in the same batch had no id yet: one
                # executemany sets both (Django's bulk_update builds a CASE per row and field in Python, slow
                # enough to hold SQLite's write lock noticeably longer).
                adapt = connection.ops.adapt_datetimefield_value
                with connection.cursor() as cursor:
                    cursor.executemany(
                        f"UPDATE {Message._meta.db_table} SET parent_id = %s, created_at = %s, updated_at = %s "  # noqa: S608 (our table)
                        "WHERE id = %s",
                        [
                            (
                                pks.get(m.parent) if m.parent else None,
                                adapt(m.created_at),
                                adapt(m.created_at),
                                row.pk,
                            )
                            for m, row in zip(batch, rows, strict=True)
                        ],
                    )
                self._images(batch, pks)
            self.report.messages += len(batch)
            self.heartbeat()
            if atomic:
                _pause()
        return pks

    def _free_ids(self, conversation: Conversation, messages: list[DraftMessage]) -> dict[str, uuid.UUID]:
        wanted = {m.key: _uuid(m.public_id) or self._derived(conversation, m.key) for m in messages}
        values = list(wanted.values())
        taken: set[uuid.UUID] = set()
        for start in range(0, len(values), CHUNK):
            chunk = values[start : start + CHUNK]
            taken.update(Message.objects.filter(public_id__in=chunk).values_list("public_id", flat=True))
        out = {}
        for key, value in wanted.items():
            if value in taken or value in out.values():
                value = self._derived(conversation, key)
                if value in taken:
                    value = uuid.uuid4()
            out[key] = value
        return out

    def _model(self, name: str | None) -> ChatModel | None:
        if not name:
            return None
        if name not in self.models:
            self.models[name] = (  # the copy a new turn would pick first: enabled, by provider priority
                ChatModel.objects.filter(canonical_id=name)
                .order_by("-provider__enabled", "-enabled", "provider__priority", "pk")
                .first()
            )
        return self.models[name]

    # --- Images: copied from the zip in chunks, or decoded from the file one at a time ----------------------

    def _images(self, batch: list[DraftMessage], pks: dict[str, int]) -> None:
        rows = []
        for m in batch:
            missing = 0
            for position, image in enumerate(m.images):
                try:
                    stored = self._store_inline(image.inline) if image.inline else self._store(image.member)
                except _Refused as refused:
                    self.report.skip(refused.reason)
                    missing += 1 if image.inline else 0
                    continue
                name, mime, width, height, size, digest = stored
                attachment = Attachment(
                    owner=self.user,
                    message_id=pks[m.key],
                    mime=mime,
                    width=width,
                    height=height,
                    bytes=size,
                    sha256=digest,
                    position=position,
                )
                attachment.file.name = name
                rows.append(attachment)
            if (
                missing
            ):  # an inline image that can't be attached stays a placeholder, as the reader writes one
                content = "\n\n".join([IMAGE_MISSING] * missing + [m.content]).strip()
                Message.objects.filter(pk=pks[m.key]).update(content=_clean(content))
        if rows:
            Attachment.objects.bulk_create(rows)
            self.report.images += len(rows)

    def _store(self, member: str) -> tuple[str, str, int, int, int, str]:
        """(storage name, mime, width, height, bytes, sha256), or _Refused for something that isn't an image."""
        limit = settings.CHAT_MAX_IMAGE_BYTES
        digest = hashlib.sha256()
        size = 0
        with self.source.open_member(member) as stream, tempfile.TemporaryFile() as spool:
            while chunk := stream.read(256 * 1024):
                size += len(chunk)
                if size > limit:
                    raise _Refused(UNREADABLE)
                digest.update(chunk)
                spool.write(chunk)
            spool.seek(0)
            try:
                with Image.open(spool) as image:
                    mime, (width, height) = MIMES.get(image.format or ""), image.size
            except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
                raise _Refused(UNREADABLE) from None
            if mime is None or width * height > settings.CHAT_MAX_IMAGE_PIXELS:
                raise _Refused(UNREADABLE)
            spool.seek(0)
            name = self._save(digest.hexdigest(), EXTENSIONS[mime], File(spool))
        return name, mime, width, height, size, digest.hexdigest()

    def _store_inline(self, url: str) -> tuple[str, str, int, int, int, str]:
        """A `data:` URL's image, checked and cleaned as an upload is (images.prepare), or _Refused. The base64
        is measured against CHAT_MAX_IMAGE_BYTES before it is decoded; only this one image is in memory."""
        header, _, payload = url.partition(",")
        payload = payload.strip()
        if not header.lower().endswith(";base64") or not payload:
            raise _Refused(DAMAGED)
        if len(payload) > 4 * -(-settings.CHAT_MAX_IMAGE_BYTES // 3):  # base64: 4 characters per 3 bytes
            raise _Refused(_too_large())
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise _Refused(DAMAGED) from None
        try:
            prepared = images.prepare(data)
        except images.ImageTooLarge:
            raise _Refused(_too_large()) from None
        except images.ImageRejected:
            raise _Refused(NOT_AN_IMAGE) from None
        del data  # only the cleaned copy is held while it is stored
        name = self._save(prepared.sha256, prepared.extension, ContentFile(prepared.data))
        return name, prepared.mime, prepared.width, prepared.height, len(prepared.data), prepared.sha256

    def _save(self, digest: str, extension: str, content: File) -> str:
        """The storage name of these bytes (content-addressed: a file already stored is used again)."""
        name = attachment_path(Attachment(owner=self.user, sha256=digest), f"image.{extension}")
        if not default_storage.exists(name):
            name = default_storage.save(name, content)
        return name


def _pause() -> None:
    """Between two of the import's transactions on SQLite, let others in: its busy handler polls with growing
    sleeps, so a writer that commits and begins again at once can keep another user's rename waiting.
    PostgreSQL locks rows, not the database: no pause there."""
    if connection.vendor == "sqlite":
        time.sleep(PAUSE)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --- The end of a job: publish everything at once, or remove everything ----------------------------------------


def publish(job: ImportJob) -> int:
    """One statement: the job's conversations appear together."""
    return Conversation.objects.filter(import_job=job, deleted_at=HIDDEN).update(
        deleted_at=None, import_job=None
    )


def discard(job_pk: int) -> None:
    """Remove every row a job wrote (its hidden conversations, and messages it added to others) and the image
    files no other row uses."""
    hidden = list(Conversation.objects.filter(import_job_id=job_pk).values_list("pk", flat=True))
    names = set(Attachment.objects.filter(message__imported_by_id=job_pk).values_list("file", flat=True))
    with transaction.atomic():
        Conversation.objects.filter(current_leaf__imported_by_id=job_pk).exclude(pk__in=hidden).update(
            current_leaf=None
        )
        Attachment.objects.filter(message__imported_by_id=job_pk).exclude(
            message__conversation_id__in=hidden
        ).delete()
        # Messages a re-import added to conversations that stay (their own children go with them).
        Message.objects.filter(imported_by_id=job_pk).exclude(conversation_id__in=hidden).delete()
    _delete_conversations(hidden)
    for name in names:
        uploads._delete_file_if_unused(name)


def _delete_conversations(pks: list[int]) -> None:
    """Plain DELETE statements, CHUNK conversations at a time: Django's cascade would walk a deep chain one
    level per query (and recursively). Their image rows go first; files are the caller's."""
    names = set(Attachment.objects.filter(message__conversation_id__in=pks).values_list("file", flat=True))
    tables = {
        "attachment": Attachment._meta.db_table,
        "message": Message._meta.db_table,
        "conversation": Conversation._meta.db_table,
    }
    for start in range(0, len(pks), CHUNK):
        chunk = pks[start : start + CHUNK]
        marks = ",".join(["%s"] * len(chunk))
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {tables['conversation']} SET current_leaf_id = NULL WHERE id IN ({marks})",  # noqa: S608 (our table names)
                chunk,
            )
            cursor.execute(
                f"DELETE FROM {tables['attachment']} WHERE message_id IN "  # noqa: S608
                f"(SELECT id FROM {tables['message']} WHERE conversation_id IN ({marks}))",
                chunk,
            )
            cursor.execute(f"DELETE FROM {tables['message']} WHERE conversation_id IN ({marks})", chunk)  # noqa: S608
            cursor.execute(f"DELETE FROM {tables['conversation']} WHERE id IN ({marks})", chunk)  # noqa: S608
    for name in names:
        uploads._delete_file_if_unused(name)
