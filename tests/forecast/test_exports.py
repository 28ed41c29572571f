from __future__ import annotations

import inspect

import healthmesh.forecast as forecast
import healthmesh.forecast.models as models


def test_all_lists_the_public_names() -> None:
    for module in (forecast, models):
        public = {
            name
            for name, obj in vars(module).items()
            if not name.startswith("_")
            and not inspect.ismodule(obj)
            and getattr(obj, "__module__", module.__name__).startswith("healthmesh.forecast")
            and name != "annotations"
        }
        assert len(set(module.__all__)) == len(module.__all__)  # the order is ruff's (RUF022)
        assert set(module.__all__) == public
