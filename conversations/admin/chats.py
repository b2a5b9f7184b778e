"""Admin pages for what users make: conversations, messages, attachments."""

from __future__ import annotations

from django.contrib import admin
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html

from conversations.admin.display import clipped, compact_count, when, with_note
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
    list_display = ["conversation", "owner_name", "model_name", "pinned", "archived", "updated"]
    list_filter = ["archived", "pinned", "created_at"]
    search_fields = ["title", "owner__username", "public_id"]
    list_select_related = ["owner", "model"]
    raw_id_fields = ["owner", "current_leaf"]
    readonly_fields = ["public_id", "created_at", "updated_at"]
    inlines = [MessageInline]

    @admin.display(description="Conversation", ordering="title")
    def conversation(self, obj: Conversation) -> str:
        return clipped(str(obj), 60)

    @admin.display(description="Owner", ordering="owner__username")
    def owner_name(self, obj: Conversation) -> str:
        return clipped(obj.owner.username, 20)

    @admin.display(description="Model", ordering="canonical_model")
    def model_name(self, obj: Conversation) -> str:
        """The canonical model the chat continues with; a pinned chat names its copy's provider."""
        if obj.model_pinned and obj.model:
            return clipped(f"{obj.model.model_id} (pinned)", 32)
        return clipped(obj.canonical_model or (obj.model.canonical_id if obj.model else "—"), 24)

    @admin.display(description="Updated", ordering="updated_at")
    def updated(self, obj: Conversation) -> str:
        return when(obj.updated_at)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    # One column for the model and its provider, one for tokens in/out; exact values are in the cells' titles.
    list_display = [
        "short_id",
        "in_conversation",
        "role_status",
        "served_by",
        "tokens",
        "cost_usd",
        "created",
    ]
    list_filter = ["role", "status", "provider_name", "created_at"]
    search_fields = ["public_id", "conversation__public_id", "model_name"]
    list_select_related = ["conversation"]
    raw_id_fields = ["conversation", "parent", "model", "provider"]
    readonly_fields = ["public_id", "created_at", "updated_at", "heartbeat_at"]

    @admin.display(description="Id", ordering="public_id")
    def short_id(self, obj: Message) -> str:
        return format_html('<span title="{}">{}…</span>', obj.public_id, str(obj.public_id)[:8])

    @admin.display(description="Conversation", ordering="conversation__title")
    def in_conversation(self, obj: Message) -> str:
        return clipped(str(obj.conversation), 40)

    @admin.display(description="Role / status", ordering="role")
    def role_status(self, obj: Message) -> str:
        return with_note(obj.get_role_display(), obj.get_status_display())

    @admin.display(description="Model / provider", ordering="model_name")
    def served_by(self, obj: Message) -> str:
        if not obj.model_name:
            return "—"
        return with_note(clipped(obj.model_name, 28), clipped(obj.provider_name, 28))

    @admin.display(description="Tokens in / out", ordering="prompt_tokens")
    def tokens(self, obj: Message) -> str:
        if obj.prompt_tokens is None and obj.completion_tokens is None:
            return "—"
        return format_html("{} / {}", compact_count(obj.prompt_tokens), compact_count(obj.completion_tokens))

    @admin.display(description="Cost", ordering="cost")
    def cost_usd(self, obj: Message) -> str:
        if obj.cost is None:
            return "—"
        shown = f"{obj.cost:,.2f}" if obj.cost >= 1 else f"{obj.cost:.4f}"
        return format_html('<span title="${}">${}</span>', obj.cost, shown)

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: Message) -> str:
        return when(obj.created_at)


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    list_display = ["short_id", "owner_name", "mime", "size", "file_size", "created"]
    list_select_related = ["owner"]
    list_filter = ["mime", "created_at"]
    search_fields = ["public_id", "sha256", "owner__username"]
    raw_id_fields = ["owner", "message"]
    readonly_fields = ["public_id", "sha256", "created_at"]

    @admin.display(description="Id", ordering="public_id")
    def short_id(self, obj: Attachment) -> str:
        return format_html('<span title="{}">{}…</span>', obj.public_id, str(obj.public_id)[:8])

    @admin.display(description="Owner", ordering="owner__username")
    def owner_name(self, obj: Attachment) -> str:
        return clipped(obj.owner.username, 20)

    @admin.display(description="Pixels", ordering="width")
    def size(self, obj: Attachment) -> str:
        return f"{obj.width}x{obj.height}"

    @admin.display(description="Bytes", ordering="bytes")
    def file_size(self, obj: Attachment) -> str:
        return format_html('<span title="{} bytes">{}</span>', f"{obj.bytes:,}", filesizeformat(obj.bytes))

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: Attachment) -> str:
        return when(obj.created_at)
