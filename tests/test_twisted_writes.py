"""chatsite/twisted_writes.py: a write to an idle TCP connection is sent in the call; anything the kernel does
not take, or a failed send, keeps Twisted's buffered path, in order. Real loopback sockets, Twisted's own TCP
connection class; only the reactor is a recorder (which sockets it was asked to watch)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from twisted.internet import main, protocol, tcp

from chatsite import twisted_writes


class _Reactor:
    """What tcp.Connection asks of a reactor while writing: watch (or stop watching) its socket."""

    def __init__(self) -> None:
        self.writers: list = []
        self.watch_requests = 0

    def addWriter(self, descriptor) -> None:
        self.watch_requests += 1
        if descriptor not in self.writers:
            self.writers.append(descriptor)

    def removeWriter(self, descriptor) -> None:
        if descriptor in self.writers:
            self.writers.remove(descriptor)

    def addReader(self, descriptor) -> None:
        pass

    def removeReader(self, descriptor) -> None:
        pass


@pytest.fixture
def patched(monkeypatch):
    monkeypatch.setattr(tcp.Connection, "write", tcp.Connection.write)  # restored after the test
    twisted_writes.install()
    assert twisted_writes.installed()


@pytest.fixture
def pair():
    """(Twisted's connection on the server side of a loopback TCP pair, the client's plain socket, reactor)."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    server.setblocking(False)
    reactor = _Reactor()
    connection = tcp.Connection(server, protocol.Protocol(), reactor=reactor)
    connection.connected = 1
    yield connection, client, reactor
    client.close()
    server.close()


def _receive(client: socket.socket, size: int) -> bytes:
    client.settimeout(5)
    received = bytearray()
    while len(received) < size:
        chunk = client.recv(size - len(received))
        if not chunk:
            break
        received += chunk
    return bytes(received)


def test_a_write_to_an_idle_connection_is_sent_at_once_without_watching_the_socket(patched, pair):
    connection, client, reactor = pair
    connection.write(b"frame one")
    connection.write(b"frame two")
    assert _receive(client, 18) == b"frame oneframe two"
    assert reactor.watch_requests == 0
    assert connection._tempDataBuffer == [] and connection.dataBuffer == b""


def test_what_the_kernel_does_not_take_is_buffered_and_sent_in_order_when_writable(patched, pair):
    connection, client, reactor = pair
    # Twisted sends at most SEND_LIMIT (128 KB) per call; with the reader not reading yet, the kernel's
    # buffers take some of 8 MB and no more.
    big = bytes(range(256)) * 32_768
    connection.write(big)
    assert reactor.writers == [connection]  # the rest waits for writability, as Twisted always did
    connection.write(b"and then this")  # something is buffered: joins the queue, never jumps it
    expected = big + b"and then this"
    received = bytearray()
    client.settimeout(5)
    while len(received) < len(expected):
        received += client.recv(1 << 20)
        if reactor.writers:
            assert connection.doWrite() is None
    assert bytes(received) == expected
    assert reactor.writers == []  # all out: Twisted stopped watching


def test_a_failed_send_leaves_the_bytes_to_twisted_which_reports_the_lost_connection(patched, pair):
    connection, _client, reactor = pair
    connection.socket.shutdown(socket.SHUT_WR)  # any send now fails (EPIPE)
    connection.write(b"too late")
    assert reactor.writers == [connection]  # buffered, for doWrite to find out
    assert connection.doWrite() is main.CONNECTION_LOST


def test_the_site_installs_it_for_daphne():
    """In a process of its own: loading the ASGI application, as daphne does, installs it."""
    check = "import chatsite.asgi; from chatsite import twisted_writes; print(twisted_writes.installed())"
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "True"
