"""Log in, log out, password change and sign-up under each CHAT_SIGNUP mode.

Alice has an active account, Bob signed up and waits for approval. Templates use {% static %} with the
manifest storage, so collectstatic must have run (tests/conftest.py does it for the session).
"""

from __future__ import annotations

import pytest
from django.contrib.auth import SESSION_KEY
from django.urls import reverse

from conversations.services import accounts

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "tangerine otter lighthouse 42"


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.com", PASSWORD)


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password=PASSWORD, is_active=False)


def signup_data(username="newcomer", password=PASSWORD, **extra):
    return {"username": username, "password1": password, "password2": password, **extra}


def logged_in_username(client):
    from django.contrib.auth import get_user_model

    user_id = client.session.get(SESSION_KEY)
    if user_id is None:
        return None
    return get_user_model().objects.get(pk=user_id).username


# --- Log in -----------------------------------------------------------------------------------------------


def test_it_renders_the_login_page_in_the_site_layout(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/css/app." in html  # the hashed stylesheet, not the admin's
    assert "admin/css" not in html
    assert 'name="username"' in html and 'name="password"' in html
    assert 'for="id_username"' in html
    assert "Chatsite" in html


def test_it_links_to_signup_from_login_unless_signups_are_closed(client, settings):
    settings.CHAT_SIGNUP = "approval"
    assert reverse("signup") in client.get(reverse("login")).content.decode()
    settings.CHAT_SIGNUP = "closed"
    assert reverse("signup") not in client.get(reverse("login")).content.decode()


def test_it_logs_in(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response.url == reverse("home")
    assert logged_in_username(client) == "alice"


def test_it_follows_next_after_login(client, alice):
    url = reverse("login") + "?next=" + reverse("password_change")
    response = client.post(
        url, {"username": "alice", "password": PASSWORD, "next": reverse("password_change")}
    )
    assert response.url == reverse("password_change")


def test_it_rejects_a_wrong_password(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "not it"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Incorrect username or password" in html
    assert 'role="alert"' in html
    assert logged_in_username(client) is None


def test_it_rejects_an_unknown_user(client):
    response = client.post(reverse("login"), {"username": "charlie", "password": PASSWORD})
    assert "Incorrect username or password" in response.content.decode()
    assert logged_in_username(client) is None


def test_it_tells_an_inactive_user_to_wait_for_approval(client, bob):
    response = client.post(reverse("login"), {"username": "bob", "password": PASSWORD})
    assert response.status_code == 200
    assert "Your account is waiting for an administrator&#x27;s approval." in response.content.decode()
    assert logged_in_username(client) is None


def test_it_does_not_reveal_an_inactive_account_to_a_wrong_password(client, bob):
    response = client.post(reverse("login"), {"username": "bob", "password": "not it"})
    html = response.content.decode()
    assert "approval" not in html
    assert "Incorrect username or password" in html


def test_it_redirects_a_logged_in_user_away_from_login(client, alice):
    client.force_login(alice)
    response = client.get(reverse("login"))
    assert response.status_code == 302
    assert response.url == reverse("home")


# --- Log out ----------------------------------------------------------------------------------------------


def test_it_logs_out_on_post(client, alice):
    client.force_login(alice)
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response.url == reverse("login")
    assert logged_in_username(client) is None


def test_it_does_not_log_out_on_get(client, alice):
    client.force_login(alice)
    assert client.get(reverse("logout")).status_code == 405
    assert logged_in_username(client) == "alice"


# --- Home -------------------------------------------------------------------------------------------------


def test_it_sends_an_anonymous_visitor_from_home_to_login(client):
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response.url == reverse("login") + "?next=/"


def test_it_shows_the_app_shell_with_a_logout_button(client, alice):
    client.force_login(alice)
    response = client.get(reverse("home"))
    assert response.status_code == 200
    html = response.content.decode()
    assert f'action="{reverse("logout")}"' in html
    assert 'method="post"' in html
    assert reverse("password_change") in html
    assert "What can I help with?" in html
    assert reverse("admin:index") not in html


def test_it_shows_the_admin_link_to_staff(client, alice):
    alice.is_staff = True
    alice.save()
    client.force_login(alice)
    assert reverse("admin:index") in client.get(reverse("home")).content.decode()


def test_it_renders_the_theme_chosen_in_the_cookie(client, alice):
    client.force_login(alice)
    client.cookies["theme"] = "dark"
    assert '<html lang="en-us" data-theme="dark">' in client.get(reverse("home")).content.decode()
    client.cookies["theme"] = '"><script>'
    assert "data-theme=" not in client.get(reverse("home")).content.decode()


# --- Password change --------------------------------------------------------------------------------------


def test_it_requires_login_to_change_the_password(client):
    response = client.get(reverse("password_change"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_it_changes_the_password(client, alice):
    client.force_login(alice)
    assert client.get(reverse("password_change")).status_code == 200
    response = client.post(
        reverse("password_change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert response.url == reverse("password_change_done")
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)
    assert logged_in_username(client) == "alice"  # the session survives the change
    done = client.get(reverse("password_change_done"))
    assert "Your password was changed" in done.content.decode()
    assert "/static/css/app." in done.content.decode()


def test_it_refuses_a_password_change_with_the_wrong_old_password(client, alice):
    client.force_login(alice)
    response = client.post(
        reverse("password_change"),
        {"old_password": "not it", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


# --- Sign up ----------------------------------------------------------------------------------------------


def test_it_makes_the_first_user_a_superuser(client, django_user_model, settings):
    settings.CHAT_SIGNUP = "approval"
    response = client.post(reverse("signup"), signup_data("admin"))
    assert response.status_code == 302
    assert response.url == reverse("home")
    user = django_user_model.objects.get(username="admin")
    assert user.is_active and user.is_staff and user.is_superuser
    assert logged_in_username(client) == "admin"
    assert "administrator" in client.get(reverse("home")).content.decode()


def test_closed_means_closed_even_on_an_empty_site(client, django_user_model, settings):
    settings.CHAT_SIGNUP = "closed"
    assert 'name="password1"' not in client.get(reverse("signup")).content.decode()
    client.post(reverse("signup"), signup_data("admin"))
    assert not django_user_model.objects.exists()


@pytest.mark.parametrize("mode", ["open", "approval"])
def test_it_makes_the_first_user_a_superuser_in_open_and_approval_modes(
    client, django_user_model, settings, mode
):
    settings.CHAT_SIGNUP = mode
    assert 'name="password1"' in client.get(reverse("signup")).content.decode()
    client.post(reverse("signup"), signup_data("admin"))
    assert django_user_model.objects.get(username="admin").is_superuser


def test_it_does_not_make_the_second_user_a_superuser(client, django_user_model, settings, alice):
    settings.CHAT_SIGNUP = "open"
    client.post(reverse("signup"), signup_data())
    user = django_user_model.objects.get(username="newcomer")
    assert not user.is_superuser and not user.is_staff


def test_it_activates_and_logs_in_when_signups_are_open(client, django_user_model, settings, alice):
    settings.CHAT_SIGNUP = "open"
    response = client.post(reverse("signup"), signup_data(email="new@example.com"))
    assert response.status_code == 302
    assert response.url == reverse("home")
    user = django_user_model.objects.get(username="newcomer")
    assert user.is_active
    assert user.email == "new@example.com"
    assert logged_in_username(client) == "newcomer"


def test_it_creates_an_inactive_account_when_signups_need_approval(
    client, django_user_model, settings, alice
):
    settings.CHAT_SIGNUP = "approval"
    response = client.post(reverse("signup"), signup_data())
    assert response.status_code == 200
    assert "administrator must approve" in response.content.decode()
    user = django_user_model.objects.get(username="newcomer")
    assert not user.is_active
    assert logged_in_username(client) is None
    login = client.post(reverse("login"), {"username": "newcomer", "password": PASSWORD})
    assert "waiting for an administrator" in login.content.decode()


def test_it_shows_no_form_when_signups_are_closed(client, settings, alice):
    settings.CHAT_SIGNUP = "closed"
    response = client.get(reverse("signup"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Sign-ups are closed" in html
    assert 'name="password1"' not in html


def test_it_refuses_a_signup_post_when_signups_are_closed(client, django_user_model, settings, alice):
    settings.CHAT_SIGNUP = "closed"
    response = client.post(reverse("signup"), signup_data())
    assert response.status_code == 403
    assert "Sign-ups are closed" in response.content.decode()
    assert not django_user_model.objects.filter(username="newcomer").exists()


def test_it_rejects_a_weak_password(client, django_user_model, settings, alice):
    settings.CHAT_SIGNUP = "open"
    response = client.post(reverse("signup"), signup_data(password="12345678"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "too common" in html
    assert 'aria-invalid="true"' in html
    assert not django_user_model.objects.filter(username="newcomer").exists()


def test_it_rejects_mismatched_passwords(client, django_user_model, settings, alice):
    settings.CHAT_SIGNUP = "open"
    data = signup_data()
    data["password2"] = NEW_PASSWORD
    response = client.post(reverse("signup"), data)
    assert response.status_code == 200
    assert not django_user_model.objects.filter(username="newcomer").exists()


def test_it_rejects_a_taken_username_in_any_case(client, django_user_model, settings, alice):
    settings.CHAT_SIGNUP = "open"
    response = client.post(reverse("signup"), signup_data("ALICE"))
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert django_user_model.objects.count() == 1


def test_it_redirects_a_logged_in_user_away_from_signup(client, alice):
    client.force_login(alice)
    response = client.get(reverse("signup"))
    assert response.status_code == 302
    assert response.url == reverse("home")


def test_it_sums_up_the_password_rules_in_one_line(client, settings):
    settings.CHAT_SIGNUP = "open"
    html = client.get(reverse("signup")).content.decode()
    assert "At least 8 characters, not too close to your username or email" in html


def test_it_links_signup_back_to_login(client, settings):
    settings.CHAT_SIGNUP = "open"
    assert reverse("login") in client.get(reverse("signup")).content.decode()


# --- The service itself -----------------------------------------------------------------------------------


def test_it_refuses_to_create_an_account_when_closed_and_users_exist(settings, alice):
    settings.CHAT_SIGNUP = "closed"
    with pytest.raises(accounts.SignupClosed):
        accounts.create_account("newcomer", PASSWORD)


def test_it_reports_a_username_taken_at_insert_time(settings, alice):
    settings.CHAT_SIGNUP = "open"
    with pytest.raises(accounts.UsernameTaken):
        accounts.create_account("alice", PASSWORD)


def test_it_returns_the_status_of_each_new_account(settings, django_user_model):
    settings.CHAT_SIGNUP = "approval"
    assert accounts.create_account("first", PASSWORD)[1] is accounts.AccountStatus.ADMIN
    assert accounts.create_account("second", PASSWORD)[1] is accounts.AccountStatus.PENDING
    settings.CHAT_SIGNUP = "open"
    user, status = accounts.create_account("third", PASSWORD, "Third@EXAMPLE.com")
    assert status is accounts.AccountStatus.ACTIVE
    assert user.email == "Third@example.com"
    assert user.check_password(PASSWORD)
