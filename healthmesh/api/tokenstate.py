"""The hub's token state: the current token-key generation and the revoked token ids.

``healthmesh hub rotate-token-key`` and ``healthmesh hub revoke`` change it while the service runs,
and the service reads it at every token check, so a rotation or a revocation holds from the next
request on, without a restart.

Where it lives: for a DuckDB hub, a private JSON file beside the database (``<db>.tokens.json``).
Not a table in the hub database, because DuckDB lets one process at a time open the file for
writing, and that process is the running service: the command that rotates must not need it.
A hub in PostgreSQL keeps the same document in the table ``hm_token_state`` (many processes may
write there) and the service re-reads it at most every ``POSTGRES_REFRESH_S`` seconds.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healthmesh.errors import ConfigError

__all__ = ["MAX_TOKEN_TTL_S", "MIN_TOKEN_TTL_S", "TokenState", "TokenStatus", "check_ttl", "token_state_for"]

MAX_TOKEN_TTL_S = 24 * 3600
MIN_TOKEN_TTL_S = 60
POSTGRES_REFRESH_S = 2.0
STATE_TABLE = "hm_token_state"

log = logging.getLogger(__name__)


def check_ttl(ttl_s: int) -> int:
    """``ttl_s`` when it is a lifetime the hub allows; ConfigError with the cap otherwise."""
    if not MIN_TOKEN_TTL_S <= ttl_s <= MAX_TOKEN_TTL_S:
        raise ConfigError(
            f"token lifetime {ttl_s} s is outside {MIN_TOKEN_TTL_S}..{MAX_TOKEN_TTL_S} s (the hub's cap is 24 h)"
        )
    return ttl_s


@dataclass(frozen=True)
class TokenStatus:
    """One reading of the state: tokens of ``generation`` are valid unless their ``jti`` is revoked."""

    generation: int = 1
    # jti -> when the entry may be dropped (no token lives past the cap after its revocation)
    revoked_until: dict[str, int] = field(default_factory=dict)

    @property
    def revoked(self) -> dict[str, int]:
        return self.revoked_until

    def to_json(self) -> str:
        return json.dumps({"generation": self.generation, "revoked": self.revoked_until}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str) -> TokenStatus:
        try:
            document = json.loads(text)
            generation = document["generation"]
            revoked = document["revoked"]
            if not isinstance(generation, int) or generation < 1 or not isinstance(revoked, dict):
                raise ValueError("bad fields")
            return cls(generation, {str(k): int(v) for k, v in revoked.items()})
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(
                f"the token state {where} is damaged ({error}); restore it or delete it"
            ) from None

    def rotated(self) -> TokenStatus:
        return TokenStatus(self.generation + 1, self._live())

    def revoking(self, jti: str) -> TokenStatus:
        return TokenStatus(self.generation, {**self._live(), jti: int(time.time()) + MAX_TOKEN_TTL_S})

    def _live(self) -> dict[str, int]:
        now = int(time.time())
        return {jti: until for jti, until in self.revoked_until.items() if until > now}


class TokenState:
    """The state in a private file (``path``), or in memory only when ``path`` is None."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._status = TokenStatus()
        if path is not None:
            self._status = self._read()  # a damaged file stops the service here, with its reason

    def current(self) -> TokenStatus:
        """The state as it is now (one ``stat`` per call; the file is read again only when it changed)."""
        if self.path is None:
            return self._status
        try:
            stat = self.path.stat()
            signature = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
        except FileNotFoundError:
            signature = (0, 0, 0)
        if signature != self._seen:
            with self._lock:
                try:
                    self._status = self._read()
                except ConfigError as error:  # keep the last good state; the admin is told in the log
                    log.warning("%s", error)
        return self._status

    def _read(self) -> TokenStatus:
        assert self.path is not None
        try:
            stat = self.path.stat()
            text = self.path.read_text()
        except FileNotFoundError:
            self._seen = (0, 0, 0)
            return TokenStatus()
        status = TokenStatus.from_json(text, str(self.path))
        self._seen = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
        return status

    def _write(self, status: TokenStatus) -> None:
        if self.path is None:
            self._status = status
            return
        # Written whole to a private new file, then renamed over the old one: a reader never sees half.
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(status.to_json() + "\n")
        os.replace(temporary, self.path)

    def rotate(self) -> int:
        """Start a new token-key generation (every older token stops working); returns it."""
        status = self._read().rotated() if self.path is not None else self._status.rotated()
        self._write(status)
        return status.generation

    def revoke(self, jti: str) -> None:
        status = self._read() if self.path is not None else self._status
        self._write(status.revoking(jti))


class PostgresTokenState(TokenState):
    """The state of a hub in PostgreSQL: one JSON document in the table ``hm_token_state``."""

    def __init__(self, url: str) -> None:
        from healthmesh.cdm.postgres import connect_postgres

        self._db = connect_postgres(url)
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        self._read_at = 0.0
        super().__init__(None)
        self._status = self._read()
        self._read_at = time.monotonic()

    def current(self) -> TokenStatus:
        if time.monotonic() - self._read_at > POSTGRES_REFRESH_S:
            with self._lock:
                try:
                    self._status = self._read()
                except Exception as error:  # noqa: BLE001 (keep the last good state; say why in the log)
                    log.warning("token state not refreshed: %s", error)
                self._read_at = time.monotonic()
        return self._status

    def _read(self) -> TokenStatus:
        text: Any = self._db.scalar(f"SELECT value FROM {STATE_TABLE} WHERE name = 'tokens'")
        return TokenStatus() if text is None else TokenStatus.from_json(str(text), STATE_TABLE)

    def _write(self, status: TokenStatus) -> None:
        self._db.execute(
            f"INSERT INTO {STATE_TABLE} (name, value) VALUES ('tokens', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [status.to_json()],
        )
        self._status = status

    def rotate(self) -> int:
        status = self._read().rotated()
        self._write(status)
        return status.generation

    def revoke(self, jti: str) -> None:
        self._write(self._read().revoking(jti))


def token_state_for(db_path: str | Path) -> TokenState:
    """The token state of the hub whose database is ``db_path`` (a DuckDB file or a PostgreSQL URL)."""
    from healthmesh.cdm.database import is_postgres_url

    if is_postgres_url(db_path):
        return PostgresTokenState(str(db_path))
    path = Path(db_path).resolve()
    return TokenState(path.with_name(path.name + ".tokens.json"))
