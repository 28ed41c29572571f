"""Streaming FHIR Bulk Data output: one NDJSON file per resource type, split into parts."""

from __future__ import annotations

from pathlib import Path
from typing import IO

__all__ = ["NdjsonWriter"]


class NdjsonWriter:
    """Writes ``<Type>.<part>.ndjson`` files of at most ``max_lines`` lines each, as ``$export`` does."""

    def __init__(self, out_dir: Path, max_lines: int = 1_000_000) -> None:
        self.out_dir = out_dir
        self.max_lines = max_lines
        self.counts: dict[str, int] = {}
        self._handles: dict[str, tuple[IO[str], int, int]] = {}  # type -> (handle, part, lines in part)
        out_dir.mkdir(parents=True, exist_ok=True)

    def write(self, resource_type: str, lines: list[str]) -> None:
        if not lines:
            return
        handle, part, used = self._handles.get(resource_type) or self._open(resource_type, 0)
        start = 0
        while start < len(lines):
            room = self.max_lines - used
            if room <= 0:
                handle.close()
                handle, part, used = self._open(resource_type, part + 1)
                room = self.max_lines
            chunk = lines[start : start + room]
            handle.write("\n".join(chunk))
            handle.write("\n")
            used += len(chunk)
            start += len(chunk)
        self._handles[resource_type] = (handle, part, used)
        self.counts[resource_type] = self.counts.get(resource_type, 0) + len(lines)

    def _open(self, resource_type: str, part: int) -> tuple[IO[str], int, int]:
        path = self.out_dir / f"{resource_type}.{part:03d}.ndjson"
        return path.open("w", encoding="utf-8", buffering=1 << 20), part, 0

    def close(self) -> None:
        for handle, _, _ in self._handles.values():
            handle.close()
        self._handles.clear()
