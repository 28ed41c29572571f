"""The candidate models' names: light to import (the task files check them) without the learners."""

from __future__ import annotations

__all__ = ["DEFAULT_MODELS", "MODEL_NAMES"]

MODEL_NAMES = ("logistic-l1", "logistic-l2", "lightgbm")
DEFAULT_MODELS = MODEL_NAMES
