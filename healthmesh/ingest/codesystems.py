"""Code-system URLs to OMOP vocabularies: the table every FHIR mapping reads.

The package's ``codesystems.csv`` names the systems healthmesh knows (HL7's, MIMIC-IV's own ICD
URLs, KR Core's KCD and HIRA EDI systems). A hub adds or overrides rows with a file
``codesystems.csv`` beside its database (same columns: ``system,vocabulary_id[,note]``), read at
each load; a row there wins over the package's row for the same system. A system whose vocabulary
is not loaded keeps its codes as source values (concept 0) until an Athena export with that
vocabulary is loaded.
"""

from __future__ import annotations

import csv
import io
from importlib import resources
from pathlib import Path

from healthmesh.errors import CDMError

__all__ = ["HUB_FILE", "code_systems"]

HUB_FILE = "codesystems.csv"


def _rows(text: str, origin: str) -> dict[str, str]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"system", "vocabulary_id"} <= set(reader.fieldnames):
        raise CDMError(f"{origin}: the header must name the columns system and vocabulary_id")
    table: dict[str, str] = {}
    for line, row in enumerate(reader, start=2):
        system, vocabulary = (row.get("system") or "").strip(), (row.get("vocabulary_id") or "").strip()
        if not system or not vocabulary:
            raise CDMError(f"{origin} line {line}: system and vocabulary_id must both be given")
        table[system] = vocabulary
    return table


def code_systems(database: Path | None = None) -> dict[str, str]:
    """system URL -> vocabulary_id: the package's table, then the hub's file beside ``database``."""
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
