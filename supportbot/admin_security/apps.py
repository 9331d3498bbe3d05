from django.apps import AppConfig


class AdminSecurityConfig(AppConfig):
    name = "supportbot.admin_security"
    label = "admin_security"
    verbose_name = "Admin security"

    def ready(self) -> None:
        from supportbot.admin_security import login_audit  # noqa: F401 - connects the receivers
