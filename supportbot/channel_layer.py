"""The channel layer: channels_redis's pub/sub layer, and sockets told when it lost Redis.

Redis pub/sub keeps nothing for a subscriber that is away: while a process's connection to
Redis is down (a Redis restart), every frame published to its sockets' groups is lost. The
layer reconnects and subscribes again on its own, but a socket would not know what it missed,
and a reply that ended meanwhile would never reach it. So when the receiving connection works
again after an error, every socket of the process gets a `layer.reconnected` event; the socket
closes (4012, "resume") and the widget reconnects and resumes from its last `seq`
(docs/operations.md, "Faults and recovery").
"""

import asyncio
import logging
from typing import Any

from channels_redis import pubsub

logger = logging.getLogger(__name__)

RECONNECTED = {"type": "layer.reconnected"}


class _Shard(pubsub.RedisSingleShardConnection):
    async def _do_receiving(self) -> None:
        """channels_redis's receive loop, which also tells the sockets after a loss."""
        lost = False
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=0.1
                    )
                    if lost:
                        lost = False
                        logger.warning("channel layer: Redis is back; sockets resume")
                        self.channel_layer.reconnected()
                    self._receive_message(message)
                else:
                    await asyncio.sleep(0.1)
            except (TimeoutError, asyncio.CancelledError, GeneratorExit):
                raise
            except BaseException as exc:
                if not lost:
                    logger.warning("channel layer: lost Redis (%r); reconnecting", exc)
                lost = True
                await asyncio.sleep(1)


class _LoopLayer(pubsub.RedisPubSubLoopLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hosts = [shard.host for shard in getattr(self, "_shards")]  # noqa: B009
        self._shards = [_Shard(host, self) for host in hosts]

    def reconnected(self) -> None:
        data = self.channel_layer.serialize(RECONNECTED)
        for queue in self.channels.values():
            queue.put_nowait(data)


class ChannelLayer(pubsub.RedisPubSubChannelLayer):
    def _get_layer(self) -> _LoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            pubsub._wrap_close(self, loop)
        return layer
