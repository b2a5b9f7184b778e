"""Re-encrypt every stored API key (providers' and personal) under the first key of CHAT_ENCRYPTION_KEY.

Without downtime:
1. Set CHAT_ENCRYPTION_KEY=<new>,<old> on every process and restart them: they encrypt with <new> and still
   read keys stored under <old>. (A site that never set CHAT_ENCRYPTION_KEY: just CHAT_ENCRYPTION_KEY=<new>;
   the key derived from SECRET_KEY is always tried last for reading.)
2. Run this command once (any process's environment).
3. Set CHAT_ENCRYPTION_KEY=<new> and restart again.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from conversations.services import audit, providers


class Command(BaseCommand):
    help = "Re-encrypt every stored provider and personal API key under the first CHAT_ENCRYPTION_KEY."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Check every key can be read; change nothing."
        )

    def handle(self, *args, dry_run: bool = False, **options) -> None:
        report = providers.rotate_all_keys(dry_run=dry_run)
        verb = "Would re-encrypt" if dry_run else "Re-encrypted"
        self.stdout.write(f"{verb} {report.rotated} key{'s' if report.rotated != 1 else ''}.")
        if not dry_run:
            audit.record(
                None,
                "keys.rotated",
                None,
                f"Re-encrypted {report.rotated} keys",
                unreadable=report.unreadable,
            )
        if report.unreadable:
            raise CommandError(
                f"{len(report.unreadable)} stored keys can't be decrypted with CHAT_ENCRYPTION_KEY and were left "
                f"as they are ({', '.join(report.unreadable)}). Add the key they were encrypted with to "
                "CHAT_ENCRYPTION_KEY and run this again, or enter those keys again in the admin."
            )
