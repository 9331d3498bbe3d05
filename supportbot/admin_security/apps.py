from django.apps import AppConfig


class AdminSecurityConfig(AppConfig):
    name = "supportbot.admin_security"
    label = "admin_security"
    verbose_name = "Admin security"
