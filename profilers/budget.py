"""How long a profile will take, predicted before TensorFlow starts, so none hangs.

A measurement runs `warm_up_steps` + `steps` training steps. Their cost is dominated by
the dense layers' matrix products: 2*B*in*out multiply-adds forward and twice that
backward (the input and the weight gradients), so 6*B*in*out floating-point operations
per dense layer and step.

What a FLOP costs depends on the kernel TensorFlow picks. On CPUs with AVX512-FP16 or
AMX-FP16, TensorFlow 2.21 sends float16 MatMuls to oneDNN, which ran them at about
0.5 GFLOP/s on this project's machine (`profilers.budget` timings in
benchmarks/accuracy.md), two orders of magnitude below float32; a mixed-precision step of a
paper-sized model there takes minutes. The rates below are conservative round figures
used only to keep a profile within its time budget; they never enter an estimate.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from estimator.spec import FamilySpec, ModelSpec

FLOAT32_FLOPS_PER_S = 2e10
FLOAT16_ONEDNN_FLOPS_PER_S = 1e8  # AVX512-FP16 / AMX-FP16 CPUs: oneDNN float16 kernels (shared CPU)
FLOAT16_EIGEN_FLOPS_PER_S = 5e9  # other CPUs: Eigen's half-precision products
STEP_OVERHEAD_S = 0.02  # per step: executor and Python, whatever the size
DEFAULT_BUDGET_S = 60.0
_FP16_ISA_FLAGS = ("avx512_fp16", "amx_fp16")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def onednn_float16_cpu() -> bool:
    """Whether TensorFlow runs float16 MatMuls through oneDNN on this CPU (the slow path)."""
    return any(flag in cpu_flags() for flag in _FP16_ISA_FLAGS)


def step_flops(spec: FamilySpec | ModelSpec) -> int:
    """Floating-point operations of one training step's dense products."""
    from estimator.engine import model_for
    from estimator.layers import resolve

    model = model_for(spec, "framework")
    products = sum(
        layer.in_features * layer.spec.units
        for layer in resolve(model)
        if layer.spec.type == "dense"
    )
    return 6 * model.batch * products


def flops_per_s(spec: FamilySpec | ModelSpec, device: str = "CPU:0") -> float:
    """The conservative compute rate of the kernels a step of `spec` runs on `device`."""
    if "GPU" in device.upper() or spec.precision != "mixed":
        return FLOAT32_FLOPS_PER_S
    return FLOAT16_ONEDNN_FLOPS_PER_S if onednn_float16_cpu() else FLOAT16_EIGEN_FLOPS_PER_S


def predicted_step_s(spec: FamilySpec | ModelSpec, device: str = "CPU:0") -> float:
    return STEP_OVERHEAD_S + step_flops(spec) / flops_per_s(spec, device)


def predicted_profile_s(
    spec: FamilySpec | ModelSpec, steps: int = 2, warm_up_steps: int = 3, device: str = "CPU:0"
) -> float:
    """Predicted compute time of one measurement (TensorFlow's start-up not included)."""
    return (steps + warm_up_steps) * predicted_step_s(spec, device)


@dataclass(frozen=True)
class Plan:
    """How many steps a profile measures, or why it is refused."""

    steps: int
    predicted_s: float
    refused: str | None = None  # the reason, naming what would run it


def plan_steps(
    spec: FamilySpec | ModelSpec,
    steps: int,
    warm_up_steps: int,
    budget_s: float = DEFAULT_BUDGET_S,
    device: str = "CPU:0",
) -> Plan:
    """Measure `steps`, fewer (down to 1) when the budget asks, or refuse with a reason."""
    step_s = predicted_step_s(spec, device)
    for candidate in range(steps, 0, -1):
        predicted = (candidate + warm_up_steps) * step_s
        if predicted <= budget_s:
            return Plan(candidate, predicted)
    predicted = (1 + warm_up_steps) * step_s
    if spec.precision == "mixed" and "GPU" not in device.upper() and onednn_float16_cpu():
        why = (
            "mixed precision on this CPU runs float16 MatMuls in oneDNN's float16 kernels "
            f"(AVX512-FP16/AMX-FP16 present, about {FLOAT16_ONEDNN_FLOPS_PER_S / 1e9:.1f} "
            "GFLOP/s)"
        )
    else:
        why = f"{step_flops(spec):.3g} FLOP per step at about {flops_per_s(spec, device):.3g}/s"
    return Plan(
        0,
        predicted,
        f"profile refused: {1 + warm_up_steps} steps predicted to take {predicted:.0f} s, over "
        f"the {budget_s:.0f} s budget ({why}); it needs a GPU (phymem profile --submit "
        "--device-class <gpu>), a smaller batch or width, or a larger --time-budget",
    )
