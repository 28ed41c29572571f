"""Each package's ``__all__`` is sorted and names only what the package really exports."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("name", ["healthmesh.quality", "healthmesh.characterize", "healthmesh.privacy"])
def test_all_lists_public_names(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__
    assert list(module.__all__) == sorted(module.__all__)
    for public in module.__all__:
        assert hasattr(module, public), public
