from django.contrib import admin
from django.urls import path

from conversations.views import widget_frame
from supportbot.health import healthz, healthz_details

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("healthz/details", healthz_details, name="healthz-details"),
    path("widget/frame/", widget_frame, name="widget-frame"),
    path("admin/", admin.site.urls),
]
