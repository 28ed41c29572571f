"""One patient's FHIR Bundle mapped in memory: the CDM facts a risk score reads, in about a millisecond.

The database mapping (``stage.py`` + ``map.py``) is the reference: it stores, accounts for every
record and explains every rejection, but one posted Bundle costs it some 70 SQL statements. A
clinician waiting for a risk score needs only the patient's CDM facts (sex, birth year, each
record's standard concept, CDM table, day and value, the visits), and only for a Bundle that
loads cleanly. ``BundleMapper`` computes exactly those facts, with the reference's own rules and
tables (element paths, start and end fields, code sources, code systems, the concept map, domain
routing); tests hold its output equal to the reference's CDM rows over generated populations.

Anything the reference would reject, deduplicate or resolve through the hub (a bad date, a
resource sent twice, a reference to another patient, an unknown type) raises ``NeedsDatabase``:
the caller then takes the reference path, which gives the authoritative answer or one-line reason.

Identifiers typed into fields: the reference stores an identifier-looking value as NULL unless it
is a code the vocabulary knows (``map.SCANNED_FIELDS``). This path applies the same rule by
construction: it keeps no text, and reads a code only through the vocabulary, so a code that is
an identifier is a code the vocabulary does not know (concept 0 in both paths); an identifier
typed as a gender or a visit class is not one of the values that set a concept either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from healthmesh.cdm.database import HubDatabase
from healthmesh.ingest.codesystems import code_system_rows, dotted
from healthmesh.ingest.fhir.paths import PATHS
from healthmesh.ingest.fhir.resource_types import CLINICAL_TYPES, MAPPED_TYPES, R4_RESOURCE_TYPES
from healthmesh.ingest.fhir.stage import _CODE_SOURCE, _END_FIELDS, _START_FIELDS
from healthmesh.ingest.map import _DOMAIN_TABLE, EVENT_TABLES, NOT_A_FACT, VISIT_CLASS, VISIT_OUTPATIENT

__all__ = ["BundleMapper", "NeedsDatabase", "PatientRecords"]

_BUNDLE_TYPES = frozenset({"transaction", "batch", "collection", "searchset"})
_CLINICAL = frozenset(CLINICAL_TYPES)
_MAPPED = frozenset(MAPPED_TYPES)
_DRUG_TYPES = frozenset(
    {
        "MedicationRequest",
        "MedicationAdministration",
        "MedicationStatement",
        "MedicationDispense",
        "Immunization",
    }
)
# value[x] forms other than valueQuantity / valueCodeableConcept / valueString: the reference decides.
_OTHER_VALUES = frozenset({"valueInteger", "valueBoolean", "valueDateTime", "valueRange", "valueRatio"})
_GENDER = {"male": 8507, "female": 8532}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\Z")
_MINUTES = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}\Z")
_MONTH = re.compile(r"\d{4}-\d{2}\Z")
_YEAR = re.compile(r"\d{4}\Z")


class NeedsDatabase(Exception):
    """The Bundle holds something only the database mapping decides; take that path."""


@dataclass
class PatientRecords:
    """The CDM facts of one patient, as the reference mapping would store them."""

    gender_concept_id: int
    year_of_birth: int
    # CDM table -> (concept_id, day, value_as_concept_id, value_as_number) per row
    events: dict[str, list[tuple[int, date, int | None, float | None]]] = field(default_factory=dict)
    visits: list[tuple[int, date, date]] = field(default_factory=list)  # concept, start day, end day
    death_date: date | None = None

    @property
    def last_day(self) -> date | None:
        """observation_period_end_date: the last day of any record, visit or death."""
        days = [day for rows in self.events.values() for _, day, _, _ in rows]
        days += [day for _, start, end in self.visits for day in (start, end)]
        if self.death_date is not None:
            days.append(self.death_date)
        return max(days) if days else None


def _compile(path: str) -> tuple[str | int, ...]:
    """``$.code.coding[0].system`` -> ('code', 'coding', 0, 'system')."""
    steps: list[str | int] = []
    for part in path[2:].split("."):
        name, _, index = part.partition("[")
        steps.append(name)
        if index:
            steps.append(int(index.rstrip("]")))
    return tuple(steps)


_STEPS = {name: _compile(path) for name, path in PATHS}
_HEAD = {name: str(steps[0]) for name, steps in _STEPS.items()}


def _text(resource: dict[str, Any], name: str) -> str | None:
    """The element at ``PATHS[name]`` as text, None when absent; NeedsDatabase when not a string."""
    steps = _STEPS[name]
    node = resource.get(_HEAD[name])  # most elements are absent: settle those with one lookup
    for step in steps[1:]:
        if node is None:
            return None
        if isinstance(step, int):
            node = node[step] if isinstance(node, list) and len(node) > step else None
        else:
            node = node.get(step) if isinstance(node, dict) else None
    if node is None or isinstance(node, str):
        return node
    raise NeedsDatabase(f"{name} is not a string")  # numbers, booleans, objects: the reference decides


def _number(node: Any) -> float | None:
    """``valueQuantity.value`` as a float (JSON numbers only; text goes to the reference)."""
    quantity = node.get("valueQuantity") if isinstance(node, dict) else None
    value = quantity.get("value") if isinstance(quantity, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise NeedsDatabase("valueQuantity.value is not a JSON number")
    return float(value)


def fhir_day(text: str | None) -> date | None:
    """The day of a FHIR date / dateTime / instant (the reference's ``hm_ts``); NeedsDatabase if unsure."""
    if text is None:
        return None
    try:
        size = len(text)
        if size == 10 and _DATE.match(text):
            return date.fromisoformat(text)
        if 19 <= size <= 35 and _DATETIME.match(text[:19]) and (size == 19 or text[19] in "Z+-."):
            return datetime.fromisoformat(text[:19]).date()
        if size == 16 and _MINUTES.match(text):
            return datetime.fromisoformat(text).date()
        if size == 7 and _MONTH.match(text):
            return date.fromisoformat(text + "-01")
        if size == 4 and _YEAR.match(text):
            return date.fromisoformat(text + "-01-01")
    except ValueError:
        pass
    raise NeedsDatabase(f"{text!r} is not a date this path reads")


def _fields(names: tuple[str, ...] | list[str]) -> tuple[tuple[str, str, bool], ...]:
    """(name, first key, whether the element is that key itself) for ``_first``."""
    return tuple((name, _HEAD[name], len(_STEPS[name]) == 1) for name in names)


def _first(resource: dict[str, Any], fields: tuple[tuple[str, str, bool], ...]) -> str | None:
    """The first present element of ``fields`` (the reference's ``coalesce``)."""
    for name, head, top_level in fields:
        node = resource.get(head)
        if node is None:
            continue
        if not top_level:
            node = _text(resource, name)
            if node is None:
                continue
        if isinstance(node, str):
            return node
        raise NeedsDatabase(f"{name} is not a string")
    return None


_START = _fields([name for name, _ in _START_FIELDS])
_END = _fields(_END_FIELDS)
_DATE_HEADS = frozenset(head for _, head, _ in _START + _END)


def _day(text: str | None, days: dict[str, date | None]) -> date | None:
    """``fhir_day`` remembered per Bundle."""
    if text is None:
        return None
    if text not in days:
        days[text] = fhir_day(text)
    return days[text]


def _reference_id(reference: str | None) -> str | None:
    """The id a reference points at (the reference's ``hm_ref``); conditional references go to it."""
    if reference is None:
        return None
    if reference.startswith("urn:uuid:"):
        return reference[9:]
    if reference.startswith("urn:oid:"):
        return reference[8:]
    if "?identifier=" in reference:
        raise NeedsDatabase("a conditional reference is resolved through the hub")
    if "/_history/" in reference:
        reference = reference.split("/_history/")[0]
    return reference.split("/")[-1]


def _coding(resource: dict[str, Any], code_name: str) -> tuple[str | None, str | None]:
    """(system, code) of the coding at ``PATHS[code_name]``, walking to that coding once."""
    node: Any = resource
    for step in _STEPS[code_name][:-1]:
        if isinstance(step, int):
            node = node[step] if isinstance(node, list) and len(node) > step else None
        else:
            node = node.get(step) if isinstance(node, dict) else None
        if node is None:
            return None, None
    if not isinstance(node, dict):
        return None, None
    system, code = node.get("system"), node.get("code")
    if (system is None or isinstance(system, str)) and (code is None or isinstance(code, str)):
        return system, code
    raise NeedsDatabase(f"{code_name} is not a string")


# The coded element naming what each type is about (the reference's ``_code_expr``): its code's path.
_CODE_NAME = {resource_type: f"{source}_code" for resource_type, source in _CODE_SOURCE.items()}
for _name in ("code", *_CODE_NAME.values(), "value_cc_code"):
    _system = "code_system" if _name == "code" else _name.replace("_code", "_system")
    assert _STEPS[_system][:-1] == _STEPS[_name][:-1] and _STEPS[_name][-1] == "code"


class BundleMapper:
    """Maps one patient's Bundle to ``PatientRecords`` with the vocabulary of ``db`` (read once)."""

    def __init__(self, db: HubDatabase) -> None:
        self.vocabulary_of = code_system_rows(db.path)
        self.concepts: dict[tuple[str, str], tuple[int, str | None]] = {
            (str(vocabulary), str(code)): (int(concept or 0), domain)
            for vocabulary, code, concept, domain in db.rows(
                "SELECT vocabulary_id, concept_code, concept_id, domain_id FROM hm_concept_map"
            )
        }

    def _concept(self, system: str | None, code: str | None) -> tuple[int | None, str | None]:
        row = self.vocabulary_of.get(system) if system is not None else None
        if row is None or code is None:
            return None, None
        vocabulary, dot_after = row
        code = dotted(code, vocabulary, dot_after)
        # A code the vocabulary does not know, identifier-looking ones included, has no concept.
        return self.concepts.get((vocabulary, code), (None, None))

    def map(self, document: dict[str, Any]) -> PatientRecords:
        """The patient's CDM facts; NeedsDatabase when only the database mapping can decide."""
        if document.get("resourceType") != "Bundle" or document.get("type") not in _BUNDLE_TYPES:
            raise NeedsDatabase("not a Bundle of an accepted type")
        entries = document.get("entry")
        if not isinstance(entries, list):
            raise NeedsDatabase("a Bundle without entries")
        records: list[tuple[str, str, dict[str, Any]]] = []
        seen: set[tuple[str, str]] = set()
        for entry in entries:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                raise NeedsDatabase("an entry without a resource")
            resource_type = resource.get("resourceType")
            if not isinstance(resource_type, str) or resource_type not in R4_RESOURCE_TYPES:
                raise NeedsDatabase("an unknown resourceType")
            if resource_type not in _MAPPED:
                continue  # skipped: no clinical home, counted by the reference, no CDM row
            rid = resource.get("id")
            if not isinstance(rid, str) or not rid.strip() or len(rid) > 64 or (resource_type, rid) in seen:
                raise NeedsDatabase("an id the reference rejects, or a resource sent twice")
            seen.add((resource_type, rid))
            records.append((resource_type, rid, resource))
        patients = [(rid, r) for t, rid, r in records if t == "Patient"]
        if len(patients) != 1:
            raise NeedsDatabase("not exactly one Patient")
        patient_id, patient = patients[0]
        out = self._person(patient)
        # A patient's records share a few timestamps and one subject: read each distinct one once.
        days: dict[str, date | None] = {}
        subjects: dict[str, str | None] = {}
        for resource_type, _, resource in records:
            self._record(out, patient_id, resource_type, resource, days, subjects)
        return out

    def _person(self, patient: dict[str, Any]) -> PatientRecords:
        birth = fhir_day(_text(patient, "birth_date"))
        if birth is None:
            raise NeedsDatabase("Patient without birthDate")
        gender = _text(patient, "gender")
        return PatientRecords(
            gender_concept_id=_GENDER.get(gender.lower(), 0) if gender is not None else 0,
            year_of_birth=birth.year,
            death_date=fhir_day(_text(patient, "deceased_at")),
        )

    def _record(
        self,
        out: PatientRecords,
        patient_id: str,
        resource_type: str,
        resource: dict[str, Any],
        days: dict[str, date | None],
        subjects: dict[str, str | None],
    ) -> None:
        # The reference checks every mapped record's dates and value, whatever its type.
        start = end = None
        if not _DATE_HEADS.isdisjoint(resource):
            start, end = _day(_first(resource, _START), days), _day(_first(resource, _END), days)
        value = _number(resource)
        if resource_type not in _CLINICAL:
            return
        if resource_type == "Specimen" or not _OTHER_VALUES.isdisjoint(resource) or _negated(resource):
            raise NeedsDatabase("a specimen, a value form or a status the reference maps")
        subject = _text(resource, "subject")
        subject = _text(resource, "patient") if subject is None else subject
        if subject is not None and subject not in subjects:
            subjects[subject] = _reference_id(subject)
        if subject is None or start is None or subjects[subject] != patient_id:
            raise NeedsDatabase("a clinical record without subject or date, or of another patient")
        if resource_type == "Encounter":
            visit_class = _text(resource, "visit_class")
            concept = (
                VISIT_CLASS.get(visit_class, VISIT_OUTPATIENT)
                if visit_class is not None
                else VISIT_OUTPATIENT
            )
            out.visits.append((concept, start, end or start))
            return
        self._event(out, resource_type, resource, start, value)
        components = resource.get("component") if resource_type == "Observation" else None
        if components is None:
            return
        if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
            raise NeedsDatabase("Observation.component is not a list of components")
        for component in components:  # each component is a record of its own (blood-pressure panels)
            self._event(
                out, resource_type, {**resource, **_component_fields(component)}, start, _number(component)
            )

    def _event(
        self,
        out: PatientRecords,
        resource_type: str,
        resource: dict[str, Any],
        day: date,
        value: float | None,
    ) -> None:
        system, code = _coding(resource, _CODE_NAME.get(resource_type, "code"))
        if code is None:
            raise NeedsDatabase(f"{resource_type} without a code")
        concept, domain = self._concept(system, code)
        value_concept, _ = (
            self._concept(*_coding(resource, "value_cc_code"))
            if "valueCodeableConcept" in resource
            else (None, None)
        )
        if concept and domain in _DOMAIN_TABLE:
            table = _DOMAIN_TABLE[domain]
        else:
            table = _default_table(resource_type, value, _text(resource, "category"))
        out.events.setdefault(table, []).append((concept or 0, day, value_concept, value))


def _negated(resource: dict[str, Any]) -> bool:
    """Whether the record says it is not a fact (the reference's ``fhir_status`` in ``NOT_A_FACT``)."""
    do_not_perform = resource.get("doNotPerform")
    if do_not_perform is not None and do_not_perform is not False:
        return True  # true skips it; odd values: the reference reads them
    status = _text(resource, "verification")
    status = _text(resource, "status") if status is None else status
    return status in NOT_A_FACT


def _component_fields(component: dict[str, Any]) -> dict[str, Any]:
    """A component's own elements over its parent's (the reference's ``_expand_components``)."""
    return {
        "code": component.get("code"),
        "valueQuantity": component.get("valueQuantity"),
        "valueCodeableConcept": component.get("valueCodeableConcept"),
        "valueString": component.get("valueString"),
    }


def _default_table(resource_type: str, value: float | None, category: str | None) -> str:
    """The CDM table of a record whose concept has no domain of its own (the reference's ``_default_table``)."""
    if resource_type == "Condition":
        return "condition_occurrence"
    if resource_type in _DRUG_TYPES:
        return "drug_exposure"
    if resource_type == "Procedure":
        return "procedure_occurrence"
    if resource_type == "Device":
        return "device_exposure"
    if resource_type == "DiagnosticReport":
        return "measurement"
    if resource_type == "Observation" and (value is not None or category in ("laboratory", "vital-signs")):
        return "measurement"
    return "observation"


assert set(EVENT_TABLES) >= set(_DOMAIN_TABLE.values())  # every routed table is one the reference fills
