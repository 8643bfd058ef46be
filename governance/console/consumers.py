"""The live console's websocket: catch up by sequence, then live events, for as long as
its user may read the whole audit trail. Events go to the browser in frames of several,
{"type": "events", "events": [...]}, in sequence order within a frame.

The permission is checked when the socket opens and again before every frame it is sent
and every catch-up it asks for, against the user as stored now: a user deactivated, who
loses the permission or their staff status, or whose password changed (which signs out
every session) gets nothing more, and the socket is closed with ACCESS_REFUSED.
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from governance.console.live import CONSOLE_GROUP, events_after, may_watch, relay

ACCESS_REFUSED = 4403  # the socket's "403": never allowed, or no longer


class ConsoleConsumer(AsyncJsonWebsocketConsumer):
    refused = False

    async def connect(self) -> None:
        if not await self._allowed():
            await self.close(code=ACCESS_REFUSED)
            return
        await self.channel_layer.group_add(CONSOLE_GROUP, self.channel_name)
        relay.ensure_running()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(CONSOLE_GROUP, self.channel_name)

    async def receive_json(self, content: dict, **kwargs: object) -> None:
        """{"after": N}: send every event after sequence N (a reconnect misses nothing)."""
        if not await self._still_allowed():
            return
        after = content.get("after")
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            await self.send_json(
                {
                    "error": {
                        "code": "invalid",
                        "message": "after: a sequence number >= 0 is required",
                    }
                }
            )
            return
        backlog = await database_sync_to_async(events_after)(after)
        if backlog:
            await self.send_json({"type": "events", "events": backlog})

    async def audit_events(self, message: dict) -> None:
        """A process's committed events, gathered (governance.console.live): one check of
        the user and one frame for all of them, however many a storm brings."""
        if await self._still_allowed():
            await self.send_json({"type": "events", "events": message["events"]})

    async def audit_event(self, message: dict) -> None:
        """One event, as a process of the previous release publishes it during an upgrade."""
        await self.audit_events({"events": [message["event"]]})

    async def _allowed(self) -> bool:
        return await database_sync_to_async(may_watch)(
            self.scope.get("user"), self.scope.get("session")
        )

    async def _still_allowed(self) -> bool:
        """Checked before anything is sent: once refused, the socket hears nothing more."""
        if self.refused:
            return False
        if await self._allowed():
            return True
        self.refused = True
        await self.channel_layer.group_discard(CONSOLE_GROUP, self.channel_name)
        await self.close(code=ACCESS_REFUSED)
        return False
