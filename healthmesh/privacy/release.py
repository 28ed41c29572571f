"""The release path: every number that leaves a hub passes one ``Release``.

Suppression inside one answer does not protect a cell: two answers that differ by a few persons
give the small difference away by subtraction. The method here is the statistical offices'
(ABS TableBuilder, the ONS 2021 census): **a threshold plus cell-key perturbation**.

* Each person has a record key: a 64-bit keyed hash of ``person_id`` under the hub's release key
  (``HubKeys.release``), secret to the hub.
* A cell's key is the XOR of the record keys of its persons. The same set of persons has the same
  key, whichever query, phrasing, hub route or repetition produced it.
* The released value is ``n + e``: ``e`` is drawn from a fixed distribution (uniform on
  ``-max_noise .. max_noise``) by an HMAC of the cell key and ``n``. The same cell always gets the
  same noise, so repeating or rephrasing a query averages nothing away; two different cells get
  independent noise, so a difference of released values carries the noise of both.
* 0 stays 0 (an absent group is no secret); a true count of 1 .. ``min_count - 1`` is withheld
  (``None``); a perturbed count that would fall below ``min_count`` is released as ``min_count``.

A cell whose person set is not at hand (a fixed table of a fixed publication: characterization,
catalog, quality) takes its key from a label (``label_key``). Such a cell is not query-driven: a
caller cannot ask for it again in other words, so its one noise draw is all anyone gets. Anything a
caller phrases (cohorts, federated counts) must use ``person_key``.

What an attacker can still do, stated: with uniform noise on ``-D..D`` the difference of two
released cells is off by ``e1 - e2``; guessing the difference is exact with probability
``1 / (2D + 1)`` (``exact_difference_probability``), and never with certainty. A released count of
``n`` is within ``D`` of the truth (at most 3% off at ``n >= 100`` with the default ``D = 3``).
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
        if value == 0:
            return 0
        if value < self.min_count:
            return None
        return max(self.min_count, value + self.noise(cell_key, value))

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
        copy with ``count_col`` released (nullable Int64) and a ``suppressed`` column.
        """
        out = suppress_counts(table, count_col, group_cols, self.min_count)
        released = []
        for position, (value, hidden) in enumerate(zip(out[count_col], out[SUPPRESSED_COLUMN], strict=True)):
            if hidden or pd.isna(value):
                released.append(pd.NA)
                continue
            row = out.iloc[position]
            cell = int(row[key_col]) if key_col else self.label_key(label, *(row[c] for c in group_cols))
            released.append(self.count(int(value), cell))
        out[count_col] = pd.array(released, dtype="Int64")
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
