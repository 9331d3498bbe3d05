"""Document languages: detection (langdetect, deterministic) and Postgres text-search configs."""

from __future__ import annotations

import re
import threading

from django.db import connections
from langdetect import DetectorFactory, LangDetectException, detect_langs

DetectorFactory.seed = 0  # langdetect is randomised; the seed makes it give one answer

SIMPLE = "simple"
_DETECT_CHARS = 5000
_MIN_LETTERS = 20  # below this langdetect guesses more than it detects
_MIN_PROBABILITY = 0.6
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
    """The ISO 639-1 code of `text`'s language, or '' when langdetect cannot tell (too few
    letters, or no language likely enough)."""
    sample = text[:_DETECT_CHARS]
    if sum(ch.isalpha() for ch in sample) < _MIN_LETTERS:
        return ""
    try:
        best = detect_langs(sample)[0]
    except (LangDetectException, IndexError):
        return ""
    return normalize_language(best.lang) if best.prob >= _MIN_PROBABILITY else ""


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
