"""``healthmesh demo --no-serve``: the whole network end to end, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest


@pytest.mark.slow
def test_demo_no_serve_runs_every_step_and_writes_the_report(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    # No HEALTHMESH_* setting at all: production by default, and the demo makes its own strong secret.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHMESH_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "healthmesh",
            "demo",
            "--no-serve",
            "--workdir",
            str(workdir),
            "--patients",
            "1200",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    report = (workdir / "report.html").read_text()
    for section in (
        "Integration",
        "Quality and characterization",
        "Diabetes risk",
        "forecasts and Rt",
        "Federation",
    ):
        assert section in report
    assert report.count("<img") >= 6
    for hub in ("gwangju", "gyeonggi", "busan"):
        with duckdb.connect(str(workdir / hub / "hub.duckdb"), read_only=True) as con:
            assert con.execute("SELECT count(*) FROM person").fetchone()[0] == 1200
        assert (workdir / hub / "reports" / "quality.json").is_file()
        assert (workdir / hub / "reports" / "catalog.json").is_file()
    assert (workdir / "validation" / "t2dm-3y-busan" / "metrics.json").is_file()
    assert "federated study done" in result.stdout
    key_file = workdir / "keys" / ".healthmesh-secret-key"
    assert key_file.stat().st_mode & 0o077 == 0
