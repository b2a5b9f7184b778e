from django.contrib import admin
from django.urls import include, path

from conversations.views import admin_usage

admin.site.site_header = "Chatsite administration"
admin.site.site_title = "Chatsite admin"

urlpatterns = [
    # The usage dashboard lives under /admin/ and behind the admin's login (admin_view), before the catch-all.
    path("admin/usage/", admin.site.admin_view(admin_usage.dashboard), name="admin-usage"),
    path("admin/usage.csv", admin.site.admin_view(admin_usage.export_csv), name="admin-usage-csv"),
    path("admin/", admin.site.urls),
    path("", include("conversations.urls")),
]

# Error pages in the site's look, with a way back to the chat (conversations/views/error_pages.py).
handler403 = "conversations.views.error_pages.forbidden"
handler404 = "conversations.views.error_pages.not_found"
handler500 = "conversations.views.error_pages.server_error"
