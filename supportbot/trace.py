"""Named trace points: where a benchmark times the stages of a request without patching code.

Code on a hot path calls `trace(stage, key)` where a stage is worth timing; a process that wants
the timings (`bench/_probe.py`) registers a callback with `trace_callback_add`. With no callback
registered, a trace point costs one attribute check. A callback runs on the thread that reached
the stage, so it must be quick and thread-safe, and must not raise.

Stages (the key in brackets):

    web.receive        the widget consumer got a `message` frame (conversation id)
    web.sync_start     widget_message starts on the database thread (conversation id)
    web.ack_sent       the consumer sent the `ack` (conversation id)

    reply.task_start   a worker starts a reply job (job id)
    reply.claimed      the job is claimed ("<job id>:<conversation id>:<reply message id>")
    reply.llm_request  the provider request starts, on its own thread (job id)
    reply.first_token  the provider's first text arrives (job id)
    reply.first_delta  the reply's first delta goes to the broadcaster (reply message id)
    worker.published   the broadcaster handed that delta to the channel layer (reply message id)
    web.event          a socket got that delta from the channel layer (reply message id)
    web.delta_sent     the socket wrote it to its client (reply message id)
"""

from collections.abc import Callable

TraceCallback = Callable[[str, str], None]


class _Registry:
    callbacks: tuple[TraceCallback, ...] = ()


_registry = _Registry()


def trace(stage: str, key: object) -> None:
    """Tell every registered callback that `stage` was reached for `key`."""
    if _registry.callbacks:
        for callback in _registry.callbacks:
            callback(stage, str(key))


def trace_callback_add(callback: TraceCallback) -> None:
    """Call `callback(stage, key)` at every trace point of this process from now on."""
    _registry.callbacks = (*_registry.callbacks, callback)


def trace_callback_remove(callback: TraceCallback) -> None:
    _registry.callbacks = tuple(c for c in _registry.callbacks if c is not callback)
