"""The text generated so far of each streaming reply, kept in Redis for resuming clients.

The worker writes the snapshot for delta `index` before it publishes that delta, so a socket
that subscribes first and reads the snapshot second misses nothing and repeats nothing: it
forwards only deltas with a higher index than the snapshot's.

The write can publish the delta too, in the same script (`publish`: a channel and payload, see
`broadcast.layer_publication`): one round trip per delta, and the snapshot can never lag the
delta.

A reply cancelled mid-stream (an agent took over) is *sealed*: the seal returns the text so far
and, in the same Redis script, refuses every later write, so the worker publishes no delta the
cancelled reply's final text does not hold. A sealed snapshot is left to expire.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from redis.commands.core import Script

from supportbot.redis_store import get_redis, redis_key

_TTL_SECONDS = 600


@dataclass(frozen=True)
class StreamSnapshot:
    text: str
    index: int  # index of the last delta included in `text`; -1 before the first


def _key(message_id: UUID | str) -> str:
    return redis_key("reply-stream", message_id)


def snapshot_key(message_id: UUID | str) -> str:
    """The Redis key of a reply's snapshot (found and erased with the person's data)."""
    return _key(message_id)


_WRITE = """
if redis.call('HGET', KEYS[1], 'sealed') == '1' then
    return 0
end
redis.call('HSET', KEYS[1], 'text', ARGV[1], 'index', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if ARGV[4] then
    redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return 1
"""

_SEAL = """
redis.call('HSET', KEYS[1], 'sealed', '1')
redis.call('EXPIRE', KEYS[1], ARGV[1])
return redis.call('HMGET', KEYS[1], 'text', 'index')
"""


def _write_script() -> Script:
    global _write_script_cached
    if _write_script_cached is None:
        _write_script_cached = get_redis().register_script(_WRITE)
    return _write_script_cached


_write_script_cached: Script | None = None


def snapshot_write(
    message_id: UUID | str, *, text: str, index: int, publish: tuple[str, bytes] | None = None
) -> bool:
    """Record the text up to delta `index` and, when given, PUBLISH `publish` (channel,
    payload) in the same script; False when the reply was sealed (cancelled): nothing was
    written, nothing published, and the delta must not be sent another way."""
    args: list[str | int | bytes] = [text, index, _TTL_SECONDS]
    if publish is not None:
        args += [publish[0], publish[1]]
    return bool(_write_script()(keys=[_key(message_id)], args=args, client=get_redis()))


def snapshot_seal(message_id: UUID | str) -> StreamSnapshot:
    """The text so far of a reply being cancelled; no later write is accepted."""
    text, index = get_redis().eval(_SEAL, 1, _key(message_id), _TTL_SECONDS)
    return StreamSnapshot(text=text or "", index=int(index) if index is not None else -1)


def snapshot_read(message_id: UUID | str) -> StreamSnapshot | None:
    data: dict[str, str] = get_redis().hgetall(_key(message_id))  # type: ignore[assignment]
    if not data:
        return None
    return StreamSnapshot(text=data.get("text", ""), index=int(data.get("index", -1)))


def snapshot_clear(message_id: UUID | str) -> None:
    get_redis().delete(_key(message_id))


def snapshots_clear(message_ids: Iterable[UUID | str]) -> None:
    """Remove the snapshots of `message_ids` (removed replies), if any is left."""
    keys = [_key(message_id) for message_id in message_ids]
    if keys:
        get_redis().delete(*keys)


def resume_frames(messages: Iterable[Any]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """For a (re)connecting socket: `reply.start` and the text so far of each reply still
    streaming among `messages`, and the delta index each snapshot covers."""
    frames: list[dict[str, Any]] = []
    covered: dict[str, int] = {}
    for message in messages:
        if message.status != "streaming":
            continue
        message_id = str(message.pk)
        frames.append({"type": "reply.start", "message_id": message_id})
        index = -1
        snapshot = snapshot_read(message_id)
        if snapshot is not None and snapshot.index >= 0:
            index = snapshot.index
            frames.append(
                {
                    "type": "reply.delta",
                    "message_id": message_id,
                    "index": index,
                    "text": snapshot.text,
                }
            )
        covered[message_id] = index
    return frames, covered
