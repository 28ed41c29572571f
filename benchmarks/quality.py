"""Benchmark: data-quality checks plus characterization on a hub of 100,000 persons.

Prints the time of ``run_quality`` + ``characterize`` beside a plain full scan of the same tables
(every column of every non-empty CDM table read once: the floor any checker pays), with the ratio.
Target: both together under 2 minutes on the 2-core development machine.

    python benchmarks/quality.py                       # builds a 100,000-person hub (see --generator)
    python benchmarks/quality.py --db hubs/gwangju.duckdb   # an existing (generated) hub

``--generator synth`` builds the hub with ``healthmesh synth`` + ``healthmesh ingest`` (slow to
generate); ``sample`` (the default) with the set-based sample population of healthmesh.quality.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from healthmesh.cdm import HubDatabase, cdm_tables, connect, create_hub
from healthmesh.cdm.vocabulary import VOCABULARY_TABLES
from healthmesh.characterize import characterize
from healthmesh.quality import insert_sample_population, run_quality


def build_sample(path: Path, persons: int, visits: int) -> HubDatabase:
    db = create_hub(str(path))
    insert_sample_population(db, persons=persons, visits_per_person=visits)
    return db


def build_synth(path: Path, persons: int) -> HubDatabase:
    from healthmesh.ingest import build_synthetic_hub  # healthmesh synth + ingest

    build_synthetic_hub(path, "gwangju", persons, 42, b"healthmesh-benchmark-key-0123456789abcdef")
    return connect(path)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def full_scan(db: HubDatabase) -> tuple[float, int]:
    """Read (hash) every value of every non-empty CDM table once; returns seconds and rows."""
    counts = db.table_counts([t for t in cdm_tables() if t not in VOCABULARY_TABLES])
    started = time.perf_counter()
    rows = 0
    for table, n in counts.items():
        if not n:
            continue
        columns = [r[0] for r in db.rows(f"DESCRIBE {table}")]
        reads = ", ".join(f'sum(hash("{c}"))' for c in columns)
        db.rows(f"SELECT {reads} FROM {table}")
        rows += n
    return time.perf_counter() - started, rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", type=Path, help="an existing hub database (read only)")
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--visits", type=int, default=12, help="visits per person (sample generator)")
    parser.add_argument("--generator", choices=["sample", "synth"], default="sample")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        if args.db:
            db = connect(args.db, read_only=True, threads=args.threads)
            source = str(args.db)
        elif args.generator == "synth":
            db = build_synth(work / "hub.duckdb", args.patients)
            source = f"healthmesh synth + ingest, {args.patients:,} patients"
        else:
            db = build_sample(work / "hub.duckdb", args.patients, args.visits)
            source = f"sample population, {args.patients:,} persons x {args.visits} visits"
        if args.threads and not args.db:
            db.execute(f"SET threads = {int(args.threads)}")
        build_s = time.perf_counter() - started
        persons = int(db.scalar("SELECT count(*) FROM person"))

        db.execute("SET enable_progress_bar = false")
        floor_s, rows = full_scan(db)
        cpu, started = _cpu(), time.perf_counter()
        report = run_quality(db, work / "out")
        quality_s, quality_cpu = time.perf_counter() - started, _cpu() - cpu
        cpu, started = _cpu(), time.perf_counter()
        document = characterize(db, work / "out", hub="benchmark")
        characterize_s, characterize_cpu = time.perf_counter() - started, _cpu() - cpu
        db.close()

    total = quality_s + characterize_s
    summary = report.summary()
    print(
        f"hub: {source} ({persons:,} persons, {rows:,} rows in non-empty CDM tables; built in {build_s:.1f} s)"
    )
    print(
        f"quality checks:   {quality_s:7.2f} s wall {quality_cpu:7.2f} s CPU"
        f"  ({summary['checks_run']} checks of {summary['check_types']} types)"
    )
    print(
        f"characterization: {characterize_s:7.2f} s wall {characterize_cpu:7.2f} s CPU"
        f"  ({len(document['analyses'])} analyses, charts included)"
    )
    print(f"together:         {total:7.2f} s wall  target < 120 s: {'met' if total < 120 else 'MISSED'}")
    print(f"floor (full scan):{floor_s:7.2f} s wall  (every value of every non-empty CDM table hashed once)")
    print(f"ratio together / floor: {total / floor_s:.1f}x")


if __name__ == "__main__":
    main()
