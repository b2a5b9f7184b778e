"""Encryption at rest for provider API keys (Fernet, with rotation through MultiFernet).

CHAT_ENCRYPTION_KEY holds one or more comma-separated Fernet keys: the first encrypts, every one decrypts,
so an operator rotates by prepending a new key. Without it we derive a key from SECRET_KEY, which still keeps
keys out of plaintext in the database and its backups, but ties them to SECRET_KEY: that is worth a warning.

Rotation without downtime: set CHAT_ENCRYPTION_KEY=new,old everywhere, run `manage.py rotate_encryption_key`
(re-encrypts every stored key under `new`), then drop `old`. The SECRET_KEY-derived key stays a last-resort
decryptor when CHAT_ENCRYPTION_KEY is set, so a site that started without one can move to one the same way.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)


class DecryptionError(Exception):
    """The stored value was encrypted with a key this site no longer has."""


@functools.cache
def _fernet() -> MultiFernet:
    raw = settings.CHAT_ENCRYPTION_KEY
    if raw:
        try:
            keys = [Fernet(k.strip()) for k in raw.split(",") if k.strip()]
        except ValueError as exc:
            raise ImproperlyConfigured(
                "CHAT_ENCRYPTION_KEY must be Fernet keys (32 url-safe base64 bytes), comma-separated. "
                "Make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
            ) from exc
        if not keys:
            raise ImproperlyConfigured("CHAT_ENCRYPTION_KEY is set but holds no key.")
        # Decrypt-only, last: what a site that never set CHAT_ENCRYPTION_KEY encrypted with, until rotated.
        return MultiFernet([*keys, _derived_fernet()])
    logger.warning(
        "CHAT_ENCRYPTION_KEY is not set: provider keys are encrypted with a key derived from SECRET_KEY. "
        "Set CHAT_ENCRYPTION_KEY so that changing SECRET_KEY does not make stored keys unreadable."
    )
    return MultiFernet([_derived_fernet()])


def _derived_fernet() -> Fernet:
    digest = hashlib.sha256(b"chatsite-provider-keys:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(plaintext: str) -> str:
    if not plaintext:
        return ""
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("stored secret cannot be decrypted with the configured keys") from exc


def rotate(token: str) -> str:
    """`token` re-encrypted under the first configured key (MultiFernet.rotate). Raises DecryptionError."""
    if not token:
        return ""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("stored secret cannot be decrypted with the configured keys") from exc


def reset_cache() -> None:
    """Forget the loaded keys (tests that change CHAT_ENCRYPTION_KEY call this)."""
    _fernet.cache_clear()
