"""A user's own sessions: "Sign out everywhere else" on the settings page.

Django's database sessions are not indexed by user, so this reads the unexpired sessions and decodes each to
find the user's: fine for a self-hosted site's few thousand sessions, and a rare, deliberate action. Each
deletion goes through the model's delete signal (services/revocation.py), so those sessions' running answers
stop and their sockets close with 4401 at once, in every process.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone


def end_other_sessions(user, current_session_key: str | None) -> int:
    """Delete every session of `user` except `current_session_key`; how many ended."""
    if settings.SESSION_ENGINE != "django.contrib.sessions.backends.db":
        return 0  # another backend keeps sessions elsewhere: it can't be listed here
    store = SessionStore()
    wanted = str(user.pk)
    ended = []
    rows = Session.objects.filter(expire_date__gt=timezone.now()).exclude(session_key=current_session_key)
    for session in rows.iterator(chunk_size=500):
        if str(store.decode(session.session_data).get(SESSION_KEY)) == wanted:
            ended.append(session.pk)
    with transaction.atomic():
        for session in Session.objects.filter(pk__in=ended):
            session.delete()  # one by one: the delete signal announces each (revocation)
    return len(ended)
