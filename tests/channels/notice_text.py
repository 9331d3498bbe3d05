"""The privacy notice the first reply of a channel conversation carries (under legitimate
interest, `conversations/channels/notices_first.py`), taken off what a provider received, for
tests about something else. `tests/channels/test_outbox_notice.py` asserts the notice itself."""

from supportbot.tenants.consent_texts import DEFAULT_CONSENT_TEXTS


def without_notice(text: str) -> str:
    """`text` less a trailing default privacy notice (and the privacy URL after it)."""
    for notice in DEFAULT_CONSENT_TEXTS.values():
        at = text.rfind("\n\n" + notice)
        if at != -1:
            return text[:at]
        # Slack's mrkdwn escapes nothing in the default texts; an SMS part may end with the
        # notice's start when a long reply was split: only whole notices are taken off.
    return text
