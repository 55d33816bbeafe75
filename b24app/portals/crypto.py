"""Tokens at rest: a model field that stores text encrypted with Fernet.

Keys come from `settings.B24_TOKEN_KEYS`, newest first. `MultiFernet` encrypts with the first key
and decrypts with any, so rotating means prepending a new key, running
`manage.py portals_rotate_keys`, then dropping the old key.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in keys])


def fernet() -> MultiFernet:
    """The MultiFernet for the configured keys (cached per key list, so tests can swap keys)."""
    return _fernet(tuple(settings.B24_TOKEN_KEYS))


def encrypt(value: str) -> str:
    return fernet().encrypt(value.encode()).decode()


def decrypt(value: str) -> str:
    return fernet().decrypt(value.encode()).decode()


def rotate(value: str) -> str:
    """Re-encrypt `value` (ciphertext) under the newest key."""
    return fernet().rotate(value.encode()).decode()


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """A TextField whose database value is Fernet ciphertext; Python sees plain text.

    An empty string stays empty (no ciphertext for "no token"). A value that no configured key
    can decrypt reads as empty rather than crashing a page: the portal then needs a reconnect.
    """

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str:
        if not value:
            return ""
        try:
            return decrypt(value)
        except InvalidToken:
            return ""

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if not value:
            return ""
        return encrypt(str(value))
