"""The hub's append-only audit log: who did what, from where, when, why, to which persons, how it ended.

The log is the table ``hm_audit_log`` in the hub database. This module is the only code that
touches it and it only ever ``INSERT``s and ``SELECT``s: there is no update or delete path.

Tamper evidence: the entries form a hash chain. Each entry stores ``prev_hash`` (the previous
entry's ``entry_hash``; ``GENESIS`` for the first) and ``entry_hash = sha256(prev_hash || canonical
entry)``, where the canonical entry is the JSON array of its stored values, entry id first. The
chain is extended on the one writer thread, which numbers the entries itself (ids are consecutive).
``verify_chain`` recomputes it: a row changed, deleted or inserted directly in the database breaks it
at that entry. What a chain cannot show on its own: the newest entries removed from the end, or a
whole tail rewritten by someone who recomputes every hash after it; keep a copy of the head hash
(``healthmesh audit verify`` prints it) somewhere the database's writers cannot reach.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from healthmesh.cdm import HubDatabase
from healthmesh.errors import CDMError

__all__ = [
    "AUDIT_COLUMNS",
    "AUDIT_TABLE",
    "GENESIS",
    "MAX_FIELD",
    "AuditEntry",
    "AuditWriter",
    "BrokenChain",
    "ChainHead",
    "chain_head",
    "ensure_audit_table",
    "read_audit",
    "verify_chain",
    "write_audit",
]

AUDIT_TABLE = "hm_audit_log"
# The values an entry commits to, in the order its canonical form lists them.
_HASHED_COLUMNS = (
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
    "client",
    "persons",
)
AUDIT_COLUMNS = (*_HASHED_COLUMNS, "prev_hash", "entry_hash")
GENESIS = "0" * 64
MAX_FIELD = 200  # subject, role, route, purpose and client are cut to this many characters
MAX_PERSONS = 200  # person ids listed in one entry (a clinician names at most a few)


@dataclass(frozen=True)
class AuditEntry:
    subject: str
    role: str
    method: str
    route: str
    purpose: str | None
    rows_touched: int | None
    status: int
    client: str | None = None  # the caller's address, host:port
    persons: tuple[int, ...] | None = None  # the persons the answer was about

    @property
    def outcome(self) -> str:
        if self.status < 400:
            return "ok"
        return {401: "unauthenticated", 403: "forbidden", 429: "rate-limited"}.get(
            self.status, "refused" if self.status < 500 else "error"
        )


@dataclass(frozen=True)
class ChainHead:
    """The newest entry's id and hash: what the next entry extends."""

    entry_id: int = 0
    entry_hash: str = GENESIS


class BrokenChain(CDMError):
    """The audit chain does not hold at ``entry_id``."""

    def __init__(self, entry_id: int, reason: str) -> None:
        super().__init__(f"audit entry {entry_id}: {reason}")
        self.entry_id = entry_id


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
    # Logs written before the chain existed gain the new columns; their rows stay unchained.
    for column in ("client", "persons", "prev_hash", "entry_hash"):
        db.execute(f"ALTER TABLE {AUDIT_TABLE} ADD COLUMN IF NOT EXISTS {column} VARCHAR")


def _cut(text: str | None, limit: int = MAX_FIELD) -> str | None:
    # PostgreSQL's text holds no NUL: a caller's NUL (a client id, a purpose) must not fail the write.
    return None if text is None else text.replace("\x00", "\ufffd")[:limit]


def _persons_text(persons: tuple[int, ...] | None) -> str | None:
    if persons is None:
        return None
    return ",".join(str(int(p)) for p in persons[:MAX_PERSONS])


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _entry_hash(prev_hash: str, values: tuple[Any, ...]) -> str:
    """sha256 of the previous hash and the entry's canonical form (its stored values as JSON)."""
    canonical = json.dumps(
        [_iso(v) if isinstance(v, datetime) else v for v in values], separators=(",", ":"), ensure_ascii=True
    )
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def chain_head(db: HubDatabase) -> ChainHead:
    """The newest entry: where the chain continues (an entry written before the chain counts as GENESIS)."""
    row = db.rows(f"SELECT entry_id, entry_hash FROM {AUDIT_TABLE} ORDER BY entry_id DESC LIMIT 1")
    if not row:
        return ChainHead()
    return ChainHead(int(row[0][0]), row[0][1] or GENESIS)


_COLUMN_TYPES = {"entry_id": "BIGINT", "logged_at": "TIMESTAMPTZ", "rows_touched": "BIGINT", "status": "INTEGER"}
_DUCKDB_INSERT = (
    f"INSERT INTO {AUDIT_TABLE} ({', '.join(AUDIT_COLUMNS)}) SELECT "
    + ", ".join(f"unnest(?::{_COLUMN_TYPES.get(c, 'VARCHAR')}[])" for c in AUDIT_COLUMNS)
)


def write_audit(db: HubDatabase, entries: list[AuditEntry], head: ChainHead | None = None) -> ChainHead:
    """Append entries in one statement, hence one transaction (the only write this table ever sees).

    ``head`` is the chain's newest entry as the caller last left it (read from the table when None);
    returns the new head. Call from one thread at a time: the ids and hashes follow each other.
    """
    head = chain_head(db) if head is None else head
    if not entries:
        return head
    now = datetime.now(UTC)
    params: list[Any] = []
    for e in entries:
        values = (
            head.entry_id + 1, now, _cut(e.subject) or "-", _cut(e.role) or "-", e.method[:16],
            _cut(e.route) or "-", _cut(e.purpose), e.rows_touched, e.status, e.outcome, _cut(e.client),
            _persons_text(e.persons),
        )  # fmt: skip
        digest = _entry_hash(head.entry_hash, values)
        params.extend((*values, head.entry_hash, digest))
        head = ChainHead(head.entry_id + 1, digest)
    if db.dialect == "duckdb":
        # One list a column: DuckDB binds 14 parameters, not 14 a row (a bound VALUES row costs it
        # some 0.1 ms of CPU, a row of the lists a few microseconds).
        width = len(AUDIT_COLUMNS)
        db.execute(_DUCKDB_INSERT, [params[i::width] for i in range(width)])
        return head
    placeholders = "(" + ", ".join(["?"] * len(AUDIT_COLUMNS)) + ")"
    db.execute(
        f"INSERT INTO {AUDIT_TABLE} ({', '.join(AUDIT_COLUMNS)}) "
        f"VALUES {', '.join([placeholders] * len(entries))}",
        params,
    )
    return head


_MAX_BATCH = 1000  # 14 parameters an entry: well inside PostgreSQL's 65,535
_LINGER_S = 0.01


class AuditWriter:
    """Group commit for the audit log: entries gather on the event loop and one statement stores each
    batch, on a writer thread; every request waiting on an entry of the batch is released then.

    A request's answer still leaves only after its row is stored. An idle hub writes at once; a busy
    one (an entry within ``_LINGER_S`` of the last write) gathers entries until that interval has
    passed, so it writes at most ~1 / ``_LINGER_S`` statements a second: a statement costs DuckDB
    about a millisecond of CPU whatever its rows. The writer thread also extends the hash chain.
    """

    def __init__(self, db: HubDatabase) -> None:
        self._db = db
        self._pending: list[tuple[AuditEntry, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._last_write = 0.0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="audit-writer")
        self._head: ChainHead | None = None  # read on the writer thread before its first write

    async def write(self, entry: AuditEntry) -> None:
        """Store ``entry``; returns once it is committed (raises what the write raised)."""
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[None] = loop.create_future()
        self._pending.append((entry, stored))
        if self._flusher is None or self._flusher.done() or self._flusher.get_loop() is not loop:
            self._flusher = loop.create_task(self._flush())
        await stored

    def _write_batch(self, entries: list[AuditEntry]) -> None:
        try:
            self._head = write_audit(self._db, entries, self._head)
        except CDMError:
            # Another writer may have extended the table (a second service on the same PostgreSQL
            # database): read the head again and retry once.
            self._head = write_audit(self._db, entries, None)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            wait = self._last_write + _LINGER_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            error: BaseException | None = None
            try:
                await loop.run_in_executor(self._thread, self._write_batch, [entry for entry, _ in batch])
            except BaseException as failure:  # every waiter hears of it; none is answered as if stored
                error = failure
            self._last_write = time.monotonic()
            for _, stored in batch:
                _settle(stored, error)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
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


def _rows_in_order(db: HubDatabase, page: int = 50_000) -> Iterator[tuple[Any, ...]]:
    last = -(2**62)
    while True:
        rows = db.rows(
            f"SELECT {', '.join(AUDIT_COLUMNS)} FROM {AUDIT_TABLE} WHERE entry_id > ? "
            f"ORDER BY entry_id LIMIT {page}",
            [last],
        )
        yield from rows
        if len(rows) < page:
            return
        last = int(rows[-1][0])


@dataclass(frozen=True)
class ChainReport:
    entries: int  # chained entries, all verified
    unchained: int  # entries written before the chain existed (at the start of the log)
    head: ChainHead


def verify_chain(db: HubDatabase) -> ChainReport:
    """Recompute the hash chain; ``BrokenChain`` names the first entry where it does not hold."""
    previous: ChainHead | None = None
    chained = unchained = 0
    for row in _rows_in_order(db):
        entry_id = int(row[0])
        values, prev_hash, entry_hash = tuple(row[: len(_HASHED_COLUMNS)]), row[-2], row[-1]
        if entry_hash is None and prev_hash is None:
            if previous is not None:
                raise BrokenChain(entry_id, f"has no hash, yet follows chained entry {previous.entry_id}")
            unchained += 1
            continue
        expected_prev = GENESIS if previous is None else previous.entry_hash
        if previous is not None and entry_id != previous.entry_id + 1:
            raise BrokenChain(
                entry_id,
                f"follows entry {previous.entry_id}: entries between them were deleted, or it was inserted",
            )
        if prev_hash != expected_prev:
            where = "the start of the chain" if previous is None else f"entry {previous.entry_id}"
            raise BrokenChain(
                entry_id, f"does not continue {where} (an entry before it was deleted, inserted or changed)"
            )
        if _entry_hash(prev_hash, values) != entry_hash:
            raise BrokenChain(
                entry_id, "its content does not match its hash (the row was changed or inserted)"
            )
        previous = ChainHead(entry_id, entry_hash)
        chained += 1
    return ChainReport(chained, unchained, previous or ChainHead())
