"""Running an import: off the request and out of the web process (`manage.py run_import <job>`, a child
process at a lower CPU priority, so parsing a large file neither holds the web process's GIL nor grows its
memory; CHAT_IMPORT_WORKER=thread runs it in a thread instead), at most one per user and
CHAT_IMPORT_CONCURRENCY on the site, its progress in the ImportJob row so any process can report it, all or
nothing (writer.publish / writer.discard).

A job whose worker stops refreshing `heartbeat_at` (its process was killed) is undone by `sweep`, which runs
before every new import, when its owner asks for its status, and from `manage.py sweep_imports`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from conversations.models import ImportJob
from conversations.services import custom_instructions
from conversations.services.access import parse_uuid
from conversations.services.errors import Busy, InvalidInput, NotFound, TooLarge
from conversations.services.imports import archive, formats, reader, writer
from conversations.services.imports.drafts import Report, Unreadable
from conversations.services.imports.formats import ours

logger = logging.getLogger(__name__)

# Tests set this to run the job in the request (a plain pytest-django test can't see another thread's rows).
RUN_INLINE = False
HEARTBEAT_EVERY = 1.0  # seconds between progress writes
_claim_lock = threading.Lock()
INTERRUPTED = "The import was interrupted (the server stopped). Nothing was imported; try again."
FAILED = "The import failed on the server. Nothing was imported."


def check_size(size: int) -> None:
    """Refuses a file over CHAT_IMPORT_MAX_BYTES (before the worker starts)."""
    if size > settings.CHAT_IMPORT_MAX_BYTES:
        raise TooLarge(f"That file is larger than {settings.CHAT_IMPORT_MAX_BYTES // 1_000_000} MB.")


def start_import(user, upload) -> ImportJob:
    """Takes an uploaded file (a Django UploadedFile: a temporary file on disk, never read into memory
    here) and starts its job. Busy if this user already has one running."""
    check_size(upload.size)
    sweep()
    if ImportJob.objects.filter(owner=user, status__in=ImportJob.ACTIVE_STATUSES).exists():
        raise Busy("An import of yours is still running. Wait for it to finish, then import the next file.")
    folder = Path(settings.CHAT_IMPORT_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"upload-{secrets.token_hex(8)}"
    if hasattr(upload, "temporary_file_path"):
        shutil.copyfile(upload.temporary_file_path(), path)  # Django removes its own copy after the request
    else:
        with open(path, "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
    job = ImportJob.objects.create(
        owner=user,
        status=ImportJob.Status.QUEUED,
        total=upload.size,
        path=str(path),
        name=(upload.name or "")[:255],
        heartbeat_at=timezone.now(),
    )
    if RUN_INLINE:
        run(job.pk)
    elif settings.CHAT_IMPORT_WORKER == "thread":
        threading.Thread(target=_run_in_thread, args=(job.pk,), daemon=True, name=f"import-{job.pk}").start()
    else:
        transaction.on_commit(lambda: _spawn(job.pk))
    return job


def _spawn(job_pk: int) -> None:
    """The worker process; a thread waits for it so it leaves no zombie. If it dies, the sweep undoes it."""
    worker = subprocess.Popen(  # noqa: S603 - this site's own manage.py, a job number
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "run_import", str(job_pk)],
        cwd=settings.BASE_DIR,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C or SIGTERM for the web server isn't the import's
    )
    threading.Thread(target=worker.wait, daemon=True, name=f"import-{job_pk}-wait").start()


def _run_in_thread(job_pk: int) -> None:
    try:
        run(job_pk)
    finally:
        close_old_connections()


def _claim(job_pk: int) -> bool:
    """Take one of CHAT_IMPORT_CONCURRENCY places. The lock orders this process's threads; between
    processes the count may be off by one for an instant, which only lets one more import start."""
    with _claim_lock, transaction.atomic():
        running = ImportJob.objects.filter(status=ImportJob.Status.RUNNING).count()
        if running >= settings.CHAT_IMPORT_CONCURRENCY:
            ImportJob.objects.filter(pk=job_pk).update(heartbeat_at=timezone.now())
            return False
        return bool(
            ImportJob.objects.filter(pk=job_pk, status=ImportJob.Status.QUEUED).update(
                status=ImportJob.Status.RUNNING, heartbeat_at=timezone.now()
            )
        )


def run(job_pk: int) -> None:
    while not _claim(job_pk):
        if not ImportJob.objects.filter(pk=job_pk, status=ImportJob.Status.QUEUED).exists():
            return  # swept meanwhile
        time.sleep(0.5)
    job = ImportJob.objects.select_related("owner").get(pk=job_pk)
    report = Report()
    try:
        _import(job, report)
    except InvalidInput as exc:
        _fail(job, exc.message)
    except Exception:
        logger.exception("import %s failed", job_pk)
        _fail(job, FAILED)
    finally:
        _remove_upload(job.path)


def _import(job: ImportJob, report: Report) -> None:
    source = archive.open_source(job.path)
    size = max(source.json_size, 1)
    last = [0.0]

    def heartbeat(force: bool = False) -> None:
        moment = time.monotonic()
        if not force and moment - last[0] < HEARTBEAT_EVERY:
            return
        last[0] = moment
        progress = min(999, int(1000 * source.position() / size))
        ImportJob.objects.filter(pk=job.pk).update(
            done=report.conversations + report.already_here, progress=progress, heartbeat_at=timezone.now()
        )

    out = writer.Writer(job, source, report, heartbeat)
    seen = unknown = 0
    header_seen: dict = {}  # the file's top-level keys besides its conversations (ours: custom instructions)
    try:
        for header, item in _conversations(source, report):
            header_seen = header
            seen += 1
            fmt = formats.detect(item, header)
            title = _title(item)
            if fmt is None:
                unknown += 1
                report.unreadable(title, "its shape is not one we know")
                continue
            report.format = report.format or fmt.NAME
            try:
                draft = fmt.read(item, report, source, header)
            except Unreadable as exc:
                report.unreadable(title, str(exc))
                continue
            except Exception:
                logger.warning("import %s: conversation %s could not be read", job.pk, seen, exc_info=True)
                report.unreadable(title, "it could not be read")
                continue
            if not draft.messages:
                report.skip("empty conversations (no messages)")
                continue
            try:
                out.write(draft)
            except Exception:
                logger.warning("import %s: conversation %s could not be written", job.pk, seen, exc_info=True)
                out.drop_unfinished()
                report.unreadable(title, "it could not be saved")
            heartbeat()
    finally:
        source.close()
    if not report.format and (
        unknown or report.problems
    ):  # not one conversation we know: not an export we read
        archive.refuse(f"it is not an export we can read. We read {formats.NAMES}.")
    instructions = None
    if report.format == ours.NAME:  # our export carries the user's custom instructions beside the chats
        try:
            instructions = custom_instructions.parse_export(header_seen.get("custom_instructions"))
        except InvalidInput as exc:
            report.skip(f"custom instructions ({exc.message.rstrip('.')})")
    with transaction.atomic():
        report.instructions_imported = custom_instructions.import_instructions(job.owner, instructions)
        writer.publish(job)
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.DONE,
            done=report.conversations,
            progress=1000,
            report=report.to_dict(),
            heartbeat_at=timezone.now(),
        )


def _conversations(source: archive.Source, report: Report):
    """(header, item) pairs from every JSON document of the upload, one after the other. A lone document
    that isn't JSON refuses the file; one of several (a zip of per-chat files) is skipped and reported."""
    for name, stream in source.documents():
        if not source.more:
            yield from reader.conversations(stream)
            continue
        try:
            yield from reader.conversations(stream)
        except InvalidInput as exc:
            why = exc.message.removeprefix("This file can't be imported: ").removesuffix(
                " Nothing was imported."
            )
            report.unreadable(name.rpartition("/")[2], why.rstrip("."))


def _title(item) -> str:
    if not isinstance(item, dict):
        return ""
    value = item.get("title") or item.get("name") or ""
    return value[:80] if isinstance(value, str) else ""


def _fail(job: ImportJob, message: str) -> None:
    writer.discard(job.pk)
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.FAILED, error=message, progress=0)


def _remove_upload(path: str) -> None:
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def sweep() -> int:
    """Undo jobs whose worker died: silent for CHAT_IMPORT_STALE_AFTER seconds. Returns how many."""
    cutoff = timezone.now() - dt.timedelta(seconds=settings.CHAT_IMPORT_STALE_AFTER)
    stale = list(
        ImportJob.objects.filter(status__in=ImportJob.ACTIVE_STATUSES, heartbeat_at__lt=cutoff).values_list(
            "pk", "path"
        )
    )
    for pk, path in stale:
        if ImportJob.objects.filter(pk=pk, heartbeat_at__lt=cutoff).update(
            status=ImportJob.Status.FAILED, error=INTERRUPTED
        ):
            writer.discard(pk)
            _remove_upload(path)
    return len(stale)


def job_status(user, job_id: str) -> dict:
    job = ImportJob.objects.filter(public_id=parse_uuid(job_id), owner=user).first()
    if job is None:
        raise NotFound("No such import.")
    stale = dt.timedelta(seconds=settings.CHAT_IMPORT_STALE_AFTER)
    if (
        job.status in ImportJob.ACTIVE_STATUSES
        and job.heartbeat_at
        and timezone.now() - job.heartbeat_at > stale
    ):
        sweep()
        job.refresh_from_db()
    return {
        "id": str(job.public_id),
        "status": job.status,
        "name": job.name,
        "done": job.done,
        "progress": job.progress / 1000,
        "report": job.report or None,
        "error": job.error,
    }
