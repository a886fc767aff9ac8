"""A clock the test sets, for code that takes its clock as an argument."""

from __future__ import annotations


class Clock:
    """Calling it returns :attr:`now`, which the test moves, forward or back."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
