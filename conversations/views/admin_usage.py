"""The admin's usage dashboard and its CSV export. Thin: the figures come from conversations.services.usage.

Wired in chatsite/urls.py through admin.site.admin_view (admin login, staff only); reading usage also needs
the permission to view messages, since it shows what each user spent.
"""

from __future__ import annotations

import csv
import datetime as dt

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from conversations.services import charts, usage
from conversations.views import downloads

DEFAULT_DAYS = 30


class RangeForm(forms.Form):
    start = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end:
            if start > end:
                raise forms.ValidationError("The start date must be on or before the end date.")
            if (end - start).days >= usage.MAX_RANGE_DAYS:
                raise forms.ValidationError(f"Pick a range of at most {usage.MAX_RANGE_DAYS} days.")
        return data


def _range(request: HttpRequest) -> tuple[RangeForm, dt.date, dt.date]:
    today = timezone.localdate()
    default = {"start": today - dt.timedelta(days=DEFAULT_DAYS - 1), "end": today}
    form = RangeForm(request.GET if "start" in request.GET else None, initial=default)
    if form.is_bound and form.is_valid():
        return form, form.cleaned_data["start"], form.cleaned_data["end"]
    return form, default["start"], default["end"]


def _allowed(request: HttpRequest) -> None:
    if not request.user.has_perm("conversations.view_message"):
        raise PermissionDenied


def dashboard(request: HttpRequest) -> HttpResponse:
    _allowed(request)
    form, start, end = _range(request)
    board = usage.dashboard(start, end)
    uptime = [
        (p, charts.uptime_strip(p.name, [(d.day, d.answers, d.errors, d.uptime) for d in p.days]))
        for p in board.providers
    ]
    context = {
        **admin.site.each_context(request),
        "title": "Usage",
        "form": form,
        "board": board,
        "uptime": uptime,
        "day_rows": [(day, board.by_day[day]) for day in reversed(board.days) if board.by_day[day].turns],
        "time_zone": timezone.get_current_timezone_name(),
    }
    return render(request, "admin/usage_dashboard.html", context)


def export_csv(request: HttpRequest) -> HttpResponse:
    _allowed(request)
    _, start, end = _range(request)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = downloads.attachment(f"usage-{start}-{end}.csv")
    writer = csv.writer(response)
    for row in usage.csv_rows(start, end):
        # Usernames, model and provider names may start with = + - @ tab or CR (CSV injection).
        writer.writerow([downloads.csv_cell(value) for value in row])
    return response
