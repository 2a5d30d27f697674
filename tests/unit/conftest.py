"""Fixtures of the unit tests; the helpers themselves live in ``unit_world``."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings
from unit_world import World, sqlite_store

# Unit tests write only to temporary directories: no example database under the work tree.
# A failing example is printed with a blob that reproduces it (@reproduce_failure).
settings.register_profile("unit", database=None, print_blob=True)
settings.load_profile("unit")


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def sqlite_world(tmp_path: Path) -> World:
    return World(store=sqlite_store(tmp_path / "es.sqlite"))
