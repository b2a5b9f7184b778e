"""Admin pages for what users make: conversations, messages, attachments."""

from __future__ import annotations

from django.contrib import admin

from conversations.models import Attachment, Conversation, Message


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
