"""Time-varying reproduction number by the renewal-equation method of Cori et al. (2013).

With incidence I_t and a discretised serial interval w_k, the infectiousness is
Lambda_t = sum_k I_{t-k} w_k. Assuming R constant over a window of ``window`` steps ending at t and a
Gamma(a, scale b) prior, the posterior of R_t is Gamma(a + sum I_s, scale 1 / (1/b + sum Lambda_s)),
the sums running over the window. Defaults follow EpiEstim: prior mean 5, sd 5; window 7 days.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from healthmesh.errors import ForecastError

__all__ = [
    "COVID19_SERIAL_INTERVAL",
    "INFLUENZA_SERIAL_INTERVAL",
    "discretise_serial_interval",
    "estimate_rt",
    "rt_by_region",
]

#: COVID-19 serial interval in days (mean, sd): Nishiura, Linton & Akhmetzhanov (2020), Int J Infect Dis.
COVID19_SERIAL_INTERVAL = (4.7, 2.9)
#: Seasonal influenza serial interval in days (mean, sd): Cowling et al. (2009), Epidemiology.
INFLUENZA_SERIAL_INTERVAL = (3.6, 1.6)


def discretise_serial_interval(
    mean: float, sd: float, step_days: float = 1.0, mass: float = 0.999
) -> np.ndarray:
    """Serial interval as probabilities per step: w[0] = 0, w[k] = P((k - 1/2) step < SI <= (k + 1/2) step).

    The continuous serial interval is a gamma distribution with the given mean and sd (in days); mass
    below one step is given to w[1] (nobody infects on the day of their own infection). Sums to 1.
    """
    if mean <= 0 or sd <= 0 or step_days <= 0:
        raise ForecastError(
            f"serial interval needs mean > 0, sd > 0 and step > 0; got {mean}, {sd}, {step_days}"
        )
    shape, scale = (mean / sd) ** 2, sd**2 / mean
    from scipy import stats  # SciPy loads where Rt is computed, not with the hub service

    dist = stats.gamma(shape, scale=scale)
    steps = max(2, int(np.ceil(dist.ppf(mass) / step_days)) + 1)
    edges = np.concatenate([[0.0], (np.arange(1, steps + 1) + 0.5) * step_days])
    w = np.concatenate([[0.0], np.diff(dist.cdf(edges))])
    return w / w.sum()


def estimate_rt(
    incidence: np.ndarray,
    serial_interval: np.ndarray,
    window: int = 7,
    prior_mean: float = 5.0,
    prior_sd: float = 5.0,
    levels: tuple[float, ...] = (0.025, 0.25, 0.5, 0.75, 0.975),
    min_infectiousness: float = 5.0,
) -> pd.DataFrame:
    """Posterior of R over sliding windows; one row per window end ``t`` (index into ``incidence``).

    Windows whose summed infectiousness is below ``min_infectiousness`` (about that many recent
    cases) are left out: between epidemics there is nothing to learn and the posterior would only
    repeat the prior.
    """
    from scipy import stats

    incidence = np.asarray(incidence, dtype=float)
    if (incidence < 0).any() or not np.isfinite(incidence).all():
        raise ForecastError("incidence must be finite and >= 0 for Rt estimation")
    if window < 1:
        raise ForecastError(f"`window` must be >= 1 step; got {window}")
    w = np.asarray(serial_interval, dtype=float)
    n = incidence.size
    # Lambda_t = sum_k I_{t-k} w_k; w[0] = 0, so today's cases never infect today.
    infectiousness = np.convolve(incidence, w)[:n]
    a_prior = (prior_mean / prior_sd) ** 2
    b_prior = prior_sd**2 / prior_mean
    rows = []
    for t in range(window, n):
        span = slice(t - window + 1, t + 1)
        lam = infectiousness[span].sum()
        if lam <= 0 or lam < min_infectiousness:
            continue
        shape = a_prior + incidence[span].sum()
        scale = 1.0 / (1.0 / b_prior + lam)
        row = {"t": t, "mean": shape * scale, "sd": np.sqrt(shape) * scale}
        row.update({f"q{q:g}": float(stats.gamma.ppf(q, shape, scale=scale)) for q in levels})
        rows.append(row)
    return pd.DataFrame(rows)


def rt_by_region(
    df: pd.DataFrame,
    si_mean: float = COVID19_SERIAL_INTERVAL[0],
    si_sd: float = COVID19_SERIAL_INTERVAL[1],
    window: int | None = None,
    *,
    exact: pd.DataFrame | None = None,
    min_cases: int = 0,
    withheld: pd.Series | None = None,
) -> pd.DataFrame:
    """Rt per series of a long frame (daily or weekly counts; the step is read from the data).

    Returns ``unique_id, ds, mean, lower, median, upper`` (95% credible interval); ``ds`` is the end
    of each window. ``window`` defaults to 7 steps for daily data and 2 for weekly.

    ``df`` may hold released (perturbed) counts; then ``exact`` holds the true counts of the same
    cells, and a window whose true case sum is below ``min_cases`` is left out, since its interval
    would describe a handful of persons; so is a window holding a week marked True in ``withheld``
    (a week the release path withheld enters as a stand-in value, not as a noisy count; see
    ``healthmesh.forecast.protect``).
    """
    truth = (
        exact.set_index(["unique_id", "ds"])["y"].astype(float) if exact is not None and min_cases > 0 else None
    )
    out = []
    for uid, group in df.sort_values(["unique_id", "ds"]).groupby("unique_id", sort=True):
        gaps = group["ds"].diff().dropna()
        step_days = float(gaps.mode().iloc[0] / pd.Timedelta(days=1)) if not gaps.empty else 1.0
        if not gaps.empty and (gaps != gaps.mode().iloc[0]).any():
            raise ForecastError(
                f"series {uid}: Rt needs evenly spaced counts; fill missing days or weeks with 0"
            )
        span = window if window is not None else (7 if step_days < 7 else 2)
        w = discretise_serial_interval(si_mean, si_sd, step_days)
        est = estimate_rt(group["y"].to_numpy(), w, window=span)
        if truth is not None and not est.empty:
            true_y = truth.reindex(pd.MultiIndex.from_arrays([group["unique_id"], group["ds"]])).fillna(0.0)
            case_sums = true_y.rolling(span, min_periods=1).sum().to_numpy()
            est = est[case_sums[est["t"].to_numpy()] >= min_cases]
        if withheld is not None and not est.empty:
            hidden = withheld.reindex(pd.MultiIndex.from_arrays([group["unique_id"], group["ds"]]))
            hidden_in_window = hidden.fillna(False).astype(float).rolling(span, min_periods=1).max().to_numpy()
            est = est[hidden_in_window[est["t"].to_numpy()] == 0]
        if est.empty:
            continue
        dates = group["ds"].to_numpy()
        out.append(
            pd.DataFrame(
                {
                    "unique_id": str(uid),
                    "ds": dates[est["t"].to_numpy()],
                    "mean": est["mean"],
                    "lower": est["q0.025"],
                    "median": est["q0.5"],
                    "upper": est["q0.975"],
                }
            )
        )
    if not out:
        if truth is not None or withheld is not None:
            # Every window was withheld: an empty answer, not an error (the data are fine).
            return pd.DataFrame(columns=["unique_id", "ds", "mean", "lower", "median", "upper"])
        raise ForecastError("no series had enough cases for Rt; give longer series with some cases")
    return pd.concat(out, ignore_index=True)
