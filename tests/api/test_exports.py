"""The package exports what it documents: a sorted ``__all__`` of importable public names."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "healthmesh.api",
    "healthmesh.api.routes",
    "healthmesh.api.auth",
    "healthmesh.api.audit",
    "healthmesh.api.deps",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    # Sorted as ruff's RUF022 sorts: constants, then classes, then functions.
    assert exported == sorted(exported, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))
    assert len(set(exported)) == len(exported)
    assert module.__doc__
    for public in exported:
        assert hasattr(module, public), f"{name}.{public} is listed but missing"


def test_public_names_of_the_package_are_exported() -> None:
    import healthmesh.api as api

    public = {
        n
        for n, v in vars(api).items()
        if not n.startswith("_") and getattr(v, "__module__", "").startswith("healthmesh.api")
    }
    assert public <= set(api.__all__)
