"""Tell inputs apart by content: FHIR Bulk NDJSON, FHIR JSON documents (Bundles or single
resources), Synthea CSV folders. File names only break ties for unreadable files."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import orjson

from healthmesh.errors import IngestError
from healthmesh.ingest.synthea_csv import is_synthea_csv_dir

__all__ = ["Source", "discover"]

# Reference data first, so that later records find their Patient, Encounter, provider, site and
# Medication (a record whose Patient comes later still waits for it: see ``load._hold_back``).
_TYPE_ORDER = {"Organization": 0, "Location": 1, "Practitioner": 2, "Patient": 3, "Encounter": 4}
_TYPE_ORDER["Medication"] = 4


@dataclass(frozen=True)
class Source:
    kind: str  # "ndjson", "json", "synthea-csv" or "ignored"
    path: Path
    first_type: str | None = None

    @property
    def order(self) -> tuple[int, str]:
        return (_TYPE_ORDER.get(self.first_type or "", 5), str(self.path))


def _head(path: Path, size: int = 65536) -> bytes:
    with path.open("rb") as raw:
        magic = raw.read(2)
    try:
        if magic == b"\x1f\x8b":
            with gzip.open(path, "rb") as handle:
                return handle.read(size)
        with path.open("rb") as handle:
            return handle.read(size)
    except (OSError, EOFError):
        return b""


def _classify(path: Path) -> Source:
    head = _head(path).lstrip()
    first_line = head.split(b"\n", 1)[0].strip()
    try:
        first = orjson.loads(first_line) if first_line else None
    except orjson.JSONDecodeError:
        first = None
    if isinstance(first, dict):
        kind = "json" if first.get("resourceType") == "Bundle" and b"\n{" not in head else "ndjson"
        if first.get("resourceType") == "Bundle" and b"\n{" not in head:
            entries = first.get("entry") or [{}]
            first_type = (entries[0].get("resource") or {}).get("resourceType")
        else:
            first_type = first.get("resourceType")
        return Source(kind, path, first_type if isinstance(first_type, str) else None)
    name = path.name.lower()
    if name.endswith((".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")):
        return Source("ndjson", path)
    # A pretty-printed document: find its first entry's resource type to order hospital bundles first.
    marker = b'"resourceType"'
    first_at = head.find(marker)
    second_at = head.find(marker, first_at + 1) if first_at >= 0 else -1
    first_type = None
    own = head[first_at + len(marker) :].split(b'"') if first_at >= 0 else []
    if len(own) > 1 and own[1] != b"Bundle":  # a single resource, pretty-printed: its own type
        first_type = own[1].decode(errors="replace")
    elif second_at >= 0:
        tail = head[second_at + len(marker) :].split(b'"')
        first_type = tail[1].decode(errors="replace") if len(tail) > 1 else None
    return Source("json", path, first_type)


def discover(paths: list[Path]) -> list[Source]:
    """Every input under ``paths``, in load order."""
    sources: list[Source] = []
    for path in paths:
        if not path.exists():
            raise IngestError(f"input {path} does not exist")
        if is_synthea_csv_dir(path):
            sources.append(Source("synthea-csv", path, "Patient"))
        elif path.is_dir():
            children = sorted(p for p in path.iterdir() if not p.name.startswith("."))
            sources.extend(discover(children))
        elif path.is_file():
            if path.name.lower().endswith((".csv", ".csv.gz", ".tsv", ".md", ".txt")):
                sources.append(Source("ignored", path))
            else:
                sources.append(_classify(path))
    return sorted(sources, key=lambda s: s.order)
