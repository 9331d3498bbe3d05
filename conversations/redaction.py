"""Personal data kept from the model provider: emails, phone numbers, payment card numbers and
IBANs in the text sent to the model become placeholders (`[EMAIL_1]`, `[PHONE_1]`, `[CARD_1]`,
`[IBAN_1]`), and a placeholder the model writes back becomes the value again in what the
visitor sees.

A building block: it finds and replaces, it decides nothing about who calls it. The
placeholders are stable within a conversation (the same value, the same placeholder, in every
reply and summary request): `Placeholders` is loaded from and stored on the conversation
(`Conversation.pii_placeholders`, placeholder -> {"value", "key"}).

What counts as which:
- an email: `local@domain.tld`;
- a phone number: what the `phonenumbers` library finds valid, international numbers (`+44…`,
  `0044…`) always, national ones for the region given (the tenant's, else the visitor's
  locale); not a number glued to a word or a `#` (order numbers such as `ORD-55501234`);
- a payment card: 13 to 19 digits, spaces or dashes between them allowed, Luhn-checked;
- an IBAN: a country code, two check digits and 11 to 30 letters or digits, spaces allowed,
  mod-97-checked.

Cheap on the reply path: the patterns are compiled once and match in linear time, and
`phonenumbers` reads only the runs of at least seven digits (a text without one costs nothing),
and where the findings of a text are is remembered (by the text's digest), so the history read
again for each reply costs little.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import phonenumbers
from django.db import transaction

from conversations.models import Conversation

EMAIL, PHONE, CARD, IBAN = "EMAIL", "PHONE", "CARD", "IBAN"
KINDS = (EMAIL, PHONE, CARD, IBAN)

# The lookbehinds make a match start where a run starts, so a long run without a match costs
# one scan, not one per position.
_EMAIL = re.compile(r"(?<![\w.+%-])[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")
# Each starts with a digit and looks behind from there: `re` skips to the next digit fast.
# Cards and IBANs are written in ASCII digits (re.ASCII); phone numbers need not be.
_CARD = re.compile(r"\d(?<![\w-]\d)(?:[ -]?\d){12,18}(?![\w-]|[ -]\d)", re.ASCII)
_IBAN = re.compile(r"\d(?<=(?<!\w)[A-Za-z]{2}\d)\d(?: ?[A-Za-z0-9]){11,30}(?!\w)", re.ASCII)
_DIGIT_RUN = re.compile(r"\d(?:[ ().\-/]{0,3}\d){6,}")  # where a phone number may be
_LONG_DIGITS = re.compile(r"\d{16,}")  # longer than any phone number
_WINDOW, _WINDOW_OVERLAP = 72, 28  # characters: a phone number is shorter than the overlap
_ANY_DIGIT = re.compile(r"\d")
_FOUND: OrderedDict[bytes, tuple[tuple[int, int, str], ...]] = OrderedDict()  # digest -> spans
_FOUND_MAX = 4096
_FOUND_LOCK = threading.Lock()
_PLACEHOLDER = re.compile(r"\[(EMAIL|PHONE|CARD|IBAN)_(\d{1,6})\]")
# The start of a placeholder cut off at the end of a streamed piece ("[EM", "[PHONE_1").
_PARTIAL = re.compile(
    r"\[(?:E(?:M(?:A(?:I(?:L(?:_\d{0,6})?)?)?)?)?|P(?:H(?:O(?:N(?:E(?:_\d{0,6})?)?)?)?)?"
    r"|C(?:A(?:R(?:D(?:_\d{0,6})?)?)?)?|I(?:B(?:A(?:N(?:_\d{0,6})?)?)?)?)?"
)
_PARTIAL_MAX = len("[PHONE_999999")
_REGION = re.compile(r"^[A-Za-z]{2}$")


@dataclass(frozen=True)
class Finding:
    start: int
    end: int
    kind: str
    key: str  # the value normalised: one value, one placeholder


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn check (payment card numbers)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_valid(compact: str) -> bool:
    """True for an IBAN without spaces (upper case) whose mod-97 check holds."""
    if not (15 <= len(compact) <= 34 and compact[:2].isalpha() and compact[2:4].isdigit()):
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(char, 36)) for char in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def _emails(text: str) -> Iterable[Finding]:
    if "@" not in text:
        return
    for match in _EMAIL.finditer(text):
        value = match.group()
        domain = value.rsplit(".", 1)[-1]
        if len(domain) >= 2 and domain.isalpha():
            yield Finding(match.start(), match.end(), EMAIL, value.lower())


def _cards(text: str) -> Iterable[Finding]:
    for match in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            yield Finding(match.start(), match.end(), CARD, digits)


def _ibans(text: str) -> Iterable[Finding]:
    for match in _IBAN.finditer(text):
        # The pattern may run on into the next words ("… 3000 and"): the longest prefix,
        # cut between groups, that checks out.
        start = match.start() - 2  # the country code
        groups = text[start : match.end()].split(" ")
        for count in range(len(groups), 0, -1):
            compact = "".join(groups[:count]).upper()
            if len(compact) < 15:
                break
            if iban_valid(compact):
                yield Finding(start, start + len(" ".join(groups[:count])), IBAN, compact)
                break


def _glued(text: str, start: int, end: int) -> bool:
    """True when the number at [start, end) belongs to a word or an id (`ORD-5550`, `#100`)."""
    before = text[start - 1] if start > 0 else ""
    if before in "-/" and start > 1 and text[start - 2].isalnum():
        return True
    after = text[end] if end < len(text) else ""
    return before == "#" or before.isalnum() or after.isalnum()


def _windows(text: str) -> Iterable[tuple[int, int]]:
    """Where phone numbers may be: each run of digits (with a `+` or `(` before it), cut at
    groups of more digits than a phone number has. A long run (a list of numbers) is read in
    overlapping pieces, so its cost stays linear."""
    for run in _DIGIT_RUN.finditer(text):
        start = max(run.start() - 2, 0)
        for long in _LONG_DIGITS.finditer(text, run.start(), run.end()):
            yield from _pieces(start, long.start())
            start = long.end()
        yield from _pieces(start, run.end())


def _pieces(start: int, end: int) -> Iterable[tuple[int, int]]:
    if end - start < 7:
        return
    for piece in range(start, end, _WINDOW - _WINDOW_OVERLAP):
        yield piece, min(piece + _WINDOW, end)
        if piece + _WINDOW >= end:
            break


def _phones(text: str, region: str | None) -> Iterable[Finding]:
    found: list[Finding] = []
    for window_start, window_end in _windows(text):
        matcher = phonenumbers.PhoneNumberMatcher(
            text[window_start:window_end], region or "ZZ", leniency=phonenumbers.Leniency.VALID
        )
        for match in matcher:
            start, end = window_start + match.start, window_start + match.end
            if _glued(text, start, end) or any(f.start < end and start < f.end for f in found):
                continue
            key = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
            found.append(Finding(start, end, PHONE, key))
    return found


def _key(kind: str, value: str, region: str | None) -> str:
    """The value of a finding normalised (see `Finding.key`)."""
    if kind == PHONE:
        number = phonenumbers.parse(value, region or "ZZ")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if kind == EMAIL:
        return value.lower()
    return re.sub(r"[ -]", "", value).upper()


def find_personal_data(text: str, *, region: str | None = None) -> list[Finding]:
    """The emails, payment cards, IBANs and phone numbers in `text`, in order, not overlapping.
    `region`: the ISO country whose national phone numbers count (international ones always).

    Where they are is remembered per text (by digest: the cache holds no text and no value),
    as a reply's history is read again for every reply.
    """
    if "@" not in text and not _ANY_DIGIT.search(text):
        return []
    digest = hashlib.blake2b(f"{region}\0{text}".encode(), digest_size=16).digest()
    with _FOUND_LOCK:
        spans = _FOUND.get(digest)
        if spans is not None:
            _FOUND.move_to_end(digest)
    if spans is not None:
        return [Finding(s, e, kind, _key(kind, text[s:e], region)) for s, e, kind in spans]
    found = [*_emails(text), *_ibans(text)]
    # Cards, then phones, are looked for with what was found before blanked out (its length
    # kept), so an IBAN's last digits never start a card, nor a card's a phone number.
    found.extend(_cards(_blanked(text, found)))
    if _DIGIT_RUN.search(text):
        found.extend(_phones(_blanked(text, found), region))
    found.sort(key=lambda f: f.start)
    with _FOUND_LOCK:
        _FOUND[digest] = tuple((f.start, f.end, f.kind) for f in found)
        if len(_FOUND) > _FOUND_MAX:
            _FOUND.popitem(last=False)
    return found


def _blanked(text: str, findings: list[Finding]) -> str:
    if not findings:
        return text
    return _replaced(
        text, sorted(findings, key=lambda f: f.start), lambda f: "x" * (f.end - f.start)
    )


def mask(text: str, *, region: str | None = None) -> str:
    """`text` with each finding replaced by its kind (`[EMAIL]`): for a search query."""
    findings = find_personal_data(text, region=region)
    if not findings:
        return text
    return _replaced(text, findings, lambda finding: f"[{finding.kind}]")


def _replaced(text: str, findings: list[Finding], label: Any) -> str:
    parts: list[str] = []
    position = 0
    for finding in findings:
        parts.append(text[position : finding.start])
        parts.append(label(finding))
        position = finding.end
    parts.append(text[position:])
    return "".join(parts)


def phone_region(*, tenant_region: str = "", locale: str = "") -> str | None:
    """Whose national phone numbers count: the tenant's country (`ES`), else the region of
    the visitor's locale (`en-GB`, `fr_FR`); None when neither names one."""
    candidates = [tenant_region, *(locale or "").replace("_", "-").split("-")[1:]]
    for candidate in candidates:
        if _REGION.match(candidate or "") and candidate.upper() in phonenumbers.SUPPORTED_REGIONS:
            return candidate.upper()
    return None


class Placeholders:
    """A conversation's placeholders: what each stands for, and the ones added since loaded."""

    def __init__(
        self, stored: Mapping[str, Any] | None = None, *, region: str | None = None
    ) -> None:
        self.region = region
        self.entries: dict[str, dict[str, str]] = {}  # "[EMAIL_1]" -> {"value", "key"}
        self.added: dict[str, dict[str, str]] = {}
        self._by_key: dict[str, str] = {}  # "EMAIL:a@b.example" -> "[EMAIL_1]"
        self._last: dict[str, int] = dict.fromkeys(KINDS, 0)
        for name, entry in (stored or {}).items():
            match = _PLACEHOLDER.fullmatch(name)
            if match is None or not isinstance(entry, dict):
                continue
            value, key = entry.get("value"), entry.get("key")
            if isinstance(value, str) and isinstance(key, str):
                self._add(name, match.group(1), int(match.group(2)), value, key)

    def _add(self, name: str, kind: str, number: int, value: str, key: str) -> None:
        self.entries[name] = {"value": value, "key": key}
        self._by_key.setdefault(f"{kind}:{key}", name)
        self._last[kind] = max(self._last[kind], number)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def placeholder(self, finding: Finding, value: str) -> str:
        """The placeholder of a value (a new one, numbered after the last, if it has none)."""
        name = self._by_key.get(f"{finding.kind}:{finding.key}")
        if name is None:
            number = self._last[finding.kind] + 1
            name = f"[{finding.kind}_{number}]"
            self._add(name, finding.kind, number, value, finding.key)
            self.added[name] = self.entries[name]
        return name

    def redact(self, text: str) -> str:
        """`text` with its personal data replaced by placeholders."""
        findings = find_personal_data(text, region=self.region)
        if not findings:
            return text
        return _replaced(text, findings, lambda f: self.placeholder(f, text[f.start : f.end]))

    def redact_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Chat messages with the text of every one but the system's redacted (the system
        message is the tenant's persona and fixed instructions)."""
        result = []
        for message in messages:
            content = message.get("content")
            if message.get("role") != "system" and isinstance(content, str):
                message = {**message, "content": self.redact(content)}
            result.append(message)
        return result

    def restore(self, text: str) -> str:
        """`text` with the placeholders of this conversation back to their values."""
        if "[" not in text or not self.entries:
            return text
        return _PLACEHOLDER.sub(
            lambda m: self.entries.get(m.group(), {}).get("value", m.group()), text
        )

    def stream(self) -> PlaceholderStream:
        return PlaceholderStream(self)

    def names(self, kind: str, key: str) -> bool:
        """True when a placeholder stands for this value."""
        return f"{kind}:{key}" in self._by_key

    def as_json(self) -> dict[str, dict[str, str]]:
        return {name: dict(entry) for name, entry in self.entries.items()}


class PlaceholderStream:
    """Restores placeholders in streamed text: a trailing piece that may be the start of a
    placeholder (`[EMAIL_`) is held back until the next piece tells."""

    def __init__(self, placeholders: Placeholders) -> None:
        self.placeholders = placeholders
        self.held = ""

    def feed(self, piece: str) -> str:
        """What of the text so far can be shown now, restored."""
        text = self.held + piece
        cut = text.rfind("[", max(len(text) - _PARTIAL_MAX, 0))
        if cut >= 0 and _PARTIAL.fullmatch(text, cut):
            self.held = text[cut:]
            text = text[:cut]
        else:
            self.held = ""
        return self.placeholders.restore(text)

    def end(self) -> str:
        """What was held back, at the end of the text (not a placeholder after all)."""
        text, self.held = self.held, ""
        return text


def conversation_placeholders(conversation: Conversation) -> Placeholders:
    """The conversation's placeholders as stored, for the region of its tenant and visitor
    (the conversation is loaded with its tenant and contact)."""
    return Placeholders(
        conversation.pii_placeholders,
        region=phone_region(
            tenant_region=conversation.tenant.phone_region, locale=conversation.contact.locale
        ),
    )


def provider_messages(
    conversation: Conversation, messages: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], Placeholders]:
    """`messages` as the provider may see them, and the conversation's placeholders (to
    restore what the model writes back).

    Unchanged when the tenant does not redact. New placeholders are stored on the
    conversation: redacted again under its row lock, so two workers adding one at once
    never give one placeholder two values.
    """
    placeholders = conversation_placeholders(conversation)
    if not conversation.tenant.redact_pii:
        return messages, placeholders
    redacted = placeholders.redact_messages(messages)
    if not placeholders.added:
        return redacted, placeholders
    with transaction.atomic():
        row = _locked_placeholders(conversation.pk)
        conversation.pii_placeholders = (row.pii_placeholders if row else None) or {}
        placeholders = conversation_placeholders(conversation)
        redacted = placeholders.redact_messages(messages)
        if placeholders.added and row is not None:
            conversation.pii_placeholders = placeholders.as_json()
            row.pii_placeholders = conversation.pii_placeholders
            row.save(update_fields=["pii_placeholders"])
            placeholders.added = {}
    return redacted, placeholders


def _locked_placeholders(conversation_id: UUID) -> Conversation | None:
    """The conversation's row, locked, with only its (encrypted) placeholders loaded."""
    return (
        Conversation.objects.select_for_update()
        .only("pk", "tenant_id", "pii_placeholders")
        .filter(pk=conversation_id)
        .first()
    )


def placeholders_save(conversation_id: UUID, placeholders: Placeholders) -> None:
    """Store the placeholders added since `placeholders` was loaded (mid-reply: a tool's
    result). One stored meanwhile under the same name or for the same value keeps its own."""
    if not placeholders.added:
        return
    with transaction.atomic():
        row = _locked_placeholders(conversation_id)
        if row is None:
            placeholders.added = {}
            return
        current = Placeholders(row.pii_placeholders)
        merged = current.as_json()
        for name, entry in placeholders.added.items():
            kind = name[1 : name.index("_")]
            if name not in merged and not current.names(kind, entry["key"]):
                merged[name] = dict(entry)
        row.pii_placeholders = merged
        row.save(update_fields=["pii_placeholders"])
    placeholders.added = {}
