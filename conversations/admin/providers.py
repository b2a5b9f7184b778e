"""Admin pages for providers, their keys and models.

The provider key is write-only: the form never renders it, pages show only its last four characters, and the
audit log records that it changed, never what to. "Test connection" and "Sync models" are both list actions
and buttons on a provider's page; their work is in conversations.services.providers.
"""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, DecimalField, QuerySet
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import capfirst
from django.views.decorators.http import require_POST

from conversations import catalog
from conversations.admin.audit import AuditedAdmin
from conversations.admin.display import clipped, when, with_note
from conversations.llm import errors as llm_errors
from conversations.models import ChatModel, PersonalKey, Provider, SiteSettings
from conversations.services import audit, model_choices, providers

ADMIN_CSS = {"all": ["conversations/admin.css"]}


class ProviderForm(forms.ModelForm):
    # Never rendered with a value: the browser must not receive the key, not even in a password field.
    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the stored key. Stored encrypted.",
    )
    # https is what a bare "api.example.com" most likely means (and Django 6 will assume it).
    base_url = forms.URLField(
        assume_scheme="https", max_length=500, help_text=Provider._meta.get_field("base_url").help_text
    )
    clear_api_key = forms.BooleanField(label="Remove the stored key", required=False)

    class Meta:
        model = Provider
        fields = [
            "name", "kind", "base_url", "api_key", "clear_api_key", "organization", "project",
            "extra_headers", "enabled", "priority",
        ]  # fmt: skip

    def save(self, commit: bool = True) -> Provider:
        provider = super().save(commit=False)
        if self.cleaned_data.get("clear_api_key"):
            provider.api_key = ""
        elif self.cleaned_data.get("api_key"):
            provider.api_key = self.cleaned_data["api_key"]
        if commit:
            provider.save()
        return provider


class PriceInput(forms.NumberInput):
    """A price as people write it: "2.50", "0.075", not the stored "2.5000", so it fits a narrow column."""

    def format_value(self, value):
        if isinstance(value, Decimal):  # a form sent back with errors shows what was typed, as typed
            cents = value.quantize(Decimal("0.01"))
            value = f"{cents if cents == value else value.normalize():f}"
        return super().format_value(value)


PRICE_FIELDS = {DecimalField: {"widget": PriceInput}}


class ChatModelInline(admin.TabularInline):
    # The model list's everyday columns; the rest (cached price, output limit, groups) behind each row's "Change".
    model = ChatModel
    extra = 0
    fields = [
        "model_id", "display_name", "canonical_id", "supports_images", "context_window", "input_price",
        "output_price", "enabled",
    ]  # fmt: skip
    show_change_link = True
    formfield_overrides = PRICE_FIELDS

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        # A tabular inline's inputs have no <label>: each is named after its column.
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if field is not None and db_field.name in self.fields:
            field.widget.attrs.setdefault("aria-label", capfirst(db_field.verbose_name))
        return field


@admin.register(Provider)
class ProviderAdmin(AuditedAdmin):
    form = ProviderForm
    # Short columns, so the list fits a laptop: the full URL is in each cell's title, dates on the provider's page.
    list_display = ["name", "kind_short", "endpoint", "key", "model_count", "enabled", "priority"]
    list_editable = ["enabled", "priority"]  # priority is the fallback order between copies of one model
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "base_url"]
    readonly_fields = ["key", "created_at", "updated_at"]
    inlines = [ChatModelInline]
    actions = ["test_connection", "sync_models"]
    change_form_template = "admin/conversations/provider/change_form.html"

    class Media:
        css = ADMIN_CSS

    def get_queryset(self, request: HttpRequest) -> QuerySet[Provider]:
        return super().get_queryset(request).annotate(model_total=Count("models"))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        provider = self.get_object(request, unquote(object_id))
        preset = catalog.preset_for(provider) if provider is not None else None
        extra = {
            "env_differences": catalog.env_differences(provider) if provider is not None else [],
            "env_key": preset.key_env if preset else "",
        }
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def save_model(self, request: HttpRequest, obj: Provider, form, change: bool) -> None:
        obj.configured = True  # the admin has decided: bootstrap only updates its key from now on
        super().save_model(request, obj, form, change)

    def get_changelist_form(self, request, **kwargs):
        # Only the editable columns: Django's default builds every field, base_url's deprecated URLField too.
        return super().get_changelist_form(request, **{"fields": self.list_editable, **kwargs})

    @admin.display(description="Kind", ordering="kind")
    def kind_short(self, obj: Provider) -> str:
        return obj.get_kind_display().split(" (")[0]  # "OpenAI-compatible", without its list of servers

    @admin.display(description="Base URL", ordering="base_url")
    def endpoint(self, obj: Provider) -> str:
        return clipped(obj.base_url, 40)

    @admin.display(description="Key")
    def key(self, obj: Provider) -> str:
        return obj.api_key_hint or "—"

    @admin.display(description="Models", ordering="model_total")
    def model_count(self, obj: Provider) -> int:
        return getattr(obj, "model_total", 0)

    # --- Test connection and Sync models: list actions and buttons on the change page -----------------------

    def get_urls(self):
        own = [
            path(
                "<path:object_id>/test-connection/",
                self.admin_site.admin_view(require_POST(self.test_connection_view)),
                name="conversations_provider_test",
            ),
            path(
                "<path:object_id>/sync-models/",
                self.admin_site.admin_view(require_POST(self.sync_models_view)),
                name="conversations_provider_sync",
            ),
        ]
        return own + super().get_urls()

    def _provider_or_404(self, request: HttpRequest, object_id: str) -> Provider:
        provider = self.get_object(request, unquote(object_id))  # None for a malformed or unknown id
        if provider is None:
            raise Http404("No such provider.")
        if not self.has_change_permission(request, provider):
            raise PermissionDenied
        return provider

    def _back(self, provider: Provider) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:conversations_provider_change", args=[provider.pk]))

    def _test(self, request: HttpRequest, provider: Provider) -> None:
        report = providers.test_connection(provider)
        audit.record(
            request.user, "provider.tested", provider, report.message, ok=report.ok, list_ms=report.list_ms,
            total_ms=report.total_ms, model=report.model_id,
        )  # fmt: skip
        self.message_user(request, report.message, messages.SUCCESS if report.ok else messages.ERROR)

    def _sync(self, request: HttpRequest, provider: Provider) -> None:
        try:
            report = providers.sync_models(provider)
        except llm_errors.LLMError as exc:
            audit.record(request.user, "provider.sync_failed", provider, exc.user_message)
            self.message_user(request, f"{provider.name}: {exc.user_message}", messages.ERROR)
            return
        audit.record(
            request.user, "provider.synced", provider, report.message, created=report.created,
            updated=report.updated,
        )  # fmt: skip
        self.message_user(request, f"{provider.name}: {report.message}", messages.SUCCESS)

    def test_connection_view(self, request: HttpRequest, object_id: str):
        provider = self._provider_or_404(request, object_id)
        self._test(request, provider)
        return self._back(provider)

    def sync_models_view(self, request: HttpRequest, object_id: str):
        provider = self._provider_or_404(request, object_id)
        self._sync(request, provider)
        return self._back(provider)

    @admin.action(description="Test connection (list models and ask for one token)", permissions=["change"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        for provider in queryset:
            self._test(request, provider)

    @admin.action(description="Sync models from the provider's list", permissions=["change"])
    def sync_models(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        for provider in queryset:
            self._sync(request, provider)


@admin.register(ChatModel)
class ChatModelAdmin(AuditedAdmin):
    # Under the model id: its provider (with the fallback order), "default", and the groups it is limited to; so the
    # row fits a laptop.
    list_display = [
        "model_key", "display_name", "supports_images", "context_window", "input_price", "output_price", "enabled"
    ]  # fmt: skip
    list_display_links = ["model_key"]
    # The everyday edits in one go; cached prices, output limits and retirement dates are on each model's page.
    list_editable = [
        "display_name",
        "supports_images",
        "context_window",
        "input_price",
        "output_price",
        "enabled",
    ]
    list_filter = ["enabled", "supports_images", "provider", "allowed_groups"]
    search_fields = ["display_name", "model_id", "canonical_id"]
    list_select_related = ["provider"]
    # Copies of one model next to each other, in the order they are tried.
    ordering = ["canonical_id", "provider__priority", "provider__name"]
    filter_horizontal = ["allowed_groups"]
    formfield_overrides = PRICE_FIELDS
    actions = ["enable", "disable", "make_default"]
    list_per_page = 50

    class Media:
        css = ADMIN_CSS

    def get_queryset(self, request: HttpRequest) -> QuerySet[ChatModel]:
        return super().get_queryset(request).annotate(group_total=Count("allowed_groups"))

    def changelist_view(self, request: HttpRequest, extra_context=None):
        self._default_model = SiteSettings.default_model_id()  # one query for the page's "default" notes
        return super().changelist_view(request, extra_context)

    _default_model = ""

    @admin.display(description="Model id / provider (order)", ordering="model_id")
    def model_key(self, obj: ChatModel) -> str:  # not "model": that is ModelAdmin's model class
        note = format_html("{} ({})", clipped(obj.provider.name, 24), obj.provider.priority)
        if obj.canonical_id == self._default_model:
            note = format_html("{} · default", note)
        if getattr(obj, "group_total", 0):
            note = format_html("{} · {}", note, self.groups(obj))
        return with_note(clipped(obj.model_id, 32), note)

    @admin.display(description="Groups")
    def groups(self, obj: ChatModel) -> str:
        count = getattr(obj, "group_total", 0)
        return "everyone" if not count else f"{count} group{'s' if count != 1 else ''}"

    @admin.action(description="Enable selected models", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[ChatModel]) -> None:
        names = list(queryset.values_list("model_id", flat=True))
        count = queryset.update(enabled=True)
        model_choices.catalogue_changed()  # update() sends no signal
        audit.record(request.user, "chatmodel.enabled", None, f"Enabled {count} models", models=names)
        self.message_user(request, f"Enabled {count} models.", messages.SUCCESS)

    @admin.action(description="Disable selected models", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[ChatModel]) -> None:
        names = list(queryset.values_list("model_id", flat=True))
        count = queryset.update(enabled=False)
        model_choices.catalogue_changed()  # update() sends no signal
        audit.record(request.user, "chatmodel.disabled", None, f"Disabled {count} models", models=names)
        self.message_user(request, f"Disabled {count} models.", messages.SUCCESS)

    @admin.action(description="Make the selected model the default (whichever provider serves it)",
                  permissions=["change"])  # fmt: skip
    def make_default(self, request: HttpRequest, queryset: QuerySet[ChatModel]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model to make it the default.", messages.ERROR)
            return
        chosen = queryset.get()
        chosen.enabled = True
        chosen.save(update_fields=["enabled", "updated_at"])
        site = SiteSettings.load()
        site.default_model = chosen.canonical_id
        site.save()
        audit.record(request.user, "chatmodel.made_default", chosen, f"Default model: {chosen.canonical_id}")
        self.message_user(
            request,
            f"{chosen.display_name} ({chosen.canonical_id}) is now the default model, on every provider serving it.",
            messages.SUCCESS,
        )


@admin.register(PersonalKey)
class PersonalKeyAdmin(admin.ModelAdmin):
    """Which users brought their own key, and for which provider: the hint only. Admins may revoke a key."""

    list_display = ["owner", "provider_name", "key", "updated"]
    list_filter = ["provider"]
    search_fields = ["user__username"]
    list_select_related = ["user", "provider"]
    fields = ["user", "provider", "key", "created_at", "updated_at"]
    readonly_fields = fields

    @admin.display(description="User", ordering="user__username")
    def owner(self, obj: PersonalKey) -> str:
        return clipped(obj.user.username, 32)

    @admin.display(description="Provider", ordering="provider__name")
    def provider_name(self, obj: PersonalKey) -> str:
        return clipped(obj.provider.name, 32)

    @admin.display(description="Key")
    def key(self, obj: PersonalKey) -> str:
        return obj.api_key_hint

    @admin.display(description="Updated", ordering="updated_at")
    def updated(self, obj: PersonalKey) -> str:
        return when(obj.updated_at)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def log_deletions(self, request, queryset):
        for key in queryset:
            audit.record(request.user, "personal_key.revoked", key.provider, f"Revoked the key of {key.user}")
        return super().log_deletions(request, queryset)


class SiteSettingsForm(forms.ModelForm):
    default_model = forms.ChoiceField(
        label="Default model",
        required=False,
        help_text="New chats start with it, on the first enabled provider serving it (by priority). Empty: "
        "CHAT_DEFAULT_MODEL.",
    )

    class Meta:
        model = SiteSettings
        fields = ["default_model"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        known = sorted(set(ChatModel.objects.values_list("canonical_id", flat=True)))
        self.fields["default_model"].choices = [("", "— CHAT_DEFAULT_MODEL —")] + [(c, c) for c in known]


@admin.register(SiteSettings)
class SiteSettingsAdmin(AuditedAdmin):
    form = SiteSettingsForm
    list_display = ["__str__", "default_model"]

    def has_add_permission(self, request) -> bool:
        return not SiteSettings.objects.exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
