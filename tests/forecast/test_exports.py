from __future__ import annotations

import inspect

import healthmesh.forecast as forecast
import healthmesh.forecast.models as models


def test_all_lists_the_public_names_sorted() -> None:
    for module in (forecast, models):
        public = {
            name
            for name, obj in vars(module).items()
            if not name.startswith("_")
            and not inspect.ismodule(obj)
            and getattr(obj, "__module__", module.__name__).startswith("healthmesh.forecast")
            and name != "annotations"
        }
        assert sorted(module.__all__) == module.__all__
        assert set(module.__all__) == public
