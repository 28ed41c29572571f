"""The hub's row cache between messages: plain Parquet, private, and the same rows back."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from healthmesh.federation.sitedata import load_site_data

from .conftest import make_site_table


def test_row_cache_is_private_parquet_and_round_trips(tmp_path: Path) -> None:
    table = make_site_table(tmp_path / "site.csv", 120, seed=4)
    config = {"table": str(table), "cache-dir": str(tmp_path / "cache")}
    job = {"source": "table", "target": "target"}
    first = load_site_data(config, job)
    (cached,) = (tmp_path / "cache").iterdir()
    assert cached.suffix == ".parquet" and cached.read_bytes()[:4] == b"PAR1"  # data, not pickled code
    assert cached.stat().st_mode & 0o077 == 0
    again = load_site_data(config, job)
    pd.testing.assert_frame_equal(first.X_train, again.X_train)
    pd.testing.assert_frame_equal(first.X_test, again.X_test)
    assert (first.y_train == again.y_train).all() and (first.train_ids == again.train_ids).all()
    assert (first.test_ids == again.test_ids).all()
