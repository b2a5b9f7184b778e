"""Provider.configured: whether a provider was ever set up (by manage.py bootstrap or an admin).

Bootstrap used to set up from the environment any provider without a key, switching it on and resetting its
base URL and priority: also one whose key an admin removed when switching it off. Now only the row migration
0002 seeds (switched off, no key) counts as never set up. Existing rows: those switched off without a key are
taken for that seed (an admin who removed a key before this migration can't be told apart); all others are
set up. Reversible: the column goes.
"""

from django.db import migrations, models


def mark_the_seed(apps, schema_editor):
    Provider = apps.get_model("conversations", "Provider")
    Provider.objects.filter(enabled=False, api_key_encrypted="").update(configured=False)


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0013_price_units"),
    ]

    operations = [
        migrations.AddField(
            model_name="provider",
            name="configured",
            field=models.BooleanField(default=True, editable=False),
        ),
        migrations.RunPython(mark_the_seed, migrations.RunPython.noop),
    ]
