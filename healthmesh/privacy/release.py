"""The release path: every number that leaves a hub passes one ``Release``.

Suppression inside one answer does not protect a cell: two answers that differ by a few persons
give the small difference away by subtraction. The method here is the statistical offices'
(ABS TableBuilder, the ONS 2021 census): **a threshold plus cell-key perturbation**.

* Each person has a record key: a 64-bit keyed hash of ``person_id`` under the hub's release key
  (``HubKeys.release``), secret to the hub.
* A cell's key is the XOR of the record keys of its persons. The same set of persons has the same
  key, whichever query, phrasing, hub route or repetition produced it.
* The perturbed value is ``n + e``: ``e`` is drawn from a fixed distribution (uniform on
  ``-max_noise .. max_noise``) by an HMAC of the cell key and ``n``. The same cell always gets the
  same noise, so repeating or rephrasing a query averages nothing away; two different cells get
  independent noise, so a difference of released values carries the noise of both.
* A count is released only when both the true count and the perturbed one reach ``min_count``;
  otherwise it is withheld (``None``), zero included. So "withheld" says only that the true count
  lies in ``0 .. min_count - 1 + max_noise`` (``possible_counts(None)``), and a released ``v`` only
  that it lies in ``max(min_count, v - D) .. v + D``.

Why zero and the band just above the threshold are withheld too (a change from the textbook rule
"0 stays 0, 1 .. min_count - 1 withheld"): with bounded noise an attacker intersects intervals.
If "withheld" meant exactly ``1 .. min_count - 1``, a difference of two released cells that came
out ``2D`` off would land on an end of that range and pin a cell of 1 (or of ``min_count - 1``)
exactly, for about one attack in ``(2D + 1)^2``. With the withheld range ``0 .. min_count - 1 + D``
every cell of 1 .. ``min_count - 1`` lies strictly inside it, and the interval a pair or a triple of
released cells gives (at least ``4D + 1`` wide) can never shrink to one value there.

A cell whose person set is not at hand (a fixed table of a fixed publication: characterization,
catalog, quality) takes its key from a label (``label_key``). Such a cell is not query-driven: a
caller cannot ask for it again in other words, so its one noise draw is all anyone gets. Anything a
caller phrases (cohorts, federated counts) must use ``person_key``.

What an attacker can still do, stated: with uniform noise on ``-D..D`` the difference of two
released cells is off by ``e1 - e2``; guessing the difference is exact with probability
``1 / (2D + 1)`` (``exact_difference_probability``), and a pair or a triple never pins a small cell
with certainty. Many different pairs aimed at the same cell narrow it further (bounded noise has no
budget); the threshold keeps each pair's members large, and the audit log shows the pattern. A
released count of ``n`` is within ``D`` of the truth (at most 3% off at ``n >= 100`` with the
default ``D = 3``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from healthmesh.errors import PrivacyError
from healthmesh.privacy.disclosure import SUPPRESSED_COLUMN, check_min_count, suppress_counts

__all__ = ["DEFAULT_MAX_NOISE", "Release"]

DEFAULT_MAX_NOISE = 3
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of 64-bit integers that spreads every input bit."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@dataclass(frozen=True)
class Release:
    """A hub's disclosure control: ``count`` for one number, ``table`` for a table of counts."""

    key: bytes
    min_count: int = 5
    max_noise: int = DEFAULT_MAX_NOISE

    def __post_init__(self) -> None:
        check_min_count(self.min_count)
        if len(self.key) < 16:
            raise PrivacyError("the release key must be at least 16 bytes (derive it with HubKeys.release)")
        if not 1 <= self.max_noise < self.min_count:
            raise PrivacyError(f"max_noise must be between 1 and min_count - 1; got {self.max_noise}")

    # -- cell keys -------------------------------------------------------------------------------

    def _key_words(self) -> tuple[np.uint64, np.uint64]:
        digest = hashlib.sha256(b"record-key|" + self.key).digest()
        return np.uint64(int.from_bytes(digest[:8], "little")), np.uint64(
            int.from_bytes(digest[8:16], "little")
        )

    def record_keys(self, person_ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Each person's record key (uint64), keyed by the hub's release key."""
        ids = np.asarray(list(person_ids) if not isinstance(person_ids, np.ndarray) else person_ids)
        k1, k2 = self._key_words()
        return _mix(_mix(ids.astype(np.int64).view(np.uint64) ^ k1) ^ k2)

    def person_key(self, person_ids: Iterable[int] | np.ndarray) -> int:
        """The cell key of a set of persons: the XOR of their record keys (duplicates count once)."""
        ids = np.unique(
            np.asarray(list(person_ids) if not isinstance(person_ids, np.ndarray) else person_ids)
        )
        if ids.size == 0:
            return 0
        return int(np.bitwise_xor.reduce(self.record_keys(ids)))

    def label_key(self, *parts: object) -> int:
        """The cell key of a fixed publication's cell, from its label (see the module docstring)."""
        text = "|".join(str(p) for p in parts).encode()
        return int.from_bytes(hmac.digest(self.key, b"label|" + text, "sha256")[:8], "little")

    # -- release ---------------------------------------------------------------------------------

    def noise(self, cell_key: int, n: int) -> int:
        """The perturbation of a cell: the same for the same (cell, n), uniform on -D..D."""
        digest = hmac.digest(self.key, f"noise|{cell_key}|{n}".encode(), "sha256")
        return int.from_bytes(digest[:8], "little") % (2 * self.max_noise + 1) - self.max_noise

    def count(self, n: int | float | None, cell_key: int) -> int | None:
        """The released value of a count ``n`` whose cell key is ``cell_key`` (None: withheld)."""
        if n is None or (isinstance(n, float) and np.isnan(n)):
            return None
        value = int(n)
        if value < 0:
            raise PrivacyError(f"a count cannot be negative; got {value}")
        if value < self.min_count:
            return None
        perturbed = value + self.noise(cell_key, value)
        # Withheld, not raised to min_count: "withheld" must cover the band above the threshold too.
        return perturbed if perturbed >= self.min_count else None

    def possible_counts(self, released: int | None) -> range:
        """The true counts a released value (None: withheld) is consistent with, for any cell key."""
        if released is None:
            return range(0, self.min_count + self.max_noise)
        if released < self.min_count:
            raise PrivacyError(f"{released} cannot have been released: it is below {self.min_count}")
        return range(max(self.min_count, released - self.max_noise), released + self.max_noise + 1)

    def table(
        self,
        table: pd.DataFrame,
        count_col: str,
        group_cols: Sequence[str],
        *,
        key_col: str | None = None,
        label: str = "",
    ) -> pd.DataFrame:
        """A table of counts as it may leave the hub: threshold, complementary suppression, perturbation.

        Each row's cell key is ``key_col`` (person-set keys the caller computed, e.g. with SQL or
        ``person_key``) or, for a fixed publication, ``label_key(label, *group values)``. Returns a
        copy with ``count_col`` released (nullable Int64) and a ``suppressed`` column (every withheld
        cell: below the threshold, complementary, or perturbed below it).
        """
        base = table.reset_index(drop=True)
        if key_col:
            keys = [int(k) for k in base[key_col]]
        else:
            strata = zip(*(base[c] for c in group_cols), strict=True) if group_cols else [()] * len(base)
            keys = [self.label_key(label, *row) for row in strata]
        counts = pd.to_numeric(base[count_col], errors="raise").fillna(0).astype("int64").tolist()
        if any(n < 0 for n in counts):
            raise PrivacyError(f"a count cannot be negative; column {count_col!r} has one")
        shown = [self.count(n, k) for n, k in zip(counts, keys, strict=True)]
        # A cell the noise withheld (true count at or above the threshold) needs its complements too.
        forced = [1 if n >= self.min_count and v is None else n for n, v in zip(counts, shown, strict=True)]
        out = suppress_counts(base.assign(**{count_col: forced}), count_col, group_cols, self.min_count)
        released = [
            pd.NA if hidden or v is None else v
            for v, hidden in zip(shown, out[SUPPRESSED_COLUMN], strict=True)
        ]
        out[count_col] = pd.array(released, dtype="Int64")
        out[SUPPRESSED_COLUMN] = out[count_col].isna().to_numpy()
        if key_col:
            out = out.drop(columns=[key_col])
        return out

    # -- what the method allows an attacker ------------------------------------------------------

    def noise_distribution(self) -> dict[int, float]:
        """The perturbation's distribution (value: probability)."""
        width = 2 * self.max_noise + 1
        return {e: 1 / width for e in range(-self.max_noise, self.max_noise + 1)}

    def exact_difference_probability(self) -> float:
        """P(e1 == e2): how often the difference of two released cells happens to be the true one."""
        return sum(p * p for p in self.noise_distribution().values())
