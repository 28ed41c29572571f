from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from healthmesh.cli import app

from .conftest import build_ili_hub

runner = CliRunner()


def test_backtest_then_score_from_the_command_line(flusight_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "bt"
    result = runner.invoke(
        app,
        ["forecast", "backtest", "--source", "flusight", "--target-data", str(flusight_file),
         "--reference-dates", "2023-10-14:2023-10-21", "--out", str(out), "--model", "baseline", "--model", "arima"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(list((out / "model-output").rglob("*.csv"))) == 4
    result = runner.invoke(
        app,
        ["forecast", "score", "--forecasts", str(out), "--truth", str(flusight_file),
         "--baseline", "healthmesh-baseline"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "scores.csv").set_index("model")
    assert table.loc["healthmesh-baseline", "rel_wis"] == 1.0
    assert table.loc["healthmesh-arima", "n"] == 3 * 4 * 2


def test_rt_and_regions_commands_write_charts(tmp_path: Path) -> None:
    hub = build_ili_hub(tmp_path / "hub.duckdb", {"KR-29": 80.0})
    result = runner.invoke(app, ["forecast", "rt", "--data", str(hub), "--out", str(tmp_path / "rt")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rt" / "rt_KR-29.png").is_file() and "KR-29: Rt" in result.output
    result = runner.invoke(
        app,
        [
            "forecast",
            "regions",
            "--db",
            f"gwangju={hub}",
            "--out",
            str(tmp_path / "reg"),
            "--threshold",
            "50",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "reg" / "fan_KR-29.png").is_file() and "P(> 50)" in result.output


def test_bad_input_is_one_red_line_and_exit_code_11(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("date,location,location_name,value\n2023-10-07,01,Alabama,-3\n")
    done = subprocess.run(
        [sys.executable, "-c", "from healthmesh.cli import main; main()", "forecast", "backtest",
         "--target-data", str(bad), "--reference-dates", "2023-10-14:2023-10-14", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 11
    assert "negative count" in done.stderr and "Traceback" not in done.stderr
