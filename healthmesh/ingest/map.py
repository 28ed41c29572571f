"""One mapping from the staging table ``hm_stage`` into the OMOP CDM, for every source.

Steps, all set-based SQL: check each record (``hm_checked``: status loaded / skipped / rejected
and a one-line reason), upsert the reference tables (location, care_site, provider, person, death,
visit_occurrence), reject records whose Patient is unknown, then route each clinical record to the
CDM table of its standard concept's domain. Keys are keyed hashes, so upserts are idempotent.
"""

from __future__ import annotations

from importlib import resources

from healthmesh.cdm.database import HubDatabase
from healthmesh.cdm.eras import build_eras
from healthmesh.ingest.codesystems import code_system_rows
from healthmesh.ingest.fhir.paths import BOOLEAN_SYSTEM
from healthmesh.ingest.fhir.resource_types import CLINICAL_TYPES, MAPPED_TYPES, R4_RESOURCE_TYPES
from healthmesh.privacy.scan import IDENTIFIER_MACROS, INGEST_ANY

__all__ = [
    "EVENT_TABLES",
    "SCANNED_FIELDS",
    "map_checked",
    "map_stage",
    "prepare_connection",
    "rebuild_derived",
    "redactions_sql",
    "shown_sql",
]

TYPE_CONCEPT_EHR = 32817
TYPE_CONCEPT_DISPENSING = 32825  # EHR dispensing record: a MedicationDispense's drug_exposure

# FHIR statuses that say a record is not a fact (the FHIR-to-OMOP conventions): an error, a thing
# not done, cancelled before it happened, refuted, not taken, declined, or ordered not to be done
# (``doNotPerform``). Such a record is skipped with its reason, and a copy loaded before is removed.
NOT_A_FACT = frozenset(
    {"entered-in-error", "not-done", "cancelled", "refuted", "not-taken", "declined", "do-not-perform"}
)
# Types whose record may take its Encounter's start when it has no date of its own.
ENCOUNTER_DATED = ("Condition", "Procedure", "Observation", "MedicationRequest", "MedicationStatement",
                   "MedicationDispense", "MedicationAdministration", "DiagnosticReport")  # fmt: skip
# HL7 v3 ActCode encounter classes (and Synthea's words) -> OMOP visit concepts; the others (AMB,
# VR, OBSENC, SS, PRENC, FLD) are visits without a stay: outpatient.
VISIT_CLASS = {
    "IMP": 9201, "ACUTE": 9201, "NONAC": 9201, "inpatient": 9201,
    "EMER": 9203, "emergency": 9203,
    "HH": 581476, "home": 581476,  # home health: a Home Visit
}  # fmt: skip
VISIT_OUTPATIENT = 9202
YES, NO = 4188539, 4188540  # SNOMED 373066001 / 373067005, Meas Value
# US Core ombCategory codes (CDC race & ethnicity) -> OMOP race / ethnicity concepts.
RACE = {"2106-3": 8527, "2054-5": 8516, "2028-9": 8515, "1002-5": 8657, "2076-8": 8557}
ETHNICITY = {"2135-2": 38003563, "2186-5": 38003564}

# CDM table, its key column, and its date column (for observation_period).
EVENT_TABLES: dict[str, tuple[str, str]] = {
    "condition_occurrence": ("condition_occurrence_id", "condition_start_date"),
    "drug_exposure": ("drug_exposure_id", "drug_exposure_start_date"),
    "procedure_occurrence": ("procedure_occurrence_id", "procedure_date"),
    "measurement": ("measurement_id", "measurement_date"),
    "observation": ("observation_id", "observation_date"),
    "device_exposure": ("device_exposure_id", "device_exposure_start_date"),
    "specimen": ("specimen_id", "specimen_date"),
}

_DEDUPE = "QUALIFY row_number() OVER (PARTITION BY c.resource_type, c.rid ORDER BY c.file_no DESC, c.rec DESC, c.entry DESC) = 1"

_DOMAIN_TABLE = {
    "Condition": "condition_occurrence",
    "Drug": "drug_exposure",
    "Procedure": "procedure_occurrence",
    "Measurement": "measurement",
    "Observation": "observation",
    "Device": "device_exposure",
}


def _in(values: tuple[str, ...] | frozenset[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in sorted(values)) + ")"


def _case(column: str, concepts: dict[str, int], otherwise: int = 0) -> str:
    """SQL: the concept a code in ``column`` maps to through ``concepts``, else ``otherwise``."""
    return (
        f"CASE {column} "
        + " ".join(f"WHEN '{k}' THEN {v}" for k, v in concepts.items())
        + f" ELSE {otherwise} END"
    )


def prepare_connection(db: HubDatabase, salt: str) -> None:
    """Macros and the code-system table the mapping needs, on this connection."""
    db.execute("SET VARIABLE hm_salt = ?", [salt])
    macros = resources.files("healthmesh.ingest.fhir").joinpath("macros.sql").read_text()
    for statement in (macros + IDENTIFIER_MACROS).split(";\n"):
        if statement.strip():
            db.execute(statement)
    db.execute(
        "CREATE OR REPLACE TEMP TABLE hm_code_system (system VARCHAR, vocabulary_id VARCHAR, dot_after INTEGER)"
    )
    rows = [(system, vocabulary, dot) for system, (vocabulary, dot) in code_system_rows(db.path).items()]
    db.con.executemany("INSERT INTO hm_code_system VALUES (?, ?, ?)", rows)
    kinds = [(t, "clinical") for t in CLINICAL_TYPES]
    kinds += [(t, "reference") for t in MAPPED_TYPES if t not in CLINICAL_TYPES]
    kinds += [(t, "skipped") for t in sorted(R4_RESOURCE_TYPES) if t not in MAPPED_TYPES]
    db.execute("CREATE OR REPLACE TEMP TABLE hm_resource_kind (resource_type VARCHAR, kind VARCHAR)")
    db.con.executemany("INSERT INTO hm_resource_kind VALUES (?, ?)", kinds)
    db.execute(
        "CREATE TABLE IF NOT EXISTS hm_identifier_index (resource_type VARCHAR, identifier_hash VARCHAR, rid VARCHAR)"
    )
    # Patients known to be deceased without a date: their death row is written by rebuild_derived,
    # dated by their last record (death_date is required), once the whole load is in.
    db.execute("CREATE TEMP TABLE IF NOT EXISTS hm_death_undated (person_id BIGINT)")


def _check(db: HubDatabase) -> None:
    db.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE hm_checked AS
        WITH subjects AS (  -- each Patient a batch refers to is keyed once, not once per record
            SELECT subject_ref, hm_key('Patient', hm_ref(subject_ref)) AS subject_person_id
            FROM (SELECT DISTINCT subject_ref FROM hm_stage)
        ), visits AS (  -- and each visit
            SELECT visit_ref, hm_key('Encounter', hm_ref(visit_ref)) AS visit_key
            FROM (SELECT DISTINCT visit_ref FROM hm_stage)
        ), s AS (
            SELECT st.*, coalesce(k.kind, 'unknown') AS kind, hm_ts(start_raw) AS start_ts, hm_ts(end_raw) AS end_ts,
                   hm_ts(birth_raw) AS birth_ts, hm_ts(deceased_raw) AS deceased_ts,
                   try_cast(value_num_raw AS DOUBLE) AS value_num, vk.visit_key, p.subject_person_id
            FROM hm_stage st LEFT JOIN hm_resource_kind k ON k.resource_type = st.resource_type
            LEFT JOIN subjects p ON p.subject_ref = st.subject_ref
            LEFT JOIN visits vk ON vk.visit_ref = st.visit_ref
        ), r AS (
            SELECT *, CASE
                WHEN parse_error IS NOT NULL THEN parse_error
                WHEN resource_type IS NULL THEN 'no resourceType'
                WHEN kind = 'unknown' THEN 'unknown resourceType ' || {_quoted("resource_type", 60)}
                WHEN kind = 'skipped' THEN NULL
                WHEN rid IS NULL OR trim(rid) = '' THEN resource_type || ' without id'
                WHEN length(rid) > 64 + coalesce(length(parent_rid) + 13, 0)
                    THEN resource_type || ' id longer than 64 characters'
                WHEN resource_type = 'Patient' AND birth_raw IS NULL THEN 'Patient without birthDate'
                WHEN resource_type = 'Patient' AND birth_ts IS NULL
                    THEN 'birthDate ' || {_quoted("birth_raw")} || ' is not a FHIR date'
                WHEN resource_type = 'Patient' AND deceased_raw IS NOT NULL AND deceased_ts IS NULL
                    THEN 'deceasedDateTime ' || {_quoted("deceased_raw")} || ' is not a FHIR dateTime'
                WHEN kind = 'clinical' AND subject_ref IS NULL THEN resource_type || ' without subject'
                WHEN kind = 'clinical' AND start_raw IS NULL
                     AND NOT (resource_type IN {_in(ENCOUNTER_DATED)} AND visit_ref IS NOT NULL)
                    THEN resource_type || ' without a date'
                WHEN start_raw IS NOT NULL AND start_ts IS NULL
                    THEN start_field || ' ' || {_quoted("start_raw")} || ' is not a FHIR date'
                WHEN end_raw IS NOT NULL AND end_ts IS NULL
                    THEN 'end date ' || {_quoted("end_raw")} || ' is not a FHIR date'
                WHEN value_num_raw IS NOT NULL AND value_num IS NULL
                    THEN 'valueQuantity.value ' || {_quoted("value_num_raw")} || ' is not a number'
                WHEN kind = 'clinical' AND resource_type <> 'Encounter' AND code IS NULL
                    THEN resource_type || ' without a code'
            END AS reason,
            CASE WHEN kind = 'clinical' AND fhir_status IN {_in(NOT_A_FACT)}
                 THEN resource_type || ' ' || CASE fhir_status WHEN 'do-not-perform' THEN 'doNotPerform'
                      ELSE 'status ' || fhir_status END || ': not a fact' END AS skip_reason
            FROM s
        )
        SELECT c.* EXCLUDE ({", ".join(_CHECK_ONLY)}, reason, skip_reason),
               coalesce(c.reason, c.skip_reason) AS reason,
               -- identifier-looking values of the records that may land: one regexp per record
               CASE WHEN c.reason IS NULL AND c.kind <> 'skipped' AND c.skip_reason IS NULL AND {_prefilter()}
                    THEN '' END AS pii,
               CASE WHEN c.reason IS NOT NULL THEN 'rejected'
                    WHEN c.kind = 'skipped' OR c.skip_reason IS NOT NULL THEN 'skipped' ELSE 'loaded' END
               AS status,
               CASE WHEN resource_type = 'Patient' THEN hm_key('Patient', rid) ELSE subject_person_id END AS person_id,
               hm_key(resource_type, rid) AS record_id, {_VOCABULARY_COLUMNS},
               CASE WHEN c.resource_type IN {_in(_EVENT_TYPES)} THEN {_target_table()} END AS target
        FROM r c {_VOCABULARY_JOINS}
        """
    )
    _redact(db)


# Staged values that can land in the CDM as text, their element (as the ingest report names it),
# and the concept column that is set when the value is a code the hub's vocabulary knows (kept: a
# known code is not an identifier typed into a field). An identifier-looking value is
# stored as NULL: a code then maps to concept 0 with no source code, the record still lands.
# The Organization's id is kept as a key but not copied into care_site_source_value.
SCANNED_FIELDS: tuple[tuple[str, str, str | None], ...] = (
    ("code", "code", "source_concept_id"),
    ("value_code", "valueCodeableConcept.code", "value_concept_id"),
    ("value_display", "valueCodeableConcept.display", None),
    ("value_string", "valueString", None),
    ("value_unit", "valueQuantity.unit", "unit_concept_id"),
    ("visit_class", "class.code", None),
    ("gender", "gender", None),
    ("race", "race", None),
    ("ethnicity", "ethnicity", None),
    ("org_name", "name", None),
    ("addr_city", "address.city", None),
    ("addr_state", "address.state", None),
    ("addr_postal", "address.postalCode", None),
    ("rid", "id", None),  # last: ``_reference_tables`` finds it there
)


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_KNOWN_IN_JOIN = {"source_concept_id": "m.source_concept_id", "value_concept_id": "v.concept_id",
                  "unit_concept_id": "u.concept_id"}  # fmt: skip


def _scanned_value(column: str, row: str = "c.") -> str:
    """SQL for a scanned value of a row (``c.`` in the checks' SELECT): for ``rid``, the Organization's id."""
    return (
        f"CASE WHEN {row}resource_type = 'Organization' THEN {row}rid END"
        if column == "rid"
        else f"{row}{column}"
    )


def _prefilter() -> str:
    """SQL: whether any scanned value of the record may hold an identifier (the checks follow).

    Codes the vocabulary knows are kept whatever their shape, so they are not looked at: most
    records then offer the regexp only an empty string.
    """
    values = ", ".join(
        f"CASE WHEN {_KNOWN_IN_JOIN[known]} IS NULL THEN {_scanned_value(column)} END"
        if known
        else _scanned_value(column)
        for column, _, known in SCANNED_FIELDS
    )
    return f"regexp_matches(concat_ws(chr(10), {values}), {_sql_literal(INGEST_ANY)})"


def _scanned_kinds() -> str:
    """SQL for the kinds found in a ``hm_checked`` row, as text ``'1=KR_RRN 4=PHONE'`` (field
    position = kind): a text column costs the unflagged records nothing, a list column would."""
    found = ", ".join(
        f"'{i}=' || hm_identifier_kind({_scanned_value(column, row='')})"
        for i, (column, _, _) in enumerate(SCANNED_FIELDS, start=1)
    )
    return f"concat_ws(' ', {found})"


def _found(i: int) -> str:
    """SQL for the kind found in scanned field ``i`` (1-based) of a ``hm_checked`` row, else NULL."""
    return f"nullif(regexp_extract(pii, '(?:^| ){i}=([A-Z_]+)', 1), '')"


def _applied(i: int, known: str | None) -> str:
    """SQL for the detector kind of scanned field ``i`` (1-based) when its value is redacted, else NULL."""
    return f"CASE WHEN {known} IS NULL THEN {_found(i)} END" if known else _found(i)


def _redact(db: HubDatabase) -> None:
    """Name the kinds found in the records the regexp flagged (``pii``), then store NULL for each
    identifier-looking value. Only those few records are touched: the detectors' checks are a
    large expression that would cost every record of the CREATE, even where it is not evaluated."""
    db.execute(f"UPDATE hm_checked SET pii = {_scanned_kinds()} WHERE pii IS NOT NULL")
    values = ", ".join(
        f"{column} = CASE WHEN ({_applied(i, known)}) IS NULL THEN {column} END"
        for i, (column, _, known) in enumerate(SCANNED_FIELDS, start=1)
        if column != "rid"
    )
    db.execute(f"UPDATE hm_checked SET {values} WHERE pii IS NOT NULL")


def redactions_sql() -> str:
    """SQL, over a row of ``hm_checked``: the detector kind of each scanned field whose value was
    stored as NULL (NULL where the value was kept), in ``SCANNED_FIELDS`` order."""
    return (
        "[" + ", ".join(_applied(i, known) for i, (_, _, known) in enumerate(SCANNED_FIELDS, start=1)) + "]"
    )


# Staged columns that nothing after the checks reads: kept out of the wide hm_checked table.
_CHECK_ONLY = (
    "parse_error",
    "kind",
    "visit_ref",
    "subject_person_id",
    "code_system",
    "value_system",
    "code_display",
    "start_raw",
    "end_raw",
    "start_field",
    "value_num_raw",
    "birth_raw",
    "deceased_raw",
    "identifier_system",
    "component",
    "fhir_status",
)


def _quoted(column: str, length: int = 40) -> str:
    """SQL for the value of ``column`` in single quotes, cut to ``length`` characters, for a reason."""
    return shown_sql(f"chr(39) || left({column}, {length}) || chr(39)", column)


def shown_sql(shown: str, column: str) -> str:
    """SQL for ``shown`` (an expression of ``column``), or ``[redacted]`` when the value may hold an
    identifier: reasons and ids of rejected records go to reports and API answers."""
    return (
        f"CASE WHEN regexp_matches({column}, {_sql_literal(INGEST_ANY)}) THEN '[redacted]' ELSE {shown} END"
    )


def _dedupe_and_reference_rows(db: HubDatabase) -> str:
    # A resource sent twice in one load becomes one CDM row: keep its last copy.
    # record_id is a hash of (resource_type, rid): a collision only costs a needless dedupe.
    duplicates = db.scalar(
        "SELECT count(*) - count(DISTINCT record_id) FROM hm_checked WHERE status = 'loaded'"
    )
    dedupe = _DEDUPE if duplicates else ""
    db.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE hm_ok AS
        SELECT * FROM hm_checked c
        WHERE c.status = 'loaded' AND c.resource_type IN {_in(_REFERENCE_TYPES)}
        {dedupe}
        """
    )
    return dedupe


_REFERENCE_TYPES = ("Patient", "Organization", "Practitioner", "Location", "Encounter")
_EVENT_TYPES = tuple(t for t in CLINICAL_TYPES if t != "Encounter")  # records that become CDM events
# valueBoolean: the OMOP answers Yes / No.
_VOCABULARY_COLUMNS = (
    "m.concept_id, m.source_concept_id, u.concept_id AS unit_concept_id, "
    f"CASE WHEN c.value_system = '{BOOLEAN_SYSTEM}' THEN CASE c.value_code WHEN 'true' THEN {YES} "
    f"WHEN 'false' THEN {NO} ELSE 0 END ELSE v.concept_id END AS value_concept_id"
)
_VOCABULARY_JOINS = """
    LEFT JOIN hm_code_system cs ON cs.system = c.code_system
    LEFT JOIN hm_concept_map m ON m.vocabulary_id = cs.vocabulary_id AND m.concept_code = CASE
        WHEN cs.dot_after IS NULL OR contains(c.code, '.') THEN c.code  -- codes written without their dot:
        WHEN cs.vocabulary_id = 'ICD9CM' AND starts_with(c.code, 'E') AND length(c.code) > 4
            THEN left(c.code, 4) || '.' || substr(c.code, 5)  -- (codesystems.dotted)
        WHEN length(c.code) > cs.dot_after AND NOT (cs.vocabulary_id = 'ICD9CM' AND starts_with(c.code, 'E'))
            THEN left(c.code, cs.dot_after) || '.' || substr(c.code, cs.dot_after + 1)
        ELSE c.code END
    LEFT JOIN hm_concept_map u ON u.vocabulary_id = 'UCUM' AND u.concept_code = c.value_unit
    LEFT JOIN hm_code_system vs ON vs.system = c.value_system
    LEFT JOIN hm_concept_map v ON v.vocabulary_id = vs.vocabulary_id AND v.concept_code = c.value_code
"""


def _upsert(db: HubDatabase, table: str, key: str, select_sql: str) -> None:
    db.execute(f"CREATE OR REPLACE TEMP TABLE hm_rows AS {select_sql}")
    if not db.scalar("SELECT count(*) FROM hm_rows"):
        return
    db.execute(f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM hm_rows)")
    db.execute(f"INSERT INTO {table} BY NAME SELECT * FROM hm_rows")


_ADDRESS_KEY = (
    "CASE WHEN coalesce(addr_state, addr_city, addr_postal) IS NOT NULL THEN hm_key('Address', "
    "concat_ws('|', addr_state, addr_city, left(addr_postal, 3))) END"
)


def _reference_tables(db: HubDatabase) -> None:
    _upsert(
        db,
        "location",
        "location_id",
        f"""
        SELECT DISTINCT {_ADDRESS_KEY} AS location_id, left(addr_city, 50) AS city, left(addr_state, 10) AS state,
               left(addr_postal, 3) AS zip, left(concat_ws('|', addr_state, addr_city, left(addr_postal, 3)), 50)
               AS location_source_value
        FROM hm_ok WHERE resource_type IN ('Patient', 'Organization', 'Location')
          AND coalesce(addr_state, addr_city, addr_postal) IS NOT NULL
        """,
    )
    _upsert(
        db,
        "care_site",
        "care_site_id",
        f"""
        SELECT record_id AS care_site_id, left(org_name, 255) AS care_site_name, {_ADDRESS_KEY} AS location_id,
               CASE WHEN {_found(len(SCANNED_FIELDS))} IS NULL THEN left(rid, 50) END AS care_site_source_value, left(code, 50) AS place_of_service_source_value
        FROM hm_ok WHERE resource_type = 'Organization'
        """,
    )
    _upsert(
        db,
        "provider",
        "provider_id",
        """
        SELECT record_id AS provider_id, hm_pseudonym(rid) AS provider_source_value,
               CASE gender WHEN 'male' THEN 8507 WHEN 'female' THEN 8532 ELSE 0 END AS gender_concept_id,
               gender AS gender_source_value
        FROM hm_ok WHERE resource_type = 'Practitioner'
        """,
    )
    db.execute(
        """
        INSERT INTO hm_identifier_index
        SELECT DISTINCT resource_type, md5(getvariable('hm_salt') || identifier_value), rid FROM hm_ok
        WHERE resource_type IN ('Practitioner', 'Organization') AND identifier_value IS NOT NULL
          AND (resource_type, md5(getvariable('hm_salt') || identifier_value), rid)
              NOT IN (SELECT (resource_type, identifier_hash, rid) FROM hm_identifier_index)
        """
    )
    _upsert(
        db,
        "person",
        "person_id",
        f"""
        SELECT person_id,
               CASE lower(gender) WHEN 'male' THEN 8507 WHEN 'female' THEN 8532 ELSE 0 END AS gender_concept_id,
               year(birth_ts) AS year_of_birth, month(birth_ts) AS month_of_birth,
               {_case("race", RACE)} AS race_concept_id, {_case("ethnicity", ETHNICITY)} AS ethnicity_concept_id,
               {_ADDRESS_KEY} AS location_id,
               hm_pseudonym(rid) AS person_source_value, left(gender, 50) AS gender_source_value,
               left(race, 50) AS race_source_value, left(ethnicity, 50) AS ethnicity_source_value
        FROM hm_ok WHERE resource_type = 'Patient'
        """,
    )
    _upsert(
        db,
        "death",
        "person_id",
        f"""
        SELECT person_id, deceased_ts::DATE AS death_date, deceased_ts AS death_datetime,
               {TYPE_CONCEPT_EHR} AS death_type_concept_id
        FROM hm_ok WHERE resource_type = 'Patient' AND deceased_ts IS NOT NULL
        """,
    )
    db.execute(
        """
        INSERT INTO hm_death_undated SELECT person_id FROM hm_ok
        WHERE resource_type = 'Patient' AND deceased_ts IS NULL AND lower(deceased_flag) = 'true'
        """
    )
    # Records of Patients that are neither in this load nor already in the hub are rejected.
    db.execute(
        f"""
        UPDATE hm_checked SET status = 'rejected',
               reason = 'subject ' || {shown_sql("left(subject_ref, 80)", "subject_ref")}
                   || ' is not a Patient of this load or of the hub'
        WHERE status = 'loaded' AND resource_type <> 'Patient' AND subject_ref IS NOT NULL
          AND person_id NOT IN (SELECT person_id FROM person)
        """
    )
    db.execute(
        "DELETE FROM hm_ok WHERE record_id IN (SELECT record_id FROM hm_checked WHERE status = 'rejected')"
    )
    _upsert(
        db,
        "visit_occurrence",
        "visit_occurrence_id",
        f"""
        SELECT o.record_id AS visit_occurrence_id, o.person_id,
               {_case("o.visit_class", VISIT_CLASS, VISIT_OUTPATIENT)} AS visit_concept_id,
               o.start_ts::DATE AS visit_start_date, o.start_ts AS visit_start_datetime,
               coalesce(o.end_ts, o.start_ts)::DATE AS visit_end_date, coalesce(o.end_ts, o.start_ts) AS visit_end_datetime,
               {TYPE_CONCEPT_EHR} AS visit_type_concept_id, p.provider_id, cs.care_site_id,
               left(coalesce(o.code, o.visit_class), 50) AS visit_source_value,
               coalesce(o.source_concept_id, 0) AS visit_source_concept_id
        FROM hm_ok o
        LEFT JOIN (  -- each practitioner and site the visits name is keyed once, not once per visit
            SELECT r.provider_ref, p.provider_id FROM (SELECT DISTINCT provider_ref FROM hm_ok) r
            {_provider_join("r.provider_ref")}
        ) p ON p.provider_ref = o.provider_ref
        LEFT JOIN (SELECT care_site_ref, hm_key('Organization', hm_ref(care_site_ref)) AS care_site_key
                   FROM (SELECT DISTINCT care_site_ref FROM hm_ok)) csk ON csk.care_site_ref = o.care_site_ref
        LEFT JOIN care_site cs ON cs.care_site_id = csk.care_site_key
        WHERE o.resource_type = 'Encounter'
        """,
    )


def _provider_join(ref: str) -> str:
    """LEFT JOINs that give ``p.provider_id`` for a reference (by id, or by identifier for conditional ones)."""
    return (
        f"LEFT JOIN hm_identifier_index ix ON starts_with(hm_ref({ref}), 'identifier:')"
        f" AND ix.resource_type = 'Practitioner'"
        f" AND ix.identifier_hash = md5(getvariable('hm_salt') || substr(hm_ref({ref}), 12))"
        f" LEFT JOIN provider p ON p.provider_id = hm_key('Practitioner', coalesce(ix.rid, hm_ref({ref})))"
    )


def _target_table() -> str:
    """SQL for the CDM table a record goes to: its standard concept's domain, else its resource type's."""
    domain = " ".join(f"WHEN '{d}' THEN '{t}'" for d, t in _DOMAIN_TABLE.items())
    by_type = """CASE
        WHEN c.resource_type = 'Condition' THEN 'condition_occurrence'
        WHEN c.resource_type IN ('MedicationRequest', 'MedicationAdministration', 'MedicationStatement',
                                 'MedicationDispense', 'Immunization')
            THEN 'drug_exposure'
        WHEN c.resource_type = 'Procedure' THEN 'procedure_occurrence'
        WHEN c.resource_type = 'Device' THEN 'device_exposure'
        WHEN c.resource_type = 'DiagnosticReport' THEN 'measurement'
        WHEN c.resource_type = 'Observation' AND (c.value_num IS NOT NULL
             OR c.category IN ('laboratory', 'vital-signs')) THEN 'measurement'
        ELSE 'observation' END"""
    return (
        "CASE WHEN c.resource_type = 'Specimen' THEN 'specimen' "  # a specimen is one whatever its code's domain
        f"WHEN m.concept_id > 0 THEN CASE m.domain_id {domain} ELSE {by_type} END ELSE {by_type} END"
    )


def _events(db: HubDatabase, dedupe: str) -> None:
    """Insert the batch's loaded clinical records into their CDM tables, straight from ``hm_checked``."""
    loaded = "SELECT record_id FROM hm_checked WHERE status = 'loaded' AND target IS NOT NULL"
    targets = {row[0] for row in db.rows("SELECT DISTINCT target FROM hm_checked WHERE status = 'loaded'")}
    targets.discard(None)
    if not targets:
        return
    for table, (key, _) in EVENT_TABLES.items():  # a record sent again may now route to another table
        db.execute(f"DELETE FROM {table} WHERE {key} IN ({loaded})")
    # The event columns each table's insert reads; a resource sent twice keeps its last copy.
    events = f"""
        SELECT o.record_id, o.person_id, o.resource_type, coalesce(o.concept_id, 0) AS concept_id,
               coalesce(o.source_concept_id, 0) AS source_concept_id, o.target,
               o.start_ts, o.end_ts, o.value_num, o.value_unit,
               -- a value without a unit: unit_concept_id NULL; a unit the vocabulary lacks: 0 (DQD >= 2.7).
               -- A UCUM annotation alone ({{score}}, {{count}}) is UCUM's unity with a comment, no unit:
               -- NULL, as DQD expects of scores (plausible unit -1); the source value keeps it.
               CASE WHEN o.value_unit IS NOT NULL AND o.value_unit NOT LIKE '{{%}}'
                    THEN coalesce(o.unit_concept_id, 0) END AS unit_concept_id,
               o.value_concept_id, coalesce(o.value_string, o.value_display) AS value_text, o.value_code,
               left(o.code, 50) AS source_value, v.visit_occurrence_id, p.provider_id
        FROM (SELECT * FROM hm_checked c WHERE c.status = 'loaded' AND c.target IS NOT NULL {dedupe}) o
        LEFT JOIN visit_occurrence v ON v.visit_occurrence_id = o.visit_key
        {_provider_join("o.provider_ref")}
    """
    ehr = TYPE_CONCEPT_EHR
    common = "record_id, person_id, visit_occurrence_id, provider_id"
    inserts = {
        "condition_occurrence": f"""{common}, concept_id AS condition_concept_id, start_ts::DATE AS condition_start_date,
            start_ts AS condition_start_datetime, end_ts::DATE AS condition_end_date, end_ts AS condition_end_datetime,
            {ehr} AS condition_type_concept_id, source_value AS condition_source_value,
            source_concept_id AS condition_source_concept_id""",
        "drug_exposure": f"""{common}, concept_id AS drug_concept_id, start_ts::DATE AS drug_exposure_start_date,
            start_ts AS drug_exposure_start_datetime, coalesce(end_ts, start_ts)::DATE AS drug_exposure_end_date,
            end_ts AS drug_exposure_end_datetime, source_value AS drug_source_value,
            CASE WHEN resource_type = 'MedicationDispense' THEN {TYPE_CONCEPT_DISPENSING} ELSE {ehr} END
            AS drug_type_concept_id,
            source_concept_id AS drug_source_concept_id""",
        "procedure_occurrence": f"""{common}, concept_id AS procedure_concept_id, start_ts::DATE AS procedure_date,
            start_ts AS procedure_datetime, end_ts::DATE AS procedure_end_date, end_ts AS procedure_end_datetime,
            {ehr} AS procedure_type_concept_id, source_value AS procedure_source_value,
            source_concept_id AS procedure_source_concept_id""",
        "measurement": f"""{common}, concept_id AS measurement_concept_id, start_ts::DATE AS measurement_date,
            start_ts AS measurement_datetime, {ehr} AS measurement_type_concept_id, value_num AS value_as_number,
            value_concept_id AS value_as_concept_id, unit_concept_id, left(value_unit, 50) AS unit_source_value,
            source_value AS measurement_source_value, source_concept_id AS measurement_source_concept_id,
            left(coalesce(value_code, value_text), 50) AS value_source_value""",
        "observation": f"""{common}, concept_id AS observation_concept_id, start_ts::DATE AS observation_date,
            start_ts AS observation_datetime, {ehr} AS observation_type_concept_id, value_num AS value_as_number,
            left(value_text, 60) AS value_as_string, value_concept_id AS value_as_concept_id, unit_concept_id,
            left(value_unit, 50) AS unit_source_value, source_value AS observation_source_value,
            source_concept_id AS observation_source_concept_id, left(coalesce(value_code, value_text), 50) AS value_source_value""",
        "device_exposure": f"""{common}, concept_id AS device_concept_id, start_ts::DATE AS device_exposure_start_date,
            start_ts AS device_exposure_start_datetime, end_ts::DATE AS device_exposure_end_date,
            end_ts AS device_exposure_end_datetime, {ehr} AS device_type_concept_id, source_value AS device_source_value,
            source_concept_id AS device_source_concept_id""",
        "specimen": f"""record_id, person_id, concept_id AS specimen_concept_id, {ehr} AS specimen_type_concept_id,
            start_ts::DATE AS specimen_date, start_ts AS specimen_datetime, source_value AS specimen_source_value""",
    }
    for table, select in inserts.items():
        if table not in targets:
            continue
        key = EVENT_TABLES[table][0]
        db.execute(
            f"INSERT INTO {table} BY NAME SELECT * EXCLUDE (record_id), record_id AS {key} FROM "
            f"(SELECT {select} FROM ({events}) WHERE target = '{table}')"
        )


def _encounter_dates(db: HubDatabase) -> None:
    """A record without a date of its own takes its Encounter's start (MIMIC-IV's Conditions); one
    whose Encounter is neither in this load nor in the hub is rejected."""
    undated = "status = 'loaded' AND start_ts IS NULL AND target IS NOT NULL"
    if not db.scalar(f"SELECT count(*) FROM hm_checked WHERE {undated}"):
        return
    db.execute(
        f"""
        UPDATE hm_checked SET start_ts = v.visit_start_datetime FROM visit_occurrence v
        WHERE {undated} AND v.visit_occurrence_id = hm_checked.visit_key AND v.person_id = hm_checked.person_id
        """
    )
    db.execute(
        f"""
        UPDATE hm_checked SET status = 'rejected',
               reason = resource_type || ' without a date, and its Encounter is not one of this load or of the hub'
        WHERE {undated}
        """
    )


def _retract(db: HubDatabase) -> None:
    """Records that say they are not facts (``NOT_A_FACT``) remove the copy a former load stored."""
    negated = "SELECT record_id FROM hm_checked WHERE status = 'skipped' AND reason IS NOT NULL AND target IS NOT NULL"
    if not db.scalar(f"SELECT count(*) FROM ({negated})"):
        return
    for table, (key, _) in EVENT_TABLES.items():
        db.execute(f"DELETE FROM {table} WHERE {key} IN ({negated})")


def map_stage(db: HubDatabase) -> bool:
    """Check, then map everything in ``hm_stage`` into the CDM. Leaves ``hm_checked`` for the report.

    Returns whether the batch held a resource more than once (its last copy was kept).
    """
    # Staged rows carry their record numbers: nothing from here on reads rows in insertion order.
    with db.unordered():
        _check(db)
    return map_checked(db)


def map_checked(db: HubDatabase) -> bool:
    """Map the checked records of ``hm_checked`` (as ``map_stage`` leaves it, or records held back
    until the whole load was in); returns whether a resource came more than once."""
    with db.unordered():
        dedupe = _dedupe_and_reference_rows(db)  # a resource sent twice in one batch becomes one CDM row
        _reference_tables(db)
        _encounter_dates(db)
        _retract(db)
        _events(db, dedupe)
    return bool(dedupe)


_BATCH_PERSONS = "SELECT DISTINCT person_id FROM hm_checked WHERE status = 'loaded'"


def rebuild_derived(
    db: HubDatabase, hub: str, vocabulary_version: str, only_batch_persons: bool = False
) -> None:
    """observation_period (one per person, first to last record), death dates, the condition, drug
    and dose eras (``healthmesh.cdm.eras``) and cdm_source.

    ``only_batch_persons`` limits the work to the persons of the last mapped batch (a posted Bundle),
    so that one Bundle does not rescan the hub.
    """
    scope = f"person_id IN ({_BATCH_PERSONS})" if only_batch_persons else "true"
    dates = " UNION ALL ".join(
        f"SELECT person_id, {date} AS d FROM {table} WHERE {scope}"
        for table, (_, date) in EVENT_TABLES.items()
    )
    visits = f"SELECT person_id, visit_start_date AS d FROM visit_occurrence WHERE {scope} UNION ALL SELECT person_id, visit_end_date FROM visit_occurrence WHERE {scope}"
    if db.dialect == "duckdb" and db.scalar(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'hm_death_undated'"
    ):  # deceased without a date: dated by the person's last record; none without records
        db.execute(
            f"""
            INSERT INTO death BY NAME
            SELECT last.person_id, last.d AS death_date, {TYPE_CONCEPT_EHR} AS death_type_concept_id FROM (
                SELECT person_id, max(d) AS d FROM ({dates} UNION ALL {visits}) GROUP BY person_id) last
            WHERE last.d IS NOT NULL AND last.person_id IN (SELECT person_id FROM hm_death_undated)
              AND last.person_id NOT IN (SELECT person_id FROM death)
            """
        )
        db.execute("DELETE FROM hm_death_undated")
    db.execute(f"DELETE FROM observation_period WHERE {scope}")
    db.execute(
        f"""
        INSERT INTO observation_period BY NAME
        SELECT person_id AS observation_period_id, person_id, min(d) AS observation_period_start_date,
               max(d) AS observation_period_end_date, {TYPE_CONCEPT_EHR} AS period_type_concept_id
        FROM ({dates} UNION ALL {visits} UNION ALL SELECT person_id, death_date FROM death WHERE {scope})
        WHERE person_id IN (SELECT person_id FROM person) AND d IS NOT NULL
        GROUP BY person_id
        """
    )
    build_eras(db, _BATCH_PERSONS if only_batch_persons else None)
    if db.scalar(
        "SELECT count(*) FROM cdm_source WHERE cdm_source_abbreviation = ? AND vocabulary_version = ?",
        [hub[:25], vocabulary_version],
    ):
        return
    db.execute("DELETE FROM cdm_source")
    db.execute(
        """
        INSERT INTO cdm_source BY NAME
        SELECT ? AS cdm_source_name, ? AS cdm_source_abbreviation, 'healthmesh' AS cdm_holder,
               'healthmesh hub ' || ? AS source_description, current_date AS source_release_date,
               current_date AS cdm_release_date, 'v5.4' AS cdm_version, 756265 AS cdm_version_concept_id,
               ? AS vocabulary_version
        """,
        [f"healthmesh {hub}", hub[:25], hub, vocabulary_version],
    )
