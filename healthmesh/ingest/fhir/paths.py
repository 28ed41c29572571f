"""The FHIR R4 elements healthmesh reads, as JSON paths extracted in one parse per resource.

One list serves every resource type: DuckDB's ``json_extract_string(resource, [paths...])``
parses each resource once and returns all elements, so the bulk path never builds a Python object
per resource. ``FIELD`` gives each element's position in the extracted list.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = [
    "BOOLEAN_SYSTEM",
    "FIELD",
    "PATHS",
    "TYPE_FIELDS",
    "extension_code",
    "fields_for",
    "status_expr",
    "value_system",
    "value_text",
]

PATHS: tuple[tuple[str, str], ...] = (
    ("resource_type", "$.resourceType"),
    ("id", "$.id"),
    ("subject", "$.subject.reference"),
    ("patient", "$.patient.reference"),
    ("encounter", "$.encounter.reference"),
    ("context", "$.context.reference"),
    ("code_system", "$.code.coding[0].system"),
    ("code", "$.code.coding[0].code"),
    ("code_display", "$.code.coding[0].display"),
    ("code_text", "$.code.text"),
    ("vaccine_system", "$.vaccineCode.coding[0].system"),
    ("vaccine_code", "$.vaccineCode.coding[0].code"),
    ("vaccine_display", "$.vaccineCode.coding[0].display"),
    ("med_system", "$.medicationCodeableConcept.coding[0].system"),
    ("med_code", "$.medicationCodeableConcept.coding[0].code"),
    ("med_display", "$.medicationCodeableConcept.coding[0].display"),
    ("type_system", "$.type[0].coding[0].system"),
    ("type_code", "$.type[0].coding[0].code"),
    ("type_display", "$.type[0].coding[0].display"),
    ("device_system", "$.type.coding[0].system"),
    ("device_code", "$.type.coding[0].code"),
    ("device_display", "$.type.coding[0].display"),
    ("effective", "$.effectiveDateTime"),
    ("effective_start", "$.effectivePeriod.start"),
    ("effective_end", "$.effectivePeriod.end"),
    ("issued", "$.issued"),
    ("onset", "$.onsetDateTime"),
    ("abatement", "$.abatementDateTime"),
    ("recorded", "$.recordedDate"),
    ("performed", "$.performedDateTime"),
    ("performed_start", "$.performedPeriod.start"),
    ("performed_end", "$.performedPeriod.end"),
    ("authored", "$.authoredOn"),
    ("occurrence", "$.occurrenceDateTime"),
    ("period_start", "$.period.start"),
    ("period_end", "$.period.end"),
    ("asserted", "$.dateAsserted"),
    ("handed_over", "$.whenHandedOver"),
    ("prepared", "$.whenPrepared"),
    ("collected", "$.collection.collectedDateTime"),
    ("collected_start", "$.collection.collectedPeriod.start"),
    ("status", "$.status"),
    ("verification", "$.verificationStatus.coding[0].code"),
    ("do_not_perform", "$.doNotPerform"),
    ("value_num", "$.valueQuantity.value"),
    ("value_unit_code", "$.valueQuantity.code"),
    ("value_unit", "$.valueQuantity.unit"),
    ("value_cc_system", "$.valueCodeableConcept.coding[0].system"),
    ("value_cc_code", "$.valueCodeableConcept.coding[0].code"),
    ("value_cc_display", "$.valueCodeableConcept.coding[0].display"),
    ("value_string", "$.valueString"),
    ("value_integer", "$.valueInteger"),
    ("value_boolean", "$.valueBoolean"),
    ("value_datetime", "$.valueDateTime"),
    ("value_range_low", "$.valueRange.low.value"),
    ("value_range_high", "$.valueRange.high.value"),
    ("value_ratio_num", "$.valueRatio.numerator.value"),
    ("value_ratio_den", "$.valueRatio.denominator.value"),
    ("category", "$.category[0].coding[0].code"),
    ("visit_class", "$.class.code"),
    ("gender", "$.gender"),
    ("birth_date", "$.birthDate"),
    ("deceased_at", "$.deceasedDateTime"),
    ("deceased_flag", "$.deceasedBoolean"),
    ("addr_state", "$.address[0].state"),
    ("addr_city", "$.address[0].city"),
    ("addr_postal", "$.address[0].postalCode"),
    ("loc_state", "$.address.state"),
    ("loc_city", "$.address.city"),
    ("loc_postal", "$.address.postalCode"),
    ("service_provider", "$.serviceProvider.reference"),
    ("participant", "$.participant[0].individual.reference"),
    ("requester", "$.requester.reference"),
    ("performer", "$.performer[0].reference"),
    ("performer_actor", "$.performer[0].actor.reference"),
    ("recorder", "$.recorder.reference"),
    ("org_name", "$.name"),
    # US Core race and ethnicity: the extension is found by its url among the first three
    ("ext0_url", "$.extension[0].url"),
    ("ext0_code", "$.extension[0].extension[0].valueCoding.code"),
    ("ext1_url", "$.extension[1].url"),
    ("ext1_code", "$.extension[1].extension[0].valueCoding.code"),
    ("ext2_url", "$.extension[2].url"),
    ("ext2_code", "$.extension[2].extension[0].valueCoding.code"),
    ("identifier_system", "$.identifier[0].system"),
    ("identifier_value", "$.identifier[0].value"),
    ("component", "$.component"),
    ("bundle_type", "$.type"),
)

FIELD: dict[str, int] = {name: i + 1 for i, (name, _) in enumerate(PATHS)}  # DuckDB lists are 1-based

_CODE = ("code_system", "code", "code_display", "code_text")
_SUBJECT = ("subject", "encounter", "status")
_VALUES = (
    "value_num",
    "value_unit_code",
    "value_unit",
    "value_cc_system",
    "value_cc_code",
    "value_cc_display",
    "value_string",
    "value_integer",
    "value_boolean",
    "value_datetime",
    "value_range_low",
    "value_range_high",
    "value_ratio_num",
    "value_ratio_den",
)
_MEDICATION = ("med_system", "med_code", "med_display")
EXTENSIONS = ("ext0_url", "ext0_code", "ext1_url", "ext1_code", "ext2_url", "ext2_code")

# The elements each mapped type uses: a file of one type is read with only these paths.
TYPE_FIELDS: dict[str, tuple[str, ...]] = {
    "Patient": (
        "gender",
        "birth_date",
        "deceased_at",
        "deceased_flag",
        *EXTENSIONS,
        "addr_state",
        "addr_city",
        "addr_postal",
    ),
    "Organization": (
        "type_system",
        "type_code",
        "type_display",
        "org_name",
        "addr_state",
        "addr_city",
        "addr_postal",
        "identifier_system",
        "identifier_value",
    ),
    "Practitioner": ("gender", "identifier_system", "identifier_value"),
    "Location": ("org_name", "loc_state", "loc_city", "loc_postal"),
    "Encounter": (
        "subject",
        "type_system",
        "type_code",
        "type_display",
        "period_start",
        "period_end",
        "status",
        "visit_class",
        "service_provider",
        "participant",
    ),
    "Condition": (*_SUBJECT, *_CODE, "verification", "onset", "abatement", "recorded"),
    "Observation": (
        *_SUBJECT,
        *_CODE,
        "effective",
        "effective_start",
        "effective_end",
        "issued",
        *_VALUES,
        "category",
        "performer",
        "component",
    ),
    "MedicationRequest": (*_SUBJECT, *_MEDICATION, "authored", "requester", "do_not_perform"),
    "MedicationAdministration": (
        "subject",
        "context",
        "status",
        *_MEDICATION,
        "effective",
        "effective_start",
        "effective_end",
        "performer_actor",
    ),
    "MedicationStatement": (
        "subject",
        "context",
        "status",
        *_MEDICATION,
        "effective",
        "effective_start",
        "effective_end",
        "asserted",
    ),
    "MedicationDispense": (
        "subject",
        "context",
        "status",
        *_MEDICATION,
        "handed_over",
        "prepared",
        "performer_actor",
    ),
    "Specimen": (
        "subject",
        "status",
        "device_system",
        "device_code",
        "device_display",
        "collected",
        "collected_start",
    ),
    "Immunization": (
        "patient",
        "encounter",
        "status",
        "vaccine_system",
        "vaccine_code",
        "vaccine_display",
        "occurrence",
        "performer_actor",
    ),
    "Procedure": (*_SUBJECT, *_CODE, "performed", "performed_start", "performed_end", "performer_actor"),
    "AllergyIntolerance": ("patient", "encounter", *_CODE, "verification", "onset", "recorded", "recorder"),
    "Device": ("patient", "status", "device_system", "device_code", "device_display"),
    "DiagnosticReport": (
        *_SUBJECT,
        *_CODE,
        "effective",
        "effective_start",
        "effective_end",
        "issued",
        "performer",
    ),
}


def fields_for(resource_type: str | None) -> tuple[str, ...]:
    """The path names to extract for a file whose records are of ``resource_type`` (all when unknown)."""
    if resource_type in TYPE_FIELDS:
        return ("resource_type", "id", *TYPE_FIELDS[resource_type])
    return tuple(name for name, _ in PATHS)


# SQL builders for the staged columns that combine several elements. Each takes the stage's field
# accessor (an element name -> SQL for its extracted value, or NULL when the file's paths lack it).
Field = Callable[[str], str]

# valueBoolean is staged as a code of this system ('true' / 'false'); the mapping gives it the
# OMOP Yes / No answer concepts.
BOOLEAN_SYSTEM = "urn:healthmesh:valueBoolean"


def extension_code(f: Field, url_suffix: str) -> str:
    """SQL: the first sub-extension's code (US Core's ombCategory) of the extension whose url ends
    with ``url_suffix``, among the resource's first three extensions."""
    cases = " ".join(
        f"WHEN ends_with({f(f'ext{i}_url')}, '{url_suffix}') THEN {f(f'ext{i}_code')}" for i in range(3)
    )
    return f"CASE {cases} END"


def status_expr(f: Field) -> str:
    """SQL: the status that decides whether a record is a fact: ``doNotPerform`` first, then a
    Condition's or AllergyIntolerance's verificationStatus, then ``status``."""
    return (
        f"CASE WHEN {f('do_not_perform')} = 'true' THEN 'do-not-perform' "
        f"ELSE coalesce({f('verification')}, {f('status')}) END"
    )


def value_system(f: Field) -> str:
    return (
        f"CASE WHEN {f('value_boolean')} IS NOT NULL THEN '{BOOLEAN_SYSTEM}' ELSE {f('value_cc_system')} END"
    )


def value_text(f: Field) -> str:
    """SQL: the value as text where the CDM keeps it as text: valueString, valueDateTime, and a
    range (``low-high``, ``>=low``, ``<=high``) or a ratio (``numerator/denominator``)."""
    low, high = f("value_range_low"), f("value_range_high")
    num, den = f("value_ratio_num"), f("value_ratio_den")
    return (
        f"coalesce({f('value_string')}, {f('value_datetime')}, "
        f"CASE WHEN {low} IS NOT NULL AND {high} IS NOT NULL THEN {low} || '-' || {high} "
        f"WHEN {low} IS NOT NULL THEN '>=' || {low} WHEN {high} IS NOT NULL THEN '<=' || {high} END, "
        f"CASE WHEN {num} IS NOT NULL THEN {num} || '/' || coalesce({den}, '1') END)"
    )
