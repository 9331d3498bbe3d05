"""The admin of channels beyond the widget: channels (write-only credentials), the outbox
(failures, retry) and API keys."""
