"""The shared Eunomia CDM v5.4 in PostgreSQL (schemas ``cdm`` and ``vocab``), attached read-only.

The hub runs as a role that has only USAGE and SELECT on the CDM's schemas and owns the schema
``main`` (healthmesh's own tables). Every verb and the hub service run as that role; a digest of
every CDM table's rows is the same before and after, and a direct write is refused by the server.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import psycopg
import pytest
from hm_backends import PostgresServer, database_url

from healthmesh.cdm import connect
from healthmesh.cdm.postgres import copy_duckdb_to_postgres
from healthmesh.cdm.schema import cdm_tables, create_table_sql
from healthmesh.cdm.vocabulary import VOCABULARY_TABLES

EUNOMIA = Path("/work/shared/data/omop/eunomia-synthea27nj-cdm54")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not EUNOMIA.is_dir(), reason="shared Eunomia CDM absent"),
]
CLI = [sys.executable, "-m", "healthmesh"]
SECRET = secrets.token_hex(32)  # a hub in PostgreSQL keeps no secret of its own: the verbs need it


def _load_cdm(admin_url: str, selects: dict[str, str], scratch: duckdb.DuckDBPyConnection) -> None:
    """Tables made with the CDM's DDL (types of the spec) in schemas cdm and vocab, rows copied from
    ``selects`` (table: a DuckDB query of its rows, run on ``scratch``)."""
    with connect(admin_url) as target:
        for schema in ("cdm", "vocab"):
            target.raw.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        for table, select in selects.items():
            schema = "vocab" if table in VOCABULARY_TABLES else "cdm"
            ddl = create_table_sql(table, "postgres").replace(" NOT NULL", "")
            target.raw.execute(ddl.replace(f"EXISTS {table} (", f"EXISTS {schema}.{table} (", 1))
            header = set(scratch.execute(f"SELECT * FROM ({select}) LIMIT 0").df().columns)
            present = [f.name for f in cdm_tables()[table] if f.name in header]
            quoted = ", ".join(f'"{c}"' for c in present)
            copy_duckdb_to_postgres(
                scratch, f"SELECT {quoted} FROM ({select})", target, f"{schema}.{table}", present
            )


def _load_eunomia(admin_url: str) -> None:
    files = {f.name.split(".")[0]: f for f in EUNOMIA.glob("*.csv*")}
    selects = {
        table: f"SELECT * FROM read_csv('{file}', header=true, sample_size=-1)"
        for table, file in files.items()
        if table in cdm_tables()
    }
    with duckdb.connect() as scratch:
        _load_cdm(admin_url, selects, scratch)


def _reader_role(admin_url: str, database: str) -> tuple[str, str]:
    """A role with USAGE and SELECT on the CDM's schemas, owner of ``main``: (role, its URL)."""
    role = f"hm_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as con:
        con.execute(f"CREATE ROLE {role} LOGIN")
        con.execute(f"REVOKE CREATE ON DATABASE {database} FROM PUBLIC")
        con.execute("CREATE SCHEMA IF NOT EXISTS main")
        con.execute(f"ALTER SCHEMA main OWNER TO {role}")
        for schema in ("cdm", "vocab"):
            con.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
            con.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}")
    head, _, tail = admin_url.partition("://")
    return role, f"{head}://{role}@{tail.split('@', 1)[-1]}"


def _digest(admin_url: str) -> dict[str, str]:
    """Every table of the CDM's schemas: its rows' digest (order-free)."""
    with psycopg.connect(admin_url) as con:
        tables = con.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema IN ('cdm', 'vocab') ORDER BY 1"
        ).fetchall()
        return {
            name: str(
                con.execute(
                    f"SELECT count(*) || ':' || coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '') FROM {name} t"
                ).fetchone()  # noqa: E501
            )
            for (name,) in tables
        }


@pytest.fixture(scope="module")
def eunomia_pg(postgres_server: PostgresServer) -> Iterator[tuple[str, str]]:
    """(admin URL, hub role URL) of a database holding Eunomia; the role reads the CDM, owns ``main``."""
    name = postgres_server.create()
    admin_url = database_url(postgres_server.url, name)
    _load_eunomia(admin_url)
    role, hub_url = _reader_role(admin_url, name)
    yield admin_url, hub_url
    postgres_server.drop(name)
    postgres_server.admin.execute(f"DROP ROLE IF EXISTS {role}")


def run_cli(
    *args: str, ok: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = env or os.environ | {"HEALTHMESH_SECRET_KEY": SECRET}
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, env=env)
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_attached_eunomia_on_postgres_runs_every_verb_and_is_never_written(
    eunomia_pg: tuple[str, str], tmp_path: Path
) -> None:
    admin_url, hub_url = eunomia_pg
    before = _digest(admin_url)
    attached = run_cli("cdm", "attach", "--db", hub_url, "--cdm-schema", "cdm", "--vocab-schema", "vocab")
    assert "28 persons" in attached.stdout
    with connect(hub_url) as db:
        assert db.attachment is not None and db.attachment.cdm_schema == "cdm"
        assert db.scalar("SELECT count(*) FROM condition_occurrence") == 470
        with db.cursor() as other:  # the service's per-request connections read the same way
            assert other.scalar("SELECT count(*) FROM drug_strength") == db.scalar(
                "SELECT count(*) FROM vocab.drug_strength"
            )
            assert other.scalar("SHOW search_path") == "main, cdm, vocab"
        with pytest.raises(Exception, match="permission denied"):
            db.raw.execute("INSERT INTO cdm.person (person_id, gender_concept_id) VALUES (999, 0)")
    out = tmp_path / "reports"
    run_cli("quality", "--db", hub_url, "--out", str(out))
    run_cli("characterize", "--db", hub_url, "--out", str(out))
    run_cli("catalog", "--db", hub_url, "--hub", "eunomia", "--out", str(out))
    assert {"quality.json", "characterization.json", "catalog.json"} <= {p.name for p in out.iterdir()}
    cohort = run_cli("cohort", "count", "type-2-diabetes", "--db", hub_url)
    assert "cohort type-2-diabetes" in cohort.stdout
    risk = run_cli(
        "risk", "train", "--task", "t2dm-3y", "--db", hub_url, "--out", str(tmp_path / "m"), ok=False
    )
    assert (
        "at least 10 of each are needed" in risk.stdout + risk.stderr
    )  # 28 persons: refused, with the reason
    for args in (
        ("cdm", "init", "--db", hub_url),
        ("cdm", "vocab", "--db", hub_url, "--path", str(tmp_path)),
    ):
        refused = run_cli(*args, ok=False)
        assert refused.returncode != 0 and "attached read-only" in refused.stdout + refused.stderr
    elsewhere = run_cli(
        "cdm", "attach", "--db", hub_url, "--cdm", hub_url.rsplit("/", 1)[0] + "/postgres", ok=False
    )
    assert elsewhere.returncode != 0 and "must be in the hub's PostgreSQL database" in elsewhere.stderr
    assert _digest(admin_url) == before


def test_hub_service_on_the_attached_postgres_cdm(eunomia_pg: tuple[str, str], tmp_path: Path) -> None:
    admin_url, hub_url = eunomia_pg
    sys.path.insert(0, str(Path(__file__).parents[1] / "security"))
    from fixtures_requests import free_port, production_env  # type: ignore[import-not-found]

    from healthmesh.api.launch import hub_serve_command, wait_until_ready
    from healthmesh.hubkeys import HubKeys

    run_cli("cdm", "attach", "--db", hub_url, "--cdm-schema", "cdm", "--vocab-schema", "vocab")
    before = _digest(admin_url)
    secret = secrets.token_hex(32)
    command = hub_serve_command("eunomia", Path(hub_url), free_port())
    command[command.index("--db") + 1] = hub_url
    url = f"http://127.0.0.1:{command[command.index('--port') + 1]}"
    log = tmp_path / "service.log"
    env = production_env(secret)
    with open(log, "wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(url, process, timeout_s=120)
        form = {"grant_type": "client_credentials", "client_id": "researcher",
                "client_secret": HubKeys(secret.encode()).client_secret("eunomia", "researcher")}  # fmt: skip
        token = httpx.post(f"{url}/token", data=form).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/catalog", headers=headers, timeout=60).status_code == 200
        count = httpx.post(
            f"{url}/cohorts/count", json={"builtin": "type-2-diabetes"}, headers=headers, timeout=60
        )
        assert count.status_code == 200, count.text
    finally:
        process.terminate()
        process.wait(30)
    assert "Traceback" not in log.read_text(errors="replace"), log.read_text()
    assert _digest(admin_url) == before


def test_risk_train_validate_score_on_an_attached_postgres_cdm(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """An 800-person toy CDM in PostgreSQL schemas, attached by a SELECT-only role: the risk verbs run."""
    from healthmesh.cdm import create_hub
    from healthmesh.risk.toycdm import populate_toy_cdm

    toy = tmp_path / "toy.duckdb"
    with create_hub(str(toy)) as db:
        populate_toy_cdm(db, 800, seed=11)  # enough of each outcome to train on
    name = postgres_server.create()
    admin_url = database_url(postgres_server.url, name)
    role = ""
    try:
        with duckdb.connect(str(toy), read_only=True) as scratch:
            _load_cdm(admin_url, {t: f"SELECT * FROM {t}" for t in cdm_tables()}, scratch)
        role, hub_url = _reader_role(admin_url, name)
        before = _digest(admin_url)
        run_cli("cdm", "attach", "--db", hub_url, "--cdm-schema", "cdm", "--vocab-schema", "vocab")
        model = tmp_path / "models" / "t2dm"
        run_cli(
            "risk",
            "train",
            "--task",
            "t2dm-3y",
            "--db",
            hub_url,
            "--out",
            str(model),
            "--models",
            "logistic-l1",
        )
        run_cli("risk", "validate", "--model", str(model), "--db", hub_url, "--out", str(tmp_path / "val"))
        scored = run_cli("risk", "score", "--model", str(model), "--db", hub_url, "--person", "5")
        assert "contribution" in scored.stdout
        assert _digest(admin_url) == before
    finally:
        postgres_server.drop(name)
        if role:
            postgres_server.admin.execute(f"DROP ROLE IF EXISTS {role}")
