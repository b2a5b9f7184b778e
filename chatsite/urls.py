from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Chatsite administration"
admin.site.site_title = "Chatsite admin"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("conversations.urls")),
]
