"""Delete uploaded images that no message claimed in time (the person attached them and never sent).

Run it from cron or a systemd timer, e.g. hourly: `manage.py purge_uploads` (older than
CHAT_UPLOAD_MAX_AGE_HOURS, 24 by default) or `manage.py purge_uploads --older-than-hours 6`.
Images of sent messages are never touched; they go with their message.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from conversations.services import db_busy, uploads


class Command(BaseCommand):
    help = "Delete uploaded images never sent with a message, older than CHAT_UPLOAD_MAX_AGE_HOURS."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--older-than-hours",
            type=int,
            default=None,
            help=f"Age in hours (default: CHAT_UPLOAD_MAX_AGE_HOURS, now {settings.CHAT_UPLOAD_MAX_AGE_HOURS}).",
        )

    def handle(self, *args, older_than_hours: int | None = None, **options) -> None:
        db_busy.wait_longer()  # a purge may wait in line for SQLite's lock; the site's requests may not
        if older_than_hours is not None and older_than_hours < 0:
            older_than_hours = 0
        count = uploads.purge_unattached(older_than_hours)
        self.stdout.write(f"Deleted {count} unsent image{'s' if count != 1 else ''}.")
