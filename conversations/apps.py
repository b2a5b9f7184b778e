from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = "Chat"

    def ready(self) -> None:
        # Signal receivers: the audit of account activation, and folding a deleted conversation's usage
        # into DeletedUsage so quotas and the usage dashboard keep counting it; deleting an image's file
        # with its last row; the engine's database thread keeping its connection.
        from conversations.engine import db_threads  # noqa: F401
        from conversations.services import audit, uploads, usage  # noqa: F401
