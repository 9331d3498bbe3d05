from django.contrib import admin
from django.urls import path

from conversations.api.router import api as rest_api
from conversations.channel_webhooks import channel_webhook
from conversations.views import widget_frame
from supportbot.admin_security.views import AdminLoginView, OTPEnrolView, OTPVerifyView
from supportbot.health import healthz, healthz_details

# The admin's login is replaced here, ahead of admin.site.urls (the AdminSite class is Django's
# own): the password step is counted by the lockout, and a staff user who needs a code is
# logged in only by the code step (supportbot.admin_security).
urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("healthz/details", healthz_details, name="healthz-details"),
    path("widget/frame/", widget_frame, name="widget-frame"),
    path("channels/<uuid:account_id>/webhook/", channel_webhook, name="channel-webhook"),
    path("api/v1/", rest_api.urls),
    path("admin/login/", AdminLoginView.as_view(), name="admin-login"),
    path("admin/login/code/", OTPVerifyView.as_view(), name="admin-otp-verify"),
    path("admin/login/enrol/", OTPEnrolView.as_view(), name="admin-otp-enrol"),
    path("admin/", admin.site.urls),
]
