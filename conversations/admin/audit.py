"""Auditing admin changes, and the read-only audit log page.

`AuditedAdmin` turns Django's own admin history hooks (log_addition / log_change / log_deletions, which every
add, change, delete and password reset goes through) into AuditEntry rows too. Django's change messages name
the fields that changed, never their values, so no secret can leak into the log this way.
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.http import HttpRequest

from conversations.admin.display import clipped, when, with_note
from conversations.models import AuditEntry
from conversations.services import audit


def describe(message) -> str:
    """Django's change message (a list of dicts, or text) as a sentence."""
    if isinstance(message, list):
        return LogEntry(change_message=json.dumps(message)).get_change_message()
    return str(message or "")


def changed_fields(message) -> list[str]:
    fields: list[str] = []
    if isinstance(message, list):
        for part in message:
            for detail in part.values():
                fields.extend(detail.get("fields", []) if isinstance(detail, dict) else [])
    return fields


class AuditedAdmin(admin.ModelAdmin):
    """Records every add, change and delete made through this admin page in the audit log."""

    def changeform_view(self, request: HttpRequest, *args, **kwargs):
        with audit.acting_as(request.user):  # signals fired while saving know who did it
            return super().changeform_view(request, *args, **kwargs)

    def changelist_view(self, request: HttpRequest, *args, **kwargs):
        with audit.acting_as(request.user):  # actions and list_editable run inside the changelist view
            return super().changelist_view(request, *args, **kwargs)

    def delete_view(self, request: HttpRequest, *args, **kwargs):
        with audit.acting_as(request.user):
            return super().delete_view(request, *args, **kwargs)

    def audit_change(self, request: HttpRequest, obj, message) -> bool:
        """Whether a change deserves an entry (subclasses skip changes recorded elsewhere)."""
        return True

    def log_addition(self, request, obj, message):
        entry = super().log_addition(request, obj, message)
        audit.record(
            request.user,
            f"{obj._meta.model_name}.created",
            obj,
            describe(message),
            fields=changed_fields(message),
        )
        return entry

    def log_change(self, request, obj, message):
        entry = super().log_change(request, obj, message)
        if self.audit_change(request, obj, message):
            audit.record(
                request.user,
                f"{obj._meta.model_name}.changed",
                obj,
                describe(message),
                fields=changed_fields(message),
            )
        return entry

    def log_deletions(self, request, queryset):
        for obj in queryset:
            audit.record(request.user, f"{obj._meta.model_name}.deleted", obj)
        return super().log_deletions(request, queryset)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read only: an audit log nobody can edit from the site."""

    # The type and target in one column; long names and summaries are cut, whole in the cell's title.
    list_display = ["at", "by", "action", "on", "summary_short"]
    list_filter = ["action", "target_type", "created_at"]
    search_fields = ["actor_name", "action", "target_repr", "target_id", "summary"]
    date_hierarchy = "created_at"
    list_select_related = False
    readonly_fields = [
        "created_at", "actor", "actor_name", "action", "target_type", "target_id", "target_repr", "summary",
        "details",
    ]  # fmt: skip
    fields = readonly_fields

    @admin.display(description="When", ordering="created_at")
    def at(self, obj: AuditEntry) -> str:
        return when(obj.created_at)

    @admin.display(description="By", ordering="actor_name")
    def by(self, obj: AuditEntry) -> str:
        return clipped(obj.actor_name, 20)

    @admin.display(description="Target", ordering="target_type")
    def on(self, obj: AuditEntry) -> str:
        if not obj.target_type:
            return clipped(obj.target_repr, 32) or "—"
        return with_note(clipped(obj.target_repr, 32), obj.target_type)

    @admin.display(description="Summary")
    def summary_short(self, obj: AuditEntry) -> str:
        return clipped(obj.summary, 80)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
