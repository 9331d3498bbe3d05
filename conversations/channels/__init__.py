"""One adapter per channel a visitor reaches the service through: the rules of its protocol
over the conversation services (today the widget; email, Telegram, WhatsApp, Slack, SMS and the
REST API come here too)."""
