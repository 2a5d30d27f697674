"""Online forecast choice (issue 13 item 3): several forecasters learn at each closed day, each
is scored on its own out-of-sample error, and the best feeds the policy; the decision names it."""

from __future__ import annotations

import math
import random
import statistics

from hypothesis import given
from hypothesis import strategies as st

from online_models.demand import DailyDemand
from online_models.forecasts import NAMES, SCORED_BEFORE_CHOICE, ForecastChoice
from streams.simulation.hospital import poisson


def run(rates: list[float], seed: int) -> tuple[list[float], list[float], list[str]]:
    """Poisson use at ``rates[d]`` on day d: the chosen mean, the demand model's own mean, and
    the chosen forecaster's name, at each day's close."""
    rng = random.Random(seed)
    m = DailyDemand()
    chosen, own, names = [], [], []
    for day, rate in enumerate(rates):
        m.learn_one(day, day % 7, float(poisson(rng, rate)))
        m.advance(day + 1)
        name, mean, _ = m.chosen()
        chosen.append(mean)
        own.append(m.predict_one()[0])
        names.append(name)
    return chosen, own, names


def test_until_enough_days_are_scored_the_demand_models_own_forecast_is_used() -> None:
    chosen, own, names = run([4.0] * (SCORED_BEFORE_CHOICE + 7), seed=1)
    assert chosen == own and set(names) == {"ses"}


def test_after_a_step_the_choice_moves_to_a_forecaster_that_follows_it() -> None:
    """Use triples on day 120 (4 → 12 a day): over the three weeks after, the chosen mean is
    off by at most 85 % of the demand model's own error (smoothing 0.05), over 8 seeds together
    (a forecast is scored a week after it is made, so the choice moves about a week after the
    step: the spike detector covers those days); three weeks on, a faster forecaster than the
    model's own is in use on each."""
    errors_chosen, errors_own = [], []
    for seed in range(1, 9):
        chosen, own, names = run([4.0] * 120 + [12.0] * 60, seed)
        errors_chosen += [abs(x - 12.0) for x in chosen[120:141]]
        errors_own += [abs(x - 12.0) for x in own[120:141]]
        assert names[141] in ("ses_fast", "window_7", "imapa"), (seed, names[141])
    assert statistics.mean(errors_chosen) <= 0.85 * statistics.mean(errors_own)


def test_on_stationary_demand_the_chosen_mean_is_no_worse_than_the_models_own() -> None:
    """A year of 6 a day (and of 0.4 a day, intermittent): the chosen mean's average error
    against the truth is at most the demand model's own, over 10 seeds together."""
    for rate in (6.0, 0.4):
        errors_chosen, errors_own = [], []
        for seed in range(1, 11):
            chosen, own, _ = run([rate] * 365, seed)
            errors_chosen += [abs(x - rate) for x in chosen[60:]]
            errors_own += [abs(x - rate) for x in own[60:]]
        assert statistics.mean(errors_chosen) <= statistics.mean(errors_own), rate


@given(st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=120), st.floats(0, 50), st.floats(0, 50))
def test_every_forecast_is_finite_non_negative_and_the_choice_is_a_candidate(
        days: list[float], tsb: float, ses: float) -> None:
    fc = ForecastChoice()
    for q in days:
        fc.learn_day(q, tsb, ses, "tsb")
    forecasts = fc.forecasts(tsb, ses)
    assert len(forecasts) == len(NAMES)
    assert all(math.isfinite(f) and f >= 0 for f in forecasts)
    assert all(math.isfinite(e) and e >= 0 for e in fc.mse)
    name, i = fc.chosen(default="ses")
    assert NAMES[i] == name
    assert 0 < fc.mean_error_share(i, len(days)) <= 1
    if max(days) == 0:
        assert forecasts[2:] == (0.0,) * (len(NAMES) - 2)


def test_a_forecaster_must_beat_the_one_in_use_by_a_margin_to_replace_it() -> None:
    """Two forecasters with errors a hair apart: the one in use stays."""
    fc = ForecastChoice()
    for day in range(200):
        fc.learn_day(5.0 if day % 2 else 3.0, 4.0, 4.0, "ses")  # tsb and ses equal: exactly tied
    assert fc.chosen(default="ses")[0] in ("ses", "ses_slow", "imapa")
