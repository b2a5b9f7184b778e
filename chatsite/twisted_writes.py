"""Bytes written to a TCP connection leave in the call that writes them, not one reactor turn later.

Twisted's TCP transport never sends in `write()`: it appends the bytes to a buffer and asks the reactor to
watch the socket for writability (an epoll_ctl), and on the next loop turn `doWrite()` sends them and stops
watching (another epoll_ctl). Every websocket frame of every answer went through that: two system calls and
a loop turn more per frame per socket, about 5% of daphne's event loop at 200 answers and more at one,
where each frame is a wake-up of its own (bench/README.md, "Load", session 8).

`install()` makes a write to a connection with nothing buffered try `send()` at once, as asyncio's own
transports do. What the kernel does not take (a slow reader's full socket buffer), or a send that fails,
goes through Twisted's unchanged path: buffered, written when the socket is writable, a lost connection
reported by the reactor as before. Bytes stay in order because the shortcut is taken only when nothing is
buffered. TLS connections (Twisted's TLS writes through its own protocol) and connections that are closing
keep Twisted's path.

Installed by chatsite/asgi.py, so it applies to the daphne processes that serve the site and nothing else.
"""

from __future__ import annotations

from twisted.internet import tcp

_twisted_write = tcp.Connection.write


def _write(self: tcp.Connection, data: bytes) -> None:
    if (
        data
        and type(data) is bytes
        and self.connected
        and not self.disconnecting
        and not self._writeDisconnected
        and not self.TLS
        and not self._tempDataBuffer
        and self.offset == len(self.dataBuffer)
    ):
        sent = self.writeSomeData(data)
        if type(sent) is int and sent > 0:
            if sent >= len(data):
                return
            data = data[sent:]
        # Nothing or part sent (socket buffer full), or the send failed: Twisted buffers the rest, waits for
        # writability and reports a lost connection through doWrite, as it always does.
    _twisted_write(self, data)


def install() -> None:
    """Idempotent; for the process that runs daphne."""
    tcp.Connection.write = _write


def installed() -> bool:
    return tcp.Connection.write is _write
