"""The CDM DDL on each engine matches the OHDSI field-level spec."""

from __future__ import annotations

from healthmesh.cdm import HubDatabase, cdm_tables

_TYPE_FAMILY = {
    "integer": {"BIGINT", "bigint"},
    "float": {"DOUBLE", "double precision"},
    "date": {"DATE", "date"},
    "datetime": {"TIMESTAMP", "timestamp without time zone"},
}


def test_every_cdm_table_and_column_is_created_as_specified(backend_db: HubDatabase) -> None:
    rows = backend_db.rows(
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position"
    )
    found: dict[str, list[tuple[str, str, str]]] = {}
    for table, column, data_type, nullable in rows:
        found.setdefault(table, []).append((column, data_type, nullable))
    spec = cdm_tables()
    assert len(spec) == 39 and set(spec) <= set(found)
    for table, fields in spec.items():
        assert [c for c, _, _ in found[table]] == [f.name for f in fields], table
        for field, (column, data_type, nullable) in zip(fields, found[table], strict=True):
            family = _TYPE_FAMILY.get(field.datatype, {"VARCHAR", "text"})
            assert data_type in family, (table, column, data_type)
            assert (nullable == "NO") == field.required, (table, column)


def test_the_bundled_vocabulary_and_lookup_are_loaded(backend_db: HubDatabase) -> None:
    counts = backend_db.table_counts(["concept", "concept_relationship", "concept_ancestor", "vocabulary"])
    assert counts["concept"] > 2000 and counts["concept_ancestor"] > 0 and counts["vocabulary"] >= 1
    # type 2 diabetes by its SNOMED code, through the source-to-standard lookup
    assert (
        backend_db.scalar(
            "SELECT concept_id FROM hm_concept_map WHERE vocabulary_id = 'SNOMED' AND concept_code = '44054006'"
        )
        == 201826
    )
