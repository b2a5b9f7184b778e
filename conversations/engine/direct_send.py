"""A frame for an idle socket is written by the code that sends it, not by the socket's consumer later.

Through the channel layer, every frame of every answer costs each socket that receives it three task steps
(the consumer's channel reader wakes, its handler loop wakes, the reader wakes again for the next receive:
engine/dispatch.py), a queue round trip, and channels' and daphne's asynchronous send wrappers; at a few
hundred concurrent answers that was about a tenth of the event loop (bench/README.md, "Session 16"). When
the socket's consumer has nothing else to do (its handler loop waits, nothing is queued for it), handling
the frame at once, in the sender's call, is exactly what the consumer would have done next: the layer
offers the frame to the consumer's `deliver_now` first (engine/layers.py), which trims it against what the
client holds and writes it, or declines, and the frame is queued as before (a command is running, a gap
asks the generator for the rest, the socket is not daphne's).

The write itself needs a synchronous way into the websocket. An ASGI `send` is a coroutine function; daphne's
is `functools.partial(Server.handle_reply, protocol)`, whose body is synchronous. `sync_writer` recognises
that shape and returns a function doing what Server.handle_reply does for a text frame (nothing if the
connection is gone; else the protocol's own `handle_reply`). Any other server or shape: None, and every
frame goes through the layer as before (docs/private-apis.md; tests/test_direct_send.py checks that daphne
still has the shape).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

# The scope key under which StartEngine (engine/__init__.py) hands the consumer its socket's writer.
SCOPE_KEY = "chatsite.write_now"

Writer = Callable[[str], None]


def sync_writer(send) -> Writer | None:
    """A function that writes a text frame to the websocket behind daphne's ASGI `send`, synchronously; None
    when `send` is not daphne's."""
    try:
        from daphne.server import Server
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:  # pragma: no cover - daphne is a dependency
        return None
    if not isinstance(send, functools.partial) or len(send.args) != 1 or send.keywords:
        return None
    server = getattr(send.func, "__self__", None)
    protocol = send.args[0]
    if (
        not isinstance(server, Server)
        or getattr(send.func, "__func__", None) is not Server.handle_reply
        or not isinstance(protocol, WebSocketProtocol)
    ):
        return None

    def write(text: str) -> None:
        # As Server.handle_reply: nothing for a connection daphne has let go of or seen close.
        state = server.connections.get(protocol)
        if state is None or state.get("disconnected"):
            return
        protocol.handle_reply({"type": "websocket.send", "text": text})

    return write
