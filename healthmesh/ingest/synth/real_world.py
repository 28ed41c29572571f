"""Real-world shapes for a generated population: the same people and facts, written as hospitals
send them. References take other forms (``urn:uuid:``, absolute URLs with ``_history``), a
MedicationRequest names its drug through ``medicationReference`` (to a contained Medication, or
to a Medication resource of the export), and about 1 record in 100 is bad in one of the ways
real feeds are (a date that is not a date, no code, a Patient nobody sent, a value that is not a
number), scattered over the files. Reference data (Patients, Organizations, Practitioners) is
left intact, so that each bad record costs itself only.
"""

from __future__ import annotations

import random
import re

import orjson

__all__ = ["BAD_SHARE", "real_world_lines"]

BAD_SHARE = 0.01
_REFERENCE_TYPES = {"Patient", "Organization", "Practitioner", "Location", "Medication"}
_DATE = re.compile(
    rb'"(effectiveDateTime|onsetDateTime|authoredOn|occurrenceDateTime|performedDateTime)":"[^"]*"'
)


def _medication(line: bytes, rng: random.Random, medications: dict[str, bytes]) -> bytes:
    """Half the requests name a contained Medication, half a Medication resource of the export."""
    resource = orjson.loads(line)
    concept = resource.pop("medicationCodeableConcept", None)
    if concept is None:
        return line
    if rng.random() < 0.5:
        resource["contained"] = [{"resourceType": "Medication", "id": "med", "code": concept}]
        resource["medicationReference"] = {"reference": "#med"}
    else:
        code = concept["coding"][0]["code"]
        mid = f"med-{code}"
        medications.setdefault(mid, orjson.dumps({"resourceType": "Medication", "id": mid, "code": concept}))
        resource["medicationReference"] = {"reference": f"Medication/{mid}"}
    return orjson.dumps(resource)


def _damage(line: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0 and _DATE.search(line):
        return _DATE.sub(lambda m: b'"' + m.group(1) + b'":"2021-13-45"', line, count=1)
    if kind == 1 and b'"code":{' in line:
        resource = orjson.loads(line)
        resource.pop("code", None)
        return orjson.dumps(resource)
    if kind == 2 and b'"value":' in line and b'"valueQuantity"' in line:
        return re.sub(
            rb'"valueQuantity":\{"value":[-0-9.eE]+', b'"valueQuantity":{"value":"n/a"', line, count=1
        )
    return re.sub(
        rb'"subject":\{"reference":"[^"]*"', b'"subject":{"reference":"Patient/nobody-sent-me"', line, count=1
    )


def real_world_lines(
    chunk: dict[str, list[str]], rng: random.Random, hub: str, medications: dict[str, bytes]
) -> dict[str, list[str]]:
    """The chunk's NDJSON lines in real-world forms; Medications met are added to ``medications``."""
    base = f"https://fhir.{hub}.example.kr/r4".encode()
    out: dict[str, list[str]] = {}
    for resource_type, lines in chunk.items():
        written = []
        for text in lines:
            line = text.encode()
            if resource_type not in _REFERENCE_TYPES:
                line = line.replace(
                    b'"subject":{"reference":"Patient/', b'"subject":{"reference":"urn:uuid:', 1
                )
                line = re.sub(
                    rb'"encounter":\{"reference":"Encounter/([^"]*)"',
                    b'"encounter":{"reference":"' + base + rb'/Encounter/\1/_history/1"',
                    line,
                    count=1,
                )
                if resource_type == "MedicationRequest":
                    line = _medication(line, rng, medications)
                if rng.random() < BAD_SHARE:
                    line = _damage(line, rng)
            written.append(line.decode())
        out[resource_type] = written
    return out
