"""Ingest throughput: generate a regional population, load its Bulk NDJSON end to end, and compare
with parsing the same files with the ``fhir.resources`` models alone (the usual Python way).

    python benchmarks/ingest.py [--patients 100000] [--workdir benchmarks/out/ingest] [--real-world]

Prints resources per second end to end, peak memory of the ingest process, the parse-only
baseline's resources per second on the same files, and the ratio; DuckDB's bare scan of the same
files (``read_json_objects``, counting objects: the physical limit) and our share of it. With
``--real-world`` the same population is also written as hospitals send it (``urn:uuid`` and
absolute references, contained and referenced Medications, 1 record in 100 bad) and loaded: its
rate is given as a share of the clean rate (target: at least 75%). The two loads alternate
(``--rounds``, best of each), so that a busy host slows both alike.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import orjson

from healthmesh.ingest.synth import generate_population


def parse_only_rate(folder: Path, seconds: float) -> tuple[int, float]:
    """Parse lines of every file, in proportion, with fhir.resources for about ``seconds``."""
    from fhir.resources.R4B import get_fhir_model_class  # R4B: the R4 structures (the package default is R5)

    files = sorted(folder.glob("*.ndjson"))
    handles = [f.open("rb") for f in files]
    parsed, started = 0, time.perf_counter()
    try:
        while time.perf_counter() - started < seconds and handles:
            for handle in list(handles):
                for _ in range(200):
                    line = handle.readline()
                    if not line:
                        handles.remove(handle)
                        break
                    data = orjson.loads(line)
                    get_fhir_model_class(data["resourceType"]).model_validate(data)
                    parsed += 1
    finally:
        for handle in handles:
            handle.close()
    return parsed, time.perf_counter() - started


def bare_scan_rate(folder: Path) -> float:
    """Objects per second of DuckDB's bare scan of the NDJSON files (best of three, all cores)."""
    pattern = str(folder / "*.ndjson").replace("'", "''")
    best = 0.0
    with duckdb.connect() as con:
        for _ in range(3):
            started = time.perf_counter()
            count = con.execute(
                f"SELECT count(*) FROM read_json_objects('{pattern}', format='newline_delimited')"
            ).fetchone()[0]  # type: ignore[index]
            best = max(best, count / (time.perf_counter() - started))
    return best


def ingest_rate(folder: Path, db: Path) -> tuple[int, float, dict]:
    """Run ``healthmesh ingest`` on ``folder`` in a process: (records, seconds, report)."""
    env = {**os.environ, "HEALTHMESH_SECRET_KEY": "0f5b9d3a7e1c4f8b2d6a0e9c3f7b1d5a8e2c6f0b"}
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "healthmesh",
            "ingest",
            str(folder),
            "--db",
            str(db),
            "--hub",
            "gwangju",
            "--quiet",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - started
    if result.returncode not in (0, 1):  # 1: records rejected, each with its reason
        raise SystemExit(f"ingest of {folder} failed with exit code {result.returncode}")
    report = orjson.loads(Path(f"{db}.ingest-report.json").read_bytes())
    return report["totals"]["records"], seconds, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out/ingest"))
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
    parser.add_argument(
        "--real-world", action="store_true", help="also load the population in real-world forms"
    )
    parser.add_argument("--rounds", type=int, default=2, help="real-world mode: alternating loads of each")
    args = parser.parse_args()

    shutil.rmtree(args.workdir, ignore_errors=True)
    ndjson = args.workdir / "ndjson"
    started = time.perf_counter()
    counts = generate_population("gwangju", args.patients, args.seed, ndjson)
    resources = sum(counts.values())
    size = sum(f.stat().st_size for f in ndjson.iterdir())
    print(
        f"generated {args.patients:,} people: {resources:,} resources, {size / 1e9:.2f} GB NDJSON "
        f"in {time.perf_counter() - started:.1f} s"
    )

    _, seconds, _ = ingest_rate(ndjson, args.workdir / "hub.duckdb")
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 / 1024
    rate = resources / seconds
    bare = bare_scan_rate(ndjson)

    parsed, parse_seconds = parse_only_rate(ndjson, args.baseline_seconds)
    baseline = parsed / parse_seconds
    print(
        f"healthmesh ingest (end to end, NDJSON -> OMOP CDM): {resources:,} resources in {seconds:.1f} s "
        f"= {rate:,.0f} resources/s; peak memory {peak_gb:.2f} GB"
    )
    print(
        f"fhir.resources parse only (same files, {parsed:,} resources sampled): {baseline:,.0f} resources/s"
    )
    print(f"ratio: {rate / baseline:.1f}x   targets: >= 200,000 resources/s, >= 20x, peak < 4 GB")
    print(
        f"DuckDB bare scan (read_json_objects, count): {bare:,.0f} objects/s; ours is 1/{bare / rate:.1f} of it"
    )
    if args.real_world:
        real = args.workdir / "ndjson-real-world"
        generate_population("gwangju", args.patients, args.seed, real, real_world=True)
        clean_best, real_best = seconds, float("inf")
        for round_no in range(args.rounds):
            if round_no:
                clean_best = min(clean_best, ingest_rate(ndjson, args.workdir / f"hub-{round_no}.duckdb")[1])
            records, real_seconds, report = ingest_rate(
                real, args.workdir / f"hub-real-world-{round_no}.duckdb"
            )
            real_best = min(real_best, real_seconds)
        clean_rate, real_rate = resources / clean_best, records / real_best
        print(
            f"real-world mode: {records:,} records ({report['totals']['rejected']:,} rejected), best of "
            f"{args.rounds} alternating loads: {real_best:.1f} s = {real_rate:,.0f} resources/s; clean best "
            f"{clean_best:.1f} s = {clean_rate:,.0f}/s; real-world = {real_rate / clean_rate:.0%} of the clean rate "
            f"(target >= 75%); 1/{bare_scan_rate(real) / real_rate:.1f} of its bare scan"
        )


if __name__ == "__main__":
    main()
