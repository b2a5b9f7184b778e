"""Everything that talks to model providers: HTTP, SSE decoding, retries, fallback, timeouts, error mapping.

The rest of the project imports from here and sees typed events (events.py) and typed errors (errors.py).
"""

from conversations.llm.client import (
    ChatStream,
    ClientConfig,
    Completion,
    aclose_shared_client,
    complete,
    open_stream,
)
from conversations.llm.errors import LLMError
from conversations.llm.events import (
    Finish,
    ReasoningDelta,
    RefusalDelta,
    Started,
    StreamEvent,
    StreamResult,
    TextDelta,
    Usage,
)
from conversations.llm.pacing import FramePacer, Pacer
from conversations.llm.request import ChatMessage, ChatParams, ChatRequest, ImagePart
from conversations.llm.routes import Route

__all__ = [
    "ChatMessage",
    "ChatParams",
    "ChatRequest",
    "ChatStream",
    "ClientConfig",
    "Completion",
    "Finish",
    "FramePacer",
    "ImagePart",
    "LLMError",
    "Pacer",
    "ReasoningDelta",
    "RefusalDelta",
    "Route",
    "Started",
    "StreamEvent",
    "StreamResult",
    "TextDelta",
    "Usage",
    "aclose_shared_client",
    "complete",
    "open_stream",
]
