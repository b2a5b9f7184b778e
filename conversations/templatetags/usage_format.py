"""Number formats for the usage pages: money with enough decimals to show small sums, counts with commas."""

from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def usd(value) -> str:
    value = Decimal(value or 0)
    if value and abs(value) < Decimal("0.01"):
        return f"${value:,.4f}"  # a few cheap answers would otherwise read as $0.00
    return f"${value:,.2f}"


@register.filter
def count(value) -> str:
    return f"{int(value or 0):,}"


@register.filter
def percent(value, places: int = 1) -> str:
    if value is None:
        return "—"
    return f"{float(value) * 100:.{int(places)}f}%"


@register.filter
def ms(value) -> str:
    return "—" if value is None else f"{int(value):,} ms"
