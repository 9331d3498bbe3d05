"""The last guard of the logs: personal data that slipped into a log line is masked.

The application never logs message text or personal data (ids and codes only); this filter,
on every handler of `LOGGING`, catches what a library or an exception message may still carry:
email addresses, IP addresses, bearer tokens, JWTs and provider API keys. Message text cannot
be recognised by a pattern: keeping it out of log calls is the rule, this is the backstop.
"""

from __future__ import annotations

import ipaddress
import logging
import re

_PATTERNS = (
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[email]"),
    # JWTs and signed tokens (a visitor token: base64 JSON, then ":" parts).
    (re.compile(r"\beyJ[\w-]{5,}[.:][\w-]{5,}[.:][\w-]*"), "[token]"),
    (re.compile(r"(?i)\b(bearer)\s+[\w.~+/=-]{8,}"), r"\1 [token]"),
    (re.compile(r"\b(?:sk|ids)[-_][\w-]{8,}"), "[secret]"),
)
_ADDRESS = re.compile(
    r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])"
    # IPv6: at least two colons, and "::" or a hex letter (a time such as 05:21:28 stays).
    r"|(?<![\w:])(?=[0-9a-fA-F:]*(?:::|[a-fA-F]))(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}"
    r"(?![\w:])"
)


def _address(match: re.Match[str]) -> str:
    """A client's address masked; the machine's own (loopback, unspecified) kept."""
    try:
        address = ipaddress.ip_address(match.group(0))
    except ValueError:
        return match.group(0)
    return match.group(0) if address.is_loopback or address.is_unspecified else "[ip]"


def redact(text: str) -> str:
    """`text` with email addresses, IP addresses (but loopback), tokens and keys masked."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _ADDRESS.sub(_address, text)


class PersonalDataFilter(logging.Filter):
    """Masks personal data in a record's message and exception text (never drops a record)."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
