"""The user's settings page: account details (and signing out everywhere else), custom instructions, their quotas and what is used, and personal
API keys.

Thin: the keys are conversations.services.personal_keys, the quota figures conversations.services.quotas, the
instructions conversations.services.custom_instructions.
A key is posted once and never sent back to the browser: the page shows only its last four characters.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from conversations.services import custom_instructions, personal_keys, quotas, sessions
from conversations.services.errors import ServiceError


@sensitive_post_parameters("api_key")
@require_http_methods(["GET", "POST"])
@login_required
def page(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        try:
            if request.POST.get("action") == "instructions":
                custom_instructions.save(
                    request.user,
                    request.POST.get("about_user", ""),
                    request.POST.get("response_style", ""),
                    request.POST.get("enabled") == "on",
                )
                messages.success(request, "Your custom instructions were saved. They apply to every chat.")
            elif request.POST.get("action") == "sign_out_others":
                ended = sessions.end_other_sessions(request.user, request.session.session_key)
                messages.success(
                    request,
                    "You were signed out everywhere else."
                    if ended
                    else "You were not signed in anywhere else.",
                )
            elif request.POST.get("action") == "remove":
                personal_keys.remove_key(request.user, request.POST.get("provider", ""))
                messages.success(request, "Your key was removed.")
            else:
                personal_keys.set_key(
                    request.user, request.POST.get("provider", ""), request.POST.get("api_key", "")
                )
                messages.success(request, "Your key was saved. Your own messages now use it.")
        except ServiceError as exc:
            messages.error(request, exc.message)
        return redirect("settings")
    context = {
        "instructions": custom_instructions.get(request.user),
        "instructions_max": custom_instructions.MAX_CHARS,
        "quota_lines": quotas.summary(request.user),
        "keys_enabled": personal_keys.enabled(),
        "key_slots": personal_keys.slots_for(request.user) if personal_keys.enabled() else [],
    }
    return render(request, "conversations/settings.html", context)
