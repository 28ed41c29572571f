"""The hub service's state: one DuckDB connection per process, warm scorers, cached reports.

DuckDB allows one read-write connection to a file per process, so the service opens the hub
database once and gives every request its own cursor (``con.cursor()``: a connection to the same
database, safe to use from another thread). Writes that must not interleave (ingest) take a lock.
Risk scorers are expensive to prepare, so a small pool is kept warm, one scorer per concurrent
request; quality and characterization reports are cached until the next committed ingest.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from fastapi import HTTPException, Request

from healthmesh.api.audit import AuditWriter, ensure_audit_table
from healthmesh.api.auth import Client, TokenIssuer
from healthmesh.api.limits import statement_timeout
from healthmesh.api.scoring_workers import ScoringWorkers, score_body
from healthmesh.api.tokenstate import token_state_for
from healthmesh.cdm import HubDatabase, connect, init_cdm
from healthmesh.errors import ConfigError, ModelError
from healthmesh.hubkeys import HubKeys
from healthmesh.privacy.release import Release
from healthmesh.risk import BundleScorer, SafeModel, load_registered

__all__ = ["HubConfig", "HubState", "get_state", "set_rows"]

T = TypeVar("T")


@dataclass
class HubConfig:
    """What one hub service needs: its name, database, models, keys and clients."""

    hub: str
    db_path: Path
    keys: HubKeys
    clients: dict[str, Client]
    models: dict[str, Path] = field(default_factory=dict)
    min_count: int = 5
    scorer_pool: int = 2
    scoring_processes: int = 0  # worker processes for the in-memory Bundle path; 0: in this process
    token_ttl_s: int = 3600
    environment: str = "production"


class HubState:
    """Everything the routes share; built once by ``create_app`` and closed at shutdown."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.keys = config.keys
        # Every number this hub releases passes here (threshold + cell-key perturbation).
        self.release = Release(config.keys.release, config.min_count)
        self.issuer = TokenIssuer(
            config.keys, config.hub, config.clients, config.token_ttl_s, token_state_for(config.db_path)
        )
        self.db = connect(config.db_path)
        init_cdm(self.db)  # a new hub answers with empty results rather than missing tables
        ensure_audit_table(self.db)
        self.audit = AuditWriter(self.db.cursor())
        self.write_lock = threading.Lock()
        # Ingest registers a SQL function in the catalog of its connection: keep one connection for it.
        self._ingest_db = self.db.cursor()
        self.data_version = 0
        self._cache: dict[str, tuple[int, Any]] = {}
        self._cache_lock = threading.Lock()
        self.models: dict[str, SafeModel] = {}
        self._scorers: dict[str, queue.Queue[BundleScorer]] = {}
        self._in_memory: dict[str, BundleScorer] = {}
        for name, folder in config.models.items():
            model = load_registered(Path(folder))
            self.models[name] = model
            pool: queue.Queue[BundleScorer] = queue.Queue()
            for _ in range(max(1, config.scorer_pool)):
                pool.put(BundleScorer(model))
            self._scorers[name] = pool
            # The in-memory path reads no database and changes no state: one scorer serves every request.
            self._in_memory[name] = pool.queue[0]
        self.workers = (
            ScoringWorkers(config.models, config.scoring_processes)
            if config.scoring_processes > 0 and config.models
            else None
        )

    @contextmanager
    def cursor(self) -> Iterator[HubDatabase]:
        """A per-request view of the hub database on its own cursor."""
        # DuckDB: a cursor on the one connection; PostgreSQL: a connection of its own.
        db = self.db.cursor()
        try:
            with statement_timeout(db):  # a request's queries stop at the limit: a 503, not a hung worker
                yield db
        finally:
            db.close()

    @contextmanager
    def ingest_database(self) -> Iterator[HubDatabase]:
        """The connection that ingests, one writer at a time."""
        with self.write_lock:
            yield self._ingest_db

    def model(self, name: str) -> SafeModel:
        if name not in self.models:
            known = ", ".join(sorted(self.models)) or "none (start the service with --model NAME=DIR)"
            raise ModelError(f"no model {name!r} at hub {self.config.hub}; models here: {known}")
        return self.models[name]

    async def score_in_memory(self, name: str, body: bytes, as_of: date | None, top: int) -> bytes | None:
        """The answer's JSON for a cleanly loading Bundle (scoring workers, else this process), else None."""
        self.model(name)
        if self.workers is not None:
            return await self.workers.score(name, body, as_of, top)
        try:
            return score_body(self._in_memory[name], name, body, as_of, top)
        except Exception:  # as in a worker: the database path gives the answer, or the reason
            return None

    @contextmanager
    def scorer(self, name: str) -> Iterator[BundleScorer]:
        """Borrow a warm scorer of model ``name`` (waits while all are busy)."""
        self.model(name)
        pool = self._scorers[name]
        scorer = pool.get()
        try:
            yield scorer
        finally:
            pool.put(scorer)

    def cached(self, key: str, compute: Callable[[], T]) -> T:
        """A report computed once per data version (a committed ingest makes it stale)."""
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == self.data_version:
                return hit[1]  # type: ignore[no-any-return]
            version = self.data_version
        value = compute()
        with self._cache_lock:
            self._cache[key] = (version, value)
        return value

    def data_changed(self) -> None:
        with self._cache_lock:
            self.data_version += 1

    def close(self) -> None:
        for pool in self._scorers.values():
            while not pool.empty():
                pool.get().close()
        if self.workers is not None:
            self.workers.close()
        self.audit.close()
        self._ingest_db.close()
        self.db.close()


def get_state(request: Request) -> HubState:
    state = getattr(request.app.state, "hub", None)
    if state is None:
        raise ConfigError("the hub service was started without a hub state")
    return state  # type: ignore[no-any-return]


def set_rows(request: Request, rows: int | None) -> None:
    """Record how many rows a request touched (written to the audit log)."""
    request.state.rows_touched = rows


def not_found(reason: str) -> HTTPException:
    return HTTPException(404, reason)
