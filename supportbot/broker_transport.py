"""The Celery broker's transport: kombu's Redis transport, made to survive a Redis restart.

When the broker connection drops, the worker tears the connection down (`collect`, which
forgets the connection's URL) and then closes it again; that second close, or the late
acknowledgement of a reply that was running meanwhile, asks the torn-down channel for a new
Redis client. Kombu's channel then fails with `AttributeError("'NoneType' object has no
attribute 'hostname'")`, which no one expects, and the worker exits ("Unrecoverable error").
Here that request fails as what it is, a lost connection: the worker ignores it (an ack that
cannot be sent is logged), reconnects, and the unacknowledged job comes back after the
visibility timeout (docs/operations.md, "Faults and recovery").
"""

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the broker connection was closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
