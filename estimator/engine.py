"""Estimates: a spec and a mode in, a per-layer table and exact byte totals out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from estimator.costs import CATEGORIES, BoundedCostModel, CostModel, CostRow
from estimator.errors import InvalidSpec
from estimator.families import expand
from estimator.layers import CONV_LAYER_TYPES, resolve
from estimator.paper import PaperCostModel
from estimator.records import canonical_json, is_family
from estimator.units import gib_value
from estimator.version import engine_version as engine_version

if TYPE_CHECKING:  # specs arrive as pydantic models or as records (estimator.records)
    from estimator.spec import FamilySpec, ModelSpec


Mode = Literal["paper", "framework"]
MODES: tuple[Mode, ...] = ("paper", "framework")
DEFAULT_MODE: Mode = "framework"  # what TF allocates; "paper" reproduces Table 2


def cost_model(mode: Mode) -> CostModel:
    if mode == "paper":
        return PaperCostModel()
    from estimator.framework import FrameworkCostModel

    return FrameworkCostModel()


def __getattr__(name: str) -> str:
    """`ENGINE_VERSION`, hashed on first use: the gate's start-up never needs it."""
    if name == "ENGINE_VERSION":
        return engine_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class LayerEstimate:
    """One row of the per-layer table (bytes per category; `total` is their sum)."""

    index: int | None
    name: str
    type: str
    part: str | None
    output_features: int
    params: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    ephemeral: int
    total: int
    note: str = ""


@dataclass(frozen=True)
class Breakdown:
    """Bytes per category over the whole model, the resident buffer included."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    ephemeral: int
    resident: int

    @property
    def total(self) -> int:
        return sum(asdict(self).values())


@dataclass(frozen=True)
class Estimate:
    """`total_bytes` is the peak the mode predicts (framework: the allocator layout most
    processes take); `upper_bytes` a figure no execution order of the same step exceeds
    (paper mode: the total itself); `basis` names what the counts rest on."""

    mode: Mode
    batch: int
    layers: tuple[LayerEstimate, ...]
    breakdown: Breakdown
    upper_bytes: int
    basis: str

    @property
    def total_bytes(self) -> int:
        return self.breakdown.total

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: byte counts are exact integers, GiB a float or a string."""
        return {
            "mode": self.mode,
            "engine_version": engine_version(),
            "batch": self.batch,
            "total_bytes": self.total_bytes,
            "total_bytes_decimal": str(self.total_bytes),
            "total_gib": gib_value(self.total_bytes),
            "upper_bytes": self.upper_bytes,
            "upper_bytes_decimal": str(self.upper_bytes),
            "upper_gib": gib_value(self.upper_bytes),
            "basis": self.basis,
            "breakdown": asdict(self.breakdown),
            "layers": [asdict(row) for row in self.layers],
        }


@dataclass(frozen=True)
class Plan:
    """The rows of an estimate, built once and evaluated at a batch size.

    When the cost model is batch invariant the rows hold at every batch; otherwise they
    describe the peak at `spec.batch` only, and other batch sizes are planned anew.
    `upper` is the cost model's bound at `spec.batch` (None: the rows are their own bound).
    """

    mode: Mode
    spec: FamilySpec | ModelSpec
    rows: tuple[CostRow, ...]
    alignment: int
    resident: int
    batch_invariant: bool
    basis: str
    upper: int | None = None

    def _replanned(self, batch: int) -> Plan | None:
        if self.batch_invariant or batch == self.spec.batch:
            return None
        return cached_plan(self.spec.model_copy(update={"batch": batch}), self.mode)

    def evaluate(self, batch: int) -> Estimate:
        other = self._replanned(batch)
        if other is not None:
            return other.evaluate(batch)
        layers = []
        totals = dict.fromkeys(CATEGORIES, 0)
        for row in self.rows:
            per_category = dict.fromkeys(CATEGORIES, 0)
            for allocation in row.allocations:
                per_category[allocation.category] += allocation.at(batch, self.alignment)
            for category, size in per_category.items():
                totals[category] += size
            layers.append(
                LayerEstimate(
                    index=row.index,
                    name=row.name,
                    type=row.type,
                    part=row.part,
                    output_features=row.output_features,
                    params=row.params,
                    note=row.note,
                    total=sum(per_category.values()),
                    **per_category,
                )
            )
        breakdown = Breakdown(**totals, resident=self.resident)
        upper = breakdown.total if self.upper is None else max(self.upper, breakdown.total)
        return Estimate(self.mode, batch, tuple(layers), breakdown, upper, self.basis)

    def affine(self) -> tuple[int, int] | None:
        """(fixed, per_sample) with total = fixed + per_sample * batch, when exactly affine."""
        if self.alignment != 1 or not self.batch_invariant:
            return None
        fixed = self.resident
        per_sample = 0
        for row in self.rows:
            for allocation in row.allocations:
                fixed += allocation.fixed
                per_sample += allocation.per_sample
        return fixed, per_sample

    def total_bytes(self, batch: int) -> int:
        other = self._replanned(batch)
        if other is not None:
            return other.total_bytes(batch)
        coefficients = self.affine()
        if coefficients is not None:
            return coefficients[0] + coefficients[1] * batch
        return self.evaluate(batch).total_bytes

    def upper_bytes(self, batch: int) -> int:
        """The bound no execution order exceeds at `batch` (the total where rows are exact)."""
        if self.upper is None:
            return self.total_bytes(batch)
        other = self._replanned(batch)
        if other is not None:
            return other.upper_bytes(batch)
        return max(self.upper, self.total_bytes(batch))


def model_for(spec: FamilySpec | ModelSpec, mode: Mode) -> ModelSpec:
    """The layer list a mode counts: families expand the way that mode reads the paper."""
    if is_family(spec):
        blocks = spec.decoder_blocks or cost_model(mode).decoder_blocks
        return expand(spec, decoder_blocks=blocks)
    return cast("ModelSpec", spec)


def check_traced(model: ModelSpec, mode: Mode) -> None:
    """Refuse, naming the field, a framework-mode estimate of what no traced sequence
    covers: a guessed sequence would be a silently wrong number. DetNet is traced as the
    graph its training job trains (estimator/detnet_steps.py): detnet layers only, with
    the detnet loss, in float32."""
    if mode != "framework":
        return
    kinds = [(i, layer.type) for i, layer in enumerate(model.layers)]
    detnet = [(i, kind) for i, kind in kinds if kind == "detnet_layer"]
    if detnet or model.loss == "detnet":
        _check_detnet(model, kinds)
    conv = [(i, kind) for i, kind in kinds if kind in CONV_LAYER_TYPES]
    traced = "detnet_layer" if detnet else (conv[0][1] if conv else "")
    where = (detnet or conv or [(0, "")])[0][0]
    if traced and model.precision == "mixed":
        raise InvalidSpec(
            "precision",
            f"framework mode has no traced mixed-precision model of {traced} "
            f"(layers[{where}]) yet; use precision fp32 or --mode paper",
        )


def _check_detnet(model: ModelSpec, kinds: Sequence[tuple[int, str]]) -> None:
    """DetNet's traced graph: every layer a detnet_layer, the detnet loss."""
    others = [(i, kind) for i, kind in kinds if kind != "detnet_layer"]
    if others:
        raise InvalidSpec(
            f"layers[{others[0][0]}] ({others[0][1]})",
            "framework mode models detnet_layer only in DetNet's training graph (detnet "
            "layers only, loss detnet); use --mode paper",
        )
    if model.loss != "detnet":
        raise InvalidSpec(
            "layers[0] (detnet_layer)",
            f"framework mode models detnet_layer only in DetNet's training graph (loss "
            f"detnet, Eq. (4)), not with loss {model.loss!r}; use --mode paper",
        )


def plan(spec: FamilySpec | ModelSpec, mode: Mode = DEFAULT_MODE) -> Plan:
    model = model_for(spec, mode)
    check_traced(model, mode)
    counter = cost_model(mode)
    upper: int | None = None
    if isinstance(counter, BoundedCostModel):
        rows, upper = counter.bounded_rows(model, resolve(model))
    else:
        rows = counter.rows(model, resolve(model))
    return Plan(
        mode,
        spec,
        tuple(rows),
        counter.alignment,
        counter.resident_bytes(),
        counter.batch_invariant,
        counter.basis,
        upper,
    )


_PLANS: dict[tuple[str, Mode], Plan] = {}
PLAN_CACHE_SIZE = 65536  # plans kept per process; the cache starts over when full


def batch_free(spec: FamilySpec | ModelSpec) -> FamilySpec | ModelSpec:
    """The spec with its batch set to 1."""
    return spec if spec.batch == 1 else spec.model_copy(update={"batch": 1})


def cached_plan(spec: FamilySpec | ModelSpec, mode: Mode = DEFAULT_MODE) -> Plan:
    """A plan shared by every spec that differs only in batch size (when the mode allows)."""
    if cost_model(mode).batch_invariant:
        spec = batch_free(spec)
    key = (canonical_json(spec), mode)
    found = _PLANS.get(key)
    if found is None:
        if len(_PLANS) >= PLAN_CACHE_SIZE:
            _PLANS.clear()
        found = _PLANS[key] = plan(spec, mode)
    return found


def estimate(spec: FamilySpec | ModelSpec, mode: Mode = DEFAULT_MODE) -> Estimate:
    """The per-layer table and totals of one spec under one mode."""
    return plan(spec, mode).evaluate(spec.batch)
