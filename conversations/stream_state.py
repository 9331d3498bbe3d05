"""The text generated so far of each streaming reply, kept in Redis for resuming clients.

The worker writes the snapshot for delta `index` before it publishes that delta, so a socket
that subscribes first and reads the snapshot second misses nothing and repeats nothing: it
forwards only deltas with a higher index than the snapshot's.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from supportbot.redis_store import get_redis, redis_key

_TTL_SECONDS = 600


@dataclass(frozen=True)
class StreamSnapshot:
    text: str
    index: int  # index of the last delta included in `text`; -1 before the first


def _key(message_id: UUID | str) -> str:
    return redis_key("reply-stream", message_id)


def snapshot_write(message_id: UUID | str, *, text: str, index: int) -> None:
    key = _key(message_id)
    pipe = get_redis().pipeline(transaction=True)
    pipe.hset(key, mapping={"text": text, "index": index})
    pipe.expire(key, _TTL_SECONDS)
    pipe.execute()


def snapshot_read(message_id: UUID | str) -> StreamSnapshot | None:
    data: dict[str, str] = get_redis().hgetall(_key(message_id))  # type: ignore[assignment]
    if not data:
        return None
    return StreamSnapshot(text=data.get("text", ""), index=int(data.get("index", -1)))


def snapshot_clear(message_id: UUID | str) -> None:
    get_redis().delete(_key(message_id))


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
