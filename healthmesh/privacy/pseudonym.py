"""Keyed pseudonyms: HMAC-SHA256 of a source identifier under the hub's secret key.

The same identifier always gives the same pseudonym at one hub (so loads are idempotent and
records link), and nobody without the key can go back or test a guess.
"""

from __future__ import annotations

import hashlib
import hmac

import duckdb
import pyarrow as pa

__all__ = ["PSEUDONYM_LENGTH", "pseudonym", "register_pseudonym_function"]

PSEUDONYM_LENGTH = 32


def pseudonym(key: bytes, value: str, context: str = "") -> str:
    """The hub's pseudonym of ``value`` (hex, 32 characters)."""
    digest = hmac.new(key, f"{context}|{value}".encode(), hashlib.sha256).hexdigest()
    return digest[:PSEUDONYM_LENGTH]


def register_pseudonym_function(con: duckdb.DuckDBPyConnection, key: bytes, context: str) -> None:
    """Make ``hm_pseudonym(VARCHAR) -> VARCHAR`` available in SQL on ``con`` (vectorised over Arrow)."""

    def _apply(values: pa.Array) -> pa.Array:
        out = [None if v is None else pseudonym(key, v, context) for v in values.to_pylist()]
        return pa.array(out, type=pa.string())

    try:
        con.remove_function("hm_pseudonym")
    except duckdb.Error:
        pass
    con.create_function("hm_pseudonym", _apply, ["VARCHAR"], "VARCHAR", type="arrow")  # type: ignore[call-overload]
