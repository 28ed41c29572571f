"""Model outputs that do not invert: Rt intervals, forecast medians, model cards and validation reports.

The attacks: a public-health user of a hub served as a real process (production, strong secret,
token from ``POST /token``) inverts every Rt interval to the window's case sum, and reads each
baseline median as last week's count; a reader of a trained model's card and of a validation report
looks for small counts and for subgroups of few persons. Each is compared with the database's truth.
"""

from __future__ import annotations

import json
import math
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from healthmesh.api import start_hub_service
from healthmesh.cdm import connect, create_hub
from healthmesh.forecast import read_hub_ili
from healthmesh.forecast.protect import withheld_value
from healthmesh.hubkeys import HubKeys
from healthmesh.privacy.release import Release
from healthmesh.risk import train_task, validate_cdm
from healthmesh.risk.toycdm import populate_toy_cdm
from healthmesh.risk.train import task_data

MIN_COUNT = 5
REGIONS = 16
# Rt's default prior (EpiEstim: mean 5, sd 5) has shape 1: the posterior shape is 1 + the window's cases.
PRIOR_SHAPE = 1.0


# -- a hub with weekly ILI visits, served as a real process --------------------------------------------


def _ili_hub(path: Path, weeks: int = 60) -> Path:
    """REGIONS provinces, each with a seasonal ILI curve: epidemic weeks and quiet weeks of 0-4 visits."""
    rng = np.random.default_rng(7)
    db = create_hub(str(path))
    for r in range(REGIONS):
        db.execute("INSERT INTO location (location_id, city, state, zip) VALUES (?, ?, ?, '500')",
                   [r + 1, f"city{r}", f"KR-{10 + r}"])  # fmt: skip
        db.execute(
            """INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id,
               ethnicity_concept_id, location_id)
               SELECT ? * 1000 + i, 8507 + (i % 2) * 25, 1950 + i, 0, 0, ? FROM range(40) t(i)""",
            [r + 1, r + 1],
        )
        t = np.arange(weeks)
        mean = 2 + (20 + 10 * r) * np.exp(-0.5 * (((t + 4 * r) % 52 - 26) / 5.0) ** 2)
        counts = rng.poisson(mean)
        rows = [(w, k) for w, c in enumerate(counts) for k in range(int(c))]
        frame = pd.DataFrame(rows, columns=["week", "k"])
        frame["id"] = np.arange(len(frame)) + (r + 1) * 1_000_000
        frame["person_id"] = (r + 1) * 1000 + frame["k"] % 40
        frame["day"] = pd.Timestamp("2023-01-02") + pd.to_timedelta(frame["week"] * 7 + frame["k"] % 7, unit="D")
        db.con.register("ili_rows", frame)
        db.execute(
            """INSERT INTO condition_occurrence (condition_occurrence_id, person_id, condition_concept_id,
               condition_start_date, condition_type_concept_id, condition_source_value)
               SELECT id, person_id, 2000000001, CAST(day AS DATE), 32817, 'HM-ILI' FROM ili_rows"""
        )
        db.con.unregister("ili_rows")
    db.close()
    return path


@pytest.fixture(scope="module")
def served_ili_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], pd.Series]]:
    db = _ili_hub(tmp_path_factory.mktemp("ili") / "hub.duckdb")
    truth = _truth(db)  # read before the service holds the file
    secret = secrets.token_hex(32)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"HEALTHMESH_SECRET_KEY": secret, "HEALTHMESH_ENVIRONMENT": "production",
           "HEALTHMESH_MIN_CELL_COUNT": str(MIN_COUNT)}  # fmt: skip
    process, url = start_hub_service("gwangju", db, port, env=env, timeout_s=90)
    try:
        client_secret = HubKeys(secret.encode()).client_secret("gwangju", "public-health")
        form = {"grant_type": "client_credentials", "client_id": "public-health", "client_secret": client_secret}
        answer = httpx.post(f"{url}/token", data=form, timeout=30)
        assert answer.status_code == 200, answer.text
        yield url, {"Authorization": f"Bearer {answer.json()['access_token']}"}, truth
    finally:
        process.terminate()
        process.wait(30)


def _truth(db: Path) -> pd.Series:
    """The exact weekly ILI count per (region, week), from the hub's database."""
    with connect(db, read_only=True) as hub:
        return read_hub_ili(hub).set_index(["unique_id", "ds"])["y"]


def _shape_from_interval(lower: float, upper: float) -> float:
    """The attacker's step: the gamma shape whose 97.5% / 2.5% quantile ratio is upper / lower."""
    target = math.log(upper / lower)

    def gap(log_shape: float) -> float:
        a = math.exp(log_shape)
        return math.log(stats.gamma.ppf(0.975, a) / stats.gamma.ppf(0.025, a)) - target

    return math.exp(optimize.brentq(gap, math.log(0.5), math.log(1e6)))


def _exact_share_bound(trials: int, p: float) -> float:
    """How often a guess may be exact by chance: p plus four binomial standard deviations."""
    return p + 4 * math.sqrt(p * (1 - p) / trials)


def test_rt_intervals_do_not_invert_to_case_counts(served_ili_hub: tuple[str, dict[str, str], pd.Series]) -> None:
    url, headers, truth = served_ili_hub
    answer = httpx.get(f"{url}/forecasts/rt", params={"weeks": 104}, headers=headers, timeout=120)
    assert answer.status_code == 200, answer.text
    release = Release(b"\0" * 32, MIN_COUNT)  # only its noise distribution is used: the attacker knows it
    windows = exact = 0
    for region, rows in answer.json()["regions"].items():
        series = truth.loc[region]
        for row in rows:
            week = pd.Timestamp(row["week"])
            true_sum = int(series.loc[:week].tail(2).sum())  # weekly data: a two-week window
            # No window of fewer than MIN_COUNT cases is described at all.
            assert true_sum >= MIN_COUNT, (region, row)
            guess = round(_shape_from_interval(row["lower95"], row["upper95"]) - PRIOR_SHAPE)
            windows += 1
            exact += guess == true_sum
    # Unprotected, every guess is exact. Protected, a window sum carries the noise of its two weeks:
    # the guess is exact only when the two draws cancel, P(e1 + e2 = 0) = exact_difference_probability.
    # Consecutive windows share a week, so count half as many independent trials.
    p = release.exact_difference_probability()
    assert windows >= 100
    assert exact / windows <= _exact_share_bound(windows // 2, p), (exact, windows, p)


def test_baseline_median_is_not_last_weeks_count(served_ili_hub: tuple[str, dict[str, str], pd.Series]) -> None:
    url, headers, truth = served_ili_hub
    answer = httpx.get(f"{url}/forecasts", params={"model": "baseline", "horizon": 1}, headers=headers, timeout=120)
    assert answer.status_code == 200, answer.text
    regions = answer.json()["regions"]
    assert len(regions) == REGIONS
    release = Release(b"\0" * 32, MIN_COUNT)  # only its public parameters are used: the attacker knows them
    exact = small = 0
    for region, rows in regions.items():
        last = int(truth.loc[region].iloc[-1])
        median = rows[0]["q0.5"]
        exact += median == last
        if last < MIN_COUNT:
            small += 1
            # A withheld week enters the model as a constant: the median says "small", never which.
            assert median == withheld_value(release)
    p = 1 / (2 * release.max_noise + 1)  # one week's noise is 0
    assert small >= 1
    assert exact / len(regions) <= _exact_share_bound(len(regions), p), (exact, len(regions))


# -- a trained model's card and a validation report --------------------------------------------------------

RISK_COUNT_KEYS = {"n", "n_outcomes", "n_train", "outcomes", "rows", "events", "persons", "count", "records"}


def _toy_hub(path: Path, persons: int, seed: int) -> Path:
    db = create_hub(str(path))
    populate_toy_cdm(db, persons, seed=seed)
    db.close()
    return path


def _small_counts(document: Any, where: str = "$") -> list[str]:
    """Every count of 1 .. MIN_COUNT - 1 in a JSON document, with its path."""
    found = []
    if isinstance(document, dict):
        for key, value in document.items():
            if key in RISK_COUNT_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
                if 0 < value < MIN_COUNT:
                    found.append(f"{where}.{key} = {value}")
            else:
                found += _small_counts(value, f"{where}.{key}")
    elif isinstance(document, list):
        for i, item in enumerate(document):
            found += _small_counts(item, f"{where}[{i}]")
    return found


def test_card_and_validation_report_carry_no_small_count(tmp_path: Path) -> None:
    train_db = _toy_hub(tmp_path / "gyeonggi.duckdb", 1200, seed=11)
    valid_db = _toy_hub(tmp_path / "busan.duckdb", 400, seed=12)
    train_release = Release(HubKeys(secrets.token_bytes(32)).release, MIN_COUNT)
    valid_release = Release(HubKeys(secrets.token_bytes(32)).release, MIN_COUNT)
    with connect(train_db, read_only=True) as db:
        train_task(db, "t2dm-3y", tmp_path / "model", release=train_release, hub="gyeonggi", seed=3)
    with connect(valid_db, read_only=True) as db:
        validate_cdm(tmp_path / "model", db, tmp_path / "valid", release=valid_release, hub="busan")
        exact = task_data(db, __import__("healthmesh.risk", fromlist=["load_task"]).load_task("t2dm-3y"))
    for document in ("model/card.json", "model/metrics.json", "valid/validation_card.json", "valid/metrics.json"):
        assert _small_counts(json.loads((tmp_path / document).read_text())) == [], document
    # Subgroups over few persons (or few outcome events) are withheld: no metric describes them.
    report = json.loads((tmp_path / "valid" / "metrics.json").read_text())
    y = exact.y
    withheld = 0
    for name, labels in exact.groups().items():
        for level in sorted(set(np.asarray(labels).astype(str))):
            mask = np.asarray(labels).astype(str) == level
            n, k = int(mask.sum()), int(y[mask].sum())
            row = report["subgroups"][name][level]
            if min(k, n - k) < MIN_COUNT:
                withheld += 1
                assert row["auroc"] is None and row["eo_ratio"] is None and "withheld" in row, (name, level, row)
            elif row["n"] is not None and row["n_outcomes"] is not None:  # (a count may be withheld by its noise)
                assert abs(row["n"] - n) <= valid_release.max_noise and row["auroc"] is not None, (n, k, row)
    assert withheld >= 1  # the attack found subgroups of few persons to look at
    # Rates are computed from released counts: rate x n does not give the exact outcome count back.
    assert report["outcome_rate"] == round(report["n_outcomes"] / report["n"], 3)
