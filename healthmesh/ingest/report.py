"""The ingest report: every input record accounted for (loaded, skipped or rejected), and every
identifier-looking value that was not stored (counted by resource type, field and detector, never shown)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["IngestReport"]


@dataclass
class IngestReport:
    hub: str
    database: str
    strict: bool = False
    committed: bool = True
    files: list[dict[str, Any]] = field(default_factory=list)
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    ignored_files: list[dict[str, str]] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    # resource type -> field -> detector kind -> values stored as NULL
    redactions: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    @property
    def records(self) -> int:
        return sum(t["records"] for t in self.by_type.values())

    @property
    def loaded(self) -> int:
        return sum(t["loaded"] for t in self.by_type.values())

    @property
    def skipped_count(self) -> int:
        return sum(t["skipped"] for t in self.by_type.values())

    @property
    def rejected(self) -> int:
        return sum(t["rejected"] for t in self.by_type.values())

    @property
    def redacted(self) -> int:
        return sum(
            n for fields in self.redactions.values() for kinds in fields.values() for n in kinds.values()
        )

    def redacted_by_kind(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for fields in self.redactions.values():
            for kinds in fields.values():
                for kind, count in kinds.items():
                    totals[kind] = totals.get(kind, 0) + count
        return dict(sorted(totals.items()))

    def add_redactions(self, resource_type: str, field_name: str, kind: str, count: int) -> None:
        kinds = self.redactions.setdefault(resource_type, {}).setdefault(field_name, {})
        kinds[kind] = kinds.get(kind, 0) + count

    def add_counts(
        self, resource_type: str, records: int, loaded: int, skipped: int, rejected: int, mapped: int
    ) -> None:
        row = self.by_type.setdefault(
            resource_type, {"records": 0, "loaded": 0, "skipped": 0, "rejected": 0, "mapped": 0}
        )
        row["records"] += records
        row["loaded"] += loaded
        row["skipped"] += skipped
        row["rejected"] += rejected
        row["mapped"] += mapped

    def mapped_share(self) -> dict[str, float]:
        """Share of loaded clinical records with a standard concept (reference types carry no code to map)."""
        reference = {"Patient", "Organization", "Practitioner", "Location", "Encounter"}
        return {
            t: round(r["mapped"] / r["loaded"], 4)
            for t, r in sorted(self.by_type.items())
            if r["loaded"] and t not in reference and not t.startswith("(")
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "hub": self.hub,
            "database": self.database,
            "strict": self.strict,
            "committed": self.committed,
            "totals": {
                "records": self.records,
                "loaded": self.loaded,
                "skipped": self.skipped_count,
                "rejected": self.rejected,
                "redacted": self.redacted,
            },
            "seconds": round(self.seconds, 3),
            "resources_per_second": round(self.records / self.seconds) if self.seconds else None,
            "by_type": dict(sorted(self.by_type.items())),
            "mapped_share": self.mapped_share(),
            "files": self.files,
            "skipped": self.skipped,
            "redactions": {
                "by_kind": self.redacted_by_kind(),
                "by_type": {t: self.redactions[t] for t in sorted(self.redactions)},
            },
            "rejections": self.rejections,
            "ignored_files": self.ignored_files,
            "tables": self.tables,
        }

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        return path
