"""Grappler's rewrite of an AddN under memory pressure, as it applies to a Keras step.

tensorflow/core/grappler/optimizers/memory_optimizer.cc, SchedulingPass: when the graph's
statically estimated peak exceeds 0.8 x the device's memory limit (256 MiB for TF's CPU
device: ThreadPoolDevice is created with Bytes(256 << 20); a GPU's limit is its BFC pool),
every AddN with more than two inputs whose inputs are alive at that static peak is
rewritten into an accumulation into a TemporaryVariable initialised from a zeros tensor.
The only such AddN here is batch norm's input gradient (direct, through the mean, through
the variance). Constant folding turns the zeros into a constant that stays allocated
between steps; the temporary variable lives from the batch norm's backward to the end of
the step. The rewrite adds reference-typed edges, which the single-threaded executor
refuses, so profilers.allocator runs such graphs on the default executor (see
estimator.steps). On the 25-config benchmark grid this predicts exactly which
measurements fell back to the default executor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from estimator.bfc import MIB
from estimator.steps import (
    BATCH_NORM_MOMENT_TEMPORARIES,
    FLOAT32,
    LOSS_TEMPORARIES,
    MATMULS,
    NORMALISATIONS,
    StepPlan,
    variables,
)

if TYPE_CHECKING:
    from estimator.layers import ResolvedLayer
    from estimator.spec import ModelSpec

CPU_DEVICE_MEMORY_LIMIT = 256 * MIB  # ThreadPoolDevice(..., Bytes(256 << 20), ...)
GRAPPLER_MEMORY_PRESSURE = 0.8
# the update ops' outputs per variable the static estimate counts: it does not know that a
# kernel forwards its input's buffer (SGD's lr * g), so SGD's Mul counts
STATIC_UPDATE_OUTPUTS = {"adam": 3, "momentum": 1, "sgd": 1, "none": 1}


def static_peak(plan: StepPlan) -> tuple[int, int | None]:
    """Grappler's static estimate of the step's peak, and the batch norm it holds.

    The estimate (GraphMemory::InferStatically) simulates the graph without in-place
    updates and without Keras' interleaving of updates with the backward pass: every
    trainable variable's read, its gradient and its optimizer temporaries are counted as
    alive together, on top of the largest transient moment of the backward pass.
    """
    batch, layers = plan.model.batch, plan.layers
    per_weight = FLOAT32 + plan.compute + STATIC_UPDATE_OUTPUTS[plan.model.optimizer] * FLOAT32
    weights = sum(size for row in map(variables, layers) for size in row[0]) * per_weight
    kept = [plan.out_bytes(i) for i in range(len(layers))]
    prediction = batch * layers[-1].out_features * FLOAT32
    best = sum(kept) + (LOSS_TEMPORARIES + 1) * prediction
    holder, held = None, 0
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        alive = sum(kept[: i + 1]) + batch * layer.out_features * plan.compute
        if layer.type in NORMALISATIONS:
            alive += (BATCH_NORM_MOMENT_TEMPORARIES + 1) * batch * layer.in_features * FLOAT32
            if alive > held:  # its input-gradient AddN's inputs are alive here
                holder, held = i, alive
        elif layer.type in MATMULS:
            alive += batch * layer.in_features * plan.compute
        best = max(best, alive)
    return best + weights, holder


def rewritten_batch_norm(
    model: ModelSpec, layers: list[ResolvedLayer], memory_limit: int
) -> int | None:
    """The layer whose input-gradient AddN grappler rewrites, or None (no pressure)."""
    peak, holder = static_peak(StepPlan(model, layers, None))
    if peak <= GRAPPLER_MEMORY_PRESSURE * memory_limit:
        return None
    return holder
