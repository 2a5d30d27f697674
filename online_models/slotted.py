"""Pickling and equality for estimators kept as a few numbers in ``__slots__``."""

from __future__ import annotations

from typing import Any


class Slotted:
    """A base for small estimators: the state is the tuple of the slots' values, so a
    pickle holds only the numbers (no attribute names), and two models are equal when
    their numbers are."""

    __slots__ = ()

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for s, v in zip(self.__slots__, state, strict=True):
            setattr(self, s, v)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.__getstate__() == other.__getstate__()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]
