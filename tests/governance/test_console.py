"""The live console's websocket, against the real ASGI application."""

import asyncio

import pytest
from channels.testing import WebsocketCommunicator
from django.db import transaction

from config.asgi import application
from governance.audit.log import PendingEvent, append_events

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def connect(cookie: str = "") -> WebsocketCommunicator:
    headers = [(b"origin", b"http://localhost")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, "/ws/console", headers=headers)


def session_cookie(client, user) -> str:
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def audit_something(summary: str) -> None:
    with transaction.atomic():
        append_events([PendingEvent("user:alice", "note.added", "Note", "1", summary)])


def test_anonymous_sockets_are_refused():
    async def scenario():
        communicator = connect()
        connected, code = await communicator.connect()
        assert not connected
        assert code == 4403

    asyncio.run(scenario())


def test_a_supervisor_catches_up_then_hears_new_events_live(client, alice):
    # given an event from before the console opened
    audit_something("before")
    cookie = session_cookie(client, alice)

    async def scenario():
        communicator = connect(cookie)
        connected, _ = await communicator.connect()
        assert connected

        # when it asks for everything after sequence 0
        await communicator.send_json_to({"after": 0})
        backlog = await communicator.receive_json_from(timeout=5)
        assert backlog["event"]["summary"] == "before"

        # and another process writes a new event
        from asgiref.sync import sync_to_async

        await sync_to_async(audit_something)("after")

        # then it arrives without asking
        live = await communicator.receive_json_from(timeout=5)
        assert live["event"]["summary"] == "after"
        await communicator.disconnect()

    asyncio.run(scenario())


def test_a_bad_catch_up_request_gets_an_error(client, alice):
    cookie = session_cookie(client, alice)

    async def scenario():
        communicator = connect(cookie)
        await communicator.connect()
        await communicator.send_json_to({"after": "yesterday"})
        reply = await communicator.receive_json_from(timeout=5)
        assert reply["error"]["code"] == "invalid"
        await communicator.disconnect()

    asyncio.run(scenario())
