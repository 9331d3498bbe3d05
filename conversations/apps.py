from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = "Conversations"

    def ready(self) -> None:
        # The channels' admin (channels, API keys, the outbox, inbound events): a module of its
        # own beside admin.py (the layer contract keeps the two independent); and the channel
        # adapters, which register themselves (conversations.channels.base) when imported.
        import conversations.channel_admin
        import conversations.channels.email
        import conversations.channels.slack
        import conversations.channels.sms
        import conversations.channels.telegram
        import conversations.channels.whatsapp  # noqa: F401

        # The personal data this app holds, for export and erasure (supportbot.compliance);
        # the contacts' own store is registered last (personal_data_register).
        from conversations.consent_records import ConsentStore
        from conversations.erased import WidgetSessionsStore
        from conversations.personal_data import personal_data_register
        from supportbot.compliance.registry import register_store

        register_store(ConsentStore())
        register_store(WidgetSessionsStore())

        # Message channels: their personal data (before the contacts' store) and the finder of
        # a channel contact by phone number, email address, chat or user id.
        from conversations.channels.channel_personal_data import channel_personal_data_register

        channel_personal_data_register()

        personal_data_register()
