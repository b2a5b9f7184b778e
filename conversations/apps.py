from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = "Chat"

    def ready(self) -> None:
        # Signal receivers: the audit of account activation, and folding a deleted conversation's usage
        # into DeletedUsage so quotas and the usage dashboard keep counting it; deleting an image's file
        # with its last row; the engine's database thread keeping its connection; ending access (deactivation,
        # deletion, password change, log out) stops the user's sockets and answers in every process, also
        # when the change is made by a management command or the shell; a login forgetting that username's
        # failed attempts.
        from conversations.engine import db_threads, revocation  # noqa: F401
        from conversations.services import audit, login_limits, uploads, usage  # noqa: F401
