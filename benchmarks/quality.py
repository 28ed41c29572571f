"""Benchmark: the full quality check set (ours and OHDSI DQD v2.8's) on a hub of 100,000 persons.

Prints the time of ``run_quality`` (every check, batched: the checks of one table and type share
one scan) beside the same checks executed check by check, each as its own query on the same
engine (what DQD does: one SQL per check), with the ratio; and beside a plain full scan of the
same tables (every column of every non-empty CDM table read once: the floor any checker pays).
Check by check runs each check DQD's way: its violating rows counted by one query, its
denominator by another (joining only what the denominator reads, as DQD's templates do), once at
the connection's threads and once at one thread; the faster is the baseline. The batched run is
timed the same two ways, the best of ``--repeat`` runs each; the faster is compared. The two are
taken in turns (a batched run, then a slice of the check-by-check run, ``--repeat`` times): the
machine is shared and its load moves by the minute, so both are measured over the same minutes.
Targets: the full check set under 60 s at 100,000 persons, at least 10x faster than check by check.
``--characterize`` also times the characterization (the earlier target: both under 2 minutes).

    python benchmarks/quality.py                       # builds a 100,000-person hub (see --generator)
    python benchmarks/quality.py --db hubs/gwangju.duckdb   # an existing (generated) hub

``--generator synth`` builds the hub with ``healthmesh synth`` + ``healthmesh ingest`` (slow to
generate); ``sample`` (the default) with the set-based sample population of healthmesh.quality.
``--per-check-share 0.2`` times one check in 5 by itself and scales the time up (stated as such):
check by check at 100,000 persons takes long.
"""

from __future__ import annotations

import argparse
import re
import resource
import secrets
import tempfile
import time
from pathlib import Path

from healthmesh.cdm import HubDatabase, cdm_tables, connect, create_hub
from healthmesh.cdm.vocabulary import VOCABULARY_TABLES
from healthmesh.characterize import characterize
from healthmesh.privacy.release import Release
from healthmesh.quality import insert_sample_population, present_columns, run_quality
from healthmesh.quality.checks import Check, build_checks
from healthmesh.quality.dqd import dqd_checks, to_check
from healthmesh.quality.report import QualityReport
from healthmesh.quality.thresholds import load_thresholds


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


def every_check(db: HubDatabase) -> list[Check]:
    """The checks ``run_quality`` counts (ours and DQD's; the catalog-answered structural ones aside)."""
    present = present_columns(db)
    ours = build_checks(db, load_thresholds(), present)
    theirs = []
    for spec in dqd_checks():
        table, column = spec.table.lower(), (spec.field or "").lower()
        if spec.name in ("cdmTable", "cdmField") or table not in present:
            continue
        if column and column not in present[table]:
            continue
        theirs.append(to_check(spec))
    return [c for c in ours + theirs if all(t in present for t in (c.table, *c.needs))]


_ALIAS = re.compile(r"\)?\s(\w+)\s+ON\s")


def dqd_style_sql(c: Check) -> str:
    """A check as DQD writes it: its violating rows counted, then its denominator, each by itself.

    As in DQD's templates, the denominator query joins only what its own predicate reads (most
    are a plain count of the table, which DuckDB answers almost from metadata).
    """
    source = f"{c.source} {' '.join(c.joins)}".rstrip()
    needed = [j for j in c.joins if (m := _ALIAS.search(j)) and f"{m.group(1)}." in c.denominator]
    denominator_source = f"{c.source} {' '.join(needed)}".rstrip()
    counted = f"count({c.counted})"
    where = "" if c.denominator == "TRUE" else f" WHERE {c.denominator}"
    return (
        f"SELECT (SELECT {counted} FROM {source} WHERE ({c.violating}) AND ({c.denominator})),"
        f" (SELECT {counted} FROM {denominator_source}{where})"
    )


def _own_queries(db: HubDatabase, checks: list[Check]) -> tuple[float, float]:
    """Run each check DQD's way, as its own queries; wall and CPU seconds."""
    cpu, started = _cpu(), time.perf_counter()
    for c in checks:
        try:
            db.rows(dqd_style_sql(c))
        except Exception:  # noqa: BLE001 - a check in error costs its attempt, as in DQD
            pass
    return time.perf_counter() - started, _cpu() - cpu


Timing = dict[int, tuple[float, float]]  # DuckDB threads -> (wall s, CPU s)


def in_turns(
    db: HubDatabase, checks: list[Check], share: float, repeat: int
) -> tuple[Timing, Timing, int, QualityReport]:
    """Batched runs and check by check, taken in turns, at the connection's threads and at one thread.

    The development machine is shared and its load moves from minute to minute: each batched run
    is followed by a slice of the check-by-check run, so that both are measured over the same
    minutes. Batched: the best of ``repeat`` runs. Check by check: every ``1/share``-th check, in
    ``repeat`` slices, summed and scaled up to all checks. Returns both per thread setting, the
    checks timed one by one, and the last batched report.
    """
    configured = int(db.scalar("SELECT current_setting('threads')"))
    chosen = checks[:: max(1, round(1 / share))]
    scale = len(checks) / len(chosen)
    slices = [chosen[i::repeat] for i in range(repeat)]
    batched: Timing = {}
    single: Timing = {}
    report = None
    for threads in sorted({configured, 1}, reverse=True):
        db.execute(f"SET threads = {threads}")
        best_wall = best_cpu = float("inf")
        one_wall = one_cpu = 0.0
        for part in slices:
            cpu, started = _cpu(), time.perf_counter()
            report = run_quality(db, release=Release(secrets.token_bytes(32), 5))
            best_wall = min(best_wall, time.perf_counter() - started)
            best_cpu = min(best_cpu, _cpu() - cpu)
            wall, cpu_s = _own_queries(db, part)
            one_wall, one_cpu = one_wall + wall, one_cpu + cpu_s
        batched[threads] = (best_wall, best_cpu)
        single[threads] = (one_wall * scale, one_cpu * scale)
    db.execute(f"SET threads = {configured}")
    assert report is not None
    return batched, single, len(chosen), report


def _settings(timing: Timing) -> str:
    return ", ".join(
        f"{t} thread{'s' if t > 1 else ''}: {w:.2f} s wall {c:.2f} s CPU" for t, (w, c) in timing.items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", type=Path, help="an existing hub database (read only)")
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--visits", type=int, default=12, help="visits per person (sample generator)")
    parser.add_argument("--generator", choices=["sample", "synth"], default="sample")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    parser.add_argument("--characterize", action="store_true", help="also time the characterization")
    parser.add_argument("--repeat", type=int, default=3, help="batched runs; the best is reported")
    parser.add_argument(
        "--per-check-share", type=float, default=1.0, help="share of checks timed one by one (0..1]"
    )
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
        checks = every_check(db)
        share = min(1.0, max(args.per_check_share, 1e-6))
        repeat = max(1, args.repeat)
        batched, single, timed, report = in_turns(db, checks, share, repeat)
        quality_s = min(w for w, _ in batched.values())
        quality_cpu = min(c for _, c in batched.values())
        single_s = min(w for w, _ in single.values())
        single_cpu = min(c for _, c in single.values())
        started = time.perf_counter()
        report.write(work / "out")  # the released quality.json and quality.html
        report.write_dqd(work / "out" / "dqd_results.json")
        write_s = time.perf_counter() - started
        characterize_s = 0.0
        if args.characterize:
            started = time.perf_counter()
            document = characterize(
                db, work / "out", release=Release(secrets.token_bytes(32), 5), hub="benchmark"
            )
            characterize_s = time.perf_counter() - started
        db.close()

    summary = report.summary()
    dqd = report.dqd_overview()
    print(
        f"hub: {source} ({persons:,} persons, {rows:,} rows in non-empty CDM tables; built in {build_s:.1f} s)"
    )
    print(
        f"full check set, batched: {quality_s:7.2f} s wall {quality_cpu:7.2f} s CPU"
        f"  ({summary['checks_run']} of our checks + {dqd['countTotal']} DQD checks;"
        f" {len(checks)} counted by SQL)  target < 60 s: {'met' if quality_s < 60 else 'MISSED'}"
    )
    print(f"  the faster of: {_settings(batched)}")
    print(
        f"writing the reports:     {write_s:7.2f} s wall  (released quality.json + .html, DQD's result file)"
    )
    estimate = "" if timed == len(checks) else f" (estimated from {timed} of {len(checks)} checks)"
    print(f"check by check (DQD's way): {single_s:7.2f} s wall {single_cpu:7.2f} s CPU{estimate}")
    print(f"  the faster of: {_settings(single)}")
    ratio = single_s / quality_s
    print(
        f"ratio check by check / batched: {ratio:.1f}x wall, {single_cpu / quality_cpu:.1f}x CPU"
        f"  target >= 10x: {'met' if ratio >= 10 else 'MISSED'}"
    )
    print(
        f"floor (full scan):       {floor_s:7.2f} s wall  (every value of every non-empty CDM table hashed once)"
    )
    print(f"ratio batched / floor: {quality_s / floor_s:.1f}x")
    if args.characterize:
        print(
            f"characterization: {characterize_s:7.2f} s wall ({len(document['analyses'])} analyses);"
            f" with quality {quality_s + characterize_s:.1f} s"
        )


if __name__ == "__main__":
    main()
