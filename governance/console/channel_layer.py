"""The Redis channel layer the console's sockets receive on, with a receive that ends when
it is cancelled.

A socket's consumer receives from the layer in a task of its own, and cancels that task
when the socket closes. On Python 3.11, asyncio.wait_for returns the result of an awaited
step that finished in the same moment as the cancellation and drops the cancellation
(fixed in 3.12); redis-py sends every command through wait_for. A socket closed while its
receive was sending (a refused socket closes at once, while its receive is still sending
its first commands) kept a task popping from Redis every five seconds, and its consumer
waiting for that task, for the life of the process.
"""

import asyncio
from typing import Any

from channels_redis.core import RedisChannelLayer

RECANCEL_SECONDS = 0.05


class CancellableRedisChannelLayer(RedisChannelLayer):
    async def receive(self, channel: str) -> dict[str, Any]:
        receiving = asyncio.ensure_future(super().receive(channel))
        try:
            # waits on its own future, so a cancellation reaches this task at once
            await asyncio.wait([receiving])
        except asyncio.CancelledError:
            await cancel_until_done(receiving)
            raise
        return receiving.result()


async def cancel_until_done(task: asyncio.Future) -> None:
    """Cancel again until the task ends: a cancellation it dropped is followed by one that
    lands in its next wait. Further cancellations of the caller are already being obeyed."""
    while not task.done():
        task.cancel()
        try:
            await asyncio.wait([task], timeout=RECANCEL_SECONDS)
        except asyncio.CancelledError:
            continue
    if not task.cancelled():
        task.exception()  # retrieved, so not logged: the caller's cancellation is raised
