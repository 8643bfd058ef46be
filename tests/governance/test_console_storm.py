"""The live console in a storm: events gathered into few messages, and every one shown."""

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction

from config.asgi import application
from governance.audit.log import PendingEvent, append_events
from governance.console import live

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


class SlowLayer:
    """A channel layer whose sends wait until the test lets them through."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.sending = threading.Event()
        self.release = threading.Event()

    async def group_send(self, group: str, message: dict) -> None:
        self.sending.set()
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 5)
        self.messages.append(message)


def test_events_committed_while_a_message_is_sent_go_out_together(monkeypatch):
    # given a publisher whose first message is still on its way
    layer = SlowLayer()
    monkeypatch.setattr(live, "get_channel_layer", lambda: layer)
    publisher = live._Publisher()
    publisher.publish([{"sequence": 1}])
    assert layer.sending.wait(5)

    # when three more transactions commit meanwhile
    for sequence in (2, 3, 4):
        publisher.publish([{"sequence": sequence}])
    layer.release.set()

    # then they follow as one message, in order
    for _ in range(50):
        if len(layer.messages) == 2:
            break
        threading.Event().wait(0.1)
    assert [[e["sequence"] for e in m["events"]] for m in layer.messages] == [[1], [2, 3, 4]]
    assert {m["type"] for m in layer.messages} == {"audit.events"}


def open_ticket_events(count: int) -> None:
    """A storm as the console hears it: a transaction per host, each opening a ticket."""
    for n in range(count):
        with transaction.atomic():
            append_events(
                [
                    PendingEvent(
                        f"agent:edge-{n:03d}",
                        "ticket.opened",
                        "Ticket",
                        str(n),
                        f"INC-{n:06d} opened: DNS latency 650 ms on edge-{n:03d}",
                        ticket_id=f"INC-{n:06d}",
                    )
                ]
            )


def test_a_console_shows_every_ticket_of_a_storm_in_order(client, alice):
    client.force_login(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    storm = 150  # past a socket's capacity (100 messages) if each event were one

    async def scenario() -> list[dict]:
        communicator = WebsocketCommunicator(
            application,
            "/ws/console",
            headers=[(b"origin", b"http://localhost"), (b"cookie", cookie.encode())],
        )
        connected, _ = await communicator.connect()
        assert connected
        # when a storm of tickets opens while it watches
        await sync_to_async(open_ticket_events)(storm)
        heard: list[dict] = []
        while sum(e["action"] == "ticket.opened" for e in heard) < storm:
            frame = await communicator.receive_json_from(timeout=10)
            heard += frame["events"]
        await communicator.disconnect()
        return heard

    heard = asyncio.run(scenario())

    # then every ticket is shown, each once, in the order they were opened
    opened = [e["ticket_id"] for e in heard if e["action"] == "ticket.opened"]
    assert opened == [f"INC-{n:06d}" for n in range(storm)]
    sequences = [e["sequence"] for e in heard]
    assert sequences == sorted(sequences)
