"""Identifiers typed into clinical text and codes are redacted at ingest, counted, and never stored."""

from __future__ import annotations

import copy
import json
import random
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest

from healthmesh.cdm import connect, create_hub
from healthmesh.ingest import ingest_bundle, ingest_paths
from healthmesh.ingest.one_patient import BundleMapper
from healthmesh.privacy.scan import IDENTIFIER_MACROS, INGEST_ANY, identifier_kind, scan_database

from .test_one_patient import _reference, _same

KEY = b"identifier-test-key-0123456789abcdef"


def rrn(front: str, back12: str, hyphen: bool = True) -> str:
    """A resident registration number with its mod-11 check digit."""
    digits = front + back12
    total = sum(int(d) * w for d, w in zip(digits, (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5), strict=True))
    return f"{front}{'-' if hyphen else ''}{back12}{(11 - total % 11) % 10}"


RRN = rrn("900101", "123456")
WRONG_DIGIT = RRN[:-1] + str((int(RRN[-1]) + 1) % 10)  # numbers issued since 2020 have no check digit
PHONE = "010-1234-5678"
EMAIL = "minjun.kim@example.co.kr"
NEEDLES = (
    RRN,
    RRN.replace("-", ""),
    PHONE,
    "01098765432",
    "010 2345 6789",
    EMAIL,
    "Minjun Kim",
    "4111 1111 1111 1111",
)


def _coded(system: str, code: str, text: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [{"system": system, "code": code}]}
    if text:
        concept["text"] = text
    return concept


def identifier_bundle() -> dict[str, Any]:
    """One patient whose clinical records carry identifiers in every kind of text field that lands."""
    subject = {"reference": "Patient/p1"}
    snomed, loinc, local = (
        "http://snomed.info/sct",
        "http://loinc.org",
        "https://healthmesh.dev/fhir/CodeSystem/local",
    )
    resources = [
        {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1990-01-01",
         "name": [{"family": "Kim", "given": ["Minjun"]}], "telecom": [{"system": "phone", "value": PHONE}]},
        {"resourceType": "Organization", "id": "01098765432", "name": "Clinic of Dr. Kim"},
        {"resourceType": "Encounter", "id": "e1", "subject": subject, "class": {"code": "010 2345 6789"},
         "period": {"start": "2020-01-01T09:00:00", "end": "2020-01-01T10:00:00"}},
        {"resourceType": "Condition", "id": "c1", "subject": subject, "encounter": {"reference": "Encounter/e1"},
         "onsetDateTime": "2020-01-01", "code": _coded(snomed, RRN, f"RRN {RRN}")},
        {"resourceType": "Condition", "id": "c2", "subject": subject, "onsetDateTime": "2020-01-02",
         "code": _coded(snomed, "44054006")},
        {"resourceType": "Observation", "id": "o1", "subject": subject, "effectiveDateTime": "2020-01-01",
         "code": _coded(loinc, "46240-8"), "valueString": f"Minjun Kim {PHONE}",
         "note": [{"text": f"mail {EMAIL}"}]},
        {"resourceType": "Observation", "id": "o2", "subject": subject, "effectiveDateTime": "2020-01-01",
         "code": _coded(local, "01098765432"), "valueCodeableConcept": _coded(snomed, EMAIL)},
        {"resourceType": "Observation", "id": "o3", "subject": subject, "effectiveDateTime": "2020-01-01",
         "code": _coded(loinc, "2339-0"), "valueQuantity": {"value": 5.5, "unit": RRN.replace("-", "")}},
        {"resourceType": "MedicationRequest", "id": "m1", "subject": subject, "authoredOn": "2020-01-01",
         "medicationCodeableConcept": _coded("http://www.nlm.nih.gov/research/umls/rxnorm", "4111 1111 1111 1111", "Dr. Kim")},
    ]  # fmt: skip
    return {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": r} for r in resources]}


EXPECTED_REDACTIONS = {
    "Organization": {"id": {"PHONE": 1}, "name": {"PERSON_NAME": 1}},
    "Encounter": {"class.code": {"PHONE": 1}},
    "Condition": {"code": {"KR_RRN": 1}},
    "Observation": {
        "code": {"PHONE": 1},
        "valueCodeableConcept.code": {"EMAIL": 1},
        "valueQuantity.unit": {"KR_RRN": 1},
        "valueString": {"PHONE": 1},
    },
    "MedicationRequest": {"code": {"CREDIT_CARD": 1}},
}


def stored_needles(
    con: duckdb.DuckDBPyConnection, needles: tuple[str, ...] = NEEDLES
) -> list[tuple[str, str]]:
    """(table.column, needle) for every needle found in any VARCHAR column of any table."""
    hits = []
    for table, column in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE data_type = 'VARCHAR'"
    ).fetchall():
        for needle in needles:
            if con.execute(
                f'SELECT count(*) FROM "{table}" WHERE contains("{column}", ?)', [needle]
            ).fetchone()[0]:
                hits.append((f"{table}.{column}", needle))
    return hits


@pytest.fixture(scope="module")
def macros() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for statement in IDENTIFIER_MACROS.split(";\n"):
        if statement.strip():
            con.execute(statement)
    return con


def _kinds_in_sql(con: duckdb.DuckDBPyConnection, values: list[str]) -> list[str | None]:
    con.execute("CREATE OR REPLACE TEMP TABLE v (i INTEGER, x VARCHAR)")
    con.executemany("INSERT INTO v VALUES (?, ?)", list(enumerate(values)))
    return [row[0] for row in con.execute("SELECT hm_identifier_kind(x) FROM v ORDER BY i").fetchall()]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (RRN, "KR_RRN"),
        (RRN.replace("-", ""), "KR_RRN"),
        (f"주민번호 {RRN}", "KR_RRN"),
        (PHONE, "PHONE"),
        ("01012345678", "PHONE"),
        ("010 1234 5678", "PHONE"),
        ("+82 10-1234-5678", "PHONE"),
        ("+821012345678", "PHONE"),
        ("02-123-4567", "PHONE"),
        ("031.123.4567", "PHONE"),
        ("(02) 1234-5678", "PHONE"),
        ("보호자 김민준 010-2345-6789", "PHONE"),
        (EMAIL, "EMAIL"),
        ("123-45-6789", "US_SSN"),
        ("4111-1111-1111-1111", "CREDIT_CARD"),
        ("seen by Dr. Hong", "PERSON_NAME"),
        ("44054006", None),
        ("8480-6", None),
        ("HM-ILI", None),
        ("2024-01-31", None),
        ("mL/min/{1.73_m2}", None),
        ("Never smoker", None),
        (WRONG_DIGIT, "KR_RRN"),  # written as an RRN, with a real birth date
        (WRONG_DIGIT.replace("-", ""), None),  # 13 bare digits need the check digit
        ("000-12-3456", None),
        ("4111 1111 1111 1112", None),
    ],
)
def test_each_form_is_judged_alike_in_sql_and_python(macros, value: str, kind: str | None) -> None:
    assert identifier_kind(value) == kind
    assert _kinds_in_sql(macros, [value]) == [kind]


def test_sql_and_python_agree_on_random_text(macros) -> None:
    rng = random.Random(7)
    values = [
        "".join(rng.choice("0123456789-. ()+@aZ") for _ in range(rng.randrange(4, 24))) for _ in range(4000)
    ]
    for _ in range(1000):  # numbers shaped like RRNs, half with a wrong check digit
        number = rrn(f"{rng.randrange(100):02d}{rng.randrange(1, 13):02d}{rng.randrange(1, 32):02d}",
                     f"{rng.randrange(1, 9)}{rng.randrange(100000):05d}", hyphen=rng.random() < 0.5)  # fmt: skip
        values.append(number if rng.random() < 0.5 else number[:-1] + str(rng.randrange(10)))
    kinds = [identifier_kind(v) for v in values]
    assert _kinds_in_sql(macros, values) == kinds
    assert 500 < sum(k is not None for k in kinds) < len(values) - 1000
    # The one-regexp pre-filter lets every identifier through.
    assert all(re.search(INGEST_ANY, v, re.ASCII) for v, k in zip(values, kinds, strict=True) if k)


def test_no_code_or_name_of_the_vocabulary_looks_like_an_identifier() -> None:
    with create_hub(":memory:") as db:
        codes = [str(r[0]) for r in db.rows("SELECT concept_code FROM hm_concept_map")]
        names = [str(r[0]) for r in db.rows("SELECT concept_name FROM concept")]
    assert len(codes) > 1000
    assert [c for c in codes + names if identifier_kind(c)] == []


def test_a_posted_bundle_lands_without_its_identifiers(tmp_path: Path) -> None:
    path = tmp_path / "hub.duckdb"
    with create_hub(str(path)) as db:
        report = ingest_bundle(db, json.dumps(identifier_bundle()), hub="test", secret_key=KEY)
    assert report.committed and report.rejected == 0 and report.loaded == 9
    assert report.redactions == EXPECTED_REDACTIONS
    assert report.to_dict()["totals"]["redacted"] == 9
    assert not any(needle in json.dumps(report.to_dict()) for needle in NEEDLES)
    with duckdb.connect(str(path), read_only=True) as con:
        assert stored_needles(con) == []
        # The record with an identifier for a code lands with concept 0 and no source code.
        assert con.execute(
            "SELECT condition_concept_id, condition_source_concept_id, condition_source_value"
            " FROM condition_occurrence ORDER BY condition_start_date"
        ).fetchall() == [(0, 0, None), (201826, 201826, "44054006")]
        assert (
            con.execute("SELECT count(*) FROM observation WHERE value_as_string IS NULL").fetchone()[0] == 2
        )
        assert con.execute("SELECT count(*), max(unit_source_value) FROM measurement").fetchone() == (1, None)
        assert con.execute(
            "SELECT visit_concept_id, visit_source_value FROM visit_occurrence"
        ).fetchall() == [(9202, None)]
        assert con.execute("SELECT drug_concept_id, drug_source_value FROM drug_exposure").fetchall() == [
            (0, None)
        ]


def test_the_in_memory_twin_stays_equal_to_the_database_path() -> None:
    bundle = identifier_bundle()
    db, stored = _reference(bundle)
    _same(BundleMapper(create_hub(":memory:")).map(copy.deepcopy(bundle)), stored, db)
    db.close()


def test_a_rejected_record_does_not_repeat_its_identifier() -> None:
    bundle = identifier_bundle()
    bundle["entry"][5]["resource"]["effectiveDateTime"] = PHONE
    bundle["entry"][4]["resource"]["subject"] = {"reference": f"Patient/{RRN}"}
    with create_hub(":memory:") as db:
        report = ingest_bundle(db, json.dumps(bundle), hub="test", secret_key=KEY)
    reasons = [r["reason"] for r in report.rejections]
    assert not report.committed and len(reasons) == 2, reasons
    assert "effectiveDateTime [redacted] is not a FHIR date" in reasons
    assert not any(needle in json.dumps(report.to_dict()) for needle in NEEDLES)


def test_a_generated_hub_stores_none_of_the_identifiers_its_people_typed(tmp_path: Path) -> None:
    from healthmesh.ingest.synth import generate_population

    generate_population("gwangju", 160, 5, tmp_path / "ndjson")
    typed = [
        json.loads(line)["valueString"]
        for line in (tmp_path / "ndjson" / "Observation.000.ndjson").read_text().splitlines()
        if '"valueString"' in line
    ]
    assert len(typed) == 4 and all(identifier_kind(text) for text in typed)
    path = tmp_path / "hub.duckdb"
    with create_hub(str(path)) as db:
        report = ingest_paths(db, [tmp_path / "ndjson"], "gwangju", KEY)
    assert report.rejected == 0
    assert sum(report.redacted_by_kind().values()) == len(typed)
    with connect(path, read_only=True) as db:
        assert scan_database(db).total == 0


def test_a_code_the_vocabulary_knows_is_kept_even_when_shaped_like_an_identifier() -> None:
    code = RRN.replace("-", "")
    bundle = identifier_bundle()
    bundle["entry"][3]["resource"]["code"] = _coded("http://snomed.info/sct", code)
    with create_hub(":memory:") as db:
        db.execute("INSERT INTO hm_concept_map VALUES ('SNOMED', ?, 201826, 201826, 'Condition')", [code])
        report = ingest_bundle(db, json.dumps(bundle), hub="test", secret_key=KEY)
        kept = db.rows(
            "SELECT condition_concept_id, condition_source_value FROM condition_occurrence WHERE condition_source_value = ?",
            [code],
        )
    assert report.committed and "Condition" not in report.redactions
    assert kept == [(201826, code)]
