"""Code-system URLs to OMOP vocabularies: the table every FHIR mapping reads.

The package's ``codesystems.csv`` names the systems healthmesh knows (HL7's, MIMIC-IV's own ICD
URLs, KR Core's KCD and HIRA EDI systems). A hub adds or overrides rows with a file
``codesystems.csv`` beside its database (same columns: ``system,vocabulary_id[,dot_after][,note]``),
read at each load; a row there wins over the package's row for the same system. ``dot_after``
serves systems that write a vocabulary's codes without their dot (MIMIC-IV's ICD codes: ``E119``
is ICD10CM ``E11.9``): the dot is put back after that many characters before the lookup. A system whose vocabulary
is not loaded keeps its codes as source values (concept 0) until an Athena export with that
vocabulary is loaded.
"""

from __future__ import annotations

import csv
import io
from importlib import resources
from pathlib import Path

from healthmesh.errors import CDMError

__all__ = ["HUB_FILE", "SystemRow", "code_system_rows", "code_systems", "dotted"]

HUB_FILE = "codesystems.csv"


SystemRow = tuple[str, int | None]  # vocabulary_id, dot_after


def _rows(text: str, origin: str) -> dict[str, SystemRow]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"system", "vocabulary_id"} <= set(reader.fieldnames):
        raise CDMError(f"{origin}: the header must name the columns system and vocabulary_id")
    table: dict[str, SystemRow] = {}
    for line, row in enumerate(reader, start=2):
        system, vocabulary = (row.get("system") or "").strip(), (row.get("vocabulary_id") or "").strip()
        dot = (row.get("dot_after") or "").strip()
        if not system or not vocabulary:
            raise CDMError(f"{origin} line {line}: system and vocabulary_id must both be given")
        if dot and not (dot.isdigit() and 0 < int(dot) < 10):
            raise CDMError(f"{origin} line {line}: dot_after must be a number from 1 to 9")
        table[system] = (vocabulary, int(dot) if dot else None)
    return table


def dotted(code: str, vocabulary: str, dot_after: int | None) -> str:
    """``code`` with its dot put back (the SQL mapping's ``dotted_sql``)."""
    if dot_after is None or "." in code:
        return code
    at = 4 if vocabulary == "ICD9CM" and code.startswith("E") else dot_after
    return code[:at] + "." + code[at:] if len(code) > at else code


def code_systems(database: Path | None = None) -> dict[str, str]:
    """system URL -> vocabulary_id: the package's table, then the hub's file beside ``database``."""
    return {system: vocabulary for system, (vocabulary, _) in code_system_rows(database).items()}


def code_system_rows(database: Path | None = None) -> dict[str, SystemRow]:
    """system URL -> (vocabulary_id, dot_after): the package's table, then the hub's file."""
    table = _rows(
        resources.files("healthmesh.ingest").joinpath("codesystems.csv").read_text(), "codesystems.csv"
    )
    local = database.parent / HUB_FILE if database is not None else None
    if local is not None and local.is_file():
        try:
            text = local.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CDMError(f"{local}: cannot be read ({error.__class__.__name__})") from error
        table.update(_rows(text, str(local)))
    return table
