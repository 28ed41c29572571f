"""Disclosure control: the one gate for every aggregate that leaves a hub.

Rules (DataSHIELD and OHDSI practice):

* a count of persons or records between 1 and ``min_count - 1`` is suppressed (published as null);
  zero stays zero, since an absent group is no secret;
* complementary suppression: in every *line* of a table (the cells that share all group values but
  one, whose sum is a margin the reader may know or that the same release publishes), a single
  suppressed cell could be recovered by subtraction, so the smallest other cell of that line is
  suppressed too, repeated until no line holds exactly one suppressed cell. This is the line-wise
  heuristic of statistical offices; in very sparse tables (a line of one cell, a margin that is
  itself small) protection also needs every published margin to pass these functions;
* quantiles (and any other statistic) over fewer than ``min_count`` persons are suppressed.

These rules look inside one answer only; across answers, two released counts would give a small
difference away. So a hub releases counts through ``healthmesh.privacy.release.Release``, which
applies them and adds cell-key perturbation; ``assert_release_safe`` is the last check before a
document is written or sent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from healthmesh.errors import PrivacyError

__all__ = [
    "COUNT_KEYS",
    "DEFAULT_MIN_COUNT",
    "assert_release_safe",
    "check_min_count",
    "frame_records",
    "safe_count",
    "suppress_counts",
    "suppress_statistics",
]

DEFAULT_MIN_COUNT = 5

# Keys under which released documents carry counts of persons or records. A released document must
# not hold a value between 1 and min_count - 1 under any of them (see ``assert_release_safe``).
COUNT_KEYS = frozenset(
    {
        "count",
        "count_value",
        "denominator",
        "n_persons",
        "passing_rows",
        "person_count",
        "persons",
        "record_count",
        "records",
        "violating_rows",
        "visits",
    }
)

SUPPRESSED_COLUMN = "suppressed"


def check_min_count(min_count: int) -> int:
    """``min_count`` as a valid threshold, or a PrivacyError that says how to fix it."""
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise PrivacyError(f"min_count must be an integer >= 1; got {min_count!r} (the default is 5)")
    return min_count


def safe_count(n: int | None, min_count: int = DEFAULT_MIN_COUNT) -> int | None:
    """``n`` if it may be published, ``None`` when it lies between 1 and ``min_count - 1``."""
    check_min_count(min_count)
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return None
    value = int(n)
    if value < 0:
        raise PrivacyError(f"a count cannot be negative; got {value}")
    return None if 0 < value < min_count else value


def _lines(group_cols: Sequence[str]) -> list[list[str]]:
    """For each dimension, the columns that identify one line along it (empty: the whole table)."""
    return [[c for c in group_cols if c != dim] for dim in group_cols] or [[]]


def suppress_counts(
    table: pd.DataFrame,
    count_col: str,
    group_cols: Sequence[str],
    min_count: int = DEFAULT_MIN_COUNT,
) -> pd.DataFrame:
    """Primary and complementary suppression of a table of counts.

    ``table`` has one row per cell: the ``group_cols`` (its strata) and ``count_col``. Returns a
    copy where suppressed counts are ``<NA>`` (nullable Int64) and a boolean ``suppressed`` column
    tells which cells were withheld. Margins along every group column are assumed to be known, so
    the result is safe whatever totals the release also publishes (as long as each of them went
    through ``safe_count`` or this function too).
    """
    check_min_count(min_count)
    missing = [c for c in [count_col, *group_cols] if c not in table.columns]
    if missing:
        raise PrivacyError(
            f"suppress_counts: columns {missing} not in the table; it has {list(table.columns)}"
        )
    out = table.reset_index(drop=True).copy()
    counts = pd.to_numeric(out[count_col], errors="raise").fillna(0).astype("int64")
    if (counts < 0).any():
        raise PrivacyError(f"suppress_counts: negative counts in column {count_col!r}")
    suppressed = (counts > 0) & (counts < min_count)
    changed = bool(suppressed.any())
    while changed:
        changed = False
        for keys in _lines(list(group_cols)):
            groups = out.groupby(keys, dropna=False).groups if keys else {None: out.index}
            for index in groups.values():
                cells = pd.Index(index)
                if int(suppressed[cells].sum()) != 1:
                    continue
                open_cells = counts[cells][~suppressed[cells]]
                # The smallest positive cell; a zero cell (present as a row) only when none is left.
                candidates = open_cells[open_cells > 0]
                candidates = candidates if not candidates.empty else open_cells
                if candidates.empty:
                    # A line of one cell: its margin equals the cell, so publish that margin only
                    # through safe_count / suppress_counts too.
                    continue
                suppressed[candidates.idxmin()] = True
                changed = True
    out[count_col] = counts.astype("Int64").mask(suppressed)
    out[SUPPRESSED_COLUMN] = suppressed.to_numpy()
    return out


def suppress_statistics(
    table: pd.DataFrame,
    n_col: str,
    value_cols: Iterable[str],
    min_count: int = DEFAULT_MIN_COUNT,
) -> pd.DataFrame:
    """Null the statistics (quantiles, means...) of rows computed over fewer than ``min_count`` persons.

    ``n_col`` holds the number of persons behind each row; it is passed through ``safe_count``.
    """
    check_min_count(min_count)
    out = table.reset_index(drop=True).copy()
    n = pd.to_numeric(out[n_col]).fillna(0).astype("int64")
    small = n < min_count
    for col in value_cols:
        out[col] = out[col].astype("object").mask(small, None)
    out[n_col] = n.astype("Int64").mask((n > 0) & small)
    out[SUPPRESSED_COLUMN] = small.to_numpy()
    return out


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def frame_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a (suppressed) frame as JSON-ready dicts: ``<NA>``/NaN become ``None``."""
    return [{str(k): _plain(v) for k, v in row.items()} for row in table.to_dict(orient="records")]


def assert_release_safe(document: Any, min_count: int = DEFAULT_MIN_COUNT, path: str = "$") -> None:
    """Raise PrivacyError if any count in ``document`` lies between 1 and ``min_count - 1``.

    Walks dicts and lists; a count is an integer under one of ``COUNT_KEYS``.
    """
    check_min_count(min_count)
    if isinstance(document, Mapping):
        for key, value in document.items():
            where = f"{path}.{key}"
            if key in COUNT_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
                if 0 < value < min_count:
                    raise PrivacyError(
                        f"{where} = {value} is below the minimum cell count {min_count}; "
                        "suppress it with healthmesh.privacy.safe_count or suppress_counts"
                    )
            else:
                assert_release_safe(value, min_count, where)
    elif isinstance(document, list | tuple):
        for i, item in enumerate(document):
            assert_release_safe(item, min_count, f"{path}[{i}]")
