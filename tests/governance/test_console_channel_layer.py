"""The channel layer the console's sockets receive on, against a real Redis (REDIS_URL):
a socket that closes, at whatever moment, stops receiving."""

import asyncio
import os

import pytest
from channels.layers import get_channel_layer
from django.conf import settings

from governance.console.channel_layer import cancel_until_done


@pytest.fixture
def redis_layer():
    if not settings.REDIS_URL:
        if os.environ.get("CI"):
            pytest.fail("the channel layer's tests need REDIS_URL")
        pytest.skip("the channel layer's tests need REDIS_URL")
    return get_channel_layer()


def test_a_receive_cancelled_at_any_moment_ends(redis_layer):
    """A socket's receive is cancelled when the socket closes: at each of the first steps
    of a receive (taking a connection, sending its commands, waiting on Redis) in turn, a
    cancellation ends it, and none goes on popping from Redis for a closed socket."""

    async def sweep() -> list[int]:
        went_on = []
        for steps in range(80):
            channel = await redis_layer.new_channel()
            receiving = asyncio.ensure_future(redis_layer.receive(channel))
            for _ in range(steps):
                await asyncio.sleep(0)
            receiving.cancel()
            done, _ = await asyncio.wait([receiving], timeout=2)  # Redis's pop waits 5 s
            if not done:
                went_on.append(steps)
                await cancel_until_done(receiving)  # ended here, or the loop never closes
        return went_on

    assert asyncio.run(sweep()) == []


def test_a_message_sent_before_the_receive_is_received(redis_layer):
    async def scenario() -> dict:
        channel = await redis_layer.new_channel()
        await redis_layer.send(channel, {"type": "audit.events", "events": [{"sequence": 7}]})
        return await asyncio.wait_for(redis_layer.receive(channel), timeout=5)

    assert asyncio.run(scenario()) == {"type": "audit.events", "events": [{"sequence": 7}]}
