"""Uploaded images: storing one (after services/images.py accepted it), removing one, purging the ones never
sent, and deleting files nobody refers to any more.

An upload belongs to its owner alone until a turn claims it (turns._claim_attachments sets `message`). Files
live under MEDIA_ROOT as attachments/<owner id>/<sha256>.<ext>: the same picture uploaded twice by one person is
stored once and shared by both rows, so a file is deleted only when its last row goes.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

from conversations.models import Attachment, attachment_path
from conversations.services import images
from conversations.services.access import parse_uuid
from conversations.services.errors import InvalidInput, NotFound, RateLimited

logger = logging.getLogger(__name__)


def check_can_upload(user) -> None:
    """Refuses a user who already has too many images waiting to be sent (CHAT_MAX_PENDING_UPLOADS)."""
    waiting = Attachment.objects.filter(owner=user, message__isnull=True).count()
    if waiting >= settings.CHAT_MAX_PENDING_UPLOADS:
        raise RateLimited(
            f"You have {waiting} images waiting to be sent. Send or remove some before adding more."
        )


def do_upload(user, data: bytes) -> tuple[Attachment, images.PreparedImage]:
    """Check, clean and store one image for `user`. Raises ImageRejected (nothing stored) or RateLimited."""
    check_can_upload(user)
    prepared = images.prepare(data)  # everything is checked before anything is written
    attachment = Attachment(
        owner=user,
        mime=prepared.mime,
        width=prepared.width,
        height=prepared.height,
        bytes=len(prepared.data),
        sha256=prepared.sha256,
    )
    name = attachment_path(attachment, f"image.{prepared.extension}")
    if not default_storage.exists(name):
        saved = default_storage.save(name, ContentFile(prepared.data))
        if saved != name:  # the same bytes arrived twice at once: keep one file
            default_storage.delete(saved)
    attachment.file.name = name
    try:
        attachment.save()
    except Exception:
        _delete_file_if_unused(name)
        raise
    return attachment, prepared


def get_attachment_for_user(user, public_id: object) -> Attachment:
    """The attachment if `user` owns it, or is staff with the `view_attachment` permission (the admin's own
    rule for attachments); NotFound otherwise (someone else's looks missing)."""
    attachments = Attachment.objects.all()
    if not may_view_any_attachment(user):
        attachments = attachments.filter(owner=user)
    try:
        return attachments.get(public_id=parse_uuid(public_id))
    except Attachment.DoesNotExist as exc:
        raise NotFound("No such image.") from exc


def may_view_any_attachment(user) -> bool:
    """Staff flag alone is not enough: the account also needs `conversations.view_attachment` (superusers
    have every permission), exactly what the admin's attachment pages ask for."""
    return user.is_active and user.is_staff and user.has_perm("conversations.view_attachment")


def do_remove_upload(user, public_id: object) -> None:
    """Delete one of the user's uploads that no message uses yet (the composer's "Remove image")."""
    attachment = get_attachment_for_user(user, public_id)
    if attachment.owner_id != user.pk:
        raise NotFound("No such image.")
    if attachment.message_id is not None:
        raise InvalidInput("This image belongs to a sent message and stays with it.")
    attachment.delete()  # the file goes with it, after the commit, when no other row uses it


def purge_unattached(older_than_hours: int | None = None) -> int:
    """Delete uploads no message claimed within `older_than_hours` (CHAT_UPLOAD_MAX_AGE_HOURS). The count."""
    hours = settings.CHAT_UPLOAD_MAX_AGE_HOURS if older_than_hours is None else older_than_hours
    cutoff = timezone.now() - dt.timedelta(hours=hours)
    deleted = 0
    stale = Attachment.objects.filter(message__isnull=True, created_at__lt=cutoff)
    while batch := list(stale.values_list("pk", flat=True)[:500]):
        with transaction.atomic():
            for attachment in Attachment.objects.filter(pk__in=batch, message__isnull=True):
                attachment.delete()
                deleted += 1
    return deleted


def _delete_file_if_unused(name: str) -> None:
    if not name or Attachment.objects.filter(file=name).exists():
        return
    try:
        default_storage.delete(name)
    except OSError:
        logger.warning("could not delete the image file %s", name, exc_info=True)


@receiver(post_delete, sender=Attachment)
def _attachment_deleted(sender, instance: Attachment, **kwargs) -> None:
    """A deleted row (directly, or with its message or conversation) takes its file along once no row
    refers to it. After the commit, so a rolled-back delete keeps its file."""
    name = instance.file.name
    transaction.on_commit(lambda: _delete_file_if_unused(name))
