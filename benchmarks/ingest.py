"""Ingest throughput: generate a regional population, load its Bulk NDJSON end to end, and compare
with parsing the same files with the ``fhir.resources`` models alone (the usual Python way).

    python benchmarks/ingest.py [--patients 100000] [--workdir benchmarks/out/ingest]

Prints resources per second end to end, peak memory of the ingest process, the parse-only
baseline's resources per second on the same files, and the ratio.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out/ingest"))
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
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

    db = args.workdir / "hub.duckdb"
    env = {**os.environ, "HEALTHMESH_SECRET_KEY": "0f5b9d3a7e1c4f8b2d6a0e9c3f7b1d5a8e2c6f0b"}
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "healthmesh",
            "ingest",
            str(ndjson),
            "--db",
            str(db),
            "--hub",
            "gwangju",
            "--quiet",
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 / 1024
    rate = resources / seconds

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


if __name__ == "__main__":
    main()
