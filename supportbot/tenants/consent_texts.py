"""The consent or privacy notice the widget shows before a visitor's data is stored.

A tenant's lawful basis says how it is shown: under *consent* the visitor must accept it before
their first message is stored; under *legitimate interest* it is a notice, shown and recorded
with the first message. Each tenant may write its own text per language (`ConsentText` rows,
versioned: the newest version of a language is the current one); a language without one gets
the built-in default below (version 0), in the languages the widget speaks.
"""

import hashlib
from dataclasses import dataclass
from typing import Protocol

CONSENT_TEXT_MAX_CHARS = 2000

DEFAULT_CONSENT_TEXTS: dict[str, str] = {
    "en": "To answer you, we store this conversation and the details you give us. You can "
    "delete your data or withdraw your consent at any time from the chat's menu.",
    "es": "Para responderte, guardamos esta conversación y los datos que nos facilites. Puedes "
    "borrar tus datos o retirar tu consentimiento en cualquier momento desde el menú del chat.",
    "fr": "Pour vous répondre, nous conservons cette conversation et les informations que vous "
    "nous donnez. Vous pouvez supprimer vos données ou retirer votre consentement à tout moment "
    "depuis le menu du chat.",
    "de": "Um Ihnen zu antworten, speichern wir dieses Gespräch und die Angaben, die Sie uns "
    "machen. Sie können Ihre Daten jederzeit über das Menü des Chats löschen oder Ihre "
    "Einwilligung widerrufen.",
    "pt": "Para lhe responder, guardamos esta conversa e os dados que nos fornecer. Pode apagar "
    "os seus dados ou retirar o seu consentimento a qualquer momento no menu do chat.",
}
DEFAULT_VERSION = 0


@dataclass(frozen=True)
class ConsentNotice:
    """The text a visitor is shown: its language, version and the digest of its exact text."""

    language: str
    version: int
    text: str

    @property
    def text_sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


class _HasFallback(Protocol):
    fallback_language: str


def language_candidates(tenant: _HasFallback, language: str) -> list[str]:
    """The codes to try for `language` ("es-MX"): itself, its base, the tenant's fallback, en."""
    wanted = (language or "").strip().lower().replace("_", "-")
    codes = [wanted, wanted.split("-")[0], (tenant.fallback_language or "").lower(), "en"]
    return list(dict.fromkeys(code for code in codes if code))


def consent_notice_pick(
    tenant: _HasFallback, language: str, own: dict[str, tuple[int, str]]
) -> ConsentNotice:
    """The notice in `language` from the tenant's own current texts (`own`: language ->
    (version, text)), else the default text of that language, else English."""
    for code in language_candidates(tenant, language):
        if code in own:
            version, text = own[code]
            return ConsentNotice(language=code, version=version, text=text)
        if code in DEFAULT_CONSENT_TEXTS:
            return ConsentNotice(
                language=code, version=DEFAULT_VERSION, text=DEFAULT_CONSENT_TEXTS[code]
            )
    return ConsentNotice(language="en", version=DEFAULT_VERSION, text=DEFAULT_CONSENT_TEXTS["en"])
