"""The visitor's language: detection (langdetect), the tenant's policy, and the prompt instruction.

Detection is deliberately cautious: short messages ("ok", "👍", an order number), ambiguous ones
and undetectable ones give None, and a conversation keeps the language it already has. Plain
English is recognised before langdetect is asked (supportbot.language_detection, which is
deterministic); langdetect must then be 80% sure, in 3 trials.
"""

from __future__ import annotations

import logging
import re

from django.db import transaction

from conversations.models import Conversation, Message
from supportbot import language_detection

logger = logging.getLogger(__name__)

MIN_PROBABILITY = 0.80  # below this, the detection is ambiguous: None
TRIALS = 3  # langdetect's default is 7: the same answers on our tests, in under half the time
MIN_WORDS = 3
MIN_LETTERS = 12
MIN_DENSE_CHARS = 4  # scripts written without spaces (Chinese, Japanese, Thai): characters
MAX_DETECT_CHARS = 2000  # the start of a long message says enough

_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
# An address is a whitespace-delimited word: something, "@", dot-separated labels. The start is
# pinned to the beginning of a word and the quantifiers are possessive, so the scan is linear:
# the naive r"\S+@\S+\.\S+" backtracks in cubic time ("@" * 2000 costs seconds of CPU).
_EMAIL_RE = re.compile(r"(?<!\S)[^\s@]++@(?:[^\s@.]++\.)+[^\s@.]++")
_MENTION_RE = re.compile(r"[@#]\w+")
_WORD_RE = re.compile("[^\\W\\d_]+(?:['\u2019][^\\W\\d_]+)*")
_DENSE_RE = re.compile(
    "[\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs
    "\uac00-\ud7af"  # hangul syllables
    "\u0e00-\u0e7f"  # thai
    "]"
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# langdetect is weak on short English: "My password reset link does not work" comes out as
# Afrikaans, "Hello, my order has not arrived yet." as Norwegian. Words that are common in
# English and rare as words of other languages rescue such messages (only ASCII-letter text).
_ENGLISH_MARKERS = _words(
    """the and you your are were not does doesn't don't didn't isn't can't cannot won't have
    has what where when why how would should could with this that these those please thanks
    thank hello there their which from been about just i'm i've it's i'd you're"""
)
_ENGLISH_MIN_MARKERS = 2
_ENGLISH_MIN_SHARE = 0.25

# langdetect's regional codes, as the ISO 639-1 code we store.
_NORMALIZE = {"zh-cn": "zh", "zh-tw": "zh"}

LANGUAGE_NAMES: dict[str, str] = {
    "af": "Afrikaans",
    "am": "Amharic",
    "ar": "Arabic",
    "az": "Azerbaijani",
    "be": "Belarusian",
    "bg": "Bulgarian",
    "bn": "Bengali",
    "bs": "Bosnian",
    "ca": "Catalan",
    "cs": "Czech",
    "cy": "Welsh",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "eo": "Esperanto",
    "es": "Spanish",
    "et": "Estonian",
    "eu": "Basque",
    "fa": "Persian",
    "fi": "Finnish",
    "fil": "Filipino",
    "fr": "French",
    "ga": "Irish",
    "gl": "Galician",
    "gu": "Gujarati",
    "ha": "Hausa",
    "he": "Hebrew",
    "hi": "Hindi",
    "hr": "Croatian",
    "hu": "Hungarian",
    "hy": "Armenian",
    "id": "Indonesian",
    "is": "Icelandic",
    "it": "Italian",
    "ja": "Japanese",
    "ka": "Georgian",
    "kk": "Kazakh",
    "km": "Khmer",
    "kn": "Kannada",
    "ko": "Korean",
    "lt": "Lithuanian",
    "lv": "Latvian",
    "mk": "Macedonian",
    "ml": "Malayalam",
    "mn": "Mongolian",
    "mr": "Marathi",
    "ms": "Malay",
    "mt": "Maltese",
    "my": "Burmese",
    "nb": "Norwegian Bokmål",
    "ne": "Nepali",
    "nl": "Dutch",
    "nn": "Norwegian Nynorsk",
    "no": "Norwegian",
    "pa": "Punjabi",
    "pl": "Polish",
    "ps": "Pashto",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "si": "Sinhala",
    "sk": "Slovak",
    "sl": "Slovenian",
    "so": "Somali",
    "sq": "Albanian",
    "sr": "Serbian",
    "sv": "Swedish",
    "sw": "Swahili",
    "ta": "Tamil",
    "te": "Telugu",
    "th": "Thai",
    "tl": "Tagalog",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "ur": "Urdu",
    "uz": "Uzbek",
    "vi": "Vietnamese",
    "yo": "Yoruba",
    "zh": "Chinese",
    "zu": "Zulu",
}

# Regional variants a tenant may configure (e.g. "pt-br"); others fall back to the base language.
_VARIANT_NAMES: dict[str, str] = {
    "en-gb": "British English",
    "en-us": "American English",
    "es-mx": "Mexican Spanish",
    "fr-ca": "Canadian French",
    "pt-br": "Brazilian Portuguese",
    "pt-pt": "European Portuguese",
    "zh-cn": "Simplified Chinese",
    "zh-hans": "Simplified Chinese",
    "zh-hant": "Traditional Chinese",
    "zh-tw": "Traditional Chinese",
}


def _normalize_code(code: str | None) -> str:
    code = (code or "").strip().lower().replace("_", "-")
    return _NORMALIZE.get(code, code)


def _base(code: str) -> str:
    return code.split("-", 1)[0]


def _detectable(text: str) -> str | None:
    """The text to give langdetect, or None when there is too little language in it."""
    text = _MENTION_RE.sub(" ", _EMAIL_RE.sub(" ", _URL_RE.sub(" ", text[:MAX_DETECT_CHARS])))
    if len(_DENSE_RE.findall(text)) >= MIN_DENSE_CHARS:
        return text
    words = _WORD_RE.findall(text)
    if len(words) < MIN_WORDS or sum(len(w) for w in words) < MIN_LETTERS:
        return None
    return text


def _looks_english(text: str) -> bool:
    words = [w.replace("\u2019", "'") for w in _WORD_RE.findall(text)]
    if not words or not all(w.isascii() for w in words):
        return False
    markers = sum(1 for w in words if w == "I" or w.lower() in _ENGLISH_MARKERS)
    return markers >= _ENGLISH_MIN_MARKERS and markers / len(words) >= _ENGLISH_MIN_SHARE


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code of the language `text` is written in ("es", "en", "zh", ...).

    None when the text is too short to tell (fewer than 3 words or 12 letters; 4 characters for
    Chinese, Japanese, Korean or Thai), when langdetect is not at least 80% sure, or when there
    is no language in it at all. Deterministic: the same text always gives the same answer.
    """
    if not isinstance(text, str):
        return None
    cleaned = _detectable(text)
    if cleaned is None:
        return None
    if _looks_english(cleaned):
        # Plain English (ASCII words, many English function words): langdetect's answer would
        # be English or wrong, and it costs ~15 ms on the path of every reply.
        return "en"
    return language_detection.detect_language(
        cleaned, min_probability=MIN_PROBABILITY, trials=TRIALS
    )


def resolve_reply_language(
    *, detected: str | None, current: str, supported: list[str], fallback: str
) -> str:
    """The language to answer in.

    A detected language is used when the tenant supports it (an empty `supported` means any
    language; "pt" also matches a configured "pt-br", which is then used), else the tenant's
    fallback. With nothing detected (short or ambiguous message) the conversation keeps its
    current language, under the same rule; a new conversation starts in the fallback.
    """
    fallback_code = _normalize_code(fallback) or "en"
    allowed = [c for c in (_normalize_code(s) for s in supported or []) if c]

    def permitted(code: str) -> str | None:
        if not code:
            return None
        if not allowed or code in allowed:
            return code
        return next((a for a in allowed if _base(a) == _base(code)), None)

    if detected:
        return permitted(_normalize_code(detected)) or fallback_code
    return permitted(_normalize_code(current)) or fallback_code


def language_name(code: str) -> str:
    """The English name of a language code ("es" -> "Spanish"); an unknown code is returned."""
    normalized = (code or "").strip().lower().replace("_", "-")
    if normalized in _VARIANT_NAMES:
        return _VARIANT_NAMES[normalized]
    return LANGUAGE_NAMES.get(normalized) or LANGUAGE_NAMES.get(_base(normalized)) or code


def language_instruction(code: str) -> str:
    """The sentence for the system prompt that sets the reply language ("Reply in Spanish.")."""
    name = language_name(code)
    if not code:
        return "Reply in the language the visitor writes in."
    if name == code:
        return f"Reply in the language with the ISO 639-1 code {code!r}."
    return f"Reply in {name}."


def reply_language_decide(
    *, conversation: Conversation, message: Message
) -> tuple[str | None, str]:
    """(the language detected in a visitor's message or None, the language to reply in)."""
    tenant = conversation.tenant
    detected = detect_language(message.text) if message.role == Message.Role.USER else None
    reply_language = resolve_reply_language(
        detected=detected,
        current=conversation.language,
        supported=list(tenant.supported_languages or []),
        fallback=tenant.fallback_language,
    )
    return detected, reply_language


def conversation_language_store(
    *, conversation: Conversation, message: Message, detected: str | None, reply_language: str
) -> bool:
    """Store what `reply_language_decide` found; True when the conversation's language changed.

    The detected language goes on the message; the reply language on the conversation when it
    changed. Nothing is written when nothing changed.
    """
    save_message = bool(detected) and message.language != detected
    save_conversation = conversation.language != reply_language
    if not (save_message or save_conversation):
        return False
    # No savepoint inside the claim's transaction: an error there rolls the claim back anyway.
    with transaction.atomic(savepoint=False):
        if save_message:
            message.language = detected or ""
            message.save(update_fields=["language"])
        if save_conversation:
            logger.info(
                "conversation %s language %r -> %r",
                conversation.pk,
                conversation.language,
                reply_language,
            )
            conversation.language = reply_language
            conversation.save(update_fields=["language"])
    return save_conversation
