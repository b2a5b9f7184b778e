"""Log in, sign up and change password, in the site's own templates. Logout is Django's POST-only view."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters

from conversations.forms import ChangePasswordForm, LoginForm, SignupForm
from conversations.services import accounts


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        # Django's site_name is the request's host name; let the context processor's CHAT_SITE_NAME show.
        context.pop("site_name", None)
        return context


class PasswordChangeView(auth_views.PasswordChangeView):
    form_class = ChangePasswordForm
    template_name = "registration/password_change_form.html"


@sensitive_post_parameters("password1", "password2")
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    if not accounts.signup_open():
        return _signup_closed(request)

    form = SignupForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        data = form.cleaned_data
        try:
            user, status = accounts.create_account(data["username"], data["password1"], data["email"])
        except accounts.SignupClosed:
            return _signup_closed(request)
        except accounts.UsernameTaken:
            form.add_error("username", "A user with that username already exists.")
        else:
            if status is accounts.AccountStatus.PENDING:
                return render(request, "registration/signup_pending.html", {"new_user": user})
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            if status is accounts.AccountStatus.ADMIN:
                messages.success(request, "Welcome! As the first user, you are this site's administrator.")
            return redirect("home")
    return render(request, "registration/signup.html", {"form": form})


def _signup_closed(request: HttpRequest) -> HttpResponse:
    # A GET shows the notice; a POST is refused outright so nothing can be created.
    status = 403 if request.method == "POST" else 200
    return render(request, "registration/signup_closed.html", status=status)
