"""Benchmark of the diabetes task (t2dm-3y) on a generated hub of 100,000 patients.

Prints, each beside a baseline measured in the same run (as a ratio):
1. features + training (model search) + evaluation of t2dm-3y, against a plain scikit-learn
   LogisticRegression fitted once on the same training matrix;
2. batch scoring throughput (patients per second), from the CDM (features + prediction) and from the
   matrix alone, against scikit-learn's ``predict_proba`` of the fitted pipeline on the same matrix;
3. single-patient scoring latency (p50, p99) from a FHIR Bundle as the hub service scores it (a
   cleanly loading Bundle is mapped and its covariates computed in memory), against the database
   path on the same Bundles (ingest into a warm scratch CDM, the feature SQL) and against scoring a
   person already in a CDM.

Usage::

    .venv/bin/python benchmarks/risk.py                       # toy generator, 100,000 patients
    .venv/bin/python benchmarks/risk.py --db hub.duckdb       # an existing hub CDM (synth + ingest)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler

from healthmesh.cdm import connect, create_hub
from healthmesh.hubkeys import HubKeys
from healthmesh.privacy.release import Release
from healthmesh.risk import BundleScorer, PersonScorer, load_registered, score_batch, train_task
from healthmesh.risk.tasks import load_task
from healthmesh.risk.toycdm import populate_toy_cdm
from healthmesh.risk.train import task_data


def _bundles(folder: Path, count: int) -> list[dict]:
    """``count`` single-patient Bundles cut from a small population of the platform's generator."""
    import sys

    from healthmesh.ingest.synth import generate_population

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.risk.bundles import patient_bundle

    generate_population("busan", count, 3, folder / "ndjson")
    return [patient_bundle(folder / "ndjson", i)[1] for i in range(count)]


def _timed(call: Callable[[Any], object], items: list[Any]) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``call`` on each item."""
    walls, cpus = [], []
    for item in items:
        started, cpu = time.perf_counter(), time.process_time()
        call(item)
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db", type=Path, help="existing hub CDM; default: generate one with the toy generator"
    )
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--bundles", type=int, default=200, help="single-patient requests to time")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="write the generated hub here (reuse it with --db)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    work = Path(tempfile.mkdtemp(prefix="hm-risk-bench-"))

    if args.db is None:
        started = time.perf_counter()
        hub_path = args.keep or work / "hub.duckdb"
        db = create_hub(str(hub_path))
        populate_toy_cdm(db, args.patients, seed=1)
        db.close()
        print(
            f"setup: generated {args.patients:,} patients in {time.perf_counter() - started:.1f} s (not timed below)"
        )
    else:
        hub_path = args.db
    db = connect(hub_path, read_only=True, threads=args.threads)
    # Wall time on a shared machine depends on its other work; CPU time (all threads) is shown beside it.
    print(f"machine load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    persons = db.scalar("SELECT count(*) FROM person")

    # 1. The whole diabetes task.
    started, cpu = time.perf_counter(), time.process_time()
    release = Release(HubKeys(os.urandom(32)).release, 5)  # the card is a released document
    metrics = train_task(db, "t2dm-3y", work / "t2dm", seed=0, n_jobs=1, release=release)
    task_seconds, task_cpu = time.perf_counter() - started, time.process_time() - cpu
    data = task_data(db, load_task("t2dm-3y"), names=load_registered(work / "t2dm").feature_names)
    X, y = data.matrix, data.y
    started, cpu = time.perf_counter(), time.process_time()
    plain = make_pipeline(MaxAbsScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    plain_seconds, plain_cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"t2dm-3y on {persons:,} patients ({metrics['n'] + metrics['n_train']:,} in the population, "
        f"{X.shape[1]} features, model {metrics['model']}, test AUROC {metrics['auroc']:.3f}):"
    )
    print(
        f"  features + model search + evaluation: {task_seconds:.1f} s wall, {task_cpu:.1f} s CPU "
        f"(target < 300 s); plain scikit-learn LogisticRegression fit on the same matrix: {plain_seconds:.2f} s "
        f"wall, {plain_cpu:.2f} s CPU (ratio {task_seconds / plain_seconds:.1f}x wall, {task_cpu / plain_cpu:.1f}x CPU)"
    )

    # 2. Batch scoring.
    model = load_registered(work / "t2dm")
    started, cpu = time.perf_counter(), time.process_time()
    scores = score_batch(model, db, as_of=date(2020, 1, 1))
    cdm_seconds, cdm_cpu = time.perf_counter() - started, time.process_time() - cpu
    repeats = 5
    started = time.perf_counter()
    for _ in range(repeats):
        model.predict_proba(X)
    matrix_rate = repeats * X.shape[0] / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(repeats):
        plain.predict_proba(X)
    plain_rate = repeats * X.shape[0] / (time.perf_counter() - started)
    print(
        f"  batch scoring from the CDM (features + prediction): {len(scores) / cdm_seconds:,.0f} patients/s "
        f"({len(scores) / cdm_cpu:,.0f} per CPU-second); "
        f"from the matrix: {matrix_rate:,.0f} patients/s (target >= 100,000); scikit-learn predict_proba "
        f"on the same matrix: {plain_rate:,.0f} patients/s (ratio {matrix_rate / plain_rate:.2f})"
    )

    # 3. Single patient from a Bundle: what the hub service does per request (the in-memory path for a
    # cleanly loading Bundle), beside the database path on the same Bundles and a person already in a CDM.
    bundles = _bundles(work, args.bundles)
    as_of = date(2024, 6, 30)
    scorer, reference = BundleScorer(work / "t2dm"), BundleScorer(work / "t2dm", fast=False)
    scorer.score(bundles[0], as_of=as_of), reference.score(bundles[0], as_of=as_of)  # warm-up
    in_memory = sum(scorer.features(bundle, as_of) is not None for bundle in bundles)
    latencies, cpu_costs = _timed(lambda bundle: scorer.score(bundle, as_of), bundles)
    database_path, _ = _timed(lambda bundle: reference.score(bundle, as_of), bundles[:50])
    persons_scorer = PersonScorer(db, model)
    person_ids = [row[0] for row in db.rows("SELECT person_id FROM person ORDER BY person_id LIMIT 50")]
    in_cdm, _ = _timed(lambda person_id: persons_scorer.score(person_id, as_of), person_ids)
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    cpu50, cpu99 = np.percentile(cpu_costs, [50, 99]) * 1000
    d50, d99 = np.percentile(database_path, [50, 99]) * 1000
    c50, c99 = np.percentile(in_cdm, [50, 99]) * 1000
    print(
        f"  single patient from a FHIR Bundle ({len(latencies)} requests, {in_memory} on the in-memory path): "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms (target p99 < 50 ms), CPU per request p50 {cpu50:.2f} ms, "
        f"p99 {cpu99:.2f} ms; the database path on the same Bundles (ingest into a scratch CDM, feature SQL): "
        f"p50 {d50:.1f} ms, p99 {d99:.1f} ms (ratio p99 {d99 / p99:.0f}x); "
        f"a person already in the hub CDM: p50 {c50:.1f} ms, p99 {c99:.1f} ms"
    )
    reference.close()
    scorer.close()
    db.close()


if __name__ == "__main__":
    main()
