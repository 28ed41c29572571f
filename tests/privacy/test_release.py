"""The release path: threshold plus cell-key perturbation, and what it tells an attacker."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from healthmesh.errors import PrivacyError
from healthmesh.privacy.release import Release

RELEASE = Release(b"release-unit-test-key-0123456789", 5)


def test_counts_are_withheld_below_the_threshold_and_perturbed_within_the_bound() -> None:
    for n in range(0, 300):
        shown = RELEASE.count(n, RELEASE.label_key("cell", n))
        if n < 5:
            assert shown is None  # zero too: "withheld" must not tell 0 from 1
        elif shown is not None:
            assert shown >= 5 and abs(shown - n) <= RELEASE.max_noise
        assert n in RELEASE.possible_counts(shown)
    assert RELEASE.count(None, 1) is None
    with pytest.raises(PrivacyError):
        RELEASE.count(-1, 1)


def test_the_band_just_above_the_threshold_is_sometimes_withheld() -> None:
    """A count of 5..7 is withheld when its noise takes it below 5: "withheld" then covers 0..7."""
    withheld = {n for n in range(5, 8) for k in range(200) if RELEASE.count(n, k) is None}
    assert withheld == {5, 6, 7}
    assert all(RELEASE.count(8, k) is not None for k in range(200))
    assert RELEASE.possible_counts(None) == range(0, 8)


def test_the_same_persons_get_the_same_noise_and_other_persons_other_noise() -> None:
    persons = np.arange(1000, 1120)
    key = RELEASE.person_key(persons)
    assert key == RELEASE.person_key(persons[::-1]) == RELEASE.person_key(np.concatenate([persons, persons]))
    assert RELEASE.count(120, key) == RELEASE.count(120, RELEASE.person_key(list(persons)))
    draws = {RELEASE.noise(RELEASE.person_key(np.delete(persons, i)), 119) for i in range(120)}
    assert draws == set(range(-3, 4))  # one person fewer: a fresh, independent draw
    other_hub = Release(b"another-hub-release-key-01234567", 5)
    assert other_hub.person_key(persons) != key


def test_noise_is_uniform_and_a_pair_is_exact_one_time_in_seven() -> None:
    noise = [RELEASE.noise(k, 100) for k in range(7000)]
    counts = np.bincount(np.array(noise) + 3)
    assert len(counts) == 7 and counts.min() > 850 and counts.max() < 1150
    assert RELEASE.noise_distribution() == {e: 1 / 7 for e in range(-3, 4)}
    assert RELEASE.exact_difference_probability() == pytest.approx(1 / 7)


def test_a_pair_or_a_triple_never_pins_a_small_cell() -> None:
    """Every way the noise can fall: the values consistent with the answers are never one."""
    for cell in range(1, 5):
        for big in (5, 6, 8, 20):
            for e1, e2, e3 in itertools.product(range(-3, 4), repeat=3):
                small = big + cell
                pair = [(small + e1, 1), (big + e2, -1)]
                triple = [(small + e1, 1), (big + e2, 1), (small + big - cell + e3, -1)]  # A + B - (A or B)
                for terms in (pair, triple):
                    if any(v < 5 for v, _ in terms):
                        continue  # withheld: nothing to subtract
                    low = sum(
                        s
                        * (RELEASE.possible_counts(v).start if s > 0 else RELEASE.possible_counts(v).stop - 1)
                        for v, s in terms
                    )
                    high = sum(
                        s
                        * (RELEASE.possible_counts(v).stop - 1 if s > 0 else RELEASE.possible_counts(v).start)
                        for v, s in terms
                    )
                    consistent = set(range(low, high + 1)) & set(RELEASE.possible_counts(None))
                    assert cell in consistent and len(consistent) > 1, (cell, big, terms)


def test_a_table_hides_what_the_noise_withheld_with_its_complements() -> None:
    table = pd.DataFrame({"sex": ["f", "m", "x"], "count": [40, 0, 3], "key": [1, 2, 3]})
    out = RELEASE.table(table, "count", ["sex"], key_col="key")
    assert out["count"].isna().tolist() == [True, True, True]  # 3 withheld; its complement 40; and the 0
    assert "key" not in out.columns and out["suppressed"].tolist() == [True, True, True]
    big = pd.DataFrame({"sex": ["f", "m"], "count": [400, 500]})
    released = RELEASE.table(big, "count", ["sex"], label="persons by sex")
    assert released["count"].notna().all()
    assert (released["count"] - big["count"]).abs().max() <= 3
    assert released.equals(RELEASE.table(big, "count", ["sex"], label="persons by sex"))  # one draw per cell
    assert released["count"].tolist() == [
        RELEASE.count(n, RELEASE.label_key("persons by sex", s)) for s, n in [("f", 400), ("m", 500)]
    ]
    total = RELEASE.table(pd.DataFrame({"n": [40]}), "n", [], label="total")
    assert total["n"].tolist() == [RELEASE.count(40, RELEASE.label_key("total"))]


def test_a_weak_configuration_is_refused() -> None:
    with pytest.raises(PrivacyError, match="16 bytes"):
        Release(b"short", 5)
    with pytest.raises(PrivacyError, match="max_noise"):
        Release(b"k" * 32, 3, max_noise=3)
    with pytest.raises(PrivacyError, match="below"):
        RELEASE.possible_counts(4)
