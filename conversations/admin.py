"""Django admin for every model. The provider key is write-only: the admin shows only its last four characters."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from conversations.models import Attachment, ChatModel, Conversation, Message, Provider


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


class ChatModelInline(admin.TabularInline):
    model = ChatModel
    extra = 0
    fields = ["model_id", "display_name", "canonical_id", "supports_images", "context_window", "enabled"]
    show_change_link = True


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["name", "kind", "base_url", "key", "enabled", "priority", "updated_at"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "base_url"]
    readonly_fields = ["key", "created_at", "updated_at"]
    inlines = [ChatModelInline]

    @admin.display(description="Key")
    def key(self, obj: Provider) -> str:
        return obj.api_key_hint or "—"


@admin.register(ChatModel)
class ChatModelAdmin(admin.ModelAdmin):
    list_display = [
        "display_name", "model_id", "provider", "supports_images", "context_window", "input_price",
        "output_price", "enabled", "is_default", "retired_on",
    ]  # fmt: skip
    list_filter = ["enabled", "supports_images", "provider", "is_default"]
    list_editable = ["enabled"]
    search_fields = ["display_name", "model_id", "canonical_id"]
    list_select_related = ["provider"]


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ["role", "status", "short_content", "model_name", "completion_tokens", "cost", "created_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    @admin.display(description="Content")
    def short_content(self, obj: Message) -> str:
        return obj.content[:120]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "owner", "model", "pinned", "archived", "updated_at"]
    list_filter = ["archived", "pinned", "created_at"]
    search_fields = ["title", "owner__username", "public_id"]
    list_select_related = ["owner", "model__provider"]
    raw_id_fields = ["owner", "current_leaf"]
    readonly_fields = ["public_id", "created_at", "updated_at"]
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "public_id", "conversation", "role", "status", "model_name", "provider_name", "prompt_tokens",
        "completion_tokens", "cost", "created_at",
    ]  # fmt: skip
    list_filter = ["role", "status", "provider_name", "created_at"]
    search_fields = ["public_id", "conversation__public_id", "model_name"]
    list_select_related = ["conversation"]
    raw_id_fields = ["conversation", "parent", "model", "provider"]
    readonly_fields = ["public_id", "created_at", "updated_at", "heartbeat_at"]


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    list_display = ["public_id", "owner", "mime", "width", "height", "bytes", "created_at"]
    list_filter = ["mime", "created_at"]
    search_fields = ["public_id", "sha256", "owner__username"]
    raw_id_fields = ["owner", "message"]
    readonly_fields = ["public_id", "sha256", "created_at"]
