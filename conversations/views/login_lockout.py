"""The answer to a locked-out login (django-axes calls `locked_out`, settings.AXES_LOCKOUT_CALLABLE): the
same login page, 429, saying how long to wait. The admin's login gets the admin's own login page."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from conversations.forms import LoginForm
from conversations.services import login_limits


def message(minutes: int) -> str:
    return f"Too many attempts, try again in {minutes} minute{'s' if minutes != 1 else ''}."


def locked_out(request: HttpRequest, original_response=None, credentials: dict | None = None) -> HttpResponse:
    username = (credentials or {}).get("username") or request.POST.get("username") or None
    minutes = login_limits.minutes_until_unlocked(username, getattr(request, "axes_ip_address", None))
    text = message(minutes)
    data = {"username": username or ""}  # never the password
    if request.path == reverse("admin:login"):
        form = AdminAuthenticationForm(request, data=data)
        form.errors.clear()  # only our message, not "This field is required." for the password
        form.add_error(None, text)
        context = {
            **admin.site.each_context(request),
            "form": form,
            "title": "Log in",
            "app_path": request.path,
        }
        return render(request, "admin/login.html", context, status=429)
    form = LoginForm(request, data=data)
    form.errors.clear()
    form.add_error(None, text)
    return render(request, "registration/login.html", {"form": form}, status=429)
