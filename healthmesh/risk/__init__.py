"""Risk prediction: flat tables, tasks, features, models, evaluation, model cards and the registry."""

from __future__ import annotations

from healthmesh.risk.tables import TableData, make_preprocessor, read_table

__all__ = ["TableData", "make_preprocessor", "read_table"]
