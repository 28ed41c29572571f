from __future__ import annotations

import tarfile
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from healthmesh.errors import ForecastError
from healthmesh.forecast.series import (
    mmwr_week_end,
    read_ds4c_daily,
    read_ds4c_weekly,
    read_flusight_target,
    read_flusight_vintages,
    read_ilinet,
    validate_series,
)


def _frame(**overrides: list) -> pd.DataFrame:
    base = {"unique_id": ["a", "a", "b"], "ds": ["2024-01-06", "2024-01-13", "2024-01-06"], "y": [1, 2, 3]}
    base.update(overrides)
    return pd.DataFrame(base)


def test_validate_series_accepts_a_clean_frame_and_sorts_it() -> None:
    out = validate_series(_frame(unique_id=["b", "a", "a"]))
    assert list(out["unique_id"]) == ["a", "a", "b"]
    assert out["ds"].dtype == "datetime64[ns]"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ds": ["2024-01-06", "2024-13-45", "2024-01-06"]}, "unreadable date"),
        ({"y": [1, -4, 3]}, "negative count"),
        ({"ds": ["2024-01-06", "2024-01-06", "2024-01-06"]}, "appears twice"),
        ({"y": [1, "many", 3]}, "non-numeric"),
    ],
)
def test_validate_series_rejects_malformed_input(overrides: dict, message: str) -> None:
    with pytest.raises(ForecastError, match=message):
        validate_series(_frame(**overrides))


def test_blank_counts_are_unreported_weeks_not_errors() -> None:
    out = validate_series(_frame(y=[1, None, 3]))
    assert len(out) == 2


def test_flusight_target_reads_quoted_and_unquoted_files(tmp_path: Path) -> None:
    quoted = tmp_path / "q.csv"
    quoted.write_text('"date","location","location_name","value"\n2023-10-14,"01","Alabama",26\n')
    plain = tmp_path / "p.csv"
    plain.write_text("X,date,location,location_name,value\n1,2023-10-07,1,Alabama,20\n")
    assert read_flusight_target(quoted).iloc[0].tolist()[:1] == ["01"]
    assert read_flusight_target(plain)["unique_id"].tolist() == ["01"]


def test_vintages_read_from_folder_and_tar(tmp_path: Path) -> None:
    folder = tmp_path / "vintages"
    folder.mkdir()
    for day in ("2023-10-07", "2023-10-14"):
        (folder / f"target-hospital-admissions_{day}.csv").write_text(
            f"date,location,location_name,value\n{day},01,Alabama,5\n"
        )
    archive = tmp_path / "v.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="vintages")
    for source in (folder, archive):
        vintages = read_flusight_vintages(source)
        assert list(vintages) == [pd.Timestamp("2023-10-07"), pd.Timestamp("2023-10-14")]
        assert vintages[pd.Timestamp("2023-10-14")]["y"].tolist() == [5.0]


def test_mmwr_week_ends_on_the_right_saturday() -> None:
    assert mmwr_week_end(2023, 40) == date(2023, 10, 7)
    assert mmwr_week_end(2024, 1) == date(2024, 1, 6)
    assert mmwr_week_end(2021, 1) == date(2021, 1, 9)


def test_ds4c_cumulative_counts_become_weekly_incidence(tmp_path: Path) -> None:
    days = pd.date_range("2020-01-20", "2020-02-06", freq="D")  # Monday .. Thursday two weeks later
    cumulative = [0, 1, 1, 2, 4, 4, 4, 6, 9, 8, 12, 12, 13, 15, 15, 15, 20, 21]  # one correction (9 -> 8)
    path = tmp_path / "TimeProvince.csv"
    pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "time": 0, "province": "Busan",
                  "confirmed": cumulative, "released": 0, "deceased": 0}).to_csv(path, index=False)  # fmt: skip
    daily = read_ds4c_daily(path)
    assert (daily["y"] >= 0).all() and daily["y"].sum() == 21
    weekly = read_ds4c_weekly(path)
    # Weeks end on Saturdays 2020-01-25 and 2020-02-01; the week ending 2020-02-08 is incomplete.
    assert weekly["ds"].dt.strftime("%Y-%m-%d").tolist() == ["2020-01-25", "2020-02-01"]
    assert weekly["y"].tolist() == [4.0, 9.0]  # cumulative 4 by 01-25, 13 by 02-01


def test_shared_ds4c_has_all_17_provinces(shared_data: Path) -> None:
    weekly = read_ds4c_weekly(shared_data / "korea-covid19" / "ds4c-official" / "TimeProvince.csv")
    assert weekly["unique_id"].nunique() == 17
    assert (weekly["ds"].dt.weekday == 5).all()


def test_shared_ilinet_plus_is_weekly_per_state(shared_data: Path) -> None:
    folder = shared_data / "flusight" / "ilinet"
    ili = read_ilinet(folder / "ILINet_state.csv.gz", folder / "ICL_NREVSS_Clinical_Labs_state.csv.gz")
    assert ili["unique_id"].nunique() >= 45
    assert (ili["ds"].dt.weekday == 5).all()
    assert ili["y"].max() < 100
