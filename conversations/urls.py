from django.contrib.auth import views as auth_views
from django.urls import path

from conversations.views import (
    accounts,
    api,
    chat,
    import_export,
    metrics,
    older_messages,
    search,
    share,
    uploads,
)
from conversations.views import settings as settings_views

urlpatterns = [
    path("", chat.home, name="home"),
    path("c/<uuid:conversation_id>", chat.home, name="conversation"),
    path("api/conversations", api.conversations, name="api-conversations"),
    path("api/conversations/<uuid:conversation_id>", api.conversation, name="api-conversation"),
    path("api/conversations/<uuid:conversation_id>/restore", api.restore, name="api-restore"),
    path("api/models", api.models, name="api-models"),
    path("api/uploads", uploads.upload_collection, name="uploads"),
    path("api/uploads/<uuid:upload_id>", uploads.upload_item, name="upload"),
    path("api/search", search.search_conversations, name="api-search"),
    path(
        "api/conversations/<uuid:conversation_id>/messages",
        older_messages.older_messages,
        name="api-older-messages",
    ),
    path(
        "api/conversations/<uuid:conversation_id>/export",
        import_export.export_conversation,
        name="api-export",
    ),
    path("api/export", import_export.export_all, name="api-export-all"),
    path("api/imports", import_export.import_start, name="api-imports"),
    path("api/imports/<uuid:job_id>", import_export.import_status, name="api-import"),
    path("history/", import_export.page, name="import-export"),  # the path people bookmarked
    path("api/conversations/<uuid:conversation_id>/share", share.share_link, name="api-share"),
    path("share/<str:token>", share.shared, name="shared"),
    path("share/<str:token>/images/<int:number>", share.shared_image, name="shared-image"),
    path("metrics", metrics.scrape, name="metrics"),  # Prometheus: token or staff, never a login redirect
    path("settings/", settings_views.page, name="settings"),
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
