"""Counting the SQL a stage of the reply path runs: the widget's `hello` and `message`, the
worker's claim of the reply job and the storing of the reply (`reply_finish`)."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext


@contextmanager
def queries_captured() -> Iterator[CaptureQueriesContext]:
    """The statements run on this thread's connection inside the block."""
    with CaptureQueriesContext(connection) as captured:
        yield captured


def statements(captured: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in captured.captured_queries]


def stage_counted(monkeypatch: Any, target: str, counts: dict[str, list[str]], stage: str) -> None:
    """Replace the function at `target` (a dotted path) by one that records the SQL each call
    of it runs, under `stage` in `counts`."""
    module_path, name = target.rsplit(".", 1)
    module = __import__(module_path, fromlist=[name])
    original: Callable[..., Any] = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        with queries_captured() as captured:
            try:
                return original(*args, **kwargs)
            finally:
                counts.setdefault(stage, []).extend(statements(captured))

    monkeypatch.setattr(module, name, counted)
