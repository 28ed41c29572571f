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


def test_the_hash_chain_holds_and_names_a_changed_deleted_or_inserted_entry(backend_db: HubDatabase) -> None:
    audit.ensure_audit_table(backend_db)
    head = None
    for batch in range(3):  # three group commits, as the writer thread makes them
        head = audit.write_audit(
            backend_db,
            [
                audit.AuditEntry(
                    f"user{batch}",
                    "clinician",
                    "POST",
                    "/risk/{model}/batch",
                    None,
                    2,
                    200,
                    "10.0.0.7:51234",
                    (11, 12),
                )
                for _ in range(2)
            ],  # fmt: skip
            head,
        )
    report = audit.verify_chain(backend_db)
    assert (report.entries, report.unchained, report.head) == (6, 0, head)
    entry = audit.read_audit(backend_db, limit=1)[0]
    assert (entry["client"], entry["persons"], entry["prev_hash"] != entry["entry_hash"]) == (
        "10.0.0.7:51234", "11,12", True,
    )  # fmt: skip
    backend_db.execute(f"UPDATE {audit.AUDIT_TABLE} SET persons = '11' WHERE entry_id = 4")
    with pytest.raises(audit.BrokenChain) as changed:
        audit.verify_chain(backend_db)
    assert changed.value.entry_id == 4
    backend_db.execute(f"DELETE FROM {audit.AUDIT_TABLE} WHERE entry_id = 4")
    with pytest.raises(audit.BrokenChain) as deleted:
        audit.verify_chain(backend_db)
    assert deleted.value.entry_id == 5


def test_a_long_field_is_cut_and_the_chain_continues_after_a_restart(backend_db: HubDatabase) -> None:
    audit.ensure_audit_table(backend_db)
    audit.write_audit(
        backend_db, [audit.AuditEntry("x" * 5000, "-", "GET", "/" + "a" * 60_000, "p" * 900, None, 401)]
    )
    audit.ensure_audit_table(backend_db)  # a restarted service reads the head from the table
    audit.write_audit(backend_db, [audit.AuditEntry("alice", "admin", "GET", "/audit", None, 1, 200)])
    lengths = backend_db.rows(
        f"SELECT length(subject), length(route), length(purpose) FROM {audit.AUDIT_TABLE} ORDER BY entry_id"
    )
    assert max(max(v or 0 for v in row) for row in lengths) <= audit.MAX_FIELD
    assert audit.verify_chain(backend_db).entries == 2


def test_a_request_query_past_the_statement_limit_is_a_503(backend_db: HubDatabase) -> None:
    """The per-request statement timeout of the hub service, on either engine (not a 500, not a hang)."""
    from fastapi import HTTPException

    from healthmesh.api.limits import statement_timeout

    slow = (
        "SELECT pg_sleep(5)"
        if backend_db.dialect == "postgres"
        else "SELECT count(*) FROM range(100000000000) a, range(10) b"
    )
    with backend_db.cursor() as cursor:
        with pytest.raises(HTTPException) as refused, statement_timeout(cursor, 0.5):
            cursor.scalar(slow)
        assert refused.value.status_code == 503 and "statement limit" in str(refused.value.detail)
        assert cursor.scalar("SELECT 1") == 1


def test_a_nul_in_a_callers_text_does_not_fail_the_audit_write(backend_db: HubDatabase) -> None:
    audit.ensure_audit_table(backend_db)
    audit.write_audit(
        backend_db, [audit.AuditEntry("client\x00id", "-", "POST", "/token", "why\x00", None, 401)]
    )
    entry = audit.read_audit(backend_db, limit=1)[0]
    assert (entry["subject"], entry["purpose"]) == ("client\ufffdid", "why\ufffd")
    assert audit.verify_chain(backend_db).entries == 1
