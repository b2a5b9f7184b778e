"""Building a conversation's tree from parent links, whatever order the file lists them in.

One linear pass: index the nodes, list each one's children, then walk from the roots with an explicit stack
(no recursion, so a 10,000-deep chain is as cheap as a wide tree). Nodes without a message (ChatGPT's empty
roots, tool calls, hidden scaffolding) are passed through: their children hang from the nearest kept
ancestor. A node whose parent is missing becomes a root; a loop of parent links is broken where the walk
first meets it, and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conversations.services.imports.drafts import DraftMessage


@dataclass
class Node:
    key: str
    parent: str | None
    message: DraftMessage | None  # None: pass through (not kept)


@dataclass
class Tree:
    messages: list[DraftMessage]  # parents before children, siblings in the file's order
    nearest: dict[str, str | None]  # any node's key -> its nearest kept node (itself when kept)
    loops: int = 0
    duplicates: int = 0
    children: dict[str, list[str]] = field(default_factory=dict)


def build(nodes: list[Node]) -> Tree:
    index: dict[str, Node] = {}
    duplicates = 0
    for node in nodes:
        if node.key in index:
            duplicates += 1
            continue
        index[node.key] = node
    children: dict[str, list[str]] = {}
    roots: list[str] = []
    for key, node in index.items():
        parent = node.parent
        if parent is None or parent == key or parent not in index:
            roots.append(key)
        else:
            children.setdefault(parent, []).append(key)

    ordered: list[DraftMessage] = []
    nearest: dict[str, str | None] = {}
    loops = 0

    def walk(start: str) -> None:
        stack: list[tuple[str, str | None]] = [(start, None)]
        while stack:
            key, ancestor = stack.pop()
            if key in nearest:
                continue
            node = index[key]
            if node.message is not None:
                node.message.key = key
                node.message.parent = ancestor
                ordered.append(node.message)
                ancestor = key
            nearest[key] = ancestor
            stack.extend((child, ancestor) for child in reversed(children.get(key, ())))

    for root in roots:
        walk(root)
    if len(nearest) < len(index):
        # What the roots didn't reach hangs in loops of parent links: break each where it is first met.
        for key in index:
            if key in nearest:
                continue
            # Climb to the loop itself, so what descends from it stays attached below it.
            climbed: set[str] = set()
            while key not in climbed:
                climbed.add(key)
                key = index[key].parent  # every unreached node has a parent in the index
            loops += 1
            walk(key)
    return Tree(ordered, nearest, loops, duplicates, children)
