"""The coordinator's own records: hubs, researchers, studies and each hub's part in a study.

One SQLite file (``healthmesh network serve --db PATH``). SQLite because the coordinator holds
no patient data, only a few small tables, and because the admin's commands (``network add-hub``,
``add-researcher``) write the same file while the service runs: SQLite lets several processes
share a file, one writer at a time. Every change is one transaction (``BEGIN IMMEDIATE``), and a
hub's state moves only along ``TRANSITIONS``: an update names the states it may start from, so
two writers racing on one study cannot both win, and nothing is ever half-written.

Credentials (a hub's, a researcher's) are random tokens shown once; only their SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from healthmesh.errors import AuthError, ConfigError, FederationError

__all__ = [
    "HUB_STATES",
    "TERMINAL",
    "TRANSITIONS",
    "Caller",
    "NetworkStore",
    "StudyConflict",
    "StudyNotFound",
]

# A hub's part in a study. "waiting": addressed to the hub, not decided (a hub that holds a study
# for its admin leaves it waiting, with a note); "approved": its admin said yes; "running",
# "done", "refused" (with the hub's reason), "failed" (with the reason).
HUB_STATES = ("waiting", "approved", "running", "done", "refused", "failed")
TERMINAL = frozenset({"done", "refused", "failed"})
TRANSITIONS: dict[str, frozenset[str]] = {
    "waiting": frozenset({"waiting", "approved", "running", "refused"}),
    "approved": frozenset({"running", "failed"}),
    "running": frozenset({"done", "failed"}),
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hubs (
    name TEXT PRIMARY KEY, region TEXT NOT NULL, role TEXT NOT NULL, base_url TEXT,
    credential_hash TEXT NOT NULL UNIQUE, node_public_key TEXT, catalog TEXT,
    registered_at REAL NOT NULL, last_seen REAL
);
CREATE TABLE IF NOT EXISTS researchers (
    name TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS studies (
    study_id TEXT PRIMARY KEY, researcher TEXT NOT NULL REFERENCES researchers(name),
    purpose TEXT NOT NULL, kind TEXT NOT NULL, spec TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'finished')),
    created_at REAL NOT NULL, finished_at REAL, deadline REAL
);
CREATE TABLE IF NOT EXISTS study_hubs (
    study_id TEXT NOT NULL REFERENCES studies(study_id), hub TEXT NOT NULL REFERENCES hubs(name),
    state TEXT NOT NULL CHECK (state IN ('waiting', 'approved', 'running', 'done', 'refused', 'failed')),
    note TEXT, result TEXT, delivered INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL,
    PRIMARY KEY (study_id, hub)
);
CREATE INDEX IF NOT EXISTS study_hubs_by_hub ON study_hubs (hub, state);
"""


class StudyNotFound(FederationError):
    """No such study (or not one this caller may see: the same answer, so ids cannot be probed)."""


class StudyConflict(FederationError):
    """A state change the study's current state does not allow."""


@dataclass(frozen=True)
class Caller:
    """Who a bearer token belongs to: a ``hub`` or a ``researcher``, and its name."""

    kind: str
    name: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> float:
    return time.time()


class NetworkStore:
    """The coordinator's SQLite file. One instance per process; every method is one transaction."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ConfigError(f"no folder {self.path.parent} for the network database")
        try:
            self._con = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA foreign_keys=ON")
            self._con.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise ConfigError(f"{self.path} is not a network database: {error}") from None

    def close(self) -> None:
        self._con.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it commits or none of it."""
        self._con.execute("BEGIN IMMEDIATE")
        try:
            yield self._con
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")

    # -- registration (the network admin) --------------------------------------------------------

    def add_hub(
        self,
        name: str,
        region: str,
        role: str,
        base_url: str | None = None,
        node_public_key: str | None = None,
    ) -> str:
        """Register a hub; returns its credential (shown once). A hub registered again gets a new one."""
        credential = "hmh_" + secrets.token_urlsafe(32)
        with self._tx() as con:
            con.execute(
                "INSERT INTO hubs (name, region, role, base_url, credential_hash, node_public_key, registered_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET region = excluded.region, "
                "role = excluded.role, base_url = excluded.base_url, credential_hash = excluded.credential_hash, "
                "node_public_key = excluded.node_public_key",
                (name, region, role, base_url, _hash(credential), node_public_key, _now()),
            )
        return credential

    def add_researcher(self, name: str) -> str:
        """Register a researcher (or give one a new token); returns the token (shown once)."""
        token = "hmr_" + secrets.token_urlsafe(32)
        with self._tx() as con:
            con.execute(
                "INSERT INTO researchers (name, token_hash, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash",
                (name, _hash(token), _now()),
            )
        return token

    def authenticate(self, token: str) -> Caller:
        digest = _hash(token)
        row = self._con.execute("SELECT name FROM hubs WHERE credential_hash = ?", (digest,)).fetchone()
        if row is not None:
            self._con.execute("UPDATE hubs SET last_seen = ? WHERE name = ?", (_now(), row[0]))
            return Caller("hub", str(row[0]))
        row = self._con.execute("SELECT name FROM researchers WHERE token_hash = ?", (digest,)).fetchone()
        if row is not None:
            return Caller("researcher", str(row[0]))
        raise AuthError("unknown or revoked credential")

    def hubs(self) -> list[dict[str, Any]]:
        rows = self._con.execute(
            "SELECT name, region, role, base_url, node_public_key IS NOT NULL, catalog, registered_at, last_seen "
            "FROM hubs ORDER BY name"
        ).fetchall()
        return [
            {
                "name": r[0],
                "region": r[1],
                "role": r[2],
                "base_url": r[3],
                "node_key": bool(r[4]),
                "catalog": json.loads(r[5]) if r[5] else None,
                "registered_at": r[6],
                "last_seen": r[7],
            }  # fmt: skip
            for r in rows
        ]

    def set_catalog(self, hub: str, catalog: Mapping[str, Any]) -> None:
        with self._tx() as con:
            con.execute("UPDATE hubs SET catalog = ? WHERE name = ?", (json.dumps(catalog), hub))

    # -- studies (researchers) -------------------------------------------------------------------

    def submit(
        self,
        researcher: str,
        purpose: str,
        kind: str,
        spec: Mapping[str, Any],
        hubs: list[str],
        deadline_s: float | None = None,
    ) -> str:
        """Record a study addressed to ``hubs`` (each waiting); returns its id.

        With ``deadline_s``, the parts of hubs that have not answered by then fail (``expire``).
        """
        known = {h["name"] for h in self.hubs()}
        unknown = [h for h in hubs if h not in known]
        if unknown:
            raise FederationError(f"no hub {unknown[0]!r} in this network; hubs: {', '.join(sorted(known))}")
        if not hubs:
            raise FederationError(
                "this network has no hubs yet; register one with `healthmesh network add-hub`"
            )
        study_id = "st-" + secrets.token_hex(5)
        now = _now()
        with self._tx() as con:
            con.execute(
                "INSERT INTO studies (study_id, researcher, purpose, kind, spec, state, created_at, deadline) "
                "VALUES (?, ?, ?, ?, ?, 'open', ?, ?)",
                (
                    study_id,
                    researcher,
                    purpose,
                    kind,
                    json.dumps(dict(spec)),
                    now,
                    now + deadline_s if deadline_s is not None else None,
                ),  # fmt: skip
            )
            con.executemany(
                "INSERT INTO study_hubs (study_id, hub, state, updated_at) VALUES (?, ?, 'waiting', ?)",
                [(study_id, hub, now) for hub in sorted(set(hubs))],
            )
        return study_id

    def study(self, study_id: str, researcher: str | None = None) -> dict[str, Any]:
        """The study as its researcher sees it (``researcher`` None: any, for the coordinator itself)."""
        row = self._con.execute(
            "SELECT study_id, researcher, purpose, kind, spec, state, created_at, finished_at, deadline FROM studies "
            "WHERE study_id = ?",
            (study_id,),
        ).fetchone()
        if row is None or (researcher is not None and row[1] != researcher):
            raise StudyNotFound(f"no study {study_id!r} of yours")
        parts = self._con.execute(
            "SELECT hub, state, note, result, updated_at FROM study_hubs WHERE study_id = ? ORDER BY hub",
            (study_id,),
        ).fetchall()
        return {
            "study_id": row[0], "researcher": row[1], "purpose": row[2], "kind": row[3],
            "spec": json.loads(row[4]), "state": row[5], "created_at": row[6], "finished_at": row[7],
            "deadline": row[8],
            "hubs": {
                p[0]: {"state": p[1], "note": p[2], "updated_at": p[4],
                       "result": json.loads(p[3]) if p[3] else None}
                for p in parts
            },
        }  # fmt: skip

    def studies_of(self, researcher: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._con.execute(
            "SELECT study_id, purpose, kind, state, created_at FROM studies WHERE researcher = ? "
            "ORDER BY created_at DESC LIMIT ?",
            (researcher, limit),
        ).fetchall()
        return [
            dict(zip(("study_id", "purpose", "kind", "state", "created_at"), r, strict=True)) for r in rows
        ]

    # -- a hub's side ------------------------------------------------------------------------------

    def deliver(self, hub: str, again: bool = False) -> list[dict[str, Any]]:
        """Studies waiting at ``hub`` not yet handed to it, marked handed.

        ``again`` (a hub starting, or back after an outage): every part of ``hub`` not ended, waiting,
        approved or running, each with its state, so that a hub that died mid-study finishes it.
        """
        states = "('waiting', 'approved', 'running')" if again else "('waiting')"
        with self._tx() as con:
            rows = con.execute(
                "SELECT s.study_id, s.researcher, s.purpose, s.kind, s.spec, h.note, h.state FROM study_hubs h "
                f"JOIN studies s USING (study_id) WHERE h.hub = ? AND h.state IN {states} "
                + ("" if again else "AND h.delivered = 0 ")
                + "ORDER BY s.created_at",
                (hub,),
            ).fetchall()
            con.executemany(
                "UPDATE study_hubs SET delivered = 1 WHERE study_id = ? AND hub = ?",
                [(r[0], hub) for r in rows],
            )
        return [{**self._hub_view(r[:6]), "state": r[6]} for r in rows]

    def waiting_at(self, hub: str) -> list[dict[str, Any]]:
        """Every study waiting at ``hub`` (what its admin is asked about), without marking anything."""
        rows = self._con.execute(
            "SELECT s.study_id, s.researcher, s.purpose, s.kind, s.spec, h.note FROM study_hubs h "
            "JOIN studies s USING (study_id) WHERE h.hub = ? AND h.state = 'waiting' ORDER BY s.created_at",
            (hub,),
        ).fetchall()
        return [self._hub_view(r) for r in rows]

    def study_for_hub(self, study_id: str, hub: str) -> dict[str, Any]:
        row = self._con.execute(
            "SELECT s.study_id, s.researcher, s.purpose, s.kind, s.spec, h.note, h.state FROM study_hubs h "
            "JOIN studies s USING (study_id) WHERE h.hub = ? AND h.study_id = ?",
            (hub, study_id),
        ).fetchone()
        if row is None:
            raise StudyNotFound(f"no study {study_id!r} addressed to hub {hub!r}")
        return {**self._hub_view(row[:6]), "state": row[6]}

    @staticmethod
    def _hub_view(row: tuple[Any, ...]) -> dict[str, Any]:
        return {
            "study_id": row[0], "researcher": row[1], "purpose": row[2], "kind": row[3],
            "spec": json.loads(row[4]), "note": row[5],
        }  # fmt: skip

    def expire(self, now: float | None = None) -> list[str]:
        """Fail every part not ended of a study past its deadline and finish those studies; their ids."""
        now = _now() if now is None else now
        with self._tx() as con:
            overdue = [
                str(r[0])
                for r in con.execute(
                    "SELECT study_id FROM studies WHERE state = 'open' AND deadline IS NOT NULL AND deadline <= ?",
                    (now,),
                ).fetchall()
            ]
            for study_id in overdue:
                con.execute(
                    "UPDATE study_hubs SET state = 'failed', note = 'no answer by the study''s deadline', "
                    "updated_at = ? WHERE study_id = ? AND state NOT IN ('done', 'refused', 'failed')",
                    (now, study_id),
                )
                con.execute(
                    "UPDATE studies SET state = 'finished', finished_at = ? WHERE study_id = ?",
                    (now, study_id),
                )
        return overdue

    def transition(
        self,
        study_id: str,
        hub: str,
        state: str,
        *,
        note: str | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Move ``hub``'s part of a study to ``state`` (with a note or its released result), atomically.

        Closes the study when every hub's part has ended. Returns the study's state afterwards.
        """
        if state not in HUB_STATES:
            raise StudyConflict(f"unknown state {state!r}; use one of {', '.join(HUB_STATES)}")
        if (result is not None) != (state == "done"):
            raise StudyConflict("a result comes with state 'done', and 'done' comes with a result")
        if state in ("refused", "failed") and not note:
            raise StudyConflict(f"state {state!r} needs a reason")
        now = _now()
        with self._tx() as con:
            row = con.execute(
                "SELECT state FROM study_hubs WHERE study_id = ? AND hub = ?", (study_id, hub)
            ).fetchone()
            if row is None:
                raise StudyNotFound(f"no study {study_id!r} addressed to hub {hub!r}")
            current = str(row[0])
            if state not in TRANSITIONS.get(current, frozenset()):
                raise StudyConflict(f"study {study_id} at hub {hub} is {current}; it cannot become {state}")
            con.execute(
                "UPDATE study_hubs SET state = ?, note = ?, result = ?, updated_at = ? WHERE study_id = ? AND hub = ?",
                (state, note, json.dumps(dict(result)) if result is not None else None, now, study_id, hub),
            )
            open_parts = con.execute(
                "SELECT count(*) FROM study_hubs WHERE study_id = ? AND state NOT IN ('done', 'refused', 'failed')",
                (study_id,),
            ).fetchone()[0]
            if open_parts == 0:
                con.execute(
                    "UPDATE studies SET state = 'finished', finished_at = ? WHERE study_id = ? AND state = 'open'",
                    (now, study_id),
                )
        return {"study_id": study_id, "hub": hub, "state": state, "study_finished": open_parts == 0}
