"""The WhatsApp customer service window: a business may write to a customer freely only
within 24 hours of the customer's last message; after that WhatsApp accepts only approved
template messages (and refuses anything else with error 131047).

A building block: it decides nothing, it only says whether the window is open, for the agent's
reply service (which refuses early, with a message the agent understands) and the admin's
conversation page (which warns).
"""

from datetime import timedelta

from django.utils import timezone

from conversations.models import Conversation, Message

WHATSAPP_WINDOW = timedelta(hours=24)
WINDOW_CLOSED_MESSAGE = (
    "The customer last wrote more than 24 hours ago: WhatsApp allows only template messages now."
)


def free_form_window_open(conversation: Conversation) -> bool:
    """Whether the conversation's channel lets us write to the customer freely now: always,
    except on WhatsApp when the customer's last message (on this number, in any of their
    conversations) is 24 hours old or more, or there is none."""
    if conversation.channel != Conversation.Channel.WHATSAPP:
        return True
    last = (
        Message.objects.filter(
            conversation__contact_id=conversation.contact_id,
            conversation__channel_account_id=conversation.channel_account_id,
            role=Message.Role.USER,
        )
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    return last is not None and timezone.now() - last < WHATSAPP_WINDOW
