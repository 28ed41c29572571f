"""The hub's keys: one master secret, and a separate key per use derived from it (HKDF-SHA256).

Token signing, client secrets, pseudonyms and the release perturbation each get their own key, so
that knowing one (a cracked token key, say) tells nothing about the others, and token keys can be
rotated (a new generation) without re-keying a single person. Every key can also be given on its
own (``HEALTHMESH_TOKEN_KEY`` ...): the configuration decides, this module only derives.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from healthmesh.errors import ConfigError

__all__ = ["MIN_SECRET_LENGTH", "HubKeys", "check_secret_strength"]

MIN_SECRET_LENGTH = 32
# Below this many bits of Shannon entropy over its characters a secret is guessable, whatever its length.
_MIN_ENTROPY_BITS = 128
_GUESSABLE = ("password", "secret", "changeme", "change-me", "healthmesh", "admin", "example", "test")


def check_secret_strength(value: str, name: str = "HEALTHMESH_SECRET_KEY") -> str:
    """``value`` if it is long and random enough to be a key; ConfigError with a one-line reason otherwise."""
    if len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"{name} is {len(value)} characters; use a random value of at least {MIN_SECRET_LENGTH} "
            "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )
    lowered = value.lower()
    if any(word in lowered for word in _GUESSABLE):
        raise ConfigError(f"{name} contains a guessable word; use a random value (secrets.token_hex(32))")
    counts = Counter(value)
    entropy = -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values()) * len(value)
    if entropy < _MIN_ENTROPY_BITS or len(counts) < 10:
        raise ConfigError(f"{name} is not random enough ({entropy:.0f} bits); use secrets.token_hex(32)")
    return value


@dataclass(frozen=True)
class HubKeys:
    """Keys derived from one master secret; ``derive(purpose)`` is the one derivation."""

    master: bytes

    def derive(self, purpose: str, length: int = 32) -> bytes:
        return HKDF(
            algorithm=hashes.SHA256(), length=length, salt=None, info=f"healthmesh|{purpose}".encode()
        ).derive(self.master)

    def token_signing(self, hub: str, generation: int = 1) -> bytes:
        """The key that signs bearer tokens of ``hub``; a new generation revokes the old tokens."""
        return self.derive(f"token|{hub}|{generation}")

    def client_secret(self, hub: str, client_id: str) -> str:
        return self.derive(f"client|{hub}|{client_id}", 16).hex()

    @property
    def pseudonym(self) -> bytes:
        """The key of person and provider pseudonyms (and of every keyed record id)."""
        return self.derive("pseudonym")

    @property
    def release(self) -> bytes:
        """The key of the release path's cell-key perturbation."""
        return self.derive("release")
