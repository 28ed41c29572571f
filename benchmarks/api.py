"""Benchmark of the hub service: single-patient risk scoring over HTTP beside a trivial route.

Starts ``healthmesh hub serve --scoring-processes N`` (one uvicorn process on the hub database,
N scoring worker processes; default N = cores) on loopback over a generated hub with a trained
diabetes model (t2dm-3y), then runs a raw asyncio load generator (keep-alive connections, uvloop)
on loopback against

1. ``GET /health`` (no token, no data: the ceiling of this server on this machine), and
2. ``POST /risk/t2dm/score`` with one patient's FHIR Bundle (token check; a scoring worker process
   parses the Bundle, maps it in memory, computes its covariates, predicts and explains; audit row),

and prints throughput and p50/p99 latency of each, the ratio, and the CPU each request costs the
service, its workers and the load generator; beside them the latency of the same warm
``BundleScorer`` called in-process (no HTTP), which shows what the service adds. Target on the
2-core machine: >= 1,000 scored patients per second at p99 < 100 ms.

Usage::

    .venv/bin/python benchmarks/api.py                         # 3,000 generated patients, 30 s per phase, 48 in flight
    .venv/bin/python benchmarks/api.py --concurrency 16 --seconds 20 --scoring-processes 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import uvloop

from healthmesh.api import default_clients, start_hub_service
from healthmesh.cdm import connect
from healthmesh.hubkeys import HubKeys
from healthmesh.ingest import build_synthetic_hub
from healthmesh.ingest.synth import generate_population
from healthmesh.privacy.release import Release
from healthmesh.risk import BundleScorer, train_task

HUB = "busan"
_CONTENT_LENGTH = re.compile(rb"(?i)content-length: *(\d+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bundles(folder: Path, count: int) -> list[dict[str, Any]]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.risk.bundles import patient_bundle

    generate_population(HUB, count, 7, folder)
    return [patient_bundle(folder, i)[1] for i in range(count)]


def _requests(method: str, path: str, bodies: list[bytes] | None, headers: dict[str, str]) -> list[bytes]:
    """Whole HTTP/1.1 requests as bytes, built once: the load generator only writes and reads."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    if not bodies:
        return [("\r\n".join(lines) + "\r\n\r\n").encode()]
    lines.append("Content-Type: application/json")
    return [
        ("\r\n".join([*lines, f"Content-Length: {len(body)}"]) + "\r\n\r\n").encode() + body
        for body in bodies
    ]


async def _load(
    port: int, requests: list[bytes], concurrency: int, max_requests: int, seconds: float
) -> dict[str, float]:
    """``concurrency`` keep-alive connections, each sending its next request as soon as an answer arrives.

    A raw asyncio client (on uvloop): an HTTP client library would spend more CPU per request than
    the server's trivial route, on the same two cores, and the ceiling would measure the client.
    """
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal sent, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**22)
        try:
            while sent < max_requests and time.perf_counter() < deadline:
                request = requests[sent % len(requests)]
                sent += 1
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = _CONTENT_LENGTH.search(head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                latencies.append(time.perf_counter() - started)
                if head[9:12] != b"200":
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "per_second": len(latencies) / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
    }


def _stat_seconds(stat_file: str) -> tuple[int, float]:
    """The parent pid and the CPU seconds (user + system) a ``/proc/.../stat`` file reports."""
    fields = Path(stat_file).read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> tuple[float, float, float]:
    """CPU seconds of process ``pid``, of its live children, and of its main thread (the event loop)."""
    own = children = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            parent, seconds = _stat_seconds(f"/proc/{entry}/stat")
        except OSError:
            continue
        if int(entry) == pid:
            own = seconds
        elif parent == pid:
            children += seconds
    try:
        loop = _stat_seconds(f"/proc/{pid}/task/{pid}/stat")[1]
    except OSError:
        loop = 0.0
    return own, children, loop


def _measured(pid: int, run: Callable[[], dict[str, float]]) -> dict[str, float]:
    """``run``'s figures plus CPU milliseconds per request of the service, its workers and this process."""
    service, workers, loop = _cpu_seconds(pid)
    generator = time.process_time()
    result = run()
    service_after, workers_after, loop_after = _cpu_seconds(pid)
    per_request = 1000 / max(result["requests"], 1)
    result["service_cpu_ms"] = (service_after - service) * per_request
    # The event loop's thread; the rest of the service is its threads (audit writer, DuckDB, thread pool).
    result["loop_cpu_ms"] = (loop_after - loop) * per_request
    result["workers_cpu_ms"] = (workers_after - workers) * per_request
    result["generator_cpu_ms"] = (time.process_time() - generator) * per_request
    return result


def _line(name: str, r: dict[str, float]) -> str:
    return (
        f"  {name:<34} {r['per_second']:>9,.1f} req/s   p50 {r['p50']:>8.1f} ms   p99 {r['p99']:>8.1f} ms   "
        f"({r['requests']:,.0f} requests in {r['seconds']:.1f} s, {r['errors']:.0f} errors)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=3000, help="size of the generated hub")
    parser.add_argument("--bundles", type=int, default=40, help="distinct patient Bundles to cycle through")
    parser.add_argument("--concurrency", type=int, default=48, help="requests in flight (keep-alive clients)")
    parser.add_argument("--seconds", type=float, default=30.0, help="time limit per phase")
    parser.add_argument("--requests", type=int, default=20_000, help="request limit per phase")
    parser.add_argument("--scorers", type=int, default=2, help="warm database-path scorers in the service")
    parser.add_argument(
        "--scoring-processes", type=int, default=os.cpu_count() or 1, help="hub serve --scoring-processes"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    work = Path(tempfile.mkdtemp(prefix="hm-api-bench-"))
    secret = os.urandom(20).hex()  # a random master secret: production refuses a guessable one

    started = time.perf_counter()
    db_path = work / f"{HUB}.duckdb"
    build_synthetic_hub(db_path, HUB, args.patients, 1, HubKeys(secret.encode()).pseudonym)
    with connect(db_path, read_only=True) as db:
        release = Release(HubKeys(secret.encode()).release, 5)  # the card is a released document
        metrics = train_task(db, "t2dm-3y", work / "t2dm", hub=HUB, models=["logistic-l1"], release=release)
    bundles = _bundles(work / "bundles", args.bundles)
    bodies = [orjson.dumps(bundle) for bundle in bundles]
    print(
        f"setup (not timed below): {args.patients:,} generated patients, t2dm-3y {metrics['model']} "
        f"(test AUROC {metrics['auroc']:.3f}), {len(bundles)} patient Bundles, {time.perf_counter() - started:.0f} s"
    )

    # In-process baseline: the same warm BundleScorer called directly, no HTTP, no token, no audit.
    scorer = BundleScorer(work / "t2dm")
    scorer.score(bundles[0])
    direct = []
    for bundle in bundles:
        begun = time.perf_counter()
        scorer.score(bundle)
        direct.append(time.perf_counter() - begun)
    scorer.close()
    d50, d99 = np.percentile(np.array(direct) * 1000, [50, 99])

    port = _free_port()
    process, url = start_hub_service(
        HUB, db_path, port, models={"t2dm": work / "t2dm"}, env={"HEALTHMESH_SECRET_KEY": secret},
        scorers=args.scorers, scoring_processes=args.scoring_processes, log_file=work / "service.log",
    )  # fmt: skip
    try:
        client = default_clients(HubKeys(secret.encode()), HUB)["clinician"]
        token = httpx.post(
            f"{url}/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client.client_id,
                "client_secret": client.secret,
            },
        ).json()["access_token"]
        health = _requests("GET", "/health", None, {})
        score = _requests("POST", "/risk/t2dm/score", bodies, {"Authorization": f"Bearer {token}"})
        load = (args.concurrency, args.requests, args.seconds)
        uvloop.run(_load(port, health, args.concurrency, 200, 5))  # warm-up
        uvloop.run(_load(port, score, 2, 40, 60))  # warm-up
        ceiling = _measured(process.pid, lambda: uvloop.run(_load(port, health, *load)))
        scoring = _measured(process.pid, lambda: uvloop.run(_load(port, score, *load)))
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
    cores = os.cpu_count()
    print(
        f"hub service on loopback (1 uvicorn process, {args.scoring_processes} scoring worker processes), "
        f"load generator in this process on the same {cores} cores, concurrency {args.concurrency}; "
        f"machine load average before: {os.getloadavg()[0]:.1f}"
    )
    print(_line("GET /health (ceiling)", ceiling))
    print(_line("POST /risk/t2dm/score (1 patient)", scoring))
    print(
        f"  CPU per scored patient: service {scoring['service_cpu_ms']:.2f} ms (event loop "
        f"{scoring['loop_cpu_ms']:.2f} ms, other threads {scoring['service_cpu_ms'] - scoring['loop_cpu_ms']:.2f} ms), "
        "scoring workers "
        f"{scoring['workers_cpu_ms']:.2f} ms, load generator {scoring['generator_cpu_ms']:.2f} ms "
        f"(the ceiling: {ceiling['service_cpu_ms']:.2f} ms in the service)"
    )
    print(
        f"  in-process BundleScorer.score, sequential, no HTTP:          p50 {d50:>8.1f} ms   p99 {d99:>8.1f} ms   "
        f"({len(direct)} Bundles; {1000 / d50:,.1f} patients/s per core)"
    )
    print(
        f"  ratio scoring / ceiling: throughput {scoring['per_second'] / ceiling['per_second']:.4f}, "
        f"p99 {scoring['p99'] / ceiling['p99']:.1f}x"
    )
    held = scoring["per_second"] * 9 >= ceiling["per_second"] and scoring["p99"] <= 10 * ceiling["p99"]
    print(f"  target: throughput >= 1/9 of the ceiling's, p99 <= 10x the ceiling's: {'met' if held else 'MISSED'}")
    met = scoring["per_second"] >= 1000 and scoring["p99"] < 100
    print(
        f"  target >= 1,000 scored patients/s at p99 < 100 ms: {'met' if met else 'MISSED'} "
        f"({scoring['per_second']:,.1f} patients/s, p99 {scoring['p99']:,.0f} ms)"
    )


if __name__ == "__main__":
    main()
