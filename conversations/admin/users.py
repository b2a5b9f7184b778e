"""The user admin: approve sign-ups, deactivate, quotas inline, this month's usage at a glance; and groups,
which decide who may pick which model (ChatModel.allowed_groups).

Django's UserAdmin is re-registered with an inline and two actions; password resets are Django's own form.
Deactivation takes effect at once everywhere: HTTP requests of an inactive user are anonymous, and every
websocket command re-checks is_active (conversations.services.access.user_from_session).
"""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from conversations.admin.audit import AuditedAdmin, changed_fields
from conversations.admin.display import clipped, compact_count, when, with_note
from conversations.models import UserQuota
from conversations.services import audit, login_limits, quotas, usage

User = get_user_model()


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("pending", "Awaiting approval"), ("deactivated", "Deactivated")]

    def queryset(self, request, queryset):
        # A sign-up waiting for approval is inactive and has never logged in; one that has is deactivated.
        if self.value() == "active":
            return queryset.filter(is_active=True)
        if self.value() == "pending":
            return queryset.filter(is_active=False, last_login__isnull=True)
        if self.value() == "deactivated":
            return queryset.filter(is_active=False, last_login__isnull=False)
        return queryset


class UserQuotaForm(forms.ModelForm):
    class Meta:
        model = UserQuota
        fields = ["daily_budget", "monthly_budget", "daily_tokens", "monthly_tokens", "turns_per_minute"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        site = quotas.site_limits()
        defaults = {
            "daily_budget": _shown(site.daily_budget, quotas.money),
            "monthly_budget": _shown(site.monthly_budget, quotas.money),
            "daily_tokens": _shown(site.daily_tokens, quotas.tokens),
            "monthly_tokens": _shown(site.monthly_tokens, quotas.tokens),
            "turns_per_minute": _shown(site.turns_per_minute, str),
        }
        for name, default in defaults.items():
            self.fields[name].help_text = f"Empty: the site default ({default}). 0: no limit."


def _shown(value, fmt) -> str:
    return "no limit" if value is None else fmt(value)


class UserQuotaInline(admin.StackedInline):
    model = UserQuota
    form = UserQuotaForm
    can_delete = True
    max_num = 1
    extra = 1
    verbose_name = "quota"
    verbose_name_plural = "quota (overrides the site defaults)"


class UserChangeForm(DjangoUserAdmin.form):
    unlock_login = forms.BooleanField(
        required=False,
        label="Unlock login",
        help_text="Forget this user's failed logins, so a locked-out user can log in again now.",
    )


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(AuditedAdmin, DjangoUserAdmin):
    inlines = [UserQuotaInline]
    change_form_template = "admin/auth/user/change_form_quota_first.html"  # the quota near the top
    # The email under the user name; tokens compact (exact in the title and on the user's page).
    list_display = ["user", "status", "is_staff", "month_cost", "month_tokens_short", "last_seen"]
    list_display_links = ["user"]
    list_filter = [StatusFilter, "is_staff", "is_superuser", "groups"]
    form = UserChangeForm
    fieldsets = [
        *DjangoUserAdmin.fieldsets,
        ("Login attempts", {"fields": ["login_lock", "unlock_login"]}),
        ("Usage this month", {"fields": ["month_cost", "month_tokens"]}),
    ]
    readonly_fields = ["month_cost", "month_tokens", "login_lock"]
    actions = ["approve", "deactivate"]
    ordering = ["-date_joined"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return usage.with_month_usage(super().get_queryset(request))

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # the add form is Django's two-step one

    @admin.display(description="Username / email", ordering="username")
    def user(self, obj) -> str:
        return (
            with_note(clipped(obj.username, 32), clipped(obj.email, 40))
            if obj.email
            else clipped(obj.username, 32)
        )

    @admin.display(description="Last login", ordering="last_login")
    def last_seen(self, obj) -> str:
        return when(obj.last_login)

    @admin.display(description="Status", ordering="is_active")
    def status(self, obj) -> str:
        if obj.is_active:
            return "active"
        return "awaiting approval" if obj.last_login is None else "deactivated"

    @admin.display(description="Login")
    def login_lock(self, obj) -> str | SafeString:
        status = login_limits.status_for_username(obj.get_username())
        if status.locked:
            return format_html(
                "Locked out until {} ({} failed attempts).", when(status.locked_until), status.failures
            )
        if status.failures:
            return f"Not locked ({status.failures} recent failed attempts)."
        return "Not locked."

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if change and form.cleaned_data.get("unlock_login"):
            removed = login_limits.unlock(obj)
            audit.record(request.user, "user.unlocked", obj, failed_logins_forgotten=removed)
            self.message_user(request, f"{obj.get_username()} can log in again.", messages.SUCCESS)

    @admin.display(description="Cost this month", ordering="month_cost")
    def month_cost(self, obj) -> str:
        return quotas.money(getattr(obj, "month_cost", None) or Decimal(0))

    @admin.display(description="Tokens this month", ordering="month_tokens")
    def month_tokens(self, obj) -> str:
        return f"{getattr(obj, 'month_tokens', 0) or 0:,}"

    @admin.display(description="Tokens this month", ordering="month_tokens")
    def month_tokens_short(self, obj) -> str:
        return compact_count(getattr(obj, "month_tokens", 0))  # exact in the cell's title; on the user's page

    # --- Actions ------------------------------------------------------------------------------------------

    @admin.action(description="Approve / activate selected users", permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = 0
        for user in queryset.filter(is_active=False):
            user.is_active = True
            user.save(update_fields=["is_active"])  # a save, not update(): the audit signal records it
            count += 1
        self.message_user(request, f"Activated {count} user{'s' if count != 1 else ''}.", messages.SUCCESS)

    @admin.action(description="Deactivate selected users", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet) -> None:
        if queryset.filter(pk=request.user.pk).exists():
            self.message_user(request, "You can't deactivate your own account.", messages.ERROR)
            return
        count = 0
        for user in queryset.filter(is_active=True):
            user.is_active = False
            user.save(update_fields=["is_active"])
            count += 1
        self.message_user(
            request,
            f"Deactivated {count} user{'s' if count != 1 else ''}. Their open chats stop working at once.",
            messages.SUCCESS,
        )

    # --- Audit --------------------------------------------------------------------------------------------

    def audit_change(self, request, obj, message) -> bool:
        # Activation has its own entry (the signal); quota values are recorded by save_formset.
        return bool(set(changed_fields(message)) - {"Active", "USD per day", "USD per month", "tokens per day",
                                                    "tokens per month", "messages per minute"})  # fmt: skip

    def save_formset(self, request, form, formset, change) -> None:
        if formset.model is UserQuota:
            for quota_form in formset.forms:
                if not quota_form.has_changed():
                    continue
                fields = UserQuotaForm.Meta.fields
                before = {name: quota_form.initial.get(name) for name in fields}
                deleting = formset.can_delete and formset._should_delete_form(quota_form)
                after = {name: None if deleting else quota_form.cleaned_data.get(name) for name in fields}
                changes = audit.value_changes(before, after)
                if changes:
                    audit.record(request.user, "quota.changed", form.instance, changes=changes)
        super().save_formset(request, form, formset, change)


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(AuditedAdmin, DjangoGroupAdmin):
    """Groups also limit models: a model with allowed groups is offered only to their members."""
