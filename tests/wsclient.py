"""A websocket client for tests that behaves like the browser: it applies each delta exactly once, by offset,
and fails the test on a doubled or missing character instead of quietly repairing it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


class ChatSocket:
    def __init__(self, server, session_cookie: str) -> None:
        self._connection = connect(
            f"{server.ws_url}/ws/chat/",
            origin=server.url,
            additional_headers={"Cookie": f"sessionid={session_cookie}"},
            open_timeout=5,
            max_size=None,
        )
        self.ws = self._connection.__enter__()
        self.frames: list[dict] = []
        self.texts: dict[str, str] = {}  # message id -> text assembled from snapshots and deltas
        self.ended: dict[str, dict] = {}  # message id -> its final state
        self.closed_code: int | None = None
        hello = self.recv()
        assert hello["type"] == "hello", hello

    def send(self, **frame) -> None:
        self.ws.send(json.dumps(frame))

    def send_raw(self, data: str | bytes) -> None:
        self.ws.send(data)

    def recv(self, timeout: float = 5.0) -> dict:
        frame = json.loads(self.ws.recv(timeout=timeout))
        self._apply(frame)
        self.frames.append(frame)
        return frame

    def _apply(self, frame: dict) -> None:
        kind = frame.get("type")
        if kind == "conversation":
            for message in frame["messages"]:
                self.texts[message["id"]] = message["content"]
        elif kind in ("ack", "turn"):
            for key in ("user_message", "assistant_message"):
                message = frame.get(key)
                if message and message["id"] not in self.texts:
                    self.texts[message["id"]] = message["content"]
        elif kind == "delta":
            have = self.texts.get(frame["message"], "")
            assert frame["offset"] == len(have), (
                f"delta at offset {frame['offset']} but the client holds {len(have)} characters"
            )
            self.texts[frame["message"]] = have + frame["text"]
        elif kind == "end":
            message = frame["message"]
            self.ended[message["id"]] = message
            assembled = self.texts.get(message["id"], "")
            assert assembled == message["content"], "the streamed text differs from the saved answer"

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching frame; last frames: {self.frames[-5:]}")
            frame = self.recv(timeout=remaining)
            if predicate(frame):
                return frame

    def wait_type(self, kind: str, timeout: float = 10.0) -> dict:
        return self.wait_for(lambda f: f["type"] == kind, timeout)

    def wait_end(self, message_id: str, timeout: float = 15.0) -> dict:
        if message_id in self.ended:
            return self.ended[message_id]
        return self.wait_for(lambda f: f["type"] == "end" and f["message"]["id"] == message_id, timeout)[
            "message"
        ]

    def wait_closed(self, timeout: float = 5.0) -> int | None:
        try:
            while True:
                self.recv(timeout=timeout)
        except ConnectionClosed as exc:
            self.closed_code = exc.rcvd.code if exc.rcvd else None
            return self.closed_code

    def close(self) -> None:
        self._connection.__exit__(None, None, None)

    def __enter__(self) -> ChatSocket:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
