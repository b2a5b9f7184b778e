"""Seed the bench site: a provider and model on the simulator, users with sessions, empty titled conversations.

Run by bench/load.py with the bench server's environment (DATA_DIR, DATABASE_URL, SECRET_KEY):
    load_seed.py <simulator base URL> <users> <conversations per user>
    load_seed.py --add <users> <conversations per user>    # later: users bench0.. (any missing are created),
                                                           # a fresh session each, more conversations
Prints {"model": pk, "sessions": [...], "conversations": [[ids of user 0], ...]} as JSON.
Conversations are created with a title, so a turn is one upstream call (no title request afterwards).
"""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")


def main() -> None:
    import django

    django.setup()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import transaction

    from conversations.models import ChatModel, Conversation, Provider

    adding = sys.argv[1] == "--add"
    base_url, users, per_user = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    User = get_user_model()
    with transaction.atomic():
        if adding:
            model = ChatModel.objects.get(provider__name="Bench simulator")
        else:
            provider = Provider(
                name="Bench simulator", kind=Provider.Kind.OPENAI_COMPATIBLE, base_url=base_url
            )
            provider.api_key = "sk-bench-0000"
            provider.save()
            model = ChatModel.objects.create(
                provider=provider,
                model_id="gpt-4o",
                canonical_id="gpt-4o",
                display_name="GPT-4o (bench)",
                context_window=128_000,
                max_output_tokens=16_384,
                input_price=Decimal("2.50"),
                cached_input_price=Decimal("1.25"),
                output_price=Decimal("10.00"),
            )
        names = [f"bench{i}" for i in range(users)]
        existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
        created = User.objects.bulk_create(
            [User(username=name, email=f"{name}@example.com") for name in names if name not in existing]
        )
        if created:
            created = list(User.objects.filter(username__in=[u.username for u in created]))
            for person in created:
                person.set_password("bench password")  # MD5 in the bench (CHAT_INSECURE_FAST_PASSWORD_HASHER)
            User.objects.bulk_update(created, ["password"])
        by_name = {person.username: person for person in User.objects.filter(username__in=names)}
        people = [by_name[name] for name in names]
        conversations = Conversation.objects.bulk_create(
            [
                Conversation(owner=person, model=model, title=f"Bench {i}")
                for person in people
                for i in range(per_user)
            ]
        )
    sessions = []
    for person in people:
        session = SessionStore()
        session[SESSION_KEY] = str(person.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = person.get_session_auth_hash()
        session.create()
        sessions.append(session.session_key)
    by_owner: dict[int, list[str]] = {}
    for conversation in conversations:
        by_owner.setdefault(conversation.owner_id, []).append(str(conversation.public_id))
    print(
        json.dumps(
            {
                "model": model.pk,
                "sessions": sessions,
                "conversations": [by_owner.get(person.pk, []) for person in people],
            }
        )
    )


if __name__ == "__main__":
    main()
