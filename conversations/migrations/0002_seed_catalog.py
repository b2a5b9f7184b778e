"""Seed the OpenAI provider (disabled until a key is given) with the built-in model catalog."""

from django.db import migrations

from conversations.catalog import DEFAULT_CANONICAL_ID, PRESETS, ensure_catalog


def seed(apps, schema_editor):
    Provider = apps.get_model("conversations", "Provider")
    ChatModel = apps.get_model("conversations", "ChatModel")
    openai = PRESETS[0]
    provider, _ = Provider.objects.get_or_create(
        name=openai.name,
        defaults={
            "kind": openai.kind,
            "base_url": openai.base_url,
            "priority": openai.priority,
            "enabled": False,
        },
    )
    ensure_catalog(provider, ChatModel)
    if not ChatModel.objects.filter(is_default=True).exists():
        ChatModel.objects.filter(provider=provider, model_id=DEFAULT_CANONICAL_ID).update(is_default=True)


class Migration(migrations.Migration):
    dependencies = [("conversations", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
