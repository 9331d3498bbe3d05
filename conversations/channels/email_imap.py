"""Reading a support mailbox over IMAP: every unread email is stored once (by its Message-ID)
and only then marked \\Seen, so a poll that dies half way loses nothing (the next one stores
the rest; what was stored already is a no-op). One poll per mailbox at a time (a Redis lock),
however often the beat asks.
"""

from __future__ import annotations

import imaplib
import logging
import ssl

from django.db import transaction
from redis.exceptions import LockError

from conversations.channels.base import config_value, credential
from conversations.channels.email import account_item, own_address
from conversations.channels.inbound import inbound_items_store
from conversations.models import ChannelAccount
from supportbot.redis_store import get_redis, redis_key

logger = logging.getLogger(__name__)

MAX_MESSAGES_PER_POLL = 50
LOCK_SECONDS = 300  # a poll that died lets the next one in after this long
IMAP_TIMEOUT_SECONDS = 30.0


class MailboxUnavailable(Exception):
    """The mailbox could not be read this time (login refused, server down): tried next poll."""


def mailboxes_to_poll() -> list[str]:
    """The ids of the active email channels that read a mailbox (an `imap_host` is set)."""
    accounts = ChannelAccount.objects.filter(
        kind=ChannelAccount.Kind.EMAIL, is_active=True, tenant__is_active=True
    ).only("id", "config")
    return [str(account.pk) for account in accounts if config_value(account, "imap_host", "")]


def mailbox_poll(*, account_id: str) -> int:
    """Store the mailbox's unread emails, then mark them read; how many were taken. Nothing is
    done while another poll of the same mailbox holds its lock."""
    account = (
        ChannelAccount.objects.select_related("tenant")
        .filter(pk=account_id, kind=ChannelAccount.Kind.EMAIL, is_active=True)
        .first()
    )
    if account is None or not config_value(account, "imap_host", ""):
        return 0
    lock = get_redis().lock(redis_key("email-poll", account.pk), timeout=LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        return 0
    try:
        return _poll(account)
    finally:
        try:
            lock.release()
        except LockError:  # expired meanwhile: the next poll is free anyway
            logger.info("email poll lock of %s had expired", account.pk)


def _imap_connection(account: ChannelAccount) -> imaplib.IMAP4:
    host = str(config_value(account, "imap_host", ""))
    port = int(config_value(account, "imap_port", "") or 993)
    security = str(config_value(account, "imap_security", "") or "ssl").lower()
    if security == "ssl":
        return imaplib.IMAP4_SSL(
            host, port, ssl_context=ssl.create_default_context(), timeout=IMAP_TIMEOUT_SECONDS
        )
    imap = imaplib.IMAP4(host, port, timeout=IMAP_TIMEOUT_SECONDS)
    if security == "starttls":
        try:
            imap.starttls(ssl_context=ssl.create_default_context())
        except (OSError, imaplib.IMAP4.error):
            imap.shutdown()
            raise
    return imap


def _poll(account: ChannelAccount) -> int:
    user = str(config_value(account, "imap_user", "") or own_address(account))
    folder = str(config_value(account, "imap_folder", "") or "INBOX")
    try:
        imap = _imap_connection(account)
    except (OSError, imaplib.IMAP4.error) as error:
        raise MailboxUnavailable(f"IMAP server unreachable: {type(error).__name__}") from None
    try:
        imap.login(user, credential(account, "imap_password"))
        status, _data = imap.select(_quoted(folder))
        if status != "OK":
            raise MailboxUnavailable("the IMAP folder cannot be opened")
        taken = sum(_take(imap, account, uid) for uid in _unseen(imap))
        imap.close()
        return taken
    except (imaplib.IMAP4.error, OSError) as error:
        raise MailboxUnavailable(f"IMAP failed: {type(error).__name__}") from None
    finally:
        try:
            imap.logout()
        except (OSError, imaplib.IMAP4.error):
            logger.info("IMAP logout of %s failed", account.pk)


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unseen(imap: imaplib.IMAP4) -> list[str]:
    status, data = imap.uid("SEARCH", "UNSEEN")
    if status != "OK" or not data or not data[0]:
        return []
    return [uid.decode() for uid in data[0].split()[:MAX_MESSAGES_PER_POLL]]


def _take(imap: imaplib.IMAP4, account: ChannelAccount, uid: str) -> int:
    """Store one email (BODY.PEEK: reading it does not mark it), then mark it \\Seen."""
    status, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
    raw = next((part[1] for part in data or [] if isinstance(part, tuple)), None)
    if status != "OK" or not isinstance(raw, bytes):
        logger.warning("IMAP message %s of %s could not be fetched", uid, account.pk)
        return 0
    with transaction.atomic():
        inbound_items_store(account=account, items=[account_item(account, raw)])
    imap.uid("STORE", uid, "+FLAGS", "(\\Seen)")
    return 1
