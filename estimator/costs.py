"""What a cost model produces: allocations per layer, each affine in the batch size."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from estimator.layers import ResolvedLayer
    from estimator.spec import ModelSpec

Category = Literal["weights", "gradients", "optimizer", "activations", "ephemeral"]
CATEGORIES: tuple[Category, ...] = ("weights", "gradients", "optimizer", "activations", "ephemeral")


def align_up(size: int, alignment: int) -> int:
    return -(-size // alignment) * alignment


@dataclass(frozen=True)
class Allocation:
    """Bytes of one category: `fixed + per_sample * batch`, rounded up to the alignment."""

    category: Category
    fixed: int = 0
    per_sample: int = 0

    def at(self, batch: int, alignment: int = 1) -> int:
        size = self.fixed + self.per_sample * batch
        return align_up(size, alignment) if size else 0


@dataclass(frozen=True)
class CostRow:
    """One row of the per-layer table, independent of the batch size."""

    name: str
    type: str
    part: str | None
    output_features: int
    params: int
    allocations: tuple[Allocation, ...]
    index: int | None = None  # None for rows that are not a layer of the model (loss, ...)
    note: str = ""


def layer_row(
    layer: ResolvedLayer,
    allocations: Iterable[Allocation],
    *,
    params: int | None = None,
    note: str = "",
) -> CostRow:
    """The row of one layer of the model; `params` as the cost model counts them (default:
    as Keras builds the layer)."""
    return CostRow(
        name=layer.name,
        type=layer.type,
        part=layer.spec.part,
        output_features=layer.out_features,
        params=layer.params if params is None else params,
        allocations=tuple(allocations),
        index=layer.index,
        note=note,
    )


class CostModel(Protocol):
    """A way of counting bytes: the paper's equations or what the framework allocates."""

    name: str
    basis: str  # what the counts rest on, reported with every estimate
    alignment: int
    decoder_blocks: int | None  # how families expand under this mode (None: the spec's)
    # True when the rows hold at every batch size (allocations affine in the batch); False
    # when which tensors are alive at the peak depends on the batch.
    batch_invariant: bool

    def rows(self, model: ModelSpec, layers: list[ResolvedLayer]) -> list[CostRow]: ...

    def resident_bytes(self) -> int: ...


@runtime_checkable
class BoundedCostModel(CostModel, Protocol):
    """A cost model whose rows describe one likely peak, with a separate upper bound.

    `bounded_rows` returns the rows and the bound in bytes (resident bytes included): a
    figure the peak never exceeds, whatever order the runtime picks among independent
    work. Cost models without it count a peak that is its own bound (the paper's).
    """

    def bounded_rows(
        self, model: ModelSpec, layers: list[ResolvedLayer]
    ) -> tuple[list[CostRow], int]: ...


def bytes_per_value(model: ModelSpec) -> int:
    return 2 if model.precision == "mixed" else 4
