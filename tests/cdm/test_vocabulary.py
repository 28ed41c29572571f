"""The bundled vocabulary: special concepts DQD's foreign-key checks need, CVX, unit aliases; and an
Athena export loaded with ``healthmesh cdm vocab`` replaces it."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from healthmesh.cdm import HubDatabase, connect, create_hub
from healthmesh.cdm.eras import build_eras
from healthmesh.cdm.vocabulary import SUPPLEMENTS, VOCABULARY_TABLES, bundled_vocabulary_dir

SECRET = "1d6f9b3e8a2c5f0d7b4e9a1c6f3b8d2e5a0c7f4b"


def _map(db: HubDatabase, vocabulary: str, code: str) -> tuple[int, str] | None:
    rows = db.rows(
        "SELECT concept_id, domain_id FROM hm_concept_map WHERE vocabulary_id = ? AND concept_code = ?",
        [vocabulary, code],
    )
    return (int(rows[0][0]), str(rows[0][1])) if rows else None


def test_the_special_concepts_dqd_looks_up_are_in_concept(hub_db: HubDatabase) -> None:
    # 0 for "no matching concept", the type, gender, race, ethnicity and visit concepts ingest writes.
    needed = {0, 32817, 32818, 32838, 32865, 32856, 8507, 8532, 8527, 8516, 8515, 8657, 8557, 38003563,
              38003564, 9201, 9202, 9203, 262, 756265}  # fmt: skip
    present = {int(r[0]) for r in hub_db.rows("SELECT concept_id FROM concept")}
    assert needed <= present, sorted(needed - present)
    assert hub_db.scalar("SELECT concept_name FROM concept WHERE concept_id = 0") == "No matching concept"
    types = hub_db.rows("SELECT concept_code FROM concept WHERE vocabulary_id = 'Type Concept'")
    assert len(types) >= 14 and all(
        str(c).startswith("OMOP49768") or str(c).startswith("OMOP49769") for (c,) in types
    )


def test_every_supplement_row_is_loaded_once(hub_db: HubDatabase) -> None:
    for name in SUPPLEMENTS:
        with (bundled_vocabulary_dir() / name).open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        ids = [int(r["concept_id"]) for r in rows]
        assert len(ids) == len(set(ids)), name
        found = hub_db.scalar(
            f"SELECT count(*) FROM concept WHERE concept_id IN ({', '.join(map(str, ids))})"
        )
        assert found == len(ids), name
    assert hub_db.scalar("SELECT count(*) - count(DISTINCT concept_id) FROM concept") == 0


def test_cvx_vaccines_and_ucum_units_as_fhir_writes_them_map(hub_db: HubDatabase) -> None:
    assert _map(hub_db, "CVX", "140") == (40213154, "Drug")  # influenza, seasonal, preservative free
    assert _map(hub_db, "CVX", "08") == (40213304, "Drug")  # the leading zero is kept
    assert _map(hub_db, "UCUM", "U/L") == (8645, "Unit")
    assert _map(hub_db, "UCUM", "[U]/L") == (8645, "Unit")  # the vocabulary's own spelling still maps
    assert _map(hub_db, "UCUM", "mL/min/{1.73_m2}") == (720870, "Unit")
    assert _map(hub_db, "UCUM", "(score)") == (44777566, "Unit")
    assert _map(hub_db, "SNOMED", "38341003") == (316866, "Condition")  # from OHDSI's Phenotype Library


def _athena_folder(folder: Path) -> Path:
    """A tiny Athena export: tab-separated, upper-case names, dates YYYYMMDD."""
    folder.mkdir()
    header = ("concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\t"
              "concept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason")  # fmt: skip
    concepts = [
        "1503297\tmetformin\tDrug\tRxNorm\tIngredient\tS\t6809\t19700101\t20991231\t",
        "1503328\tmetformin hydrochloride 500 MG Oral Tablet\tDrug\tRxNorm\tClinical Drug\tS\t861007\t19700101\t20991231\t",
        "201826\tType 2 diabetes mellitus\tCondition\tSNOMED\tClinical Finding\tS\t44054006\t19700101\t20991231\t",
        "45576876\tType 2 diabetes mellitus without complications\tCondition\tICD10CM\t5-char billable code\t\tE11.9\t19700101\t20991231\t",
        "40213154\tInfluenza, seasonal, injectable, preservative free\tDrug\tCVX\tCVX\tS\t140\t20111104\t20991231\t",
        "8576\tmilligram\tUnit\tUCUM\tUnit\tS\tmg\t19700101\t20991231\t",
    ]
    (folder / "CONCEPT.csv").write_text("\n".join([header, *concepts]) + "\n")
    (folder / "CONCEPT_RELATIONSHIP.csv").write_text(
        "concept_id_1\tconcept_id_2\trelationship_id\tvalid_start_date\tvalid_end_date\tinvalid_reason\n"
        "45576876\t201826\tMaps to\t19700101\t20991231\t\n"
    )
    (folder / "CONCEPT_ANCESTOR.csv").write_text(
        "ancestor_concept_id\tdescendant_concept_id\tmin_levels_of_separation\tmax_levels_of_separation\n"
        "1503297\t1503297\t0\t0\n1503297\t1503328\t1\t1\n201826\t201826\t0\t0\n"
    )
    (folder / "DRUG_STRENGTH.csv").write_text(
        "drug_concept_id\tingredient_concept_id\tamount_value\tamount_unit_concept_id\tnumerator_value\t"
        "numerator_unit_concept_id\tdenominator_value\tdenominator_unit_concept_id\tbox_size\t"
        "valid_start_date\tvalid_end_date\tinvalid_reason\n"
        "1503328\t1503297\t500\t8576\t\t\t\t\t\t19700101\t20991231\t\n"
    )
    return folder


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEALTHMESH_SECRET_KEY": SECRET}
    return subprocess.run(
        [sys.executable, "-m", "healthmesh", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_an_athena_export_loaded_with_cdm_vocab_replaces_the_bundled_subset(tmp_path: Path) -> None:
    db_path = tmp_path / "hub.duckdb"
    create_hub(str(db_path)).close()
    done = _cli("cdm", "vocab", "--db", str(db_path), "--path", str(_athena_folder(tmp_path / "athena")))
    assert done.returncode == 0, done.stderr
    with connect(db_path) as db:
        assert _map(db, "ICD10CM", "E11.9") == (201826, "Condition")
        assert db.scalar("SELECT valid_start_date FROM concept WHERE concept_id = 40213154").isoformat() == (
            "2011-11-04"
        )  # the export's own row, not the supplement's
        # The bundled subset is gone (its ancestors too); the special concepts stay available.
        assert _map(db, "LOINC", "4548-4") is None
        assert db.scalar("SELECT count(*) FROM concept_ancestor") == 3
        assert db.scalar("SELECT count(*) FROM vocabulary") == 0  # the folder has none: the old rows went
        assert db.scalar("SELECT count(*) FROM concept WHERE concept_id IN (0, 32817)") == 2
        db.execute(
            "INSERT INTO drug_exposure (drug_exposure_id, person_id, drug_concept_id, drug_exposure_start_date,"
            " drug_exposure_end_date, drug_type_concept_id) VALUES"
            " (1, 1, 1503328, DATE '2020-01-01', DATE '2020-01-31', 32817),"
            " (2, 1, 1503328, DATE '2020-02-20', DATE '2020-03-20', 32817)"
        )
        counts = build_eras(db)
        assert counts["drug_era"] == 1 and counts["dose_era"] == 1
        assert db.rows("SELECT drug_concept_id, gap_days FROM drug_era") == [(1503297, 20)]
        assert db.rows("SELECT dose_value, unit_concept_id FROM dose_era") == [(500.0, 8576)]


def test_a_folder_without_concept_file_is_refused_in_one_line(tmp_path: Path) -> None:
    db_path = tmp_path / "hub.duckdb"
    create_hub(str(db_path)).close()
    (tmp_path / "empty").mkdir()
    done = _cli("cdm", "vocab", "--db", str(db_path), "--path", str(tmp_path / "empty"))
    assert done.returncode != 0
    assert "CONCEPT" in done.stderr + done.stdout and "Traceback" not in done.stderr
    with connect(db_path, read_only=True) as db:  # the hub keeps its vocabulary
        assert db.scalar("SELECT count(*) FROM concept") > 2000


def test_every_concept_id_an_ingested_hub_holds_is_in_concept(generated_hub: Path) -> None:
    """DQD's isForeignKey on every concept field: a value with no CONCEPT row fails (0 included)."""
    spec = (
        Path(__file__).resolve().parents[2] / "healthmesh" / "cdm" / "spec" / "OMOP_CDMv5.4_Field_Level.csv"
    )
    with spec.open(encoding="utf-8-sig") as handle:
        fields = [
            (r["cdmTableName"].lower(), r["cdmFieldName"].lower())
            for r in csv.DictReader(handle)
            if r["isForeignKey"] == "Yes"
            and r["fkTableName"].upper() == "CONCEPT"
            and r["cdmTableName"].lower() not in VOCABULARY_TABLES  # DQD does not check these
        ]
    assert len(fields) > 100
    with connect(generated_hub, read_only=True) as db:
        orphans = {}
        for table, field in fields:
            n = db.scalar(
                f'SELECT count(*) FROM "{table}" t WHERE t."{field}" IS NOT NULL'
                f' AND NOT EXISTS (SELECT 1 FROM concept c WHERE c.concept_id = t."{field}")'
            )
            if n:
                orphans[f"{table}.{field}"] = n
        assert db.scalar("SELECT count(*) FROM person WHERE ethnicity_concept_id = 0") > 0  # 0 is used
        assert db.scalar("SELECT count(*) FROM condition_era") > 0
        # The derived hierarchy stays within the concepts present.
        assert not db.scalar(
            "SELECT count(*) FROM concept_ancestor WHERE ancestor_concept_id NOT IN (SELECT concept_id FROM concept)"
        )
    assert orphans == {}


def test_shared_synthea_immunizations_and_units_get_their_standard_concepts(
    shared_data: Path, tmp_path: Path
) -> None:
    """Twelve of the shared Synthea bundles: CVX vaccines and FHIR-spelt UCUM units map (0% and none before)."""
    import tarfile

    from healthmesh.ingest import ingest_paths

    folder = tmp_path / "bundles"
    with tarfile.open(shared_data / "synthea" / "synthea-fhir-r4-205-patients_smart-on-fhir.tar.gz") as tar:
        members = [m for m in tar.getmembers() if m.name.endswith(".json") and "Information" not in m.name]
        for member in members[:12]:
            member.name = Path(member.name).name
            tar.extract(member, folder, filter="data")
    db_path = tmp_path / "hub.duckdb"
    create_hub(str(db_path)).close()
    with connect(db_path) as db:
        report = ingest_paths(db, [folder], "massachusetts", SECRET.encode())
        shares = report.mapped_share()
        units = dict(
            db.rows(
                "SELECT unit_source_value, min(unit_concept_id) FROM measurement"
                " WHERE unit_source_value IN ('U/L', 'mL/min/{1.73_m2}') GROUP BY 1"
            )
        )
        # A UCUM annotation alone is no unit: NULL, as DQD expects of the pain score (43055141).
        scores = db.rows(
            "SELECT count(*), count(unit_concept_id) FROM measurement WHERE unit_source_value = '{score}'"
        )[0]
    assert report.by_type["Immunization"]["loaded"] > 50 and shares["Immunization"] >= 0.85, shares
    assert units and all(concept > 0 for concept in units.values()), units
    assert scores[0] > 0 and scores[1] == 0, scores


def test_a_folder_that_fails_to_load_leaves_the_vocabulary_as_it_was(tmp_path: Path) -> None:
    db_path = tmp_path / "hub.duckdb"
    create_hub(str(db_path)).close()
    athena = _athena_folder(tmp_path / "athena")
    (athena / "DRUG_STRENGTH.csv").write_text("drug_concept_id\tamount_value\n1\t2\n")  # columns missing
    done = _cli("cdm", "vocab", "--db", str(db_path), "--path", str(athena))
    assert done.returncode != 0 and "DRUG_STRENGTH.csv: missing columns" in done.stderr + done.stdout
    (athena / "DRUG_STRENGTH.csv").unlink()
    with (athena / "CONCEPT.csv").open("a") as handle:  # a concept id that is not a number, at the end
        handle.write("x1\tbroken\tDrug\tRxNorm\tIngredient\tS\tx\t19700101\t20991231\t\n")
    done = _cli("cdm", "vocab", "--db", str(db_path), "--path", str(athena))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    with connect(db_path, read_only=True) as db:
        assert _map(db, "LOINC", "4548-4") == (3004410, "Measurement")
        assert _map(db, "ICD10CM", "E11.9") is None
        assert db.scalar("SELECT count(*) FROM concept_ancestor") > 100
        assert db.scalar("SELECT count(*) FROM concept") > 2000
