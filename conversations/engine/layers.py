"""The in-memory channel layer (one process, no REDIS_URL), with its housekeeping made cheap.

channels' InMemoryChannelLayer scans every queued channel and every group membership for expired entries
on each `receive` and each `group_send`, and `group_send` starts a task per member. Every open socket holds
two memberships and every running answer one more, so with a few hundred sockets those scans took most of
the process's CPU (bench/load.py: over half of it at 200 concurrent answers) and streams fell seconds
behind. Here the scan runs at most once a second, `group_send` puts the message on each member's queue
directly, a live channel keeps its queue between messages (channels built two new ones per message), and a
closed socket's channel leaves its groups through an index instead of a scan of every group, and a frame for
an idle socket is handled by its consumer in the sending call (`set_direct`, engine/direct_send.py).
Everything else is channels' own code: messages are still copied per recipient, bounded per channel
(`capacity`), expired after `expiry` seconds, and `group_send` still skips full channels.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable
from copy import deepcopy

import channels_redis.pubsub
import channels_redis.utils
import redis.asyncio.connection
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer

from conversations.engine.notify import FRAME

logger = logging.getLogger(__name__)

# A consumer's offer to handle a frame at once (engine/direct_send.py): True when it did.
DirectHandler = Callable[[dict], bool]


class _DirectFrames:
    """Both layers: frames offered to an idle socket's consumer before its queue (engine/direct_send.py)."""

    def _init_direct(self) -> None:
        self.direct: dict[str, DirectHandler] = {}

    def set_direct(self, channel: str, handler: DirectHandler) -> None:
        """Offer `channel`'s frames to `handler` first, while nothing waits in its queue: the consumer then
        has nothing before them to handle. Until the channel is discarded."""
        self.direct[channel] = handler

    def _handled_now(self, channel: str, queue: asyncio.Queue, message: dict) -> bool:
        handler = self.direct.get(channel)
        return handler is not None and queue.empty() and handler(message)


class InMemoryChannelLayer(_DirectFrames, ChannelsInMemoryChannelLayer):
    CLEAN_INTERVAL = 1.0  # seconds between two scans for expired messages and memberships

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_direct()
        self._next_clean = 0.0
        # channel -> the groups it joined. channels finds a channel's groups by scanning every group, on each
        # discard_channel (every closed socket): with thousands of sockets open, thousands of groups per close.
        self._memberships: dict[str, set[str]] = {}

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now < self._next_clean:
            return
        self._next_clean = now + self.CLEAN_INTERVAL
        super()._clean_expired()

    async def group_add(self, group: str, channel: str) -> None:
        await super().group_add(group, channel)
        self._memberships.setdefault(channel, set()).add(group)

    async def group_discard(self, group: str, channel: str) -> None:
        await super().group_discard(group, channel)
        groups = self._memberships.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._memberships[channel]

    def _remove_from_groups(self, channel: str) -> None:
        """As channels', through the index, and a group left empty goes too (channels keeps it, empty, for
        the life of the process: one per conversation ever opened)."""
        for group in self._memberships.pop(channel, ()):
            members = self.groups.get(group)
            if members is not None:
                members.pop(channel, None)
                if not members:
                    del self.groups[group]

    async def send(self, channel: str, message: dict) -> None:
        queue = self.channels.get(channel)
        if queue is None:  # the first message to this channel: channels' own checks, and its queue
            await super().send(channel, message)
            return
        # channels' send builds a throwaway queue for every message (dict.setdefault's argument) and checks
        # the name again: a few percent of the CPU at 200 answers. The rest is as there.
        assert isinstance(message, dict), "message is not a dict"
        # Frames (engine/notify.py) are never changed once sent, by the sender or by any consumer (they build a
        # new dict to trim one): every recipient shares one, instead of a deep copy each.
        shared = message.get("type") == FRAME
        if shared and self._handled_now(channel, queue, message):
            return
        try:
            queue.put_nowait((time.time() + self.expiry, message if shared else deepcopy(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def receive(self, channel: str) -> dict:
        queue = self.channels.get(channel)
        if queue is None:
            return await super().receive(channel)
        # As channels' receive, but a live channel keeps its queue between messages (channels drops it when
        # empty, so every message cost two new queues); it is dropped when a receive is cancelled (the
        # socket closed) and nothing waits in it.
        self._clean_expired()
        try:
            _expires, message = await queue.get()
        except BaseException:
            if queue.empty() and self.channels.get(channel) is queue:
                del self.channels[channel]
            raise
        return message

    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            # As in channels, a consumer that far behind loses the message; the sender carries on.
            with contextlib.suppress(ChannelFull):
                await self.send(channel, message)  # no real await inside: a copy onto the channel's queue

    async def discard_channel(self, channel: str) -> None:
        """Forget a channel nobody will receive on again (a closed socket, an ended generation): its queue
        and its group memberships. channels drops them only when a receive on it is cancelled."""
        self.direct.pop(channel, None)
        self.channels.pop(channel, None)
        self._remove_from_groups(channel)

    async def flush(self) -> None:
        await super().flush()
        self._memberships.clear()
        self.direct.clear()
        self._next_clean = 0.0


# --- Redis (REDIS_URL set): pub/sub ------------------------------------------------------------------------


class RedisPubSubChannelLayer(channels_redis.pubsub.RedisPubSubChannelLayer):
    """channels-redis's pub/sub layer, for several daphne processes, with its gaps closed.

    Why pub/sub rather than channels-redis's core layer: a group_send there is a Lua script that pushes one
    copy per member socket onto Redis lists, which every process then pops with BZPOPMIN: about eight round
    trips and 1-2 ms of event-loop CPU per frame sent and received. Here a group_send is one PUBLISH; Redis
    hands it once to each process subscribed to the group, which copies it onto the queues of its member
    sockets in memory (about 0.15 ms per frame). Differences that matter to this project, and what is done:

    - nothing is stored: a message to a channel or group nobody subscribes to is dropped, and there is no
      `capacity` (queues are unbounded) and no `expiry`. The engine never relies on a message waiting for a
      receiver that is not there yet: a socket joins its conversation before reading the snapshot, and a gap
      in an answer makes it ask the generator again (SYNC_RETRY);
    - a subscription is in effect once Redis confirms it, not when SUBSCRIBE is written: `group_add` and
      `new_channel` here wait for that confirmation (at most SUBSCRIBE_TIMEOUT), as the core layer's
      group_add returns once the membership is stored. Anything sent after they return is received;
    - channels-redis sends a process's PUBLISHes one at a time behind a lock, a round trip each: under load,
      one frame per turn of the event loop. Here they are pipelined: whatever was published while the
      previous batch was on the wire goes out together, in order, on one connection;
    - a channel from `new_channel` stays subscribed until a `receive` on it is cancelled (what channels does
      when a socket closes). A generation ends its listener with a message instead, and then calls
      `discard_channel` to unsubscribe its control channel;
    - pub/sub channels are server-wide, not per Redis database: names carry the database number
      (`default_prefix`), so sites on different databases of one server stay apart as with the core layer;
    - the receiving task survives any error (channels-redis's ends for good on a TimeoutError);
    - `delivered` lets shutdown wait until this process's own sockets have taken what it just sent;
    - messages for this process's own channels and groups are put on their queues directly, and a group's
      are published only while another process has members in it (_PubSubLoopLayer): at one process per
      conversation, the usual case, a frame never touches Redis.

    Order: one connection publishes and one receives per process (hence exactly one Redis host), so messages
    from one process arrive in the order it sent them, whether to a group or to a socket's own channel: a
    generation's sync replies stay in order with its live frames, which resume depends on.
    """

    def __init__(self, *args, **kwargs) -> None:
        if len(channels_redis.utils.decode_hosts(kwargs.get("hosts"))) != 1:
            # channels-redis would spread channels and groups over the hosts, each with its own connections:
            # a sync reply and the live frames it must stay in order with could then travel apart.
            raise ValueError("RedisPubSubChannelLayer takes exactly one Redis host")
        if "prefix" not in kwargs:
            kwargs["prefix"] = default_prefix(kwargs.get("hosts"))
        super().__init__(*args, **kwargs)

    def _get_layer(self):
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = _PubSubLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            channels_redis.utils._wrap_close(self, loop)
        return layer

    def set_direct(self, channel: str, handler: DirectHandler) -> None:
        """This event loop's layer's `set_direct` (_DirectFrames)."""
        self._get_layer().set_direct(channel, handler)

    def redis(self) -> redis.asyncio.Redis:
        """This event loop's Redis client (the pool the layer publishes through), for the engine's few keys of
        its own (engine/socket_caps.py). Commands on it never delay the layer's pipelined PUBLISHes."""
        shard = self._get_layer()._shards[0]
        shard._ensure_redis()
        return shard._redis


def default_prefix(hosts) -> str:
    """`asgi.db<N>.`: Redis pub/sub channels are server-wide, not per database, so without the database number
    in their names two sites (or two test runs) on one Redis server would share groups such as `user.1`. The
    core layer's keys live in the database; this keeps the same separation."""
    host = channels_redis.utils.decode_hosts(hosts)[0]
    db = host.get("db")
    if db is None and "address" in host:
        db = redis.asyncio.connection.parse_url(host["address"]).get("db")
    return f"asgi.db{db or 0}."


def _glob_escape(name: str) -> str:
    """`name` matched literally in a Redis glob pattern."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", name)


SUBSCRIBE_TIMEOUT = 5.0  # seconds a group_add waits for Redis to confirm its subscription before going on


# Every payload this layer publishes starts with a kind (a channels message, or a hello or acknowledgement of
# the layers themselves) and its process's tag (uuid4().bytes): the rest is the serialized message or the
# control message's argument.
MESSAGE, HELLO, ACK = b"M", b"H", b"A"
HEADER = 1 + 16


class _PubSubLoopLayer(_DirectFrames, channels_redis.pubsub.RedisPubSubLoopLayer):
    """One process's layer (one event loop). Messages to this process's own channels and groups are put on
    their queues directly, without a round trip through Redis; a group's messages are published only when
    another process may have members in it (see _announce)."""

    # Seconds a group this process has to itself goes without a PUBLISH: then one message is published anyway,
    # and its count of receivers says whether another process joined unannounced.
    LOCAL_RECHECK = 5.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shards = [_PubSubShard(shard.host, self) for shard in self._shards]
        self.origin = uuid.uuid4().bytes
        # Group channels (with members here) that other processes also have members in, as far as this
        # process knows: their messages are published as well as delivered here.
        self.shared: set[str] = set()
        # Per group channel, bumped by every hello from another process: a PUBLISH's count of receivers
        # that was sent before the latest hello must not mark the group unshared (_PubSubShard._sent).
        self.hellos: dict[str, int] = {}  # entries go with the group's last member here (_forget)
        self._process_channel: str | None = None  # where other processes acknowledge this one's hellos
        self._announcing: dict[str, asyncio.Future[None]] = {}  # group channel -> its hello's handshake
        self._acks: dict[str, list] = {}  # group channel -> [acknowledgements awaited, future]
        self._tasks: set[asyncio.Task] = set()  # acknowledgements being sent
        self.group_patterns: dict[str, str] = {}  # Redis pattern -> the channel its messages go to
        self.local_since: dict[
            str, float
        ] = {}  # group channel -> when it was found to be this process's alone
        self._init_direct()

    # Sending: local queues first, Redis only for other processes.

    async def send(self, channel, message) -> None:
        data = self.channel_layer.serialize(message)
        queue = self.channels.get(channel)
        if queue is not None:  # a channel of this process: no need to go through Redis and back
            self.deliver(channel, queue, data, message)
            return
        await self._get_shard(channel).publish(channel, MESSAGE + self.origin + data)

    def deliver(self, channel: str, queue: asyncio.Queue, data: bytes, message: dict | None = None) -> None:
        """A message for a channel of this process: a frame to its consumer at once if idle (`set_direct`),
        else onto its queue (`data`, serialized). `message`: `data` deserialized, if the caller has it."""
        if channel in self.direct and queue.empty():
            if message is None:
                message = self.channel_layer.deserialize(data)
            if message.get("type") == FRAME and self._handled_now(channel, queue, message):
                return
        queue.put_nowait(data)

    async def group_send(self, group, message) -> None:
        group_channel = self._get_group_channel_name(group)
        data = self.channel_layer.serialize(message)
        members = self.groups.get(group_channel)
        if members:
            for channel in list(members):
                queue = self.channels.get(channel)
                if queue is not None:
                    self.deliver(channel, queue, data, message)
            if group_channel not in self.shared:
                local_since = self.local_since.get(group_channel, 0.0)
                if time.monotonic() - local_since < self.LOCAL_RECHECK:
                    return  # no other process has members: Redis would only hand it back to us
                # Published now and then anyway: should another process's hello have been lost (a Redis
                # connection dropped), its count of receivers shows it, and the group is shared again.
                self.local_since[group_channel] = time.monotonic()
        # Members elsewhere (or, with none here, perhaps): publish. Our own copy comes back and is skipped.
        await self._get_shard(group_channel).publish(
            group_channel, MESSAGE + self.origin + data, group_channel if members else None
        )

    # Joining a group: other processes must know before group_add returns.

    async def group_add(self, group, channel) -> None:
        await self.group_add_soon(group, channel)

    def group_add_soon(self, group, channel) -> asyncio.Future[None]:
        """Join in two steps. When this returns, messages this process sends to the group reach `channel`;
        when the returned future is done (what group_add and `joined` wait for), messages from every other
        process do too: Redis confirmed the subscription and the processes with members exchanged hellos. A
        caller that knows no other process will send to the group for a while need not wait
        (commands.start_turn): with Redis busy, the wait was most of a burst's time to first token."""
        if channel not in self.channels:
            raise RuntimeError(f"group_add() of {channel!r}, which is not a channel of this process")
        group_channel = self._get_group_channel_name(group)
        announcing = self._announcing.get(group_channel)
        first = announcing is None and not self.groups.get(group_channel)
        if first:  # this process's first member: later joiners here wait for the same handshake
            announcing = self._announcing[group_channel] = asyncio.get_running_loop().create_future()
        self.groups.setdefault(group_channel, set()).add(
            channel
        )  # channels-redis's group_add, its first half
        return asyncio.ensure_future(self._join(group_channel, first, announcing))

    async def joined(self, group) -> None:
        """Until the joins of `group` in progress in this process (group_add_soon) are complete."""
        announcing = self._announcing.get(self._get_group_channel_name(group))
        if announcing is not None:
            await asyncio.shield(announcing)

    async def _join(self, group_channel: str, first: bool, announcing: asyncio.Future | None) -> None:
        shard = self._get_shard(group_channel)
        try:
            await shard.subscribe(group_channel)  # confirmed by Redis when it returns
            if group_channel not in self.groups:
                # Every member here left while it subscribed (a socket that moved on at once): unsubscribe,
                # or the subscription would outlive them.
                await shard.unsubscribe(group_channel)
                return
            if first:
                await self._announce(group_channel)
        finally:
            if first:
                self._announcing.pop(group_channel, None)
                announcing.set_result(None)
        if not first and announcing is not None:
            await asyncio.shield(announcing)

    async def listen_to_groups(self, pattern: str, channel: str) -> None:
        """Every message sent to a group whose name matches `pattern` (a Redis glob: `gen.*`), by any process,
        this one included, is put on `channel` (from `new_channel`): one PSUBSCRIBE for any number of groups,
        in effect when this returns. Such groups have no members (a group_add to one would make its messages
        local to its process): a group_send to one is always published, and every listening process gets it.
        engine/control.py listens so for the control groups of all answers."""
        name = _glob_escape(self._get_group_channel_name("")) + pattern
        self.group_patterns[name] = channel
        await self._shards[0].subscribe(name, pattern=True)

    async def _announce(self, group_channel: str) -> None:
        """Tell the other processes with members in this group that this one has members too, and wait until
        each has acknowledged. A process that thought it had the group to itself delivered its messages there
        without publishing them; once it has acknowledged, it publishes every message it sends to the group,
        so anything sent after group_add returns reaches this process (as when every message was published).
        A process that does not answer within SUBSCRIBE_TIMEOUT is not waited for (and a hello lost with a
        Redis connection is made up for by LOCAL_RECHECK)."""
        self.shared.add(group_channel)  # until a PUBLISH finds nobody else subscribed
        if self._process_channel is None:  # subscribed, with no queue: only control messages come here
            name = f"{self.prefix}process.{uuid.uuid4().hex}"
            await self._get_shard(name).subscribe(name)
            self._process_channel = name
        waiter = asyncio.get_running_loop().create_future()
        acks = self._acks[group_channel] = [0, waiter]
        try:
            hellos = self.hellos.get(group_channel, 0)
            receivers = await self._get_shard(group_channel).publish(
                group_channel, HELLO + self.origin + self._process_channel.encode()
            )
            acks[0] += receivers - 1  # every subscriber of the group but this process answers
            if receivers <= 1 and self.hellos.get(group_channel, 0) == hellos:
                self._make_local(group_channel)  # nobody else is in it (a later joiner will say hello)
            if acks[0] <= 0:
                return
            try:
                await asyncio.wait_for(asyncio.shield(waiter), SUBSCRIBE_TIMEOUT)
            except TimeoutError:
                logger.warning("not every process acknowledged joining %s in time; going on", group_channel)
        finally:
            self._acks.pop(group_channel, None)

    def _forget(self, group_channel: str) -> None:
        """The group's last member here left: what this process knew of it goes (one entry per answer's control
        group would otherwise pile up for the life of the process)."""
        self.shared.discard(group_channel)
        self.local_since.pop(group_channel, None)
        self.hellos.pop(group_channel, None)

    def _make_local(self, group_channel: str) -> None:
        self.shared.discard(group_channel)
        self.local_since[group_channel] = time.monotonic()

    def control(self, name: str, kind: bytes, origin: bytes, argument: bytes) -> None:
        """A hello or an acknowledgement from another process's layer (called by the receiving task)."""
        if kind == HELLO and name in self.groups and origin != self.origin:
            self.shared.add(name)
            self.hellos[name] = self.hellos.get(name, 0) + 1
            # After marking it shared: whatever this process sends to the group from now on is published.
            task = asyncio.ensure_future(self._acknowledge(argument.decode(), name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif kind == ACK and name == self._process_channel:
            acks = self._acks.get(argument.decode())
            if acks is not None:
                acks[0] -= 1
                if acks[0] <= 0 and not acks[1].done():
                    acks[1].set_result(None)

    async def _acknowledge(self, process_channel: str, group_channel: str) -> None:
        try:
            await self._get_shard(process_channel).publish(
                process_channel, ACK + self.origin + group_channel.encode()
            )
        except Exception:  # the joiner stops waiting after SUBSCRIBE_TIMEOUT
            logger.exception("could not acknowledge a process joining %s", group_channel)

    async def group_discard(self, group, channel) -> None:
        await super().group_discard(group, channel)
        group_channel = self._get_group_channel_name(group)
        if group_channel not in self.groups:  # no members left here: messages to it are always published
            self._forget(group_channel)

    async def flush(self) -> None:
        await super().flush()
        self.shared.clear()
        self.hellos.clear()
        self.local_since.clear()
        self.group_patterns.clear()
        self.direct.clear()
        self._process_channel = None

    async def discard_channel(self, channel: str) -> None:
        """Forget a channel from `new_channel` that nobody will receive on again, and unsubscribe it."""
        self.direct.pop(channel, None)
        if self.channels.pop(channel, None) is None:
            return
        for group_channel, members in list(self.groups.items()):
            if channel in members:
                members.discard(channel)
                if not members:
                    del self.groups[group_channel]
                    self._forget(group_channel)
                    await self._get_shard(group_channel).unsubscribe(group_channel)
        await self._get_shard(channel).unsubscribe(channel)

    async def _subscribe_to_channel(self, channel) -> None:
        self.channels[channel] = _CountingQueue()
        await self._get_shard(channel).subscribe(channel)

    async def delivered(self, timeout: float) -> bool:
        """Wait until everything this process published before the call and addressed to its own sockets has
        come back and been taken by their consumers (sockets closed meanwhile excepted). False on timeout.
        Frames arriving later, from other processes, are not waited for."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        marker = await self.new_channel("delivered.")
        try:
            await self.send(marker, {"type": "layer.delivered"})
            # One connection publishes, one receives: the marker comes back after everything sent before it.
            await asyncio.wait_for(self.channels[marker].get(), timeout)
        except TimeoutError:
            return False
        finally:
            await self.discard_channel(marker)
        waiting = [(name, queue, queue.put_count) for name, queue in self.channels.items()]
        while waiting := [
            (name, queue, count)
            for name, queue, count in waiting
            if queue.got_count < count and self.channels.get(name) is queue
        ]:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True


class _CountingQueue(asyncio.Queue):
    """A channel's queue that counts what was put on it and taken from it (`delivered`)."""

    put_count = 0
    got_count = 0

    def put_nowait(self, item) -> None:
        super().put_nowait(item)
        self.put_count += 1

    def get_nowait(self):
        item = super().get_nowait()
        self.got_count += 1
        return item


class _PubSubShard(channels_redis.pubsub.RedisSingleShardConnection):
    def __init__(self, host, channel_layer) -> None:
        super().__init__(host, channel_layer)
        # (channel, payload, future of the count of receivers, the group channel and its hello count when it is
        # a group with members here: a count of 1, this process alone, marks it unshared)
        self._outbox: list[tuple[str, bytes, asyncio.Future, str | None, int]] = []
        self._sender: asyncio.Task | None = None
        self._confirming: dict[str, collections.deque[asyncio.Future]] = {}

    # Publishing: pipelined batches, one connection, in order.

    async def publish(self, channel, message, group: str | None = None) -> int:
        """PUBLISH (pipelined with whatever else is being published); returns how many subscribers got it.
        `group`: the group channel, when this process has members in it (see _sent)."""
        future = asyncio.get_running_loop().create_future()
        hellos = self.channel_layer.hellos.get(group, 0) if group else 0
        self._outbox.append((channel, message, future, group, hellos))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send_batches())
        return await future

    async def _send_batches(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox, []
            try:
                self._ensure_redis()
                pipe = self._redis.pipeline(transaction=False)
                for channel, message, *_rest in batch:
                    pipe.publish(channel, message)
                counts = await pipe.execute()
            except BaseException as exc:
                for _channel, _message, future, *_rest in batch:
                    if not future.done():
                        future.set_exception(exc)
                        future.exception()  # retrieved here too: a cancelled sender leaves no warning
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                for (_channel, _message, future, group, hellos), count in zip(batch, counts, strict=True):
                    if group is not None:
                        self._sent(group, hellos, count)
                    if not future.done():
                        future.set_result(count)

    def _sent(self, group: str, hellos: int, count: int) -> None:
        """A message to a group with members here reached `count` subscribers, this process included: with
        nobody else, later ones stay here, unless another process said hello since it was sent."""
        layer = self.channel_layer
        if count > 1:
            layer.shared.add(group)
        elif layer.hellos.get(group, 0) == hellos and group not in layer._announcing:
            layer._make_local(group)

    # Subscribing: wait for Redis's confirmation.

    async def subscribe(self, channel, *, pattern: bool = False) -> None:
        """SUBSCRIBE (PSUBSCRIBE with `pattern`), then wait for Redis's confirmation."""
        async with self._lock:
            if channel in self._subscribed_to:
                pending = self._confirming.get(channel)
                waiter = pending[-1] if pending else None
            else:
                self._ensure_redis()
                self._ensure_receiver()
                waiter = asyncio.get_running_loop().create_future()
                waiters = self._confirming.setdefault(channel, collections.deque())
                waiters.append(waiter)
                try:
                    await (self._pubsub.psubscribe if pattern else self._pubsub.subscribe)(channel)
                except BaseException:
                    waiters.remove(waiter)
                    if not waiters:
                        del self._confirming[channel]
                    raise
                self._subscribed_to.add(channel)
        if waiter is not None:
            try:
                await asyncio.wait_for(asyncio.shield(waiter), SUBSCRIBE_TIMEOUT)
            except TimeoutError:
                logger.warning("Redis did not confirm the subscription to %s in time; going on", channel)

    async def flush(self) -> None:
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)
        await super().flush()
        for waiters in self._confirming.values():
            for waiter in waiters:
                waiter.cancel()
        self._confirming.clear()

    # Receiving: as channels-redis, but subscription confirmations are seen too.

    async def _do_receiving(self) -> None:
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(timeout=0.1)
                    if message is None:
                        continue
                    kind = message["type"]
                    if kind in (b"message", "message"):
                        self._receive_message(message)
                    elif kind in (b"pmessage", "pmessage"):
                        self._receive_pattern_message(message)
                    elif kind in (b"subscribe", "subscribe", b"psubscribe", "psubscribe"):
                        self._confirmed(message["channel"])  # for a PSUBSCRIBE: its pattern
                else:
                    await asyncio.sleep(0.1)
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception:  # channels-redis re-raises TimeoutError too, which ends receiving for good
                logger.exception("Unexpected exception in receive task")
                await asyncio.sleep(1)

    def _receive_message(self, message) -> None:
        """As channels-redis, after the sender's tag: control messages go to the layer, and a process's own
        messages to a group are skipped (they were put on its members' queues when sent)."""
        if message is None:
            return
        name, data = message["channel"], message["data"]
        if isinstance(name, bytes):
            name = name.decode()
        kind, origin, data = data[:1], data[1:HEADER], data[HEADER:]
        layer = self.channel_layer
        if kind != MESSAGE:
            layer.control(name, kind, origin, data)
        elif name in layer.channels:
            layer.deliver(name, layer.channels[name], data)
        elif name in layer.groups and origin != layer.origin:
            message = None  # deserialized once for all the group's idle sockets, if any
            for channel_name in list(layer.groups[name]):
                queue = layer.channels.get(channel_name)
                if queue is not None:
                    if message is None and channel_name in layer.direct:
                        message = layer.channel_layer.deserialize(data)
                    layer.deliver(channel_name, queue, data, message)

    def _receive_pattern_message(self, message) -> None:
        """A message to a group that a pattern of `listen_to_groups` matches: onto its listening channel,
        whichever process sent it (this one's own were not delivered when sent: such groups have no members)."""
        pattern, data = message["pattern"], message["data"]
        if isinstance(pattern, bytes):
            pattern = pattern.decode()
        if data[:1] != MESSAGE:
            return
        channel = self.channel_layer.group_patterns.get(pattern)
        queue = self.channel_layer.channels.get(channel) if channel is not None else None
        if queue is not None:
            queue.put_nowait(data[HEADER:])

    def _confirmed(self, channel) -> None:
        if isinstance(channel, bytes):
            channel = channel.decode()
        waiters = self._confirming.get(channel)
        if not waiters:
            return  # a resubscription after a reconnect
        waiter = waiters.popleft()
        if not waiters:
            del self._confirming[channel]
        if not waiter.done():
            waiter.set_result(None)
