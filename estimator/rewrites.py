"""Grappler's rewrite of an AddN under memory pressure, as it applies to a Keras step.

tensorflow/core/grappler/optimizers/memory_optimizer.cc, SchedulingPass: when the graph's
statically estimated peak exceeds 0.8 x the device's memory limit (256 MiB for TF's CPU
device: ThreadPoolDevice is created with Bytes(256 << 20); a GPU's limit is its BFC pool),
every AddN with more than two inputs one of whose inputs is alive at that static peak is
rewritten into an accumulation into a TemporaryVariable initialised from a zeros tensor.
The only such AddN here is batch norm's input gradient (direct, through the mean, through
the variance). Constant folding turns the zeros into a constant that stays allocated
between steps; the temporary variable lives from the batch norm's backward to the end of
the step. The rewrite adds reference-typed edges, which the single-threaded executor
refuses, so profilers.allocator runs such graphs on the default executor (see
estimator.steps). On the 25-config benchmark grid and the 101 configs of the wider
accuracy cache this predicts exactly which measurements fell back to the default executor;
`python -m profilers.grappler_static SPEC` shows grappler's own estimate for a spec.
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
# Optimizer slots whose reads the static estimate holds for the whole backward pass (Adam's
# m and v, momentum's velocity: their ReadVariableOps need no gradient, so the virtual
# scheduler runs them first), and the kernel-sized temporaries of one Adam update alive
# together (g - m and g^2, read off the static peak of the grappler trace below)
STATIC_SLOT_READS = {"adam": 2, "momentum": 1, "sgd": 0, "none": 0}
STATIC_UPDATE_TEMPORARIES = {"adam": 2, "momentum": 0, "sgd": 0, "none": 0}


def static_peak(plan: StepPlan) -> tuple[int, int | None]:
    """Grappler's static estimate of the step's peak, and the batch norm whose input-gradient
    AddN has an input alive at that peak (None: no AddN input is alive there).

    The estimate (GraphMemory::InferStatically, run on the step graph as grappler's earlier
    passes leave it) simulates the graph without in-place updates. Its candidate moments:
    the loss (every activation kept, the loss's temporaries); each normalisation's backward
    (its moments' temporaries); each MatMul layer's kernel gradient and update. At every
    moment the kernels still to be read by a backward MatMul (this layer's and those below)
    and the optimizer slots' reads are alive; at a MatMul's moment also its kernel gradient
    and update temporaries, and, when a normalisation lies below it, that normalisation's
    first input-gradient tensor (an AddN input). SchedulingPass rewrites only the AddNs
    with an input among the tensors alive at the peak, so a step whose peak is the loss or
    a MatMul without a normalisation below keeps its AddNs.

    Traced with `python -m profilers.grappler_static` (GraphMemory on the grappler-optimised
    step graph): ae k=4 nt=3 B=300 sgd peaks at 128.8M, below 0.8 x 256 MiB (this model:
    135.3M), and the measured runs kept the single-threaded executor; ae k=6 nt=2 B=256
    adam peaks at 297.5M at the last Dense's Adam update with batch_norm_11's
    batchnorm/mul_1 alive, and was rewritten; bae k=2 nt=2 B=2048 adam peaks at
    batch_norm_11's moments (274M). The earlier rule (every weight's read, gradient and
    update outputs alive at every moment) put ae k=4 nt=3 B=300 sgd at 250M and predicted
    a rewrite the runs did not show.
    """
    batch, layers = plan.model.batch, plan.layers
    optimizer = plan.model.optimizer
    kernels = [variables(layer)[0][0] if layer.type in MATMULS else 0 for layer in layers]
    trainable = sum(size for row in map(variables, layers) for size in row[0])
    slots = STATIC_SLOT_READS[optimizer] * FLOAT32 * trainable
    kept = [plan.out_bytes(i) for i in range(len(layers))]
    prediction = batch * layers[-1].out_features * FLOAT32
    best = sum(kept) + (LOSS_TEMPORARIES + 1) * prediction + FLOAT32 * sum(kernels) + slots
    holder: int | None = None
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        alive = sum(kept[: i + 1]) + batch * layer.out_features * plan.compute
        alive += FLOAT32 * sum(kernels[: i + 1]) + slots
        below: int | None = None
        if layer.type in MATMULS:
            alive += batch * layer.in_features * plan.compute  # its input gradient
            update = STATIC_UPDATE_TEMPORARIES[optimizer] * FLOAT32
            alive += kernels[i] * (plan.compute + update)  # the kernel gradient, its update
            if i > 0 and layers[i - 1].type in NORMALISATIONS:
                alive += batch * layer.in_features * FLOAT32  # the norm's first gradient
                below = i - 1
        elif layer.type in NORMALISATIONS:
            alive += (BATCH_NORM_MOMENT_TEMPORARIES + 1) * batch * layer.in_features * FLOAT32
            below = i
        else:
            continue
        if alive > best:
            best, holder = alive, below
    return best, holder


def rewritten_batch_norm(
    model: ModelSpec, layers: list[ResolvedLayer], memory_limit: int
) -> int | None:
    """The layer whose input-gradient AddN grappler rewrites, or None (no pressure, or no
    AddN input alive at the static peak)."""
    peak, holder = static_peak(StepPlan(model, layers, None))
    if peak <= GRAPPLER_MEMORY_PRESSURE * memory_limit:
        return None
    return holder
