"""Grids of configurations answered at once: one plan per shape, then a multiply per batch."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import product
from typing import NamedTuple

from pydantic import Field

from estimator.engine import DEFAULT_MODE, Mode, cached_plan
from estimator.spec import (
    FamilyName,
    FamilySpec,
    OptimizerName,
    PositiveInt,
    Precision,
    _Strict,
)


class Grid(_Strict):
    """Every combination of the listed values (the other family parameters as given)."""

    family: list[FamilyName] = Field(default=["ae", "bae"], min_length=1)
    k: list[PositiveInt] = Field(default=[2, 4, 6], min_length=1)
    nt: list[PositiveInt] = Field(default=[2, 4], min_length=1)
    batch: list[PositiveInt] = Field(default=[2048], min_length=1)
    precision: list[Precision] = Field(default=["fp32"], min_length=1)
    optimizer: list[OptimizerName] = Field(default=["adam"], min_length=1)
    ht: PositiveInt = 256
    hr: PositiveInt = 2048
    mode: Mode = DEFAULT_MODE

    @property
    def size(self) -> int:
        return (
            len(self.family)
            * len(self.k)
            * len(self.nt)
            * len(self.batch)
            * len(self.precision)
            * len(self.optimizer)
        )


class SweepRow(NamedTuple):
    family: str
    k: int
    nt: int
    batch: int
    precision: str
    optimizer: str
    total_bytes: int


def sweep(grid: Grid) -> Iterator[SweepRow]:
    """Rows in grid order; each shape's plan is built once and reused for every batch."""
    shapes = product(grid.family, grid.k, grid.nt, grid.precision, grid.optimizer)
    for family, k, nt, precision, optimizer in shapes:
        spec = FamilySpec(
            family=family,
            k=k,
            nt=nt,
            precision=precision,
            optimizer=optimizer,
            ht=grid.ht,
            hr=grid.hr,
            batch=1,
        )
        plan = cached_plan(spec, grid.mode)
        coefficients = plan.affine()
        for batch in grid.batch:
            total = (
                coefficients[0] + coefficients[1] * batch
                if coefficients is not None
                else plan.total_bytes(batch)
            )
            yield SweepRow(family, k, nt, batch, precision, optimizer, total)
