"""The one langdetect wrapper: thresholds and trials per call, deterministic, no global state."""

from __future__ import annotations

import threading

from langdetect import DetectorFactory

from supportbot import language_detection
from supportbot.language_detection import detect_language

# langdetect: Spanish 86% in 7 trials, 67% in 3 (the rest Portuguese).
MIXED = "Obrigado pela ajuda, muchas gracias por todo"


def test_threshold_and_trials_are_parameters_of_the_call() -> None:
    assert detect_language(MIXED, min_probability=0.8, trials=7) == "es"
    assert detect_language(MIXED, min_probability=0.8, trials=3) is None
    assert detect_language(MIXED, min_probability=0.6, trials=3) == "es"


CHINESE = "我的包裹在哪里？我上周订购的。"  # noqa: RUF001
RUSSIAN = "Где мой заказ? Я заказал его неделю назад."  # noqa: RUF001


def test_codes_are_iso_639_1() -> None:
    assert detect_language(CHINESE, min_probability=0.5) == "zh"  # langdetect says zh-cn
    assert detect_language(RUSSIAN, min_probability=0.5) == "ru"


def test_nothing_to_go_on_is_none() -> None:
    assert detect_language("", min_probability=0.1) is None
    assert detect_language("1234 !!", min_probability=0.1) is None


def test_same_text_same_answer_whatever_the_global_seed(monkeypatch) -> None:
    answers = {detect_language(MIXED, min_probability=0.6, trials=3) for _ in range(10)}
    monkeypatch.setattr(DetectorFactory, "seed", 987)
    answers.add(detect_language(MIXED, min_probability=0.6, trials=3))
    assert answers == {"es"}


def test_importing_sets_no_global_state() -> None:
    assert DetectorFactory.seed is None


def test_profiles_are_loaded_once_under_concurrent_first_use(monkeypatch) -> None:
    monkeypatch.setattr(language_detection, "_factory", None)
    loads: list[int] = []
    real = DetectorFactory.load_profile

    def counting(self, directory):  # type: ignore[no-untyped-def]
        loads.append(1)
        return real(self, directory)

    monkeypatch.setattr(DetectorFactory, "load_profile", counting)
    answers: list[str | None] = []
    threads = [
        threading.Thread(target=lambda: answers.append(detect_language(MIXED, min_probability=0.6)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert answers == ["es"] * 4
    assert len(loads) == 1


def test_a_starting_worker_loads_the_profiles(monkeypatch) -> None:
    from celery.signals import worker_init

    from supportbot import language_detection

    monkeypatch.setattr(language_detection, "_factory", None)
    worker_init.send(sender=None)
    assert language_detection._factory is not None
