"""Fixtures that run a database-facing test on DuckDB and on PostgreSQL.

``backend_db`` is parametrised over both engines: a fresh hub CDM with the bundled vocabulary, in
a DuckDB file or in its own PostgreSQL database (copied from a session template, so each costs a
fraction of a second). PostgreSQL cases skip, saying why, when no server is reachable; the URL
comes from ``HEALTHMESH_TEST_POSTGRES_URL`` or ``.pg/url`` (written by ``scripts/postgres.sh``).

Another test folder adopts them with two lines in its ``conftest.py``::

    sys.path.insert(0, str(Path(__file__).parents[1] / "postgres"))
    from hm_backends import backend_db, postgres_server  # noqa: E402, F401
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from healthmesh.cdm import HubDatabase, connect, create_hub

REPO = Path(__file__).resolve().parents[2]
BACKENDS = ("duckdb", "postgres")


def server_url() -> str | None:
    """The test server's URL, or None when none is configured."""
    configured = os.environ.get("HEALTHMESH_TEST_POSTGRES_URL")
    if configured:
        return configured.strip()
    url_file = REPO / ".pg" / "url"
    return url_file.read_text().strip() if url_file.is_file() else None


def database_url(server: str, name: str) -> str:
    """``server`` with its database name replaced by ``name``."""
    head, _, tail = server.partition("?")
    return head.rsplit("/", 1)[0] + "/" + name + (f"?{tail}" if tail else "")


class PostgresServer:
    """A reachable server: creates and drops throw-away databases."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.admin = psycopg.connect(url, autocommit=True, connect_timeout=3)
        self.template: str | None = None

    def create(self, template: str | None = None) -> str:
        name = f"hm_test_{uuid.uuid4().hex[:12]}"
        self.admin.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        return name

    def drop(self, name: str) -> None:
        self.admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def hub_template(self) -> str:
        """A database holding an empty CDM with the bundled vocabulary, made once per session."""
        if self.template is None:
            name = self.create()
            create_hub(database_url(self.url, name)).close()
            self.template = name
        return self.template

    def fresh_hub_url(self) -> str:
        return database_url(self.url, self.create(self.hub_template()))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The PostgreSQL test server; skips the test, saying why, when there is none."""
    url = server_url()
    if url is None:
        pytest.skip(
            "no PostgreSQL server configured: run `bash scripts/postgres.sh` or set HEALTHMESH_TEST_POSTGRES_URL"
        )
    try:
        server = PostgresServer(url)
    except psycopg.Error as error:
        pytest.skip(
            f"PostgreSQL at {url} is not reachable ({str(error).strip().splitlines()[0]}); run `bash scripts/postgres.sh`"
        )
    yield server
    if server.template is not None:
        server.drop(server.template)
    server.admin.close()


@pytest.fixture(scope="session")
def duckdb_hub_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty DuckDB hub CDM with the bundled vocabulary, made once and copied per test."""
    path = tmp_path_factory.mktemp("hub-template") / "template.duckdb"
    create_hub(str(path)).close()
    return path


def open_fresh_hub(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubDatabase]:
    if backend == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.fresh_hub_url()
        db = connect(url)
        yield db
        db.close()
        server.drop(url.rsplit("/", 1)[1].split("?")[0])
        return
    template: Path = request.getfixturevalue("duckdb_hub_template")
    path = tmp_path / "hub.duckdb"
    shutil.copyfile(template, path)
    db = connect(path)
    yield db
    db.close()


@pytest.fixture(
    params=[pytest.param(b, marks=[pytest.mark.postgres] if b == "postgres" else []) for b in BACKENDS]
)
def backend_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubDatabase]:
    """A fresh hub CDM with the bundled vocabulary, once on DuckDB and once on PostgreSQL."""
    yield from open_fresh_hub(request.param, request, tmp_path)
