"""Disclosure control: small cells withheld, and no withheld cell recoverable by subtraction."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from healthmesh.errors import PrivacyError
from healthmesh.privacy import assert_release_safe, safe_count, suppress_counts, suppress_statistics


def _recovered_by_subtraction(
    released: pd.DataFrame, truth: pd.DataFrame, count_col: str, strata: list[str]
) -> list:
    """An attacker who knows every margin (line total) subtracts the visible cells of each line."""
    recovered = []
    for dim in strata:
        others = [s for s in strata if s != dim]
        for _, line in released.groupby(others) if others else [(None, released)]:
            hidden = line[line["suppressed"]]
            if len(hidden) == 1:
                margin = truth.loc[line.index, count_col].sum()
                guess = margin - line.loc[~line["suppressed"], count_col].sum()
                recovered.append((hidden.index[0], guess))
    return recovered


def test_safe_count_withholds_only_small_positive_counts() -> None:
    assert [safe_count(n, 5) for n in (0, 1, 4, 5, 120)] == [0, None, None, 5, 120]
    assert safe_count(2, 1) == 2
    with pytest.raises(PrivacyError, match="min_count"):
        safe_count(3, 0)
    with pytest.raises(PrivacyError, match="negative"):
        safe_count(-1)


def test_one_dimensional_table_hides_a_second_cell() -> None:
    truth = pd.DataFrame({"sex": ["F", "M", "U"], "n": [3, 40, 12]})
    released = suppress_counts(truth, "n", ["sex"], min_count=5)
    assert released["n"].isna().tolist() == [True, False, True]  # 3 withheld, 12 (the smallest other) too
    assert _recovered_by_subtraction(released, truth, "n", ["sex"]) == []
    assert truth["n"].tolist() == [3, 40, 12]  # the input is not modified


def test_subtraction_attack_fails_on_random_two_way_tables() -> None:
    rng = np.random.default_rng(7)
    for trial in range(40):
        regions, weeks = rng.integers(2, 5), rng.integers(2, 9)
        cells = list(itertools.product(range(regions), range(weeks)))
        truth = pd.DataFrame(cells, columns=["region", "week"])
        truth["visits"] = rng.choice([1, 2, 3, 4, 6, 9, 15, 40], size=len(truth))
        released = suppress_counts(truth, "visits", ["region", "week"], min_count=5)
        assert released.loc[truth["visits"] < 5, "visits"].isna().all()
        assert _recovered_by_subtraction(released, truth, "visits", ["region", "week"]) == [], trial


def test_attack_without_complementary_suppression_would_succeed() -> None:
    # The attack in the tests above is real: with primary suppression alone it recovers the cell.
    truth = pd.DataFrame({"sex": ["F", "M"], "n": [3, 40]})
    primary = truth.assign(suppressed=truth["n"] < 5)
    primary["n"] = primary["n"].mask(primary["suppressed"])
    assert _recovered_by_subtraction(primary, truth, "n", ["sex"]) == [(0, 3)]


def test_statistics_over_few_persons_are_withheld() -> None:
    table = pd.DataFrame({"concept": [1, 2], "n_persons": [3, 50], "median": [120.0, 130.0]})
    released = suppress_statistics(table, "n_persons", ["median"], min_count=5)
    assert released["median"].tolist() == [None, 130.0]
    assert released["n_persons"].isna().tolist() == [True, False]


def test_release_guard_names_the_offending_count() -> None:
    assert_release_safe({"rows": [{"count_value": 0}, {"count_value": 5}, {"iso_week": 3}]}, 5)
    with pytest.raises(PrivacyError, match=r"rows\[1\]\.persons = 2"):
        assert_release_safe({"rows": [{"persons": 9}, {"persons": 2}]}, 5)


def test_missing_columns_are_reported() -> None:
    with pytest.raises(PrivacyError, match="not in the table"):
        suppress_counts(pd.DataFrame({"n": [1]}), "n", ["region"])


def test_zero_cells_complement_when_no_positive_cell_is_left() -> None:
    truth = pd.DataFrame({"sex": ["F", "F", "M", "M"], "band": ["a", "b", "a", "b"], "n": [3, 0, 10, 20]})
    released = suppress_counts(truth, "n", ["sex", "band"], min_count=5)
    assert _recovered_by_subtraction(released, truth, "n", ["sex", "band"]) == []
    assert released["suppressed"].tolist() == [True, True, True, True]
