"""Routes: one provider's copy of a model, flattened into a plain object the client can use without queries.

The service layer builds them from the database (conversations/services/routes.py: the provider's decrypted
key, the model's copies in fallback order) and hands the list to `open_stream`; nothing in the streaming hot
path touches the database or decrypts anything.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Route:
    provider_name: str
    kind: str  # a Provider.Kind value
    base_url: str  # up to and including /v1
    model_id: str  # what this provider calls the model
    api_key: str = field(default="", repr=False)  # repr=False: a Route may end up in a log line
    organization: str = ""
    project: str = ""
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    canonical_id: str = ""
    provider_id: int | None = None
    chat_model_id: int | None = None
    supports_images: bool = True
    context_window: int | None = None
    max_output_tokens: int | None = None
    retired_on: dt.date | None = None
    # The stored key could not be decrypted; the client reports ProviderMisconfigured and moves on.
    key_unreadable: bool = False
    # The key is the user's own (personal_keys.routes_for_user): what it serves is not the site's spend.
    personal_key: bool = False

    @property
    def chat_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"
