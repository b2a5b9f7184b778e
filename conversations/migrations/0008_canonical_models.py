# People pick canonical models; providers are routes (issue 18). The site default moves from one provider's
# row (ChatModel.is_default) to SiteSettings.default_model, a canonical id; each conversation remembers its
# canonical model (Conversation.canonical_model) beside the copy it last used. Reversible: going back marks
# the best copy of the default (enabled provider, enabled copy, provider priority) as is_default, and gives a
# conversation that has no copy one of its canonical model's.

import importlib

from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery

# SQLite adds a column by rebuilding the table, which the search view of 0005 (it names
# conversations_conversation) forbids; the FTS triggers would go with it. As in 0006: drop them first and
# make them again after. The FTS table keeps its rows.
search = importlib.import_module("conversations.migrations.0005_history_search_share")
VIEW_AND_TRIGGERS = [search.SQLITE_FORWARD[0], *search.SQLITE_FORWARD[2:5]]
DROP_VIEW_AND_TRIGGERS = [s for s in search.SQLITE_BACKWARD if "DROP TABLE" not in s]


def _on_sqlite(statements: list[str]):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "sqlite":
            for statement in statements:
                schema_editor.execute(statement)

    return run


def _best_copy(ChatModel, canonical_id: str):
    """The copy of `canonical_id` a provider-specific default would have been: usable first, by priority."""
    return (
        ChatModel.objects.filter(canonical_id=canonical_id)
        .order_by("-provider__enabled", "-enabled", "provider__priority", "provider__name", "pk")
        .first()
    )


def forward(apps, schema_editor):
    ChatModel = apps.get_model("conversations", "ChatModel")
    Conversation = apps.get_model("conversations", "Conversation")
    SiteSettings = apps.get_model("conversations", "SiteSettings")
    default = ChatModel.objects.filter(is_default=True).first()
    # Kept only when it differs from what the environment gives (CHAT_DEFAULT_MODEL, else gpt-4o): then an
    # admin chose it. Otherwise the environment stays in charge until an admin chooses.
    if default is not None and default.canonical_id != (settings.CHAT_DEFAULT_MODEL or "gpt-4o"):
        SiteSettings.objects.update_or_create(pk=1, defaults={"default_model": default.canonical_id})
    canonical = ChatModel.objects.filter(pk=OuterRef("model_id")).values("canonical_id")[:1]
    Conversation.objects.filter(model__isnull=False).update(canonical_model=Subquery(canonical))
    _check_constraints_now(schema_editor)


def backward(apps, schema_editor):
    ChatModel = apps.get_model("conversations", "ChatModel")
    Conversation = apps.get_model("conversations", "Conversation")
    SiteSettings = apps.get_model("conversations", "SiteSettings")
    site = SiteSettings.objects.filter(pk=1).first()
    default = (site.default_model if site is not None else "") or settings.CHAT_DEFAULT_MODEL or "gpt-4o"
    if not ChatModel.objects.filter(is_default=True).exists():
        chosen = _best_copy(ChatModel, default)
        if chosen is not None:
            ChatModel.objects.filter(pk=chosen.pk).update(is_default=True)
    orphans = Conversation.objects.filter(model__isnull=True).exclude(canonical_model="")
    for canonical_id in orphans.values_list("canonical_model", flat=True).distinct():
        chosen = _best_copy(ChatModel, canonical_id)
        if chosen is not None:
            orphans.filter(canonical_model=canonical_id).update(model=chosen)
    _check_constraints_now(schema_editor)


def _check_constraints_now(schema_editor):
    """PostgreSQL won't alter a table with deferred foreign-key checks pending in the same transaction."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0007_attachment_position"),
    ]

    operations = [
        migrations.CreateModel(
            name="SiteSettings",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "default_model",
                    models.CharField(
                        blank=True,
                        help_text="The canonical id of the model new chats start with, e.g. gpt-4o. Empty: "
                        "CHAT_DEFAULT_MODEL.",
                        max_length=200,
                    ),
                ),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={"verbose_name": "site settings", "verbose_name_plural": "site settings"},
        ),
        migrations.RunPython(_on_sqlite(DROP_VIEW_AND_TRIGGERS), _on_sqlite(VIEW_AND_TRIGGERS)),
        migrations.AddField(
            model_name="conversation",
            name="canonical_model",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name="conversation",
            name="model_pinned",
            field=models.BooleanField(
                default=False,
                help_text="Answer only through the copy above, never another provider's.",
                verbose_name="pinned to this provider's copy",
            ),
        ),
        migrations.RunPython(_on_sqlite(VIEW_AND_TRIGGERS), _on_sqlite(DROP_VIEW_AND_TRIGGERS)),
        migrations.RunPython(forward, backward),
        migrations.RemoveConstraint(
            model_name="chatmodel",
            name="chatmodel_one_default",
        ),
        migrations.RemoveField(
            model_name="chatmodel",
            name="is_default",
        ),
    ]
