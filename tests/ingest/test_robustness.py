"""Idempotent loads, crash repair, bad input: nothing lost, nothing duplicated, no traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from healthmesh.cdm.schema import cdm_tables
from healthmesh.ingest.synth import generate_population

SECRET = "1d6f9b3e8a2c5f0d7b4e9a1c6f3b8d2e5a0c7f4b"


def _fingerprint(db: Path) -> dict[str, tuple[int, str]]:
    """Row count and an order-independent hash of every CDM table."""
    out = {}
    with duckdb.connect(str(db), read_only=True) as con:
        for table in cdm_tables():
            if table == "cdm_source":
                continue
            count, digest = con.execute(
                f"SELECT count(*), coalesce(sum(hash(t))::VARCHAR, '0') FROM {table} t"
            ).fetchone()
            out[table] = (count, digest)
    return out


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("population")
    generate_population("gwangju", 300, 11, folder, max_lines_per_file=2000)
    return folder


def test_loading_the_same_files_twice_changes_nothing(population: Path, tmp_path: Path, run_cli) -> None:
    db = tmp_path / "hub.duckdb"
    first = run_cli("ingest", str(population), "--db", str(db), "--hub", "gwangju", "--quiet")
    assert first.returncode == 0, first.stderr
    before = _fingerprint(db)
    second = run_cli("ingest", str(population), "--db", str(db), "--hub", "gwangju", "--quiet")
    assert second.returncode == 0, second.stderr
    assert _fingerprint(db) == before
    assert before["person"][0] == 300


def test_a_load_killed_halfway_then_run_again_equals_a_clean_load(
    population: Path, tmp_path: Path, run_cli
) -> None:
    clean = tmp_path / "clean.duckdb"
    assert (
        run_cli("ingest", str(population), "--db", str(clean), "--hub", "gwangju", "--quiet").returncode == 0
    )

    crashed = tmp_path / "crashed.duckdb"
    env = {**os.environ, "HEALTHMESH_SECRET_KEY": SECRET}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "healthmesh",
            "ingest",
            str(population),
            "--db",
            str(crashed),
            "--hub",
            "gwangju",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stderr is not None
    total = None
    for line in process.stderr:
        if line.startswith("batch "):
            done, total = (int(x) for x in line.split()[1].split("/"))
            if done >= 3:
                break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert total is not None and total > 4, "the load must have several batches for the kill to land halfway"
    half = _fingerprint(crashed)
    assert 0 < half["person"][0]
    assert half != _fingerprint(clean)

    again = run_cli("ingest", str(population), "--db", str(crashed), "--hub", "gwangju", "--quiet")
    assert again.returncode == 0, again.stderr
    assert _fingerprint(crashed) == _fingerprint(clean)


PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-05-02"}
HBA1C = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2020-01-02T10:00:00+09:00",
    "valueQuantity": {"value": 6.1, "unit": "%"},
}


def _bad_ndjson(path: Path) -> dict[str, str]:
    """A file mixing good records with every kind of bad one; returns {record number: expected reason}."""
    good_patient, observation = PATIENT, HBA1C
    lines: list[bytes] = [
        json.dumps(good_patient).encode(),
        json.dumps(observation).encode(),
        b'{"resourceType": "Observation", "id": "trunc", "subject": {"refer',
        json.dumps({**observation, "id": "o2", "resourceType": "Foo"}).encode(),
        json.dumps({k: v for k, v in observation.items() if k != "resourceType"}).encode(),
        json.dumps({k: v for k, v in good_patient.items() if k != "id"}).encode(),
        json.dumps({k: v for k, v in {**observation, "id": "o3"}.items() if k != "subject"}).encode(),
        json.dumps({**observation, "id": "o4", "subject": {"reference": "Patient/nobody"}}).encode(),
        json.dumps({**observation, "id": "o5", "effectiveDateTime": "yesterday"}).encode(),
        b"\x00\x01\x02\xff\xfe binary garbage \x89PNG",
        json.dumps({**observation, "id": "o6", "note": [{"text": "x" * (50 * 1024 * 1024)}]}).encode(),
        json.dumps({**observation, "id": "o7"}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return {
        "3": "not valid JSON",
        "4": "unknown resourceType 'Foo'",
        "5": "no resourceType",
        "6": "Patient without id",
        "7": "Observation without subject",
        "8": "is not a Patient of this load or of the hub",
        "9": "effectiveDateTime 'yesterday' is not a FHIR date",
        "10": "not valid JSON",
        "11": "over the 16 MB limit",
    }


def test_bad_records_are_reported_one_line_each_and_good_ones_land(tmp_path: Path, run_cli) -> None:
    source = tmp_path / "mixed.ndjson"
    expected = _bad_ndjson(source)
    truncated_bundle = tmp_path / "truncated.json"
    truncated_bundle.write_text(
        '{"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resour'
    )
    db = tmp_path / "hub.duckdb"
    result = run_cli("ingest", str(source), str(truncated_bundle), "--db", str(db), "--hub", "busan")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    report = json.loads(db.with_name(db.name + ".ingest-report.json").read_text())
    reasons = {str(r["record"]): r["reason"] for r in report["rejections"] if r["file"] == str(source)}
    assert set(reasons) == set(expected)
    for record, fragment in expected.items():
        assert fragment in reasons[record], (record, reasons[record])
    assert any(r["file"] == str(truncated_bundle) for r in report["rejections"])
    totals = report["totals"]
    assert totals["records"] == 13 and totals["rejected"] == 10 and totals["loaded"] == 3
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM person").fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM measurement WHERE value_as_number = 6.1").fetchone()[0] == 2


def test_a_component_that_is_not_a_list_rejects_its_observation_alone(tmp_path: Path, run_cli) -> None:
    patient = PATIENT
    parts = [
        {"code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "valueQuantity": {"value": v}}
        for code, v in (("8480-6", 131), ("8462-4", 84))
    ]
    panel = {k: v for k, v in HBA1C.items() if k != "valueQuantity"}
    panel |= {
        "id": "bp",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "component": parts,
    }
    lines = [
        patient,
        {**panel, "id": "s", "component": "abc"},
        {**panel, "id": "o", "component": {"a": 1}},
        panel,
    ]
    source = tmp_path / "panels.ndjson"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    db = tmp_path / "hub.duckdb"
    result = run_cli("ingest", str(source), "--db", str(db), "--hub", "busan", "--quiet")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    report = json.loads(db.with_name(db.name + ".ingest-report.json").read_text())
    reasons = {r["record"]: r["reason"] for r in report["rejections"]}
    assert reasons == {2: "Observation.component is not a list", 3: "Observation.component is not a list"}
    assert report["totals"] == {"records": 4, "loaded": 2, "skipped": 0, "rejected": 2, "redacted": 0}
    with duckdb.connect(str(db), read_only=True) as con:
        values = con.execute(
            "SELECT measurement_source_value, value_as_number FROM measurement WHERE value_as_number IS NOT NULL"
            " ORDER BY 1"
        ).fetchall()
    assert values == [("8462-4", 84.0), ("8480-6", 131.0)]


def test_a_file_read_on_every_core_still_reports_line_numbers_and_keeps_the_last_copy(
    tmp_path: Path, run_cli
) -> None:
    # Over 64 MB, so that DuckDB reads it in several buffers at once, out of line order.
    patient, observation = PATIENT, {**HBA1C, "note": [{"text": "x" * 600}]}
    lines = [json.dumps({**observation, "id": f"o{i}"}) for i in range(1, 110_001)]
    lines[80_000 - 1] = json.dumps({**observation, "id": "o5", "valueQuantity": {"value": 9.9, "unit": "%"}})
    lines[100_000 - 1] = json.dumps({**observation, "id": "late", "effectiveDateTime": "yesterday"})
    source = tmp_path / "Observation.ndjson"
    source.write_text("\n".join(lines) + "\n")
    patients = tmp_path / "Patient.ndjson"
    patients.write_text(json.dumps(patient) + "\n")
    db = tmp_path / "hub.duckdb"
    result = run_cli("ingest", str(patients), str(source), "--db", str(db), "--hub", "busan", "--quiet")
    assert result.returncode == 1
    report = json.loads(db.with_name(db.name + ".ingest-report.json").read_text())
    assert [(r["record"], r["id"]) for r in report["rejections"]] == [(100_000, "late")]
    with duckdb.connect(str(db), read_only=True) as con:
        kept = con.execute("SELECT value_as_number FROM measurement WHERE value_as_number <> 6.1").fetchall()
    assert kept == [(9.9,)]  # o5 of line 80,000, not o5 of line 5


def test_a_folder_that_holds_the_hub_is_loaded_without_the_hubs_own_files(tmp_path: Path, run_cli) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-05-02"}
    (tmp_path / "Patient.ndjson").write_text(json.dumps(patient) + "\n")
    db = tmp_path / "hub.duckdb"
    for _ in range(2):  # the second load finds the database and its report in the folder
        result = run_cli("ingest", str(tmp_path), "--db", str(db), "--hub", "busan", "--quiet")
        assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(db.with_name(db.name + ".ingest-report.json").read_text())
    assert report["totals"] == {"records": 1, "loaded": 1, "skipped": 0, "rejected": 0, "redacted": 0}
    assert report["ignored_files"] == []


def test_strict_stores_nothing_when_anything_is_rejected(tmp_path: Path, run_cli) -> None:
    source = tmp_path / "mixed.ndjson"
    _bad_ndjson(source)
    db = tmp_path / "hub.duckdb"
    result = run_cli("ingest", str(source), "--db", str(db), "--hub", "busan", "--strict", "--quiet")
    assert result.returncode == 1
    assert "nothing was stored" in result.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM person").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM measurement").fetchone()[0] == 0


def test_a_missing_input_is_one_clear_line(tmp_path: Path, run_cli) -> None:
    result = run_cli(
        "ingest", str(tmp_path / "nope.ndjson"), "--db", str(tmp_path / "h.duckdb"), "--hub", "busan"
    )
    assert result.returncode == 6
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
