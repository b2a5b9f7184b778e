from django.core.management.base import BaseCommand, CommandError

from conversations.catalog import bootstrap_from_environment


class Command(BaseCommand):
    help = (
        "Create or update providers from OPENAI_API_KEY, OPENROUTER_API_KEY and AIMLAPI_API_KEY (with their "
        "*_BASE_URL), and pick CHAT_DEFAULT_MODEL. Safe to run on every start."
    )

    def handle(self, *args, **options) -> None:
        try:
            lines = bootstrap_from_environment()
        except LookupError as exc:
            raise CommandError(str(exc)) from exc
        for line in lines:
            self.stdout.write(line)
