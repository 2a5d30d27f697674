"""End-to-end fixtures: a fresh ``replenish serve`` subprocess per test, with clients per role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .support import KEYS, Service


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    """A fresh service over an empty data directory."""
    data = tmp_path / "data"
    data.mkdir()
    svc = Service(data).start()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def clients(service: Service) -> Iterator[dict[str, httpx.Client]]:
    made = {role: service.client(role) for role in KEYS}
    try:
        yield made
    finally:
        for c in made.values():
            c.close()


