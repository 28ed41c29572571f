"""Every package documents itself and exports exactly its public names (httpx's habit).

The order of ``__all__`` is kept by ruff's RUF022 rule (constants, classes, functions).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import healthmesh

PACKAGES = sorted(
    name for _, name, is_package in pkgutil.walk_packages(healthmesh.__path__, "healthmesh.") if is_package
)


@pytest.mark.parametrize("name", ["healthmesh", *PACKAGES])
def test_package_has_docstring_and_exports_its_public_names(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__ and module.__doc__.strip(), f"{name} has no docstring"
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(set(exported)) == len(exported), f"{name}.__all__ lists a name twice"
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ lists {item}, which it does not define"
    public = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and not inspect.ismodule(v) and getattr(v, "__module__", "").startswith(name)
    }
    assert public <= set(exported), (
        f"{name} defines public names missing from __all__: {public - set(exported)}"
    )
