"""Forms for the account pages. Validation only: creating accounts is conversations.services.accounts."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm, UserCreationForm
from django.core.exceptions import ValidationError
from django.views.decorators.debug import sensitive_variables

AWAITING_APPROVAL = "Your account is waiting for an administrator's approval."

# Short phrases for Django's own validators; any other validator contributes its full help text.
_PASSWORD_RULES = {
    password_validation.UserAttributeSimilarityValidator: "not too close to your username or email",
    password_validation.CommonPasswordValidator: "not a common password",
    password_validation.NumericPasswordValidator: "not only digits",
}


def password_hint() -> str:
    """One line describing AUTH_PASSWORD_VALIDATORS, instead of Django's four-sentence list."""
    phrases = []
    for validator in password_validation.get_default_password_validators():
        if isinstance(validator, password_validation.MinimumLengthValidator):
            phrases.insert(0, f"at least {validator.min_length} characters")
        elif type(validator) in _PASSWORD_RULES:
            phrases.append(_PASSWORD_RULES[type(validator)])
        else:
            phrases.append(validator.get_help_text().rstrip(".").lower())
    return (", ".join(phrases).capitalize() + ".") if phrases else ""


class LoginForm(AuthenticationForm):
    """Django's login form, but it tells a person whose account awaits approval why they can't log in."""

    error_messages = {
        "invalid_login": "Incorrect username or password. Both are case-sensitive.",
        "inactive": AWAITING_APPROVAL,
    }

    def __init__(self, request=None, *args, **kwargs) -> None:
        super().__init__(request, *args, **kwargs)
        self.fields["username"].widget.attrs.update(autocomplete="username", autocapitalize="none")

    def get_invalid_login_error(self) -> ValidationError:
        # ModelBackend returns None for inactive users, so the generic error would hide the reason.
        if self._is_awaiting_approval():
            return ValidationError(self.error_messages["inactive"], code="inactive")
        return super().get_invalid_login_error()

    @sensitive_variables("password")
    def _is_awaiting_approval(self) -> bool:
        """True when the credentials are right but the account is inactive. Never logs anyone in."""
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        User = get_user_model()
        try:
            user = User._default_manager.get_by_natural_key(username)
        except User.DoesNotExist:
            return False
        # Only a caller who knows the password learns the account exists; sign-up reveals taken names anyway.
        return not user.is_active and user.check_password(password)


class SignupForm(UserCreationForm):
    """Username, optional email, password twice, checked by AUTH_PASSWORD_VALIDATORS."""

    email = forms.EmailField(
        required=False,
        help_text="Lets an administrator reach you.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update(autocomplete="username", autocapitalize="none")
        self.fields["username"].help_text = "Letters, digits and @ . + - _ only."
        self.fields["password1"].help_text = password_hint()
        self.fields["password2"].label = "Confirm password"
        self.fields["password2"].help_text = ""


class ChangePasswordForm(PasswordChangeForm):
    """Django's password change form with a one-line password hint."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["old_password"].label = "Current password"
        self.fields["new_password1"].help_text = password_hint()
        self.fields["new_password2"].label = "Confirm new password"
        self.fields["new_password2"].help_text = ""
