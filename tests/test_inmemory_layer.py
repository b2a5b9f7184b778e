"""The in-memory channel layer (conversations/engine/layers.py), the one a single process uses."""

from __future__ import annotations

import asyncio

from conversations.engine.layers import InMemoryChannelLayer


async def test_a_discarded_channel_leaves_its_groups_and_no_group_outlives_its_last_member():
    """A closed socket's channel (discard_channel) leaves exactly the groups it joined, found through the
    layer's index rather than a scan of every group, and a group it leaves empty goes: a long-running
    process opens a group per conversation ever opened."""
    layer = InMemoryChannelLayer()
    a, b = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("conv.1", a)
    await layer.group_add("conv.1", b)
    await layer.group_add("user.1", a)
    await layer.group_add("conv.2", a)
    await layer.group_discard("conv.2", a)
    await layer.group_add("user.2", b)

    await layer.discard_channel(a)
    assert {group: set(members) for group, members in layer.groups.items()} == {
        "conv.1": {b},
        "user.2": {b},
    }
    await layer.group_send("conv.1", {"type": "chat.frame", "n": 1})
    assert (await asyncio.wait_for(layer.receive(b), 1))["n"] == 1

    await layer.group_add("conv.3", b)
    await layer.discard_channel(b)
    assert layer.groups == {}
    assert layer.channels == {}
