"""The live console's websocket, against the real ASGI application."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group, User
from django.db import transaction

from config.asgi import application
from governance.audit.log import PendingEvent, append_events
from governance.console.consumers import ACCESS_REFUSED
from governance.console.live import latest_sequence

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def connect(cookie: str = "") -> WebsocketCommunicator:
    headers = [(b"origin", b"http://localhost")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, "/ws/console", headers=headers)


def session_cookie(client, user) -> str:
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def hear(communicator: WebsocketCommunicator, summary: str, heard: list[str]) -> None:
    """Receive frames into `heard` until an event with `summary` is among them. Events
    committed before may come first (each process publishes from a thread of its own after
    its commit, several to a message), and the browser shows each once, by sequence."""
    while summary not in heard:
        frame = await communicator.receive_json_from(timeout=5)
        heard += [event["summary"] for event in frame["events"]]


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
    # given an event from before the console opened (after alice's own, audited as she
    # was made)
    seen = latest_sequence()
    audit_something("before")
    cookie = session_cookie(client, alice)

    async def scenario():
        communicator = connect(cookie)
        connected, _ = await communicator.connect()
        assert connected

        # when it asks for everything after the last one it saw
        await communicator.send_json_to({"after": seen})
        heard: list[str] = []
        await hear(communicator, "before", heard)

        # and another process writes a new event
        await sync_to_async(audit_something)("after")

        # then it arrives without asking
        await hear(communicator, "after", heard)
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


# --- The socket re-checks its user while open ----------------------------------------------


async def open_and_hear_one(cookie: str) -> WebsocketCommunicator:
    """A console that is open and has heard one live event."""
    communicator = connect(cookie)
    connected, _ = await communicator.connect()
    assert connected
    await sync_to_async(audit_something)("while allowed")
    await hear(communicator, "while allowed", [])
    return communicator


async def hears_nothing_more_and_is_closed(communicator: WebsocketCommunicator) -> None:
    await sync_to_async(audit_something)("after the change")
    closing = await communicator.receive_output(timeout=5)
    assert closing == {"type": "websocket.close", "code": ACCESS_REFUSED}
    assert await communicator.receive_nothing(timeout=1)


def deactivate(username: str) -> None:
    User.objects.filter(username=username).update(is_active=False)


def test_a_console_of_a_user_deactivated_while_it_is_open_hears_nothing_more(client, alice):
    cookie = session_cookie(client, alice)

    async def scenario():
        communicator = await open_and_hear_one(cookie)
        await sync_to_async(deactivate)("alice")
        await hears_nothing_more_and_is_closed(communicator)

    asyncio.run(scenario())


def test_a_console_of_a_user_who_loses_the_permission_hears_nothing_more(client, dave):
    cookie = session_cookie(client, dave)

    def leave_compliance() -> None:
        dave.groups.remove(Group.objects.get(name="compliance"))

    async def scenario():
        communicator = await open_and_hear_one(cookie)
        await sync_to_async(leave_compliance)()
        await hears_nothing_more_and_is_closed(communicator)

    asyncio.run(scenario())


def test_a_console_whose_user_changed_password_hears_nothing_more(client, alice):
    cookie = session_cookie(client, alice)

    def new_password() -> None:
        alice.set_password("N3w-secret-x9")
        alice.save()

    async def scenario():
        communicator = await open_and_hear_one(cookie)
        await sync_to_async(new_password)()
        await hears_nothing_more_and_is_closed(communicator)

    asyncio.run(scenario())


def test_a_catch_up_after_losing_the_permission_is_refused(client, alice):
    cookie = session_cookie(client, alice)

    async def scenario():
        communicator = await open_and_hear_one(cookie)
        await sync_to_async(deactivate)("alice")
        await communicator.send_json_to({"after": 0})
        closing = await communicator.receive_output(timeout=5)
        assert closing == {"type": "websocket.close", "code": ACCESS_REFUSED}

    asyncio.run(scenario())


def test_an_integrator_who_may_read_only_their_tickets_cannot_watch_the_console(client):
    integrator = User.objects.create_user("ci-bot", is_staff=True)
    integrator.groups.add(Group.objects.get(name="integrators"))
    cookie = session_cookie(client, integrator)

    async def scenario():
        communicator = connect(cookie)
        connected, code = await communicator.connect()
        assert not connected
        assert code == ACCESS_REFUSED

    asyncio.run(scenario())
