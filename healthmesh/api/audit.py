"""The hub's append-only audit log: who did what, when, why, to how many rows, and how it ended.

The log is the table ``hm_audit_log`` in the hub database. This module is the only code that
touches it and it only ever ``INSERT``s and ``SELECT``s: there is no update or delete path, so a
row once written stays as written. Each entry gets the next ``entry_id`` from a sequence.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from healthmesh.cdm import HubDatabase

__all__ = [
    "AUDIT_COLUMNS",
    "AUDIT_TABLE",
    "AuditEntry",
    "AuditWriter",
    "ensure_audit_table",
    "read_audit",
    "write_audit",
]

AUDIT_TABLE = "hm_audit_log"
AUDIT_COLUMNS = (
    "entry_id",
    "logged_at",
    "subject",
    "role",
    "method",
    "route",
    "purpose",
    "rows_touched",
    "status",
    "outcome",
)


@dataclass(frozen=True)
class AuditEntry:
    subject: str
    role: str
    method: str
    route: str
    purpose: str | None
    rows_touched: int | None
    status: int

    @property
    def outcome(self) -> str:
        if self.status < 400:
            return "ok"
        return {401: "unauthenticated", 403: "forbidden"}.get(
            self.status, "refused" if self.status < 500 else "error"
        )


def ensure_audit_table(db: HubDatabase) -> None:
    db.execute("CREATE SEQUENCE IF NOT EXISTS hm_audit_log_seq START 1")
    db.execute(
        f"""
        CREATE TABLE IF NOT EXISTS {AUDIT_TABLE} (
            entry_id BIGINT PRIMARY KEY DEFAULT nextval('hm_audit_log_seq'),
            logged_at TIMESTAMPTZ NOT NULL,
            subject VARCHAR NOT NULL,
            role VARCHAR NOT NULL,
            method VARCHAR NOT NULL,
            route VARCHAR NOT NULL,
            purpose VARCHAR,
            rows_touched BIGINT,
            status INTEGER NOT NULL,
            outcome VARCHAR NOT NULL
        )
        """
    )


def write_audit(db: HubDatabase, entries: list[AuditEntry]) -> None:
    """Append entries in one statement, hence one transaction (the only write this table ever sees)."""
    if not entries:
        return
    now = datetime.now(UTC)
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(entries))
    db.execute(
        f"INSERT INTO {AUDIT_TABLE} (logged_at, subject, role, method, route, purpose, rows_touched, status, outcome) "
        f"VALUES {values}",
        [
            value
            for e in entries
            for value in (
                now,
                e.subject,
                e.role,
                e.method,
                e.route,
                e.purpose,
                e.rows_touched,
                e.status,
                e.outcome,
            )
        ],
    )


_MAX_BATCH = 1000  # 9 parameters an entry: well inside PostgreSQL's 65,535
_LINGER_S = 0.01


class AuditWriter:
    """Group commit for the audit log: one writer thread stores every entry queued while it wrote the
    last batch, in one transaction, then releases each request waiting on its entry.

    A request's answer still leaves only after its row is stored; under load a thousand requests
    cost a few transactions instead of a thousand.
    """

    def __init__(self, db: HubDatabase) -> None:
        self._db = db
        self._queue: queue.SimpleQueue[
            tuple[AuditEntry, asyncio.AbstractEventLoop, asyncio.Future[None]] | None
        ]
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    async def write(self, entry: AuditEntry) -> None:
        """Store ``entry``; returns once it is committed (raises what the write raised)."""
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[None] = loop.create_future()
        self._queue.put((entry, loop, stored))
        await stored

    def _run(self) -> None:
        last_write = 0.0
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            # Under load (an entry soon after the last write) gather entries until one interval after
            # the last write: a statement costs DuckDB about a millisecond of CPU whatever its rows,
            # so a busy hub writes at most ~1 / _LINGER_S statements a second. An idle one writes at once.
            deadline = last_write + _LINGER_S
            while len(batch) < _MAX_BATCH:
                wait = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            error: BaseException | None = None
            try:
                write_audit(self._db, [entry for entry, _, _ in batch])
            except BaseException as failure:  # every waiter hears of it; none is answered as if stored
                error = failure
            last_write = time.monotonic()
            for _, loop, stored in batch:
                loop.call_soon_threadsafe(_settle, stored, error)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._db.close()


def _settle(stored: asyncio.Future[None], error: BaseException | None) -> None:
    if stored.done():
        return
    if error is None:
        stored.set_result(None)
    else:
        stored.set_exception(error)


def read_audit(
    db: HubDatabase, limit: int = 100, subject: str | None = None, since_id: int = 0
) -> list[dict[str, Any]]:
    """The newest entries first (at most ``limit``), optionally of one subject or after an entry id."""
    where = ["entry_id > ?"]
    params: list[Any] = [since_id]
    if subject is not None:
        where.append("subject = ?")
        params.append(subject)
    rows = db.rows(
        f"SELECT {', '.join(AUDIT_COLUMNS)} FROM {AUDIT_TABLE} WHERE {' AND '.join(where)} "
        f"ORDER BY entry_id DESC LIMIT {int(limit)}",
        params,
    )
    return [
        {
            k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in zip(AUDIT_COLUMNS, row, strict=True)
        }
        for row in rows
    ]
