"""A federated count on the live network (always-on hubs) against today's start-a-network-per-study path.

Run: .venv/bin/python benchmarks/network.py [--patients 1500] [--queries 20] [--workdir work/bench-network]

Three generated hubs (gwangju, gyeonggi, busan). The figure: the median wall time of a federated
count of type 2 diabetes (concept 201826, with descendants, by sex and age band) as a researcher
sees it, from ``POST /studies`` to the finished study with all three hubs' released counts, on a
running network (coordinator + three ``hub serve --network`` processes, long-polling). Beside it,
measured in the same run on the same databases:

- the compute inside a hub: ``concept_counts`` with the hub's release path, the work each hub's
  agent does for the study (median over the queries of the slowest hub, which the study waits for);
- today's path: ``start_hub_network`` + ``federated_count`` (a SuperLink and three SuperNodes with
  TLS started for the study, one Flower run, torn down), once with its start-up and once the run
  alone on the started network.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from healthmesh.config import Settings, hub_keys
from healthmesh.network.client import NetworkClient
from healthmesh.network.launch import start_live_network
from healthmesh.privacy.release import Release

HUBS = ("gwangju", "gyeonggi", "busan")
CONCEPT = 201826
SECRET = b"benchmark-network-secret-0123456789abcdef"


def build_hubs(workdir: Path, patients: int) -> dict[str, Path]:
    from healthmesh.ingest import build_synthetic_hub

    dbs = {}
    for seed, hub in enumerate(HUBS, start=1):
        folder = workdir / "data" / hub
        folder.mkdir(parents=True, exist_ok=True)
        db = folder / "hub.duckdb"
        marker = folder / f"built-{patients}"
        if not marker.exists():
            db.unlink(missing_ok=True)
            print(f"building hub {hub} ({patients} people)", file=sys.stderr)
            build_synthetic_hub(db, hub, patients, seed, SECRET)
            marker.touch()
        dbs[hub] = db
    return dbs


def live_counts(workdir: Path, dbs: dict[str, Path], queries: int) -> list[float]:
    started = time.perf_counter()
    with start_live_network(workdir / "live", dbs, researchers=("bench",)) as network:
        print(
            f"network up (coordinator with TLS + 3 hubs) in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        request = {"kind": "count", "purpose": "benchmark", "concept_ids": [CONCEPT]}
        with NetworkClient(network.coordinator.url, network.researchers["bench"], ca=network.ca) as client:
            seconds = []
            for i in range(queries + 1):
                started = time.perf_counter()
                study = client.wait_finished(client.submit(request)["study_id"], 60)
                elapsed = time.perf_counter() - started
                if {p["state"] for p in study["hubs"].values()} != {"done"}:
                    raise SystemExit(f"the count did not finish at every hub: {study['hubs']}")
                if i:  # the first warms each hub (imports, the vocabulary's pages)
                    seconds.append(elapsed)
            print(f"network persons: {study['network']['persons']}", file=sys.stderr)
    return seconds


def hub_compute(dbs: dict[str, Path], queries: int) -> list[float]:
    """The agent's work for one count, at each hub, on its own database (the slowest hub per query)."""
    from healthmesh.cdm import connect
    from healthmesh.federation.cdm_tasks import concept_counts

    job = {"concept_ids": [CONCEPT], "include_descendants": True, "characterize": True}
    per_query = [0.0] * queries
    for db in dbs.values():
        release = Release(hub_keys(Settings(secret_key=None), db).release, 5)
        with connect(db) as hub:
            concept_counts(hub, job, release)  # warm, as the hub is
            for i in range(queries):
                started = time.perf_counter()
                concept_counts(hub, job, release)
                per_query[i] = max(per_query[i], time.perf_counter() - started)
    return per_query


def flower_count(workdir: Path, dbs: dict[str, Path]) -> tuple[float, float]:
    """Today's path: (start + run + stop, the run alone)."""
    from healthmesh.federation import federated_count, start_hub_network

    started = time.perf_counter()
    with start_hub_network(dbs, workdir / "flower", settings=Settings(secret_key=None)) as network:
        run_started = time.perf_counter()
        result = federated_count(network, [CONCEPT])
        run = time.perf_counter() - run_started
    total = time.perf_counter() - started
    print(f"flower persons: {result['network'].get('persons')}", file=sys.stderr)
    return total, run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1500)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=Path("work/bench-network"))
    parser.add_argument("--skip-flower", action="store_true", help="no start-a-network-per-study baseline")
    args = parser.parse_args()
    os.environ.pop("HEALTHMESH_SECRET_KEY", None)  # each hub keeps its key in the file beside its database
    workdir = args.workdir.resolve()
    dbs = build_hubs(workdir, args.patients)
    live = live_counts(workdir, dbs, args.queries)
    compute = hub_compute(dbs, args.queries)
    median, inside = statistics.median(live), statistics.median(compute)
    print(
        f"hubs: {len(dbs)} x {args.patients} people; {args.queries} counts (concept {CONCEPT}, by sex and age)"
    )
    print(
        f"live network, median count latency:   {median:8.3f} s  (p90 {sorted(live)[int(0.9 * len(live))]:.3f} s)"
    )
    print(f"compute inside the slowest hub:        {inside:8.3f} s  live / compute = {median / inside:6.1f}x")
    target = "met" if median < 2.0 else "NOT met"
    print(f"target: median under 2 s: {target}")
    if not args.skip_flower:
        total, run = flower_count(workdir, dbs)
        print(f"today's path, start + count + stop:    {total:8.3f} s  live / today = {median / total:8.4f} "
              f"({total / median:.0f}x faster)")  # fmt: skip
        print(f"today's path, the Flower run alone:    {run:8.3f} s  live / run   = {median / run:8.4f} "
              f"({run / median:.0f}x faster)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
