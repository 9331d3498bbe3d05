from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = "Conversations"

    def ready(self) -> None:
        # The personal data this app holds, for export and erasure (supportbot.compliance);
        # the contacts' own store is registered last (personal_data_register).
        import conversations.channels.email  # noqa: F401
        from conversations.consent_records import ConsentStore
        from conversations.erased import WidgetSessionsStore
        from conversations.personal_data import personal_data_register
        from supportbot.compliance.registry import register_store

        register_store(ConsentStore())
        register_store(WidgetSessionsStore())
        personal_data_register()

        # The channels' admin (channels, API keys, the outbox, inbound events): a module of its
        # own beside admin.py (the layer contract keeps the two independent).
        import conversations.channel_admin  # noqa: F401
        # Channel adapters register themselves (conversations.channels.base) when imported.
        import conversations.channels.telegram  # noqa: F401
