from django.contrib.auth import views as auth_views
from django.urls import path

from conversations.views import accounts, api, chat

urlpatterns = [
    path("", chat.home, name="home"),
    path("c/<uuid:conversation_id>", chat.home, name="conversation"),
    path("api/conversations", api.conversations, name="api-conversations"),
    path("api/conversations/<uuid:conversation_id>", api.conversation, name="api-conversation"),
    path("api/models", api.models, name="api-models"),
    path("accounts/login/", accounts.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", accounts.signup, name="signup"),
    path("accounts/password/", accounts.PasswordChangeView.as_view(), name="password_change"),
    path(
        "accounts/password/done/",
        auth_views.PasswordChangeDoneView.as_view(template_name="registration/password_change_done.html"),
        name="password_change_done",
    ),
]
