"""Online forecast choice for one stock point: several daily forecasters, scored out of sample."""

from __future__ import annotations

from online_models.slotted import Slotted

# The candidates, in the order of every list below. ``tsb`` and ``ses`` are the demand model's
# own views (``DailyDemand``: TSB, and the level at its smoothing 0.05), passed in each day;
# the others are kept here.
NAMES = ("tsb", "ses", "ses_slow", "ses_fast", "croston_sba", "window_7", "imapa")
SLOW, FAST = 0.02, 0.2  # smoothing of the slow (about 100 days) and fast (about 10 days) levels
CROSTON = 0.1  # Croston's smoothing of demand size and interval
AGGREGATES = (1, 2, 4, 7)  # IMAPA's aggregation levels (days), each with a level at IMAPA_ALPHA
IMAPA_ALPHA = 0.1
HORIZON = 7  # each forecast is scored on the use of the 7 days after it was made
SCORE = 0.03  # smoothing of the squared errors (about a month of scored days)
SCORED_BEFORE_CHOICE = 28  # days scored before the choice leaves the demand model's default
# A forecaster replaces the one in use (at first the demand model's default) only when its
# score is this share of that one's or lower: near-ties (most days, on stationary demand) keep
# what is in use, so the policy does not flap between equals.
MARGIN = 0.9

_SLOTS = ("n", "slow", "fast", "size", "interval", "gap", "agg", "recent", "made", "mse", "scored", "best")


class ForecastChoice(Slotted):
    """Seven forecasters of use per day learn at each closed day; each is scored on its own
    out-of-sample error (the use of the ``HORIZON`` days after a forecast against ``HORIZON``
    times it, squared and exponentially weighted), and the one with the lowest feeds the policy.

    - ``tsb``, ``ses``: the demand model's own (``DailyDemand``: Teunter-Syntetos-Babai, and the
      level at smoothing 0.05), passed in;
    - ``ses_slow``, ``ses_fast``: simple exponential smoothing at 0.02 and 0.2;
    - ``croston_sba``: Croston's sizes and intervals with the Syntetos-Boylan bias correction
      (1 − α/2) (Syntetos & Boylan, IJF 2005);
    - ``window_7``: the mean of the last 7 days;
    - ``imapa``: in the manner of IMAPA (Petropoulos & Kourentzes, JORS 2015), the mean of
      smoothed levels of the use aggregated over 1, 2, 4 and 7 days, each per day.

    The 7 days of a lead time are where a forecast's error costs stock, so a day's own noise
    (which no forecaster can know) weighs less in the score than a level that is off.

    >>> fc = ForecastChoice()
    >>> for day in range(120):                  # 4 a day, then 12 a day from day 80
    ...     q = 4.0 if day < 80 else 12.0
    ...     fc.learn_day(q, tsb=4.0, ses=4.0)     # (own views that never follow)
    >>> fc.chosen(default="ses")[0] in ("ses_fast", "window_7", "imapa")
    True
    >>> round(fc.forecasts(4.0, 4.0)[NAMES.index("window_7")], 1)
    12.0
    """

    __slots__ = _SLOTS

    def __init__(self) -> None:
        self.n = 0
        self.slow = 0.0
        self.fast = 0.0
        self.size = 0.0  # Croston: demand size on days with demand
        self.interval = 0.0  # Croston: days between days with demand
        self.gap = 1  # days since the last day with demand, counting this one
        self.agg = [[0.0, 0, 0.0] for _ in AGGREGATES]  # per level: partial sum, days in it, level
        self.recent: list[float] = []  # the last HORIZON days' use
        self.made: list[tuple[float, ...]] = []  # the forecasts made at each of the last HORIZON days
        self.mse = [0.0] * len(NAMES)
        self.scored = 0
        self.best = -1  # index in NAMES of the chosen forecaster (-1: none yet)

    def learn_day(self, q: float, tsb: float, ses: float, default: str = "ses") -> None:
        """A closed day's use ``q``; ``tsb``, ``ses``: the demand model's own forecasts after
        learning it; ``default``: the one of them it would use."""
        if len(self.made) == HORIZON:  # score the forecasts made HORIZON days ago
            total = sum(self.recent[1:]) + q
            for i, f in enumerate(self.made[0]):
                e = total - HORIZON * f
                self.mse[i] = e * e if self.scored == 0 else self.mse[i] + SCORE * (e * e - self.mse[i])
            self.scored += 1
            if self.scored >= SCORED_BEFORE_CHOICE:
                best = min(range(len(NAMES)), key=self.mse.__getitem__)
                current = self.best if self.best >= 0 else NAMES.index(default)
                self.best = best if self.mse[best] <= MARGIN * self.mse[current] else current
        self.n += 1
        a = 1.0 / self.n
        self.slow += max(SLOW, a) * (q - self.slow)
        self.fast += max(FAST, a) * (q - self.fast)
        if q > 0:
            if self.size == 0.0:
                self.size, self.interval = q, float(self.gap)
            else:
                self.size += CROSTON * (q - self.size)
                self.interval += CROSTON * (self.gap - self.interval)
            self.gap = 1
        else:
            self.gap += 1
        for k, bucket in zip(AGGREGATES, self.agg, strict=True):
            bucket[0] += q
            bucket[1] += 1
            if bucket[1] == k:  # a whole bucket: its use per day joins the level
                per_day = bucket[0] / k
                bucket[2] = per_day if self.n <= k else bucket[2] + IMAPA_ALPHA * (per_day - bucket[2])
                bucket[0], bucket[1] = 0.0, 0
        self.recent = (self.recent + [q])[-HORIZON:]
        self.made = (self.made + [self.forecasts(tsb, ses)])[-HORIZON:]

    def forecasts(self, tsb: float, ses: float) -> tuple[float, ...]:
        """Every candidate's use per day now, in ``NAMES`` order."""
        croston = (1 - CROSTON / 2) * self.size / self.interval if self.interval > 0 else 0.0
        window = sum(self.recent) / len(self.recent) if self.recent else 0.0
        levels = [b[2] for k, b in zip(AGGREGATES, self.agg, strict=True) if self.n >= k]
        imapa = sum(levels) / len(levels) if levels else 0.0
        return (tsb, ses, self.slow, self.fast, croston, window, imapa)

    def chosen(self, default: str) -> tuple[str, int]:
        """The forecaster that feeds the policy (``default`` until ``SCORED_BEFORE_CHOICE``
        days are scored) and its index in ``NAMES``."""
        i = self.best if self.best >= 0 else NAMES.index(default)
        return NAMES[i], i

    def mean_error_share(self, i: int, n_days: int) -> float:
        """The variance of candidate ``i``'s mean as a share of the daily variance: the sum of
        the squared weights it gives past days (1/n while averaging; α/(2−α) later; 1/7 for
        the window); for ``tsb`` and ``ses`` the demand model's own is used instead."""
        def smoothing(alpha: float) -> float:
            return 1.0 / n_days if n_days < 1.0 / alpha else alpha / (2 - alpha)
        name = NAMES[i]
        if name == "window_7":
            return 1.0 / max(1, len(self.recent))
        alpha = {"ses_slow": SLOW, "ses_fast": FAST, "croston_sba": CROSTON, "imapa": IMAPA_ALPHA}.get(name, 0.05)
        return smoothing(alpha)

    def clone(self) -> ForecastChoice:
        return ForecastChoice()
