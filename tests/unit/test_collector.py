"""The garbage collector of a long-running ingest process (``streams.processor.tune_collector``)."""

from __future__ import annotations

import gc

from streams.processor import YOUNG_GENERATION_THRESHOLD, tune_collector


def test_start_up_is_frozen_and_the_young_generation_collected_less_often() -> None:
    before = gc.get_threshold()
    try:
        gc.unfreeze()
        long_lived = [[i] for i in range(1000)]  # made at "start-up"
        tune_collector()
        assert gc.get_freeze_count() >= len(long_lived)
        assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, *before[1:])
        walked = {id(o) for g in range(3) for o in gc.get_objects(generation=g)}
        assert all(gc.is_tracked(x) and id(x) not in walked for x in long_lived)  # out of reach
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
