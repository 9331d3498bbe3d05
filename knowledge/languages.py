"""Document languages: detection (supportbot.language_detection) and text-search configs."""

from __future__ import annotations

import re
import threading

from django.db import connections

from supportbot import language_detection

SIMPLE = "simple"
DETECT_CHARS = 5000  # the start of a document says enough
MIN_LETTERS = 20  # below this langdetect guesses more than it detects
MIN_PROBABILITY = 0.6
TRIALS = language_detection.DEFAULT_TRIALS
_CODE_RE = re.compile(r"^[a-z]{2,3}$")

# ISO 639-1 code -> the name of Postgres's snowball configuration for that language.
_CONFIG_BY_LANGUAGE = {
    "ar": "arabic",
    "ca": "catalan",
    "da": "danish",
    "de": "german",
    "el": "greek",
    "en": "english",
    "es": "spanish",
    "eu": "basque",
    "fi": "finnish",
    "fr": "french",
    "ga": "irish",
    "hi": "hindi",
    "hu": "hungarian",
    "hy": "armenian",
    "id": "indonesian",
    "it": "italian",
    "lt": "lithuanian",
    "nb": "norwegian",
    "ne": "nepali",
    "nl": "dutch",
    "nn": "norwegian",
    "no": "norwegian",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sr": "serbian",
    "sv": "swedish",
    "ta": "tamil",
    "tr": "turkish",
    "yi": "yiddish",
}

_available: dict[str, frozenset[str]] = {}
_lock = threading.Lock()


def normalize_language(code: str | None) -> str:
    """'pt-BR' -> 'pt', 'EN' -> 'en'; '' for anything that is not a language code."""
    base = (code or "").strip().lower().replace("_", "-").split("-")[0]
    return base if _CODE_RE.match(base) else ""


def detect_language(text: str) -> str:
    """The ISO 639-1 code of a document's language, or '' when langdetect cannot tell (fewer
    than 20 letters in its first 5000 characters, or no language at least 60% likely)."""
    sample = text[:DETECT_CHARS]
    if sum(ch.isalpha() for ch in sample) < MIN_LETTERS:
        return ""
    code = language_detection.detect_language(
        sample, min_probability=MIN_PROBABILITY, trials=TRIALS
    )
    return normalize_language(code)


def available_configs(using: str = "default") -> frozenset[str]:
    """The text-search configurations the database has (pg_ts_config), read once per database."""
    connection = connections[using]
    key = f"{using}:{connection.settings_dict.get('NAME')}"
    with _lock:
        cached = _available.get(key)
    if cached is not None:
        return cached
    with connection.cursor() as cursor:
        cursor.execute("SELECT cfgname FROM pg_catalog.pg_ts_config")
        names = frozenset(str(row[0]) for row in cursor.fetchall())
    with _lock:
        _available[key] = names
    return names


def search_config_for(language: str, using: str = "default") -> str:
    """The text-search configuration for an ISO 639-1 code: its snowball stemmer, else 'simple'."""
    name = _CONFIG_BY_LANGUAGE.get(normalize_language(language))
    if name and name in available_configs(using):
        return name
    return SIMPLE
