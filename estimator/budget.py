"""A budget on the engine's own work: a hook the framework mode charges as it runs.

The allocator replay (estimator.framework.simulate) charges one unit per allocator event
and one per live tensor it records at a new peak (the two costs its time grows with), and
the searches one unit per probe. The budget in force is a context variable: none (the CLI,
the worker, the version fingerprint) means unbounded; the service sets one per request.
At each charge the budget also checks its wall-clock deadline and whether its caller has
called it off, so one long estimate or search stops midway rather than after it is done.
Pure Python, no web framework: the service supplies the hints its messages name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field

from estimator.errors import BudgetExceeded, Cancelled

# Units the replay accumulates between charges (each charge reads the clock).
CHARGE_EVERY = 1024


@dataclass
class Budget:
    """`units` of engine work (None: unbounded) within `time_limit_s` of its start (None:
    no deadline); `cancelled` says whether the caller has called the work off."""

    units: int | None = None
    time_limit_s: float | None = None
    cancelled: Callable[[], bool] = lambda: False
    units_hint: str = ""  # appended to the over-budget message (the setting to raise)
    time_hint: str = ""
    started: float = field(default_factory=time.monotonic)
    spent: int = 0

    def check(self) -> None:
        """Raise Cancelled when called off, BudgetExceeded past the deadline."""
        if self.cancelled():
            raise Cancelled()
        if self.time_limit_s is not None and time.monotonic() - self.started > self.time_limit_s:
            raise BudgetExceeded(
                "",
                f"the computation passed its time limit of {self.time_limit_s:g} s"
                f"{self.time_hint}; ask for less work per request",
            )

    def charge(self, units: int) -> None:
        """Spend `units` of work; raise past the budget, the deadline, or when called off."""
        self.spent += units
        if self.units is not None and self.spent > self.units:
            raise BudgetExceeded(
                "",
                f"the framework-mode computation passed its budget of {self.units:,} units "
                f"(allocator events replayed){self.units_hint}: use fewer layers, fewer "
                "specs or cells, or mode 'paper'",
            )
        self.check()


_current: ContextVar[Budget | None] = ContextVar("estimator_budget", default=None)


def current() -> Budget | None:
    """The budget the running computation charges (None: unbounded)."""
    return _current.get()


def charge(units: int) -> None:
    budget = _current.get()
    if budget is not None:
        budget.charge(units)


def set_budget(budget: Budget | None) -> Token[Budget | None]:
    """Put `budget` in force in this context (undo with reset_budget)."""
    return _current.set(budget)


def reset_budget(token: Token[Budget | None]) -> None:
    _current.reset(token)


@contextmanager
def bounded(budget: Budget | None) -> Iterator[Budget | None]:
    """Run the block under `budget` (None: unbounded)."""
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)
