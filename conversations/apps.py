from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = "Conversations"

    def ready(self) -> None:
        # The personal data this app holds, for export and erasure (supportbot.compliance).
        from conversations.consent_records import ConsentStore
        from conversations.erased import WidgetSessionsStore
        from supportbot.compliance.registry import register_store

        register_store(ConsentStore())
        register_store(WidgetSessionsStore())
