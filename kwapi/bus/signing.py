"""HMAC-SHA256 signatures over payload bytes exactly as sent.

Signing the bytes rather than a re-serialisation keeps verification cheap
and identical in every language.  Several secrets may be accepted at once
so that a secret can be rotated without losing measurements.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


class Signer:
    """Signs payloads with one secret: lowercase hex HMAC-SHA256."""

    def __init__(self, secret: str | bytes) -> None:
        if not secret:
            raise ValueError("the signing secret is empty")
        self._key = _key(secret)

    def sign(self, payload: bytes) -> bytes:
        """Return the signature frame for *payload*."""
        return hmac.digest(self._key, payload, hashlib.sha256).hex().encode("ascii")


class Verifier:
    """Checks signatures in constant time against one or more secrets."""

    def __init__(self, secrets: Iterable[str | bytes]) -> None:
        keys = [_key(secret) for secret in secrets if secret]
        if not keys:
            raise ValueError("no secret to verify signatures with")
        self._signers = [Signer(key) for key in keys]

    def verify(self, payload: bytes, signature: bytes) -> bool:
        """Tell whether *signature* is a valid signature of *payload*."""
        valid = False
        for signer in self._signers:
            # Every secret is tried, so timing does not tell which one matched.
            valid |= hmac.compare_digest(signer.sign(payload), signature)
        return valid
