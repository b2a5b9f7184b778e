"""Undo imports whose process died (no heartbeat for CHAT_IMPORT_STALE_AFTER seconds): their hidden rows go.
Also run before every new import; schedule it (cron) if imports are common on the site."""

from django.core.management.base import BaseCommand

from conversations.services import imports


class Command(BaseCommand):
    help = "Undo imports orphaned by a killed process."

    def handle(self, *args, **options):
        self.stdout.write(f"Swept {imports.sweep()} orphaned import(s).")
