"""An existing OMOP CDM (the shared Eunomia CDM v5.4, and a v5.3 one) attached read-only to a DuckDB hub.

The CDM file is built from the shared CSVs with DuckDB's own type detection (as a hospital's file
would come, not with healthmesh's DDL), tables in schema ``cdm`` and vocabulary in ``vocab``. Every
verb runs on the attached hub, and the CDM file's checksum does not move.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from healthmesh.cdm import connect, init_cdm
from healthmesh.cdm.attach import Attachment, attach_cdm
from healthmesh.cdm.vocabulary import VOCABULARY_TABLES
from healthmesh.errors import CDMError

EUNOMIA = Path("/work/shared/data/omop/eunomia-synthea27nj-cdm54")
GIBLEED = Path("/work/shared/data/omop/eunomia-gibleed-cdm53-partial")
pytestmark = pytest.mark.skipif(not EUNOMIA.is_dir(), reason="shared Eunomia CDM absent")
CLI = [sys.executable, "-m", "healthmesh"]


def eunomia_tables(folder: Path = EUNOMIA) -> dict[str, Path]:
    """Table name -> CSV file of a shared Eunomia CDM."""
    files = sorted(folder.glob("*.csv")) + sorted(folder.glob("*.csv.gz"))
    return {f.name.split(".")[0]: f for f in files}


def build_eunomia_duckdb(
    path: Path, cdm_schema: str = "cdm", vocab_schema: str = "vocab", folder: Path = EUNOMIA
) -> Path:
    """A DuckDB file holding an Eunomia CDM as its CSVs read it (types detected by DuckDB)."""
    with duckdb.connect(str(path)) as con:
        for schema in {cdm_schema, vocab_schema}:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        for table, file in eunomia_tables(folder).items():
            schema = vocab_schema if table in VOCABULARY_TABLES else cdm_schema
            con.execute(
                f"CREATE TABLE {schema}.{table} AS SELECT * FROM read_csv('{file}', header=true, "
                "sample_size=-1)"
            )
    return path


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def eunomia_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = build_eunomia_duckdb(tmp_path_factory.mktemp("eunomia") / "eunomia.duckdb")
    os.chmod(path, 0o444)  # as a hospital would share it; DuckDB opens it READ_ONLY anyway
    return path


@pytest.fixture(scope="module")
def attached_hub(eunomia_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    hub = tmp_path_factory.mktemp("hub") / "hub.duckdb"
    run_cli(
        "cdm", "attach", "--cdm", str(eunomia_file), "--cdm-schema", "cdm", "--vocab-schema", "vocab",
        "--db", str(hub),
    )  # fmt: skip
    return hub


def run_cli(*args: str, ok: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, cwd=cwd)
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_attach_reads_the_cdm_through_views(attached_hub: Path) -> None:
    with connect(attached_hub, read_only=True) as db:
        assert db.attachment is not None
        assert db.attachment.cdm_version == "5.4"
        assert db.scalar("SELECT count(*) FROM person") == 28
        assert db.scalar("SELECT count(*) FROM concept") > 2000
        assert {"person", "concept", "measurement", "hm_attachment"} <= db.tables()
        # a CSV-typed column (empty file: VARCHAR) reads with the spec's type
        assert db.scalar("SELECT typeof(episode_start_date) FROM episode UNION ALL SELECT 'DATE' LIMIT 1")
        assert db.rows("SELECT typeof(visit_start_date) FROM visit_occurrence LIMIT 1") == [("DATE",)]


def test_verbs_run_on_the_attached_cdm_and_never_write_it(
    eunomia_file: Path, attached_hub: Path, tmp_path: Path
) -> None:
    before = checksum(eunomia_file)
    out = tmp_path / "reports"
    quality = run_cli("quality", "--db", str(attached_hub), "--out", str(out))
    assert (out / "quality.json").exists(), quality.stdout
    run_cli("characterize", "--db", str(attached_hub), "--out", str(out))
    assert (out / "characterization.json").exists()
    run_cli("catalog", "--db", str(attached_hub), "--hub", "eunomia", "--out", str(out))
    assert (out / "catalog.json").exists()
    cohort = run_cli("cohort", "count", "type-2-diabetes", "--db", str(attached_hub))
    assert "cohort type-2-diabetes" in cohort.stdout
    assert checksum(eunomia_file) == before


def test_writing_verbs_refuse_an_attached_hub(eunomia_file: Path, attached_hub: Path, tmp_path: Path) -> None:
    before = checksum(eunomia_file)
    bundle = tmp_path / "b.json"
    bundle.write_text('{"resourceType": "Bundle", "type": "collection", "entry": []}')
    for args in (
        ("ingest", str(bundle), "--db", str(attached_hub), "--hub", "eunomia"),
        ("cdm", "init", "--db", str(attached_hub)),
        ("cdm", "vocab", "--db", str(attached_hub), "--path", str(tmp_path)),
    ):
        done = run_cli(*args, ok=False)
        assert done.returncode != 0, args
        assert "attached read-only" in done.stdout + done.stderr, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
    # and beneath the refusals: the views and the read-only catalog take no row
    with connect(attached_hub) as db, pytest.raises(CDMError):
        db.execute("INSERT INTO person (person_id) VALUES (99)")
    with connect(attached_hub) as db, pytest.raises(CDMError, match="read-only"):
        db.execute("INSERT INTO hm_cdm.cdm.person (person_id) VALUES (99)")
    assert checksum(eunomia_file) == before


def test_a_cdm_v53_is_bridged(tmp_path: Path) -> None:
    """Eunomia GiBleed (CDM v5.3, partial): v5.3 column names read under the v5.4 names, the tables it
    lacks read as empty, and the verbs run on it."""
    if not GIBLEED.is_dir():
        pytest.skip("shared GiBleed CDM absent")
    source = build_eunomia_duckdb(tmp_path / "gibleed.duckdb", "main", "main", GIBLEED)
    before = checksum(source)
    with connect(tmp_path / "hub.duckdb") as db:
        attachment = attach_cdm(db, Attachment(str(source), "main", "main", "main"))
        assert attachment.cdm_version == "5.3"
        assert {"condition_occurrence", "episode"} <= set(attachment.empty_tables)
        assert "visit_occurrence.admitting_source_concept_id -> admitted_from_concept_id" in (
            attachment.renamed_columns
        )
        assert "procedure_occurrence.procedure_end_date" in attachment.null_columns
        assert db.scalar("SELECT count(*) FROM condition_occurrence") == 0
        assert (
            db.scalar("SELECT count(*) FROM visit_occurrence WHERE admitted_from_concept_id IS NOT NULL") > 0
        )
        assert db.scalar("SELECT count(*) FROM person") == 2694
        # a v5.3 table outside the v5.4 spec reads through the search path; new tables land in the hub
        assert db.scalar("SELECT count(*) FROM attribute_definition") == 0
        db.execute("CREATE TABLE hm_probe AS SELECT 1 AS x")
        assert db.rows("SELECT database_name FROM duckdb_tables() WHERE table_name = 'hm_probe'") == [
            ("hub",)
        ]
    out = tmp_path / "reports"
    run_cli("characterize", "--db", str(tmp_path / "hub.duckdb"), "--out", str(out))
    cohort = run_cli("cohort", "count", "mi-or-stroke", "--db", str(tmp_path / "hub.duckdb"))
    assert "cohort mi-or-stroke" in cohort.stdout
    assert checksum(source) == before


def test_attach_refuses_what_cannot_work(eunomia_file: Path, tmp_path: Path) -> None:
    source = tmp_path / "bare.duckdb"
    shutil.copyfile(eunomia_file, source)
    os.chmod(source, 0o644)
    with duckdb.connect(str(source)) as con:
        con.execute("DROP TABLE cdm.observation_period")
    done = run_cli("cdm", "attach", "--cdm", str(source), "--cdm-schema", "cdm", "--vocab-schema", "vocab",
                   "--db", str(tmp_path / "hub.duckdb"), ok=False)  # fmt: skip
    assert done.returncode != 0 and "no observation_period table" in done.stdout + done.stderr
    done = run_cli("cdm", "attach", "--cdm", str(source), "--cdm-schema", "nowhere",
                   "--db", str(tmp_path / "hub2.duckdb"), ok=False)  # fmt: skip
    assert done.returncode != 0 and "no tables in schema nowhere" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    own = tmp_path / "own.duckdb"  # a hub that holds its own CDM is not turned into an attached one
    with connect(own) as db:
        init_cdm(db)
    done = run_cli("cdm", "attach", "--cdm", str(eunomia_file), "--cdm-schema", "cdm", "--vocab-schema", "vocab",
                   "--db", str(own), ok=False)  # fmt: skip
    assert done.returncode != 0 and "already holds its own CDM" in done.stderr


def test_risk_train_validate_score_on_attached_cdms(
    eunomia_file: Path, attached_hub: Path, tmp_path: Path
) -> None:
    """Eunomia's 28 persons are too few to fit: the verb says so. A larger attached CDM trains."""
    from healthmesh.cdm import create_hub
    from healthmesh.risk.toycdm import populate_toy_cdm

    done = run_cli("risk", "train", "--task", "t2dm-3y", "--db", str(attached_hub), "--out", str(tmp_path / "m"),
                   "--models", "logistic-l1", ok=False)  # fmt: skip
    assert "at least 10 of each are needed" in done.stdout + done.stderr and "Traceback" not in done.stderr
    toy = tmp_path / "toy.duckdb"
    with create_hub(str(toy)) as db:
        populate_toy_cdm(db, 1500, seed=11)
    before = checksum(toy)
    hub = tmp_path / "toyhub.duckdb"
    run_cli("cdm", "attach", "--cdm", str(toy), "--db", str(hub))
    model = tmp_path / "models" / "t2dm"
    run_cli(
        "risk", "train", "--task", "t2dm-3y", "--db", str(hub), "--out", str(model), "--models", "logistic-l1"
    )
    run_cli("risk", "validate", "--model", str(model), "--db", str(hub), "--out", str(tmp_path / "val"))
    scored = run_cli("risk", "score", "--model", str(model), "--db", str(hub), "--person", "5")
    assert "contribution" in scored.stdout
    assert checksum(toy) == before


def test_federated_count_on_the_attached_hub(eunomia_file: Path, attached_hub: Path) -> None:
    from healthmesh.federation.cdm_tasks import hub_concept_counts
    from healthmesh.privacy.release import Release

    release = Release(b"attached-hub-release-key-0123456", 5)
    before = checksum(eunomia_file)
    with connect(attached_hub, read_only=True) as db:
        concept, persons = db.rows(
            "SELECT condition_concept_id, count(DISTINCT person_id) FROM condition_occurrence "
            "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1"
        )[0]
    counts, touched = hub_concept_counts(str(attached_hub), {"concept_ids": [int(concept)]}, release)
    assert touched == persons >= 5
    assert abs(counts["persons"] - persons) <= release.max_noise  # released: perturbed, not withheld
    assert checksum(eunomia_file) == before


def test_hub_service_serves_the_attached_cdm(eunomia_file: Path, attached_hub: Path, tmp_path: Path) -> None:
    """``healthmesh hub serve`` (production, a real process) answers /catalog and /cohorts/count from
    the attached CDM and refuses to store a Bundle into it."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "security"))
    import secrets

    import httpx
    from fixtures_requests import free_port, production_env  # type: ignore[import-not-found]

    from healthmesh.api.launch import hub_serve_command, wait_until_ready
    from healthmesh.hubkeys import HubKeys

    before = checksum(eunomia_file)
    hub = tmp_path / "served.duckdb"
    shutil.copyfile(attached_hub, hub)
    secret = secrets.token_hex(32)
    command = hub_serve_command("eunomia", hub, free_port())
    url = f"http://127.0.0.1:{command[command.index('--port') + 1]}"
    log = tmp_path / "service.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, env=production_env(secret), stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_until_ready(url, process, timeout_s=120)

        def headers(role: str) -> dict[str, str]:
            form = {"grant_type": "client_credentials", "client_id": role,
                    "client_secret": HubKeys(secret.encode()).client_secret("eunomia", role)}  # fmt: skip
            token = httpx.post(f"{url}/token", data=form).json()["access_token"]
            return {"Authorization": f"Bearer {token}"}

        researcher, admin = headers("researcher"), headers("admin")
        catalog = httpx.get(f"{url}/catalog", headers=researcher, timeout=60)
        assert catalog.status_code == 200, catalog.text
        count = httpx.post(
            f"{url}/cohorts/count", json={"builtin": "type-2-diabetes"}, headers=researcher, timeout=60
        )
        assert count.status_code == 200, count.text
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-01"}}]}  # fmt: skip
        stored = httpx.post(f"{url}/fhir/Bundle", json=bundle, headers=admin, timeout=60)
        assert stored.status_code == 422 and "attached read-only" in stored.text, stored.text
    finally:
        process.terminate()
        process.wait(30)
    assert "Traceback" not in log.read_text(errors="replace")
    assert checksum(eunomia_file) == before


@pytest.mark.slow
def test_federated_count_over_flower_reads_attached_hubs(
    eunomia_file: Path, attached_hub: Path, tmp_path: Path
) -> None:
    """A real Flower network on loopback (TLS): two SuperNodes whose hubs are attached CDMs."""
    from healthmesh.config import Settings, hub_keys
    from healthmesh.federation import federated_count, start_hub_network
    from healthmesh.federation.cdm_tasks import hub_concept_counts
    from healthmesh.privacy.release import Release

    before = checksum(eunomia_file)
    hubs = {"east": tmp_path / "east.duckdb", "west": tmp_path / "west.duckdb"}
    for path in hubs.values():
        shutil.copyfile(attached_hub, path)
    with connect(attached_hub, read_only=True) as db:
        concept = int(
            db.scalar(
                "SELECT condition_concept_id FROM condition_occurrence GROUP BY 1 "
                "ORDER BY count(DISTINCT person_id) DESC, 1 LIMIT 1"
            )
        )
    with start_hub_network(hubs, tmp_path / "network", tls=True) as network:
        result = federated_count(network, [concept], characterize=False)
    job = {"concept_ids": [concept], "characterize": False}
    direct = {
        name: hub_concept_counts(str(db), job, Release(hub_keys(Settings(secret_key=None), db).release, 5))[0]
        for name, db in hubs.items()
    }
    assert result["per_site"] == direct
    assert all(counts["persons"] > 0 for counts in direct.values())
    assert checksum(eunomia_file) == before


def test_quality_on_the_attached_cdm_equals_quality_on_a_copy(attached_hub: Path, tmp_path: Path) -> None:
    """The views change no answer: every check counts the same rows as on a hub holding the same data."""
    import json

    from healthmesh.cdm.schema import cdm_tables
    from healthmesh.privacy.release import Release
    from healthmesh.quality import run_quality

    native = tmp_path / "native.duckdb"
    with connect(native) as db:
        init_cdm(db)
        for table, file in eunomia_tables().items():
            if table not in cdm_tables():
                continue
            header = {r[0] for r in db.rows(f"DESCRIBE SELECT * FROM read_csv('{file}', header=true)")}
            names = ", ".join(f'"{f.name}"' for f in cdm_tables()[table] if f.name in header)
            db.execute(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM read_csv('{file}', header=true, sample_size=-1)"
            )
    answers = []
    for hub, out in ((native, tmp_path / "native"), (attached_hub, tmp_path / "attached")):
        with connect(hub, read_only=True) as db:
            run_quality(db, out, release=Release(b"attached-hub-release-key-0123456", 5))
        checks = json.loads((out / "quality.json").read_text())["checks"]
        answers.append(
            {
                (c["check"], c["table"], c["field"], c["label"]): (c["violating_rows"], c["failed"])
                for c in checks
            }
        )
    assert answers[0] == answers[1]
    assert any(failed for _, failed in answers[1].values())  # the comparison is not of empty answers
