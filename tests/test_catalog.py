"""The seeded model catalog and the environment bootstrap."""

from decimal import Decimal

import pytest

from conversations.catalog import bootstrap_from_environment
from conversations.models import ChatModel, Provider, SiteSettings

pytestmark = pytest.mark.django_db


def test_it_seeds_the_catalog_with_prices_from_the_api_notes():
    openai = Provider.objects.get(name="OpenAI")
    assert openai.kind == "openai" and not openai.enabled  # no key yet
    models = {m.model_id: m for m in openai.models.all()}
    assert set(models) == {
        "gpt-4o", "gpt-4o-2024-05-13", "gpt-4o-2024-08-06", "chatgpt-4o-latest", "gpt-4o-mini", "gpt-4",
        "gpt-4-turbo",
    }  # fmt: skip
    gpt4o = models["gpt-4o"]
    assert (gpt4o.context_window, gpt4o.max_output_tokens) == (128_000, 16_384)
    assert (gpt4o.input_price, gpt4o.cached_input_price, gpt4o.output_price) == (
        Decimal("2.50"), Decimal("1.25"), Decimal("10.00"),
    )  # fmt: skip
    assert gpt4o.supports_images and SiteSettings.default_model_id() == "gpt-4o"
    assert models["gpt-4o-2024-05-13"].max_output_tokens == 4_096
    assert models["gpt-4o-mini"].output_price == Decimal("0.60")
    assert not models["gpt-4"].supports_images
    assert models["gpt-4"].context_window == 8_192
    # Retired by OpenAI in 2026: kept for history, not offered.
    assert not models["gpt-4"].enabled and not models["chatgpt-4o-latest"].enabled


def test_it_creates_providers_from_api_keys_and_is_idempotent(settings):
    settings.CHAT_DEFAULT_MODEL = "gpt-4o-mini"  # what the command's process reads from the same environment
    env = {
        "OPENAI_API_KEY": "sk-openai-1111",
        "OPENAI_ORGANIZATION": "org-1",
        "OPENROUTER_API_KEY": "sk-or-2222",
        "AIMLAPI_API_KEY": "aiml-3333",
        "CHAT_DEFAULT_MODEL": "gpt-4o-mini",
    }
    bootstrap_from_environment(env)
    snapshot = list(ChatModel.objects.order_by("pk").values_list("pk", "model_id", "enabled"))
    bootstrap_from_environment(env)
    assert list(ChatModel.objects.order_by("pk").values_list("pk", "model_id", "enabled")) == snapshot

    openai = Provider.objects.get(name="OpenAI")
    assert (openai.enabled, openai.kind, openai.organization, openai.api_key) == (
        True, "openai", "org-1", "sk-openai-1111",
    )  # fmt: skip
    openrouter = Provider.objects.get(name="OpenRouter")
    assert openrouter.kind == "openrouter" and openrouter.base_url == "https://openrouter.ai/api/v1"
    assert openrouter.models.filter(model_id="openai/gpt-4o", canonical_id="gpt-4o").exists()
    assert Provider.objects.get(name="AI/ML API").models.filter(model_id="gpt-4o-mini").exists()
    assert SiteSettings.default_model_id() == "gpt-4o-mini"  # a canonical model, not one provider's copy


def test_it_speaks_the_generic_dialect_to_a_local_base_url():
    bootstrap_from_environment({"OPENAI_API_KEY": "x", "OPENAI_BASE_URL": "http://127.0.0.1:9999/v1/"})
    provider = Provider.objects.get(name="OpenAI")
    assert (provider.kind, provider.base_url, provider.enabled) == (
        "openai_compatible", "http://127.0.0.1:9999/v1", True,
    )  # fmt: skip


def test_it_updates_a_changed_key():
    bootstrap_from_environment({"OPENAI_API_KEY": "sk-old"})
    bootstrap_from_environment({"OPENAI_API_KEY": "sk-new"})
    assert Provider.objects.get(name="OpenAI").api_key == "sk-new"


def test_it_rejects_an_unknown_default_model():
    with pytest.raises(LookupError, match="gpt-5-ultra"):
        bootstrap_from_environment({"CHAT_DEFAULT_MODEL": "gpt-5-ultra"})


def test_the_default_is_one_canonical_model_and_the_admins_choice_survives_the_environment():
    lines = bootstrap_from_environment({"CHAT_DEFAULT_MODEL": "openai/gpt-4o", "OPENROUTER_API_KEY": "k"})
    assert "Default model: gpt-4o" in lines  # a provider's id names its canonical model
    site = SiteSettings.load()
    site.default_model = "gpt-4o-mini"  # the admin chose
    site.save()
    lines = bootstrap_from_environment({"CHAT_DEFAULT_MODEL": "gpt-4o", "OPENROUTER_API_KEY": "k"})
    assert SiteSettings.default_model_id() == "gpt-4o-mini"
    assert "chosen in the admin; CHAT_DEFAULT_MODEL=gpt-4o ignored" in "\n".join(lines)


def test_it_prices_a_call_with_cached_tokens():
    gpt4o = ChatModel.objects.get(model_id="gpt-4o")
    # 1,000 prompt tokens of which 400 cached, 500 completion tokens:
    # 600 * 2.50 + 400 * 1.25 + 500 * 10.00 = 7,000 per million -> $0.007
    assert gpt4o.cost(1000, 500, 400) == Decimal("0.007000")
    assert ChatModel.objects.get(model_id="gpt-4").cost(1000, 1000) == Decimal("0.090000")
