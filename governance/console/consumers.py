"""The live console's websocket: staff only; catch up by sequence, then live events."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from governance.console.live import CONSOLE_GROUP, events_after, relay


class ConsoleConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        # The console streams the audit trail: those who may read it in the admin may
        # watch it live; staff without that permission may not.
        if user is None or not user.is_authenticated or not user.is_staff:
            await self.close(code=4403)
            return
        if not await database_sync_to_async(user.has_perm)("governance.view_auditevent"):
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(CONSOLE_GROUP, self.channel_name)
        relay.ensure_running()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(CONSOLE_GROUP, self.channel_name)

    async def receive_json(self, content: dict, **kwargs: object) -> None:
        """{"after": N}: send every event after sequence N (a reconnect misses nothing)."""
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
        for item in await database_sync_to_async(events_after)(after):
            await self.send_json({"type": "event", "event": item})

    async def audit_event(self, message: dict) -> None:
        await self.send_json({"type": "event", "event": message["event"]})
