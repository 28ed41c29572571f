from __future__ import annotations

import csv
from pathlib import Path

from healthmesh.cdm import cdm_tables, sql_type

SPEC = Path(__file__).resolve().parents[2] / "healthmesh" / "cdm" / "spec" / "OMOP_CDMv5.4_Field_Level.csv"


def test_every_table_and_column_matches_the_spec(hub_db) -> None:
    with SPEC.open(encoding="utf-8-sig") as handle:
        spec = list(csv.DictReader(handle))
    assert len({r["cdmTableName"] for r in spec}) == 39
    columns = {
        (t, c): (dt, nullable)
        for t, c, dt, nullable in hub_db.rows(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
        )
    }
    for row in spec:
        key = (row["cdmTableName"].lower(), row["cdmFieldName"].strip('"').lower())
        assert key in columns, f"missing column {key}"
        data_type, nullable = columns[key]
        assert data_type == sql_type(row["cdmDatatype"]), key
        assert (nullable == "NO") == (row["isRequired"] == "Yes"), key
    cdm_columns = {k for k in columns if k[0] in cdm_tables()}
    assert len(cdm_columns) == len(spec)


def test_vocabulary_maps_source_codes_to_standard_concepts(hub_db) -> None:
    rows = dict(
        ((v, c), (cid, dom))
        for v, c, cid, dom in hub_db.rows(
            "SELECT vocabulary_id, concept_code, concept_id, domain_id FROM hm_concept_map"
        )
    )
    assert rows[("SNOMED", "44054006")] == (201826, "Condition")
    assert rows[("LOINC", "4548-4")] == (3004410, "Measurement")
    assert rows[("LOINC", "72166-2")][1] == "Observation"
    assert hub_db.scalar("SELECT count(*) FROM concept_ancestor WHERE descendant_concept_id = 201826") > 1
