"""What the admin index shows above the apps: sign-ups waiting for approval (templates/admin/index.html)."""

from django import template
from django.contrib.auth import get_user_model

register = template.Library()


@register.simple_tag
def pending_signups() -> int:
    """Sign-ups waiting for approval: inactive and never logged in (the users list's "Awaiting approval")."""
    return get_user_model()._default_manager.filter(is_active=False, last_login__isnull=True).count()
