"""What each kind of channel needs to be set up: its settings (`config`, shown in the admin)
and its secrets (`credentials`, encrypted and write-only), which of them are required, and
which secrets Supportbot generates (shown once, to paste on the provider's side).

The admin's channel form and `manage.py channel_add` are both built from this table.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Setting:
    name: str
    help: str
    required: bool = False
    default: str = ""
    secret: bool = False  # a credential: encrypted, never shown again
    generated: bool = False  # a secret Supportbot makes when none is given


@dataclass(frozen=True)
class ChannelSpec:
    kind: str
    settings: tuple[Setting, ...] = field(default_factory=tuple)

    @property
    def config_settings(self) -> tuple[Setting, ...]:
        return tuple(s for s in self.settings if not s.secret)

    @property
    def credential_settings(self) -> tuple[Setting, ...]:
        return tuple(s for s in self.settings if s.secret)

    def setting(self, name: str) -> Setting | None:
        return next((s for s in self.settings if s.name == name), None)


SPECS: dict[str, ChannelSpec] = {
    "email": ChannelSpec(
        "email",
        (
            Setting("address", "The support address customers write to.", required=True),
            Setting("imap_host", "IMAP server to poll (empty: inbound by forwarding only)."),
            Setting("imap_port", "IMAP port.", default="993"),
            Setting("imap_security", "ssl, starttls or none.", default="ssl"),
            Setting("imap_user", "IMAP login (default: the address)."),
            Setting("imap_folder", "Mailbox folder to read.", default="INBOX"),
            Setting("smtp_host", "SMTP server replies are sent through.", required=True),
            Setting("smtp_port", "SMTP port.", default="587"),
            Setting("smtp_security", "starttls, ssl or none.", default="starttls"),
            Setting("smtp_user", "SMTP login (default: the address)."),
            Setting("imap_password", "IMAP password.", secret=True),
            Setting("smtp_password", "SMTP password.", secret=True),
            Setting(
                "inbound_secret",
                "Shared secret a forwarding service signs raw MIME with (HMAC-SHA256).",
                secret=True,
                generated=True,
            ),
        ),
    ),
    "telegram": ChannelSpec(
        "telegram",
        (
            Setting("bot_username", "The bot's @username (shown in the admin)."),
            Setting("bot_token", "The bot token from @BotFather.", required=True, secret=True),
            Setting(
                "webhook_secret",
                "The secret_token given to setWebhook (X-Telegram-Bot-Api-Secret-Token).",
                secret=True,
                generated=True,
            ),
        ),
    ),
    "whatsapp": ChannelSpec(
        "whatsapp",
        (
            Setting("phone_number_id", "The WhatsApp Business phone number id.", required=True),
            Setting("business_account_id", "The WhatsApp Business account id."),
            Setting("access_token", "A system user access token.", required=True, secret=True),
            Setting(
                "app_secret",
                "The Meta app's secret (X-Hub-Signature-256).",
                required=True,
                secret=True,
            ),
            Setting(
                "verify_token",
                "The verify token of the webhook's GET challenge.",
                secret=True,
                generated=True,
            ),
        ),
    ),
    "slack": ChannelSpec(
        "slack",
        (
            Setting("bot_user_id", "The bot's user id (its own messages are ignored)."),
            Setting("team_id", "The workspace id."),
            Setting("bot_token", "The bot token (xoxb-...).", required=True, secret=True),
            Setting(
                "signing_secret",
                "The app's signing secret (X-Slack-Signature).",
                required=True,
                secret=True,
            ),
        ),
    ),
    "sms": ChannelSpec(
        "sms",
        (
            Setting("account_sid", "The Twilio account SID.", required=True),
            Setting("from_number", "The Twilio number replies come from (E.164).", required=True),
            Setting("auth_token", "The Twilio auth token.", required=True, secret=True),
        ),
    ),
    "api": ChannelSpec("api", ()),
}
