"""Load inputs into a hub's CDM: discover, stage, map, account for every record, report.

Each batch (one NDJSON file, a group of Bundle files, or a Synthea CSV folder) is mapped and
committed in its own transaction; keys are keyed hashes, so a load killed half-way and run again
leaves the database a clean run leaves. With ``strict`` the whole load is one transaction that is
rolled back when any record is rejected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from healthmesh.cdm.database import HubDatabase
from healthmesh.cdm.schema import cdm_tables
from healthmesh.cdm.vocabulary import vocabulary_version
from healthmesh.errors import CDMError, IngestError
from healthmesh.ingest.detect import Source, discover
from healthmesh.ingest.fhir.resource_types import SKIP_REASON
from healthmesh.ingest.fhir.stage import (
    REQUEST_ONLY_REASON,
    create_stage,
    drop_raw_input,
    number_records,
    stage_bundle_files,
    stage_bundle_text,
    stage_ndjson_file,
)
from healthmesh.ingest.map import (
    EVENT_TABLES,
    SCANNED_FIELDS,
    map_checked,
    map_stage,
    prepare_connection,
    rebuild_derived,
    redactions_sql,
    shown_sql,
)
from healthmesh.ingest.report import IngestReport
from healthmesh.ingest.synthea_csv import stage_synthea_csv
from healthmesh.privacy.pseudonym import register_pseudonym_function

__all__ = ["BUNDLES_PER_BATCH", "ingest_bundle", "ingest_paths", "report_path_for"]

BUNDLES_PER_BATCH = 64
MAX_LISTED_REJECTIONS = 100_000

Progress = Callable[[int, int, str], None]


def report_path_for(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".ingest-report.json")


def _batches(sources: list[Source]) -> list[list[Source]]:
    batches: list[list[Source]] = []
    pending: list[Source] = []
    for source in sources:
        if source.kind == "json":
            pending.append(source)
            if len(pending) == BUNDLES_PER_BATCH:
                batches.append(pending)
                pending = []
            continue
        if pending:
            batches.append(pending)
            pending = []
        if source.kind != "ignored":
            batches.append([source])
    if pending:
        batches.append(pending)
    return batches


def _is_hub_file(db: HubDatabase, path: Path) -> bool:
    """The hub's own database, write-ahead log and report, when the input folder holds them."""
    if db.path is None:
        return False
    own = (db.path, db.path.with_name(db.path.name + ".wal"), report_path_for(db.path))
    return any(path.resolve() == p.resolve() for p in own)


def _prepare(db: HubDatabase, hub: str, secret_key: bytes) -> None:
    """Macros, lookup tables and the pseudonym function, once per connection and hub key."""
    salt = secret_key.hex() + "|" + hub
    if getattr(db, "_ingest_salt", None) == salt:
        return
    if not db.scalar("SELECT count(*) FROM concept"):
        raise IngestError("the hub has no vocabulary; create it with `healthmesh cdm init --db PATH`")
    prepare_connection(db, salt)
    register_pseudonym_function(db.con, secret_key, hub)
    db._ingest_salt = salt  # type: ignore[attr-defined]


def _account(db: HubDatabase, report: IngestReport) -> None:
    """Add the checked batch (``hm_checked``) to the report."""
    rows = db.rows(
        """
        SELECT coalesce(resource_type, '(unreadable)'), count(*),
               count(*) FILTER (WHERE status = 'loaded'), count(*) FILTER (WHERE status = 'skipped'),
               count(*) FILTER (WHERE status = 'rejected'),
               count(*) FILTER (WHERE status = 'loaded' AND target IS NOT NULL AND concept_id > 0)
        FROM hm_checked WHERE parent_rid IS NULL AND status <> 'held' GROUP BY ALL
        """
    )
    for resource_type, records, loaded, skipped, rejected, mapped in rows:
        report.add_counts(resource_type, records, loaded, skipped, rejected, mapped)
    for file, records, loaded, skipped, rejected in db.rows(
        """
        SELECT file, count(*), count(*) FILTER (WHERE status = 'loaded'), count(*) FILTER (WHERE status = 'skipped'),
               count(*) FILTER (WHERE status = 'rejected')
        FROM hm_checked JOIN hm_files USING (file_no) WHERE parent_rid IS NULL AND status <> 'held'
        GROUP BY file ORDER BY file
        """
    ):
        report.files.append(
            {"file": file, "records": records, "loaded": loaded, "skipped": skipped, "rejected": rejected}
        )
    for (count,) in db.rows("SELECT sum(n) FROM hm_request_only HAVING sum(n) > 0"):
        report.add_counts("(request only)", count, 0, count, 0, 0)
        report.skipped.append(
            {"resource_type": "(request only)", "count": count, "reason": REQUEST_ONLY_REASON}
        )
    room = MAX_LISTED_REJECTIONS - len(report.rejections)
    for file, rec, entry, resource_type, rid, reason, parent in db.rows(
        f"""
        SELECT file, rec, entry, resource_type, {shown_sql("left(rid, 80)", "rid")}, reason,
               {shown_sql("parent_rid", "parent_rid")}
        FROM hm_checked JOIN hm_files USING (file_no)
        WHERE status = 'rejected' ORDER BY file, rec, entry, parent_rid NULLS FIRST, rid LIMIT {max(room, 0)}
        """
    ):
        where = {"entry": entry} if entry is not None else {"record": rec}
        item = {"file": file, **where, "resource_type": resource_type, "id": rid, "reason": reason}
        if parent is not None:
            item["part_of"] = parent
        report.rejections.append(item)
    for resource_type, count, reason in db.rows(  # a mapped type's record is skipped when it is not a fact
        "SELECT resource_type, count(*), reason FROM hm_checked WHERE status = 'skipped' GROUP BY ALL ORDER BY 1, 3"
    ):
        report.skipped.append(
            {"resource_type": resource_type, "count": count, "reason": reason or SKIP_REASON}
        )
    for resource_type, position, kind, count in db.rows(
        f"""
        SELECT resource_type, i, kind, count(*) FROM (
            SELECT resource_type, generate_subscripts(k, 1) AS i, unnest(k) AS kind
            FROM (SELECT resource_type, {redactions_sql()} AS k FROM hm_checked WHERE status = 'loaded' AND pii IS NOT NULL)
        ) WHERE kind IS NOT NULL GROUP BY ALL ORDER BY ALL
        """
    ):
        report.add_redactions(resource_type, SCANNED_FIELDS[position - 1][1], kind, count)


def _unreadable_files(
    report: IngestReport,
    files: list[Path],
    reason: str = "file is not a FHIR JSON document (invalid JSON, no resourceType, or over 64 MB)",
) -> None:
    for path in files:
        report.add_counts("(unreadable)", 1, 0, 0, 1, 0)
        report.files.append({"file": str(path), "records": 1, "loaded": 0, "skipped": 0, "rejected": 1})
        report.rejections.append(
            {
                "file": str(path),
                "record": 1,
                "resource_type": None,
                "id": None,
                "reason": reason,
            }
        )


def _stage_batch(
    db: HubDatabase, batch: list[Source], report: IngestReport, strict: bool = False, numbered: bool = True
) -> None:
    """Stage one batch. Run outside a transaction (unless ``strict``): a failed read must not abort the load.

    ``numbered=False`` lets a clean NDJSON file be staged without record numbers (see
    ``stage_ndjson_file``).
    """
    create_stage(db)
    first = batch[0]
    if first.kind == "ndjson":
        try:
            stage_ndjson_file(db, first.path, first.first_type, parallel=not strict, numbered=numbered)
        except CDMError as error:  # DuckDB could not read the file at all (e.g. a line over 1 GB)
            create_stage(db)
            reason = f"file cannot be read as NDJSON: {str(error).splitlines()[0][:200]}"
            _unreadable_files(report, [first.path], reason)
    elif first.kind == "synthea-csv":
        for file, resource_type, rows in stage_synthea_csv(db, first.path):
            report.add_counts(resource_type, rows, 0, rows, 0, 0)
            report.skipped.append(
                {"resource_type": resource_type, "file": file, "count": rows, "reason": SKIP_REASON}
            )
    else:
        _unreadable_files(report, stage_bundle_files(db, [s.path for s in batch]))


def _needs_record_numbers(db: HubDatabase, batch: list[Source], deduplicated: bool) -> bool:
    """Whether the mapped batch must be staged again, numbered: it has unnumbered copies of one
    resource (the last in the file wins). Rejected records only need their numbers, which a light
    numbered read of the file's ids gives them (``number_records``), unless one has no id."""
    unnumbered, rejected, without_id = db.rows(
        """
        SELECT count(*), count(*) FILTER (WHERE status = 'rejected'),
               count(*) FILTER (WHERE status = 'rejected' AND rid IS NULL)
        FROM hm_checked WHERE rec IS NULL AND entry IS NULL
        """
    )[0]
    if not unnumbered or not (deduplicated or rejected):
        return False
    if deduplicated or without_id:
        return True
    number_records(db, batch[0].path)
    return False


# Records whose Patient is in neither the hub nor the batch wait for the end of the load: it may
# come in a later file. Their reason, as the mapping writes it, ends with:
_UNKNOWN_SUBJECT = " is not a Patient of this load or of the hub"


def _hold_back(db: HubDatabase) -> None:
    """Copy the batch's records of unknown Patients into ``hm_held`` (status ``held`` in
    ``hm_checked``: not accounted for now), and note the loaded records whose Encounter is not in
    the hub yet (``hm_late_visits``). An UPDATE, not a DELETE: a DELETE from the wide checked
    table would cost its transaction's commit about as much as mapping it."""
    held = f"status = 'rejected' AND ends_with(reason, '{_UNKNOWN_SUBJECT}')"
    db.execute(
        """
        CREATE TEMP TABLE IF NOT EXISTS hm_held AS
        SELECT c.* EXCLUDE (file_no), f.file FROM hm_checked c JOIN hm_files f USING (file_no) WHERE false
        """
    )
    if db.scalar(f"SELECT count(*) FROM hm_checked WHERE {held}"):
        db.execute(
            f"""
            INSERT INTO hm_held BY NAME
            SELECT c.* EXCLUDE (file_no), f.file FROM hm_checked c JOIN hm_files f USING (file_no) WHERE {held}
            """
        )
        db.execute(f"UPDATE hm_checked SET status = 'held' WHERE {held}")
    db.execute(
        "CREATE TEMP TABLE IF NOT EXISTS hm_late_visits (record_id BIGINT, visit_key BIGINT, target VARCHAR)"
    )
    db.execute(
        """
        INSERT INTO hm_late_visits
        SELECT record_id, visit_key, target FROM hm_checked
        WHERE status = 'loaded' AND target IS NOT NULL AND visit_key IS NOT NULL
          AND visit_key NOT IN (SELECT visit_occurrence_id FROM visit_occurrence)
        """
    )


def _map_held(db: HubDatabase, report: IngestReport) -> None:
    """Once every file is in: map the records held back (a Patient still unknown now rejects its
    records), and give records their Encounter where it came in a later file."""
    if db.scalar("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'hm_held'") and db.scalar(
        "SELECT count(*) FROM hm_held"
    ):
        db.execute(
            "CREATE OR REPLACE TEMP TABLE hm_files AS "
            "SELECT row_number() OVER (ORDER BY file)::INTEGER AS file_no, file FROM (SELECT DISTINCT file FROM hm_held)"
        )
        db.execute(
            """
            CREATE OR REPLACE TEMP TABLE hm_checked AS
            SELECT h.* EXCLUDE (file, status, reason), f.file_no, 'loaded' AS status, NULL::VARCHAR AS reason
            FROM hm_held h JOIN hm_files f USING (file)
            """
        )
        db.execute("DELETE FROM hm_held")
        map_checked(db)
        _account(db, report)
    if db.scalar("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'hm_late_visits'") and db.scalar(
        "SELECT count(*) FROM hm_late_visits"
    ):
        for table, (key, _) in EVENT_TABLES.items():
            if table == "specimen":  # the CDM's specimen has no visit
                continue
            db.execute(
                f"""
                UPDATE {table} SET visit_occurrence_id = l.visit_key FROM hm_late_visits l
                WHERE {table}.{key} = l.record_id AND l.target = '{table}'
                  AND l.visit_key IN (SELECT visit_occurrence_id FROM visit_occurrence)
                """
            )
        db.execute("DELETE FROM hm_late_visits")


def _reject_batch(db: HubDatabase, batch: list[Source], report: IngestReport, error: CDMError) -> None:
    """A batch the mapping could not take (a database error): its files are rejected with the
    reason, the load goes on. No known input does this; it keeps one bad file from ending a load."""
    reason = f"file could not be mapped: {str(error).splitlines()[0][:200]}"
    _unreadable_files(report, [s.path for s in batch], reason)


def ingest_paths(
    db: HubDatabase,
    paths: list[Path],
    hub: str,
    secret_key: bytes,
    strict: bool = False,
    progress: Progress | None = None,
) -> IngestReport:
    """Load every FHIR / Synthea input under ``paths`` into ``db``.

    Each batch is staged, then mapped and committed in one transaction; with ``strict`` the whole
    load is one transaction, rolled back when anything is rejected.
    """
    if db.dialect == "postgres":  # mapped in a scratch DuckDB, then upserted (to_postgres.py)
        from healthmesh.ingest.to_postgres import ingest_paths_postgres

        return ingest_paths_postgres(db, paths, hub, secret_key, strict, progress)  # type: ignore[arg-type]
    started = time.perf_counter()
    report = IngestReport(hub=hub, database=str(db.path), strict=strict)
    sources = [s for s in discover(paths) if not _is_hub_file(db, s.path)]
    report.ignored_files = [
        {
            "file": str(s.path),
            "reason": "not FHIR JSON or NDJSON; CSV is read only as a Synthea export folder",
        }
        for s in sources
        if s.kind == "ignored"
    ]
    _prepare(db, hub, secret_key)
    for table in ("hm_held", "hm_late_visits", "hm_medications"):  # what one load knows, for that load only
        db.execute(f"DROP TABLE IF EXISTS {table}")
    batches = _batches(sources)
    transaction = _Transaction(db)
    if strict:
        transaction.begin()
    try:
        for done, batch in enumerate(batches, start=1):
            if strict:
                try:
                    _stage_batch(db, batch, report, strict=True)
                except CDMError:  # an unreadable input aborts DuckDB's transaction: nothing is stored
                    transaction.rollback()
                    report.committed = False
                    _unreadable_files(report, [s.path for s in batch], "input cannot be read")
                    return _finish(db, report, started)
                map_stage(db)
                _hold_back(db)
                _account(db, report)
            else:
                _stage_batch(db, batch, report, numbered=False)
                transaction.begin()
                try:
                    if _needs_record_numbers(db, batch, map_stage(db)):  # map again, from a numbered read
                        transaction.rollback()
                        _stage_batch(db, batch, report)
                        transaction.begin()
                        map_stage(db)
                    _hold_back(db)
                except CDMError as error:
                    transaction.rollback()
                    _reject_batch(db, batch, report, error)
                    continue
                _account(db, report)
                transaction.commit()
            if progress:
                progress(done, len(batches), batch[0].path.name)
        if not strict:
            transaction.begin()
        _map_held(db, report)
        if strict and report.rejected:
            transaction.rollback()
            report.committed = False
        else:
            rebuild_derived(db, hub, vocabulary_version(db))
            transaction.commit()
    finally:
        transaction.rollback()
        drop_raw_input(db)
    return _finish(db, report, started)


class _Transaction:
    """Explicit BEGIN / COMMIT / ROLLBACK that knows whether one is open."""

    def __init__(self, db: HubDatabase) -> None:
        self.db = db
        self.open = False

    def begin(self) -> None:
        self.db.execute("BEGIN TRANSACTION")
        self.open = True

    def commit(self) -> None:
        self.db.execute("COMMIT")
        self.open = False

    def rollback(self) -> None:
        if self.open:
            self.open = False
            self.db.con.execute("ROLLBACK")


def _finish(db: HubDatabase, report: IngestReport, started: float) -> IngestReport:
    report.tables = db.table_counts(list(cdm_tables()))
    report.seconds = time.perf_counter() - started
    return report


def ingest_bundle(db: HubDatabase, bundle: str | bytes, hub: str, secret_key: bytes) -> IngestReport:
    """Load one posted FHIR Bundle atomically: all of it, or (if any record is rejected) nothing."""
    if db.dialect == "postgres":  # mapped in a scratch DuckDB, then upserted (to_postgres.py)
        from healthmesh.ingest.to_postgres import ingest_bundle_postgres

        return ingest_bundle_postgres(db, bundle, hub, secret_key)  # type: ignore[arg-type]
    text = bundle.decode("utf-8", errors="replace") if isinstance(bundle, bytes) else bundle
    report = IngestReport(hub=hub, database=str(db.path), strict=True)
    _prepare(db, hub, secret_key)
    # One posted Bundle's Medications serve that Bundle only, not the next poster's.
    db.execute("DROP TABLE IF EXISTS hm_medications")
    db.execute("BEGIN TRANSACTION")
    try:
        create_stage(db)
        if not stage_bundle_text(db, text):
            db.execute("ROLLBACK")
            report.committed = False
            report.add_counts("(unreadable)", 1, 0, 0, 1, 0)
            report.rejections.append(
                {"record": 1, "resource_type": None, "id": None, "reason": "not valid JSON"}
            )
            return report
        map_stage(db)
        _account(db, report)
        if report.rejected:
            db.execute("ROLLBACK")
            report.committed = False
        else:
            rebuild_derived(db, hub, vocabulary_version(db), only_batch_persons=True)
            db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    finally:
        drop_raw_input(db)
    return report
