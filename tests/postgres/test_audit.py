"""The hub service's audit log is kept the same way in DuckDB and in PostgreSQL."""

from __future__ import annotations

import pytest

from healthmesh.cdm import HubDatabase

audit = pytest.importorskip(
    "healthmesh.api.audit", reason="the hub service (healthmesh.api) is not installed"
)


def test_audit_entries_are_appended_and_read_back_newest_first(backend_db: HubDatabase) -> None:
    audit.ensure_audit_table(backend_db)
    audit.ensure_audit_table(backend_db)  # a restarted service finds its table
    audit.write_audit(
        backend_db,
        [
            audit.AuditEntry("alice", "researcher", "POST", "/cohorts/count", "study 12", 40, 200),
            audit.AuditEntry("bob", "public-health", "GET", "/audit", None, None, 403),
        ],
    )
    entries = audit.read_audit(backend_db, limit=10)
    assert [(e["subject"], e["outcome"], e["rows_touched"]) for e in entries] == [
        ("bob", "forbidden", None),
        ("alice", "ok", 40),
    ]
    assert [e["route"] for e in audit.read_audit(backend_db, subject="alice")] == ["/cohorts/count"]
    with backend_db.cursor() as other:  # another thread's handle sees the committed entries
        assert other.scalar(f"SELECT count(*) FROM {audit.AUDIT_TABLE}") == 2
