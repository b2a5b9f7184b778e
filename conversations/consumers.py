"""The chat websocket. Thin: it authenticates, parses frames and hands the work to the service layer."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

PROTOCOL_VERSION = 1

# Application close codes (4000-4999 are ours): the browser can tell "log in again" from a network drop.
CLOSE_UNAUTHENTICATED = 4401


class ChatConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            # Accept-then-close would leak nothing either, but refusing the handshake is what a proxy logs.
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self.accept()
        await self.send_json({"type": "hello", "protocol": PROTOCOL_VERSION})

    async def receive_json(self, content, **kwargs) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong", "id": content.get("id")})
            return
        await self.send_json({"type": "error", "code": "unknown_type", "message": "Unknown frame type."})
