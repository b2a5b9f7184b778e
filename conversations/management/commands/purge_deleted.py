"""Remove for good the conversations deleted more than CHAT_DELETED_RETENTION_DAYS ago, with their images.
Run it daily (cron, a systemd timer); until then a deleted chat can be restored from the sidebar's Undo."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from conversations.services import db_busy, sidebar


class Command(BaseCommand):
    help = "Purge conversations deleted longer ago than CHAT_DELETED_RETENTION_DAYS, with their attachments."

    def handle(self, *args, **options) -> None:
        db_busy.wait_longer()  # a purge may wait in line for SQLite's lock; the site's requests may not
        purged = sidebar.purge_deleted()
        self.stdout.write(f"Purged {purged} conversation{'s' if purged != 1 else ''}.")
