"""A batch the store did not take leaves nothing behind in the model: not even when the store
cannot be read back at once (the model is rebuilt before the next batch), so the same events
sent again are accepted, not taken for duplicates of what was never stored."""

from __future__ import annotations

from typing import Any

import pytest
from unit_world import SCANNER, World

from domain import codes as c
from streams.store import StoreUnavailable


def test_an_unstored_batch_is_not_remembered_even_when_the_rebuild_fails_too(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World()
    store = w.p.store
    real_append, real_notifications = store.append, store.notifications

    def down(*_: Any, **__: Any) -> Any:
        raise StoreUnavailable("database or disk is full")

    monkeypatch.setattr(store, "append", down)
    monkeypatch.setattr(store, "notifications", down)
    event = w.receipt(10)
    with pytest.raises(StoreUnavailable):
        w.p.process([(event, SCANNER)])
    monkeypatch.setattr(store, "append", real_append)
    monkeypatch.setattr(store, "notifications", real_notifications)
    (outcome,) = w.p.process([(event, SCANNER)]).outcomes
    assert outcome.status == c.ACCEPTED
    assert w.lots() == {"L1": 10}

