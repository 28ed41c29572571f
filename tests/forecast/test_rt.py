from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from healthmesh.errors import ForecastError
from healthmesh.forecast.rt import (
    COVID19_SERIAL_INTERVAL,
    discretise_serial_interval,
    estimate_rt,
    rt_by_region,
)


def simulate_renewal(r_path: np.ndarray, w: np.ndarray, seed: int, start: float = 20.0) -> np.ndarray:
    """Poisson renewal process: I_t ~ Poisson(R_t * sum_k I_{t-k} w_k)."""
    rng = np.random.default_rng(seed)
    incidence = np.zeros(r_path.size)
    incidence[0] = start
    for t in range(1, r_path.size):
        pressure = sum(incidence[t - k] * w[k] for k in range(1, min(t, len(w) - 1) + 1))
        incidence[t] = rng.poisson(r_path[t] * pressure)
    return incidence


def test_serial_interval_keeps_its_mean_and_sums_to_one() -> None:
    w = discretise_serial_interval(*COVID19_SERIAL_INTERVAL)
    assert w[0] == 0.0 and w.sum() == pytest.approx(1.0)
    assert (np.arange(w.size) * w).sum() == pytest.approx(COVID19_SERIAL_INTERVAL[0], abs=0.1)
    weekly = discretise_serial_interval(3.6, 1.6, step_days=7)
    assert weekly[1] > 0.9  # influenza: nearly all transmission within a week


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cori_interval_covers_the_true_rt_of_a_simulated_epidemic(seed: int) -> None:
    r_true = np.r_[np.full(40, 1.6), np.full(40, 0.8), np.full(40, 1.2)]
    w = discretise_serial_interval(*COVID19_SERIAL_INTERVAL)
    incidence = simulate_renewal(r_true, w, seed)
    window = 7
    est = estimate_rt(incidence, w, window=window)
    truth = np.array([r_true[t - window + 1 : t + 1].mean() for t in est["t"]])
    covered = (est["q0.025"] <= truth) & (truth <= est["q0.975"])
    assert covered.mean() >= 0.85
    # After each change the estimate follows the new value.
    late = est.set_index("t")
    assert late.loc[75, "mean"] == pytest.approx(0.8, abs=0.15)
    assert late.loc[115, "mean"] == pytest.approx(1.2, abs=0.15)


def test_rt_by_region_reads_long_frames_and_rejects_gaps() -> None:
    w = discretise_serial_interval(*COVID19_SERIAL_INTERVAL)
    days = pd.date_range("2020-02-01", periods=60, freq="D")
    frame = pd.DataFrame({"unique_id": "Daegu", "ds": days, "y": simulate_renewal(np.full(60, 1.3), w, 4)})
    out = rt_by_region(frame)
    assert {"unique_id", "ds", "mean", "lower", "median", "upper"} <= set(out.columns)
    assert (out["lower"] <= out["median"]).all() and (out["median"] <= out["upper"]).all()
    with pytest.raises(ForecastError, match="evenly spaced"):
        rt_by_region(frame.drop(index=[10, 11]))
