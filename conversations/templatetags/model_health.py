"""The admin index's warning when no enabled provider serves the site default (catalog.unserved_default_warning)."""

from django import template

from conversations import catalog

register = template.Library()


@register.simple_tag
def default_model_warning() -> str:
    """Two cheap queries, on the admin index only."""
    return catalog.unserved_default_warning()
