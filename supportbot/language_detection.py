"""Which language a text is written in: the project's one wrapper over langdetect.

Callers keep their own rules about what is worth detecting (a visitor's message,
conversations/language.py; a document, knowledge/languages.py) and pass how sure langdetect must
be and how many trials it makes.

langdetect is randomised, and its language profiles take about a second to load. Here they are
loaded once, behind a lock, on first use (or by `preload()`), into a factory of this module's
own: langdetect's module-level factory and its class-wide seed are left alone. Every detection
seeds its own detector, so the same text always gives the same answer, whatever else in the
process uses langdetect, and importing this module sets nothing.
"""

from __future__ import annotations

import threading

from langdetect import DetectorFactory, LangDetectException
from langdetect.detector_factory import PROFILES_DIRECTORY

SEED = 0
DEFAULT_TRIALS = 7  # langdetect's own

_factory: DetectorFactory | None = None
_factory_lock = threading.Lock()


def _loaded_factory() -> DetectorFactory:
    global _factory
    factory = _factory
    if factory is None:
        with _factory_lock:
            if _factory is None:
                loading = DetectorFactory()
                loading.load_profile(PROFILES_DIRECTORY)
                _factory = loading
            factory = _factory
    return factory


def preload() -> None:
    """Load the language profiles now, so that no detection pays for it later."""
    _loaded_factory()


def detect_language(
    text: str, *, min_probability: float, trials: int = DEFAULT_TRIALS
) -> str | None:
    """The ISO 639-1 code of the language `text` is most likely written in ("zh" for
    langdetect's "zh-cn" and "zh-tw"), or None when langdetect gives it less than
    `min_probability` or finds nothing to go on. `trials`: langdetect's random trials (more is
    steadier and slower). Deterministic: the same arguments always give the same answer."""
    detector = _loaded_factory().create()
    detector.seed = SEED
    detector.n_trial = trials
    try:
        detector.append(text)
        candidates = detector.get_probabilities()
    except LangDetectException:
        return None
    if not candidates or candidates[0].prob < min_probability:
        return None
    return str(candidates[0].lang).split("-", 1)[0].lower()
