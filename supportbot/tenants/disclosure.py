"""What the widget says plainly about the assistant: that the visitor is talking to an AI.

Every tenant has a text per language: its own (`Tenant.ai_disclosure`, a map language → text)
where it wrote one, else the default below. The defaults cover the languages the widget
speaks (static/widget/i18n.js).
"""

import re
from typing import Protocol

AI_DISCLOSURE_MAX_CHARS = 300

DEFAULT_AI_DISCLOSURES: dict[str, str] = {
    "en": "You're chatting with an AI assistant. Its answers can contain mistakes; you can ask "
    "for a person at any time.",
    "es": "Estás hablando con un asistente de IA. Sus respuestas pueden contener errores; "
    "puedes pedir hablar con una persona en cualquier momento.",
    "fr": "Vous discutez avec un assistant IA. Ses réponses peuvent contenir des erreurs ; "
    "vous pouvez demander à parler à une personne à tout moment.",
    "de": "Sie chatten mit einem KI-Assistenten. Seine Antworten können Fehler enthalten; Sie "
    "können jederzeit nach einer Person fragen.",
    "pt": "Está a falar com um assistente de IA. As respostas podem conter erros; pode pedir "
    "para falar com uma pessoa a qualquer momento.",
}

_LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{1,8})?")


class _HasDisclosure(Protocol):
    """A tenant, as far as its disclosure goes."""

    ai_disclosure: object
    fallback_language: str


class DisclosureError(ValueError):
    """A disclosure map that cannot be stored; the message says what to fix."""


def ai_disclosure_normalize(value: object) -> dict[str, str]:
    """The tenant's own texts as stored: language codes lower-cased, blank texts left out (the
    default applies), or DisclosureError."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise DisclosureError('A map of language to text, e.g. {"en": "You\'re chatting with…"}.')
    texts: dict[str, str] = {}
    for language, text in value.items():
        code = str(language).strip().lower().replace("_", "-")
        if not _LANGUAGE.fullmatch(code):
            raise DisclosureError(f"{language!r} is not a language code such as en or pt-br.")
        if not isinstance(text, str):
            raise DisclosureError(f"The text for {code} must be a string.")
        text = " ".join(text.split())
        if len(text) > AI_DISCLOSURE_MAX_CHARS:
            raise DisclosureError(
                f"The text for {code} is longer than {AI_DISCLOSURE_MAX_CHARS} characters."
            )
        if text:
            texts[code] = text
    return texts


def ai_disclosures(tenant: _HasDisclosure) -> dict[str, str]:
    """Every language's text for this tenant: the defaults, overridden by the tenant's own."""
    own = tenant.ai_disclosure if isinstance(tenant.ai_disclosure, dict) else {}
    texts = dict(DEFAULT_AI_DISCLOSURES)
    texts.update({k: v for k, v in own.items() if isinstance(v, str) and v.strip()})
    return texts


def ai_disclosure_for(tenant: _HasDisclosure, language: str) -> str:
    """The tenant's text in `language` ("es", "es-MX"), else in its base language, else in the
    tenant's fallback language, else in English."""
    texts = ai_disclosures(tenant)
    wanted = (language or "").strip().lower().replace("_", "-")
    for code in (wanted, wanted.split("-")[0], (tenant.fallback_language or "").lower(), "en"):
        if code and code in texts:
            return texts[code]
    return DEFAULT_AI_DISCLOSURES["en"]
