"""Stage FHIR R4 input (Bulk NDJSON files, Bundle files, one posted Bundle) into ``hm_stage``.

DuckDB reads and parses the JSON; each resource is parsed once, its elements pulled out by
``json_extract_string`` with the path list of ``paths.py``. No Python object per resource.
"""

from __future__ import annotations

from contextlib import nullcontext
from importlib import resources
from pathlib import Path

from healthmesh.cdm.database import HubDatabase
from healthmesh.errors import CDMError
from healthmesh.ingest.fhir.paths import (
    PATHS,
    extension_code,
    fields_for,
    status_expr,
    value_system,
    value_text,
)
from healthmesh.ingest.fhir.shape import Shape

__all__ = [
    "MAX_RECORD_BYTES",
    "create_stage",
    "drop_raw_input",
    "number_records",
    "stage_bundle_files",
    "stage_bundle_text",
    "stage_ndjson_file",
]

MAX_RECORD_BYTES = 16 * 1024 * 1024
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024 * 1024  # longer lines make the whole file unreadable
PARALLEL_LINE_BYTES = 16 * 1024 * 1024  # smallest limit DuckDB takes; small buffers spread over cores

_START_FIELDS = (
    ("effective", "effectiveDateTime"),
    ("effective_start", "effectivePeriod.start"),
    ("onset", "onsetDateTime"),
    ("performed", "performedDateTime"),
    ("performed_start", "performedPeriod.start"),
    ("authored", "authoredOn"),
    ("occurrence", "occurrenceDateTime"),
    ("period_start", "period.start"),
    ("recorded", "recordedDate"),
    ("asserted", "dateAsserted"),
    ("handed_over", "whenHandedOver"),
    ("prepared", "whenPrepared"),
    ("collected", "collection.collectedDateTime"),
    ("collected_start", "collection.collectedPeriod.start"),
    ("issued", "issued"),
)  # Device.manufactureDate is not when a person used the device: not a start
_END_FIELDS = ("effective_end", "abatement", "performed_end", "period_end")


# Elements the stage itself resolves (contained resources, medicationReference), on every read.
_OWN_PATHS = (
    ("med_ref", "$.medicationReference.reference"),
    ("ingredient_ref", "$.ingredient[0].itemReference.reference"),  # a Medication that is a mix
    ("contained", "$.contained"),
)
_OWN_NAMES = tuple(name for name, _ in _OWN_PATHS)
_ALL_NAMES = (*(name for name, _ in PATHS), *_OWN_NAMES)


def _fields(names: tuple[str, ...]) -> Shape:
    """The shape that reads ``names`` (``f`` in the staging SELECTs)."""
    lookup = dict(PATHS) | dict(_OWN_PATHS)
    return Shape({name: lookup[name] for name in names})


_f = _fields(_ALL_NAMES)


_CODE_SOURCE = {
    "Immunization": "vaccine",
    "MedicationRequest": "med",
    "MedicationAdministration": "med",
    "MedicationStatement": "med",
    "MedicationDispense": "med",
    "Specimen": "device",
    "Encounter": "type",
    "Organization": "type",
    "Device": "device",
}


def _code_expr(_f: Shape, part: str) -> str:
    # code/code_system/code_display: the coded element that names what the resource is about.
    cases = " ".join(f"WHEN '{rt}' THEN {_f(f'{p}_{part}')}" for rt, p in _CODE_SOURCE.items())
    own = _f("code" if part == "code" else f"code_{part}")
    return f"CASE {_f('resource_type')} {cases} ELSE {own} END"


def _select_from_extracted(_f: Shape = _f) -> str:
    start = "coalesce(" + ", ".join(_f(n) for n, _ in _START_FIELDS) + ")"
    start_field = (
        "CASE " + " ".join(f"WHEN {_f(n)} IS NOT NULL THEN '{label}'" for n, label in _START_FIELDS) + " END"
    )
    end = "coalesce(" + ", ".join(_f(n) for n in _END_FIELDS) + ")"
    return f"""
        file_no, rec, entry, {_f("resource_type")} AS resource_type, {_f("id")} AS rid, parse_error,
        coalesce({_f("subject")}, {_f("patient")}) AS subject_ref,
        coalesce({_f("encounter")}, {_f("context")}) AS visit_ref,
        coalesce({_f("participant")}, {_f("requester")}, {_f("performer_actor")}, {_f("performer")},
                 {_f("recorder")}) AS provider_ref,
        {_f("service_provider")} AS care_site_ref,
        {_code_expr(_f, "system")} AS code_system, {_code_expr(_f, "code")} AS code,
        coalesce({_code_expr(_f, "display")}, {_f("code_text")}) AS code_display,
        {start} AS start_raw, {end} AS end_raw, {start_field} AS start_field,
        coalesce({_f("value_num")}, {_f("value_integer")}) AS value_num_raw,
        coalesce({_f("value_unit_code")}, {_f("value_unit")}) AS value_unit,
        {value_system(_f)} AS value_system, coalesce({_f("value_cc_code")}, {_f("value_boolean")}) AS value_code,
        {_f("value_cc_display")} AS value_display, {value_text(_f)} AS value_string,
        {status_expr(_f)} AS fhir_status,
        {_f("category")} AS category, {_f("visit_class")} AS visit_class,
        {_f("gender")} AS gender, {_f("birth_date")} AS birth_raw, {_f("deceased_at")} AS deceased_raw,
        {_f("deceased_flag")} AS deceased_flag, {extension_code(_f, "us-core-race")} AS race,
        {extension_code(_f, "us-core-ethnicity")} AS ethnicity,
        coalesce({_f("addr_state")}, {_f("loc_state")}) AS addr_state,
        coalesce({_f("addr_city")}, {_f("loc_city")}) AS addr_city,
        coalesce({_f("addr_postal")}, {_f("loc_postal")}) AS addr_postal,
        CASE WHEN {_f("resource_type")} IN ('Organization', 'Location') THEN {_f("org_name")} END AS org_name,
        {_f("identifier_system")} AS identifier_system, {_f("identifier_value")} AS identifier_value,
        {_f("component")} AS component, NULL AS parent_rid,
        coalesce({_f("med_ref")}, {_f("ingredient_ref")}) AS med_ref, {_f("contained")} AS contained
    """


_INVALID_JSON = "not valid JSON (truncated, binary or not UTF-8)"


def create_stage(db: HubDatabase) -> None:
    db.execute(resources.files("healthmesh.ingest.fhir").joinpath("stage.sql").read_text())
    db.execute("CREATE OR REPLACE TEMP TABLE hm_request_only (file_no INTEGER, n BIGINT)")


def drop_raw_input(db: HubDatabase) -> None:
    """Drop the tables that hold input as it was read (before identifiers were redacted), so that a
    long-lived connection (the hub service) does not keep the last Bundle's text in memory."""
    for table in ("hm_stage", "hm_docs", "hm_again"):
        db.execute(f"DROP TABLE IF EXISTS {table}")


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def stage_ndjson_file(
    db: HubDatabase,
    path: Path,
    resource_type: str | None = None,
    parallel: bool = True,
    numbered: bool = True,
) -> bool:
    """One Bulk Data NDJSON file (plain or gzip) into a fresh ``hm_stage``; each non-blank line is a record.

    A file of one resource type (as ``$export`` writes them) is read with only that type's paths;
    lines of another type are read again with all paths. ``parallel`` reads a clean file on every
    core and falls back to one ordered read when that fails; pass False inside a transaction,
    where a failed read would abort it. With ``numbered=False`` a clean file of one type is read
    without keeping its lines in order, a quarter faster, and its records get no numbers (``rec``
    NULL): the caller stages it again, numbered, if a record turns out to need one (a rejection or
    a duplicate). Returns whether the records are numbered.
    """
    fields = _fields((*fields_for(resource_type), *_OWN_NAMES))
    create_stage(db)  # fresh, so that a numbered read's row order is the file's line order
    ordered = _read_ndjson(db, path, fields, parallel, numbered)
    db.execute("INSERT INTO hm_files VALUES (1, ?)", [str(path)])
    others = (
        f"resource_type IS DISTINCT FROM '{resource_type}' AND parse_error IS NULL AND parent_rid IS NULL"
    )
    partial = len(fields.names) < len(_ALL_NAMES)
    mixed = partial and db.scalar(f"SELECT count(*) FROM hm_stage WHERE {others}")
    if mixed and not ordered:  # the other lines are re-read by number
        return stage_ndjson_file(db, path, resource_type, parallel, numbered=True)
    if ordered:
        db.execute("UPDATE hm_stage SET rec = rowid - (SELECT min(rowid) FROM hm_stage) + 1")
    if mixed:
        db.execute(f"CREATE OR REPLACE TEMP TABLE hm_again AS SELECT rec FROM hm_stage WHERE {others}")
        db.execute(f"DELETE FROM hm_stage WHERE {others}")
        lines = "SELECT rec FROM hm_again"
        db.execute(
            f"INSERT INTO hm_stage BY NAME {_ndjson_select(path, _f, MAX_LINE_BYTES, lines)}"
        )
    _resolve_contained(db)
    _expand_components(db)
    return ordered


def _read_ndjson(db: HubDatabase, path: Path, fields: Shape, parallel: bool, numbered: bool) -> bool:
    """Fill the fresh ``hm_stage`` with the file's lines; returns whether they are in file order.

    DuckDB reads a file in buffers of about twice ``maximum_object_size``, one thread per buffer:
    the 1 GB limit that lets long lines be reported keeps a whole file in one buffer, on one core.
    So a file is first read with small buffers; a line that is not valid JSON (whose record
    number that read may not keep) or too long for them sends the file to the one ordered read.
    Without ``numbered`` the first read may also land rows out of order, which spares DuckDB
    merging each thread's rows back into file order.
    """
    if parallel:
        try:
            with nullcontext() if numbered else db.unordered():
                db.execute(
                    f"INSERT INTO hm_stage BY NAME {_ndjson_select(path, fields, PARALLEL_LINE_BYTES)}"
                )
            if not db.scalar("SELECT count(*) FROM hm_stage WHERE parse_error = ?", [_INVALID_JSON]):
                return numbered
        except CDMError:
            pass
        create_stage(db)
    db.execute(f"INSERT INTO hm_stage BY NAME {_ndjson_select(path, fields, MAX_LINE_BYTES)}")
    return True


def _ndjson_select(path: Path, fields: Shape, line_bytes: int, lines: str = "") -> str:
    """The file's lines as staged rows, in file order, ``rec`` left NULL; or, given ``lines`` (a
    SELECT of record numbers), only those lines with their numbers (an ordered read: one core)."""
    numbered = "WITH ORDINALITY WHERE ordinality IN (" + lines + ")" if lines else ""
    return f"""
        SELECT {_select_from_extracted(fields)} FROM (
            SELECT 1 AS file_no, {"ordinality" if lines else "NULL::BIGINT"} AS rec,
                   NULL::BIGINT AS entry,
                   CASE WHEN json IS NULL THEN {_sql_str(_INVALID_JSON)}
                        WHEN length(json) > {MAX_RECORD_BYTES}
                        THEN 'record of ' || (length(json) // 1048576) || ' MB is over the 16 MB limit' END AS parse_error,
                   CASE WHEN length(json) <= {MAX_RECORD_BYTES} THEN {fields.transform("json")} END AS f
            FROM read_json_objects({_sql_str(str(path))}, format='newline_delimited', ignore_errors=true,
                                   maximum_object_size={line_bytes}) {numbered}
        )
    """


def number_records(db: HubDatabase, path: Path) -> None:
    """Give the rejected records of an unnumbered NDJSON batch (``hm_checked``) their line numbers
    from one numbered read of the file's types and ids only: a rejection costs this light read, not
    a second staging and mapping of the whole batch. Each rejected record has an id (the caller
    checks); a component takes its Observation's number. The file was read unnumbered, so all its
    lines are valid JSON that fits the small buffers: this read keeps line order on every core. A
    typed read of the two keys skips building each object (half the time of extracting them); a
    line that is not an object is a row of NULLs, so the numbering is the same."""
    db.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE hm_numbers AS
        SELECT resourceType AS resource_type, id AS rid, min(ordinality) AS rec
        FROM read_json({_sql_str(str(path))}, format='newline_delimited', records=true, ignore_errors=true,
                       columns={{'resourceType': 'VARCHAR', 'id': 'VARCHAR'}},
                       maximum_object_size={PARALLEL_LINE_BYTES}) WITH ORDINALITY
        WHERE id IN (SELECT coalesce(parent_rid, rid) FROM hm_checked WHERE status = 'rejected' AND rec IS NULL)
        GROUP BY ALL
        """
    )
    db.execute(
        """
        UPDATE hm_checked SET rec = n.rec FROM hm_numbers n
        WHERE hm_checked.rec IS NULL AND hm_checked.entry IS NULL AND hm_checked.status = 'rejected'
          AND n.resource_type = hm_checked.resource_type AND n.rid = coalesce(hm_checked.parent_rid, hm_checked.rid)
        """
    )
    db.execute("DROP TABLE hm_numbers")


def stage_bundle_files(db: HubDatabase, paths: list[Path]) -> list[Path]:
    """FHIR JSON documents: Bundles (each entry is a record) or single resources.

    Returns the files that could not be read as FHIR JSON; the caller reports them.
    """
    try:
        _read_documents(db, paths)
    except CDMError:  # one unreadable document fails the whole read: read them one by one
        readable = []
        for path in paths:
            try:
                _read_documents(db, [path])
                readable.append(path)
            except CDMError:
                continue
        _read_documents(db, readable)
    singles = [str(r[0]) for r in db.rows("SELECT file FROM hm_docs WHERE doc_type <> 'Bundle'")]
    if singles:
        listing = "[" + ", ".join(_sql_str(f) for f in singles) + "]"
        db.execute(
            f"""
            UPDATE hm_docs SET doc = o.json FROM read_json_objects({listing}, format='auto', filename=true,
                                                                   maximum_object_size={MAX_RECORD_BYTES}) o
            WHERE hm_docs.file = o.filename
            """
        )
    read = {str(r[0]) for r in db.rows("SELECT DISTINCT file FROM hm_docs")}
    _stage_docs(db)
    return [p for p in paths if str(p) not in read]


def _read_documents(db: HubDatabase, paths: list[Path]) -> None:
    listing = "[" + ", ".join(_sql_str(str(p)) for p in paths) + "]"
    source = (
        f"read_json({listing}, format='auto', filename=true, maximum_object_size={MAX_DOCUMENT_BYTES},"
        " columns={'resourceType': 'VARCHAR', 'type': 'VARCHAR',"
        " 'entry': 'STRUCT(fullUrl VARCHAR, resource JSON)[]'})"
        if paths
        else "(SELECT NULL::VARCHAR AS filename, NULL::VARCHAR AS resourceType, NULL::VARCHAR AS type,"
        " NULL::STRUCT(fullUrl VARCHAR, resource JSON)[] AS entry WHERE false)"
    )
    # A typed read parses each Bundle once and keeps each entry's resource as JSON text.
    db.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE hm_docs AS
        SELECT filename AS file, resourceType AS doc_type, "type" AS bundle_type,
               list_transform(entry, lambda e: e.resource) AS entries,
               list_transform(entry, lambda e: e.fullUrl) AS urls, NULL::JSON AS doc
        FROM {source}
        WHERE resourceType IS NOT NULL
        """
    )


def stage_bundle_text(db: HubDatabase, text: str, name: str = "posted-bundle") -> bool:
    """One posted FHIR JSON document; False when it is not valid JSON (nothing is staged)."""
    if not db.scalar("SELECT json_valid(?)", [text]):
        return False
    db.execute(
        """
        CREATE OR REPLACE TEMP TABLE hm_docs AS
        SELECT file, doc_type, bundle_type, list_transform(es, lambda e: json_extract(e, '$.resource')) AS entries,
               list_transform(es, lambda e: e->>'fullUrl') AS urls, doc
        FROM (SELECT ?::VARCHAR AS file, d->>'resourceType' AS doc_type, d->>'type' AS bundle_type,
                     json_extract(d, '$.entry[*]') AS es, d AS doc
              FROM (SELECT ?::JSON AS d))
        """,
        [name, text],
    )
    _stage_docs(db)
    return True


_BUNDLE_TYPES = "('transaction', 'batch', 'collection', 'searchset', 'document')"
_BAD_BUNDLE_TYPE = (
    "'Bundle type ' || coalesce('''' || bundle_type || '''', 'missing')"
    " || ' is not accepted (transaction, batch, collection, searchset or document)'"
)
REQUEST_ONLY_REASON = "Bundle entry without a resource (a request only, e.g. GET or DELETE): nothing to load"
MAX_NESTING = 4  # Bundles inside Bundles, this deep
# A Bundle inside a Bundle's entry E: its entries are numbered E * NESTED_ENTRY + their position.
NESTED_ENTRY = 100_000
_TOP_ENTRIES = f"""
    SELECT file_no, generate_subscripts(entries, 1) AS entry, unnest(entries) AS res, unnest(urls) AS url
    FROM hm_docs JOIN hm_files USING (file) WHERE doc_type = 'Bundle' AND bundle_type IN {_BUNDLE_TYPES}
"""
# The id a fullUrl names: urn:uuid:X and urn:oid:X name X, a RESTful URL its last segment.
_URL_ID = (
    "CASE WHEN starts_with(url, 'urn:uuid:') THEN substr(url, 10) WHEN starts_with(url, 'urn:oid:') THEN substr(url, 9)"
    " WHEN contains(url, '/_history/') THEN split_part(split_part(url, '/_history/', 1), '/', -1)"
    " ELSE split_part(url, '/', -1) END"
)
_REFERENCE_COLUMNS = ("subject_ref", "visit_ref", "provider_ref", "care_site_ref", "med_ref")


def _stage_docs(db: HubDatabase) -> None:
    db.execute(
        "INSERT INTO hm_files SELECT row_number() OVER (ORDER BY file), file FROM (SELECT DISTINCT file FROM hm_docs)"
    )
    db.execute(
        f"""
        INSERT INTO hm_stage BY NAME
        SELECT {_select_from_extracted()} FROM (
            SELECT file_no, 1 AS rec, entry, parse_error, {_f.transform("res")} AS f
            FROM (
                SELECT file_no, entry, res, NULL AS parse_error FROM ({_TOP_ENTRIES}) WHERE res IS NOT NULL
                UNION ALL
                SELECT file_no, NULL, doc, NULL FROM hm_docs JOIN hm_files USING (file) WHERE doc_type <> 'Bundle'
            )
            UNION ALL
            SELECT file_no, 1, NULL, {_BAD_BUNDLE_TYPE}, {_f.null()}
            FROM hm_docs JOIN hm_files USING (file)
            WHERE doc_type = 'Bundle' AND (bundle_type NOT IN {_BUNDLE_TYPES} OR bundle_type IS NULL)
        )
        """
    )
    db.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE hm_urls AS
        SELECT file_no, entry, url, res IS NULL AS request_only FROM ({_TOP_ENTRIES}) WHERE url IS NOT NULL OR res IS NULL
        """
    )
    _stage_nested_bundles(db)
    _resolve_full_urls(db)
    _resolve_contained(db)
    _expand_components(db)


def _stage_nested_bundles(db: HubDatabase) -> None:
    """A Bundle that is an entry of a Bundle (a collection of transactions, a searchset of
    documents) is not a record: its entries are, numbered ``E * NESTED_ENTRY + i``."""
    source = _TOP_ENTRIES
    for _ in range(MAX_NESTING):
        if not db.scalar("SELECT count(*) FROM hm_stage WHERE resource_type = 'Bundle'"):
            return
        db.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE hm_inner AS
            SELECT file_no, entry * {NESTED_ENTRY} + i AS entry, json_extract(e, '$.resource') AS res,
                   e->>'fullUrl' AS url
            FROM (
                SELECT file_no, entry, generate_subscripts(es, 1) AS i, unnest(es) AS e
                FROM (SELECT file_no, entry, json_extract(res, '$.entry[*]') AS es FROM ({source})
                      WHERE (file_no, entry) IN (SELECT (file_no, entry) FROM hm_stage WHERE resource_type = 'Bundle'))
            )
            """
        )
        db.execute("DELETE FROM hm_stage WHERE resource_type = 'Bundle'")
        db.execute(
            f"""
            INSERT INTO hm_stage BY NAME
            SELECT {_select_from_extracted()} FROM (
                SELECT file_no, 1 AS rec, entry, NULL AS parse_error, {_f.transform("res")} AS f
                FROM hm_inner WHERE res IS NOT NULL
            )
            """
        )
        db.execute(
            "INSERT INTO hm_urls SELECT file_no, entry, url, res IS NULL FROM hm_inner WHERE url IS NOT NULL OR res IS NULL"
        )
        db.execute("CREATE OR REPLACE TEMP TABLE hm_outer AS SELECT * FROM hm_inner")
        source = "SELECT * FROM hm_outer"


def _ref_id(column: str) -> str:
    """SQL for the id a reference in ``column`` names (as ``_URL_ID`` for a fullUrl)."""
    return _URL_ID.replace("url", column)


# Contained resources that become records of their own (a contained Patient "#newborn", a
# contained Practitioner); a contained Medication gives its code to the record that contains it.
_CONTAINED_RECORDS = "('Patient', 'Practitioner', 'Organization', 'Location')"
_LOCAL_REFERENCES = ("subject_ref", "provider_ref", "care_site_ref")


def _resolve_contained(db: HubDatabase) -> None:
    """Contained resources and ``medicationReference``, resolved in the stage.

    A contained Patient, Practitioner, Organization or Location becomes a record, part of its
    container, with the id ``<container id>#<its id>``; a local reference ``#id`` is rewritten to
    it. A ``medicationReference`` to a contained Medication, or to a Medication of this load (its
    Bundle, or a file read before: a Bulk export's Medication files come before MedicationRequest),
    gives the record that Medication's code, system and display (``code*`` columns).
    """
    db.execute(
        "CREATE TEMP TABLE IF NOT EXISTS hm_medications "
        "(rid VARCHAR, code_system VARCHAR, code VARCHAR, code_display VARCHAR)"
    )
    db.execute(
        """
        INSERT INTO hm_medications SELECT rid, code_system, code, code_display FROM hm_stage
        WHERE resource_type = 'Medication' AND rid IS NOT NULL AND code IS NOT NULL AND parent_rid IS NULL
        """
    )
    db.execute(  # a mix without a code of its own (MIMIC's) stands for its first ingredient, listed first
        f"""
        INSERT INTO hm_medications SELECT s.rid, m.code_system, m.code, m.code_display
        FROM hm_stage s JOIN hm_medications m ON m.rid = {_ref_id("s.med_ref")}
        WHERE s.resource_type = 'Medication' AND s.code IS NULL AND s.med_ref IS NOT NULL AND s.parent_rid IS NULL
        """
    )
    if not db.scalar("SELECT count(*) FROM hm_stage WHERE contained IS NOT NULL OR med_ref IS NOT NULL"):
        return
    db.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE hm_contained AS
        SELECT {_select_from_extracted()}, container FROM (
            SELECT file_no, rec, entry, NULL AS parse_error, {_f.transform("c")} AS f, container
            FROM (SELECT file_no, rec, entry, rid AS container, unnest(try(json_extract(contained, '$[*]'))) AS c
                  FROM hm_stage WHERE contained IS NOT NULL AND parse_error IS NULL AND parent_rid IS NULL)
        )
        """
    )
    db.execute(
        f"""
        INSERT INTO hm_stage BY NAME
        SELECT * EXCLUDE (rid, parent_rid, contained, container), container || '#' || rid AS rid,
               container AS parent_rid
        FROM hm_contained WHERE resource_type IN {_CONTAINED_RECORDS} AND rid IS NOT NULL
        """
    )
    for column in _LOCAL_REFERENCES:
        db.execute(
            f"""
            UPDATE hm_stage SET {column} = 'Contained/' || rid || {column}
            WHERE starts_with({column}, '#') AND parent_rid IS NULL AND contained IS NOT NULL
            """
        )
    db.execute(
        """
        UPDATE hm_stage SET code_system = m.code_system, code = m.code, code_display = m.code_display
        FROM hm_contained m
        WHERE hm_stage.med_ref = '#' || m.rid AND hm_stage.rid = m.container AND hm_stage.file_no = m.file_no
          AND m.resource_type = 'Medication' AND hm_stage.code IS NULL AND hm_stage.parent_rid IS NULL
        """
    )
    db.execute(
        f"""
        UPDATE hm_stage SET code_system = m.code_system, code = m.code, code_display = m.code_display
        FROM hm_medications m
        WHERE hm_stage.med_ref IS NOT NULL AND NOT starts_with(hm_stage.med_ref, '#') AND hm_stage.code IS NULL
          AND m.rid = {_ref_id("hm_stage.med_ref")}
        """
    )
    db.execute("UPDATE hm_stage SET contained = NULL WHERE contained IS NOT NULL")
    db.execute("DROP TABLE hm_contained")


def _resolve_full_urls(db: HubDatabase) -> None:
    """Bundle entries known by their fullUrl: a resource without an id (a transaction entry) takes
    the id its fullUrl names, and a reference to the fullUrl of a resource whose id differs is
    rewritten to Type/id. Request-only entries are counted in ``hm_request_only``."""
    db.execute(
        "CREATE OR REPLACE TEMP TABLE hm_request_only AS SELECT file_no, count(*) AS n FROM hm_urls "
        "WHERE request_only GROUP BY ALL"
    )
    if db.scalar("SELECT count(*) FROM hm_stage WHERE rid IS NULL AND entry IS NOT NULL"):
        db.execute(
            f"""
            UPDATE hm_stage SET rid = {_URL_ID} FROM hm_urls u
            WHERE hm_stage.rid IS NULL AND hm_stage.file_no = u.file_no AND hm_stage.entry = u.entry
              AND NOT u.request_only
            """
        )
    db.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE hm_aliases AS
        SELECT DISTINCT u.file_no, u.url, s.resource_type || '/' || s.rid AS target
        FROM hm_urls u JOIN hm_stage s ON s.file_no = u.file_no AND s.entry = u.entry
        WHERE NOT u.request_only AND s.rid IS NOT NULL AND s.rid <> {_URL_ID.replace("url", "u.url")}
        """
    )
    if not db.scalar("SELECT count(*) FROM hm_aliases"):
        return
    for column in _REFERENCE_COLUMNS:
        db.execute(
            f"UPDATE hm_stage SET {column} = a.target FROM hm_aliases a"
            f" WHERE hm_stage.{column} = a.url AND hm_stage.file_no = a.file_no"  # a fullUrl names within its file
        )


_COMPONENT = Shape(
    {
        "code_system": "$.code.coding[0].system",
        "code": "$.code.coding[0].code",
        "code_display": "$.code.coding[0].display",
        "value_num": "$.valueQuantity.value",
        "value_unit_code": "$.valueQuantity.code",
        "value_unit": "$.valueQuantity.unit",
        "value_system": "$.valueCodeableConcept.coding[0].system",
        "value_code": "$.valueCodeableConcept.coding[0].code",
        "value_display": "$.valueCodeableConcept.coding[0].display",
        "value_string": "$.valueString",
    },
    column="c",
)


_PANEL = "component IS NOT NULL AND parent_rid IS NULL AND resource_type = 'Observation'"


def _expand_components(db: HubDatabase) -> None:
    """Observation components (blood-pressure panels) become records of their own.

    A ``component`` that is not a list (an object, a string) rejects its Observation.
    """
    db.execute(
        f"""
        UPDATE hm_stage SET parse_error = 'Observation.component is not a list'
        WHERE {_PANEL} AND parse_error IS NULL AND NOT (starts_with(component, '[') AND ends_with(component, ']'))
        """
    )
    c = _COMPONENT
    # Each panel is unnested in place (no join back to its row), one walk per panel. The parts
    # carry their panel's record number, so they may land in any order.
    with db.unordered():
        db.execute(
            f"""
        INSERT INTO hm_stage BY NAME
        SELECT * EXCLUDE (rid, code_system, code, code_display, value_num_raw, value_unit, value_system,
                          value_code, value_display, value_string, component, parent_rid, i, c),
               rid || '#component-' || i AS rid, {c("code_system")} AS code_system, {c("code")} AS code,
               {c("code_display")} AS code_display, {c("value_num")} AS value_num_raw,
               coalesce({c("value_unit_code")}, {c("value_unit")}) AS value_unit, {c("value_system")} AS value_system,
               {c("value_code")} AS value_code, {c("value_display")} AS value_display,
               {c("value_string")} AS value_string, NULL AS component, rid AS parent_rid
        FROM (
            SELECT * EXCLUDE (comps), generate_subscripts(comps, 1) AS i, unnest(comps) AS c
            FROM (SELECT *, {c.transform_list("component")} AS comps FROM hm_stage
                  WHERE {_PANEL} AND parse_error IS NULL)
        )
        """
        )
