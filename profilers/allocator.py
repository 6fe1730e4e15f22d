"""Measure the allocator peak of training steps, in a fresh process.

`measure(spec)` builds the model with `profilers.builders`, runs `warm_up_steps` (3)
warm-up steps (the first traces the step function and creates the optimizer slots; with
only one, the two measured steps of one process differed by up to 9%; with three they
agree to within 0.2% in 108 of 125 grid runs), then, for each of `steps` steps, resets the
allocator statistics and reads `tf.config.experimental.get_memory_info(device)["peak"]`.
The reported `peak_bytes` is the largest of these per-step peaks: everything alive at the
worst moment of a step (weights, optimizer slots, the input batch and labels, activations
kept for the backward pass, gradients and temporaries).

A measurement must not share a process with another one (TensorFlow's allocators,
thread pools and caches persist), so callers use `measure_in_subprocess`, which runs
`python -m profilers.allocator` with the spec as JSON on stdin and reads one JSON line
back. A `ResourceExhaustedError` or `MemoryError` in the child, or a child killed by
SIGKILL (the kernel's OOM killer), comes back as status "oom"; any other failure as
"failed". The caller never crashes.

Determinism (repeated fresh-process runs must give the same bytes), chosen by experiment
on TF 2.21 (see benchmarks/accuracy.md for the spread):

- oneDNN stays on (TF's default kernels) and the CPU allocator is TF's BFC allocator
  (`TF_CPU_ALLOCATOR_USE_BFC=true`, the allocator GPUs use: 256-byte rounding, chunk
  reuse). Without it, oneDNN's allocator sends tensors below its large-size threshold to
  a malloc pool whose bytes `get_memory_info` does not count (a small model reads 0).
  The same BFC allocator with oneDNN off varied by up to 12% between runs.
- Inter- and intra-op thread pools are pinned to one thread before any op runs.
- The step function runs on TF's single-threaded executor
  (`function_executor_type("SINGLE_THREADED_EXECUTOR")`): the ops of the traced step run
  one by one in one topological order (fixed within a process; see below). With the
  default executor the calling thread and the pool thread still race, so the order of
  allocations (and the peak) changed from run to run (165.2M / 177.7M / 199.8M bytes
  for ae k=4 nt=2 B=256). Graphs the single-threaded executor refuses (reference-typed
  edges, v1 control flow) fall back to the default executor; `Measurement.executor`
  says which one ran.
- `PYTHONHASHSEED=0` and a `gc.collect()` before each measured step, so Python-side
  ordering and garbage collection of eager tensors do not move between runs.
- The input batch and labels are always copied into TF's allocator (`_batch_tensor`):
  `tf.constant(ndarray)` copies the array with numpy (malloc'd, so its address varies
  between processes) and TF aliases that copy when it is 64-byte aligned and copies it
  into the allocator otherwise, so each of x and y was in the allocator in some processes
  only (traced: the first divergence of two processes' allocation sequences, bae k=6
  nt=2 B=256, 150.9M vs 159.5M).
- The optimizer's slot variables are created eagerly when the model is built
  (`profilers.builders.build`); Keras otherwise creates them while tracing the first step,
  and tf.function lifts their initialisers into an `initialize_variables` graph whose op
  order changed from process to process (the next divergence, 161M / 168M / 195M).

What is left: the step function's graph is still ordered per process. TF's
single-threaded executor orders (and creates the kernels of, so allocates the constants
of) the nodes by `GetReversePostOrder(graph)` without a stable comparator; the DFS walks
each node's out-edges, which TF keeps in a hash set keyed by the Edge pointer once there
are more than eight (gtl::FlatSet, graph/edgeset.h), so heap addresses decide the order
of independent nodes (first divergence of two traces after the two fixes above: the order of the
graph's ~35 constants, some batch-sized). On the grid, 89 of 125 runs now lie within
0.5% of their config's median (77 before the two fixes), but a minority of processes
still lands on other layouts (up to 29% apart at batch 256; benchmarks/accuracy.md), so
the benchmark still takes the median of several processes. Also without effect on that
spread: `MALLOC_ARENA_MAX=1`; tried earlier: address-space randomisation off (`setarch -R`),
`tf.config.experimental.enable_op_determinism()`, grappler's memory optimizer off, Keras
`fit` instead of `train_on_batch`.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from estimator.spec import FamilySpec, ModelSpec, canonical_json

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "PHYMEM_RESULT "
CHILD_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "OMP_NUM_THREADS": "1",
    "PYTHONHASHSEED": "0",
    "TF_CPU_ALLOCATOR_USE_BFC": "true",
}
HIDE_GPUS = {"CUDA_VISIBLE_DEVICES": ""}  # CPU measurements only: GPU jobs need their GPU
SINGLE_THREADED_EXECUTOR = "SINGLE_THREADED_EXECUTOR"
WARM_UP_STEPS = 3  # before the measured steps; estimator.framework replays as many
_EIGEN_ALIGNMENT = 64  # TF aliases numpy buffers aligned to this, copies the others


def child_env(device: str) -> dict[str, str]:
    """Environment of a measurement process; GPUs stay visible when one is measured."""
    if "GPU" in device.upper():  # "GPU:0", "/GPU:0", "/device:GPU:0"
        return dict(CHILD_ENV)
    return {**CHILD_ENV, **HIDE_GPUS}


@dataclass
class Measurement:
    status: str  # "ok", "oom" or "failed"
    peak_bytes: int | None = None
    step_time_s: float | None = None
    tf_version: str | None = None
    device: str | None = None
    device_total_bytes: int | None = None
    resident_bytes: int | None = None  # allocator 'current' after the warm-up step
    step_peaks: list[int] = field(default_factory=list)
    executor: str | None = None  # "single-threaded" or "default" (fallback)
    error: str | None = None
    host: str = field(default_factory=platform.node)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def parse_spec(text: str) -> FamilySpec | ModelSpec:
    data = json.loads(text)
    if "family" in data:
        return FamilySpec.model_validate(data)
    return ModelSpec.model_validate(data)


def pin_threads(tf: Any) -> None:
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(1)
    except RuntimeError:  # already initialized: keep going, the numbers are still valid
        pass


def _device_total(device: str) -> int | None:
    if device.upper().startswith("CPU"):
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            return None
    try:
        from profilers.nvml import device_total_bytes

        return device_total_bytes()
    except Exception:
        return None


def _batch_tensor(tf: Any, array: Any) -> Any:
    """A tensor copied into TF's allocator exactly once, whatever the array's address.

    `tf.constant(ndarray)` copies the array with numpy (malloc: its address varies from
    process to process) and TF then aliases that copy when it is 64-byte aligned
    (EIGEN_MAX_ALIGN_BYTES) and copies it into the allocator otherwise. Handing TF an
    array placed 16 bytes past a 64-byte boundary always takes the copy.
    """
    import numpy as np
    from tensorflow.python.eager import context
    from tensorflow.python.framework import ops

    buffer = np.empty(array.nbytes + 2 * _EIGEN_ALIGNMENT, dtype=np.uint8)
    start = -buffer.ctypes.data % _EIGEN_ALIGNMENT + 16
    staged = buffer[start : start + array.nbytes].view(array.dtype).reshape(array.shape)
    staged[...] = array
    dtype = tf.as_dtype(array.dtype).as_datatype_enum
    ctx = context.context()
    ctx.ensure_initialized()
    return ops.EagerTensor(staged, ctx.device_name, dtype)


def _step_function(tf: Any, model: Any, x: Any, y: Any) -> Any:
    from tensorflow.python.eager import context

    def step(single_threaded: bool) -> None:
        if single_threaded:
            with context.function_executor_type(SINGLE_THREADED_EXECUTOR):
                model.train_on_batch(x, y)
        else:
            model.train_on_batch(x, y)

    return step


def _warm_up(tf: Any, step: Any) -> str:
    """Run the first step; the executor that will run the measured steps."""
    try:
        step(True)
        return "single-threaded"
    except tf.errors.UnimplementedError:  # graph the single-threaded executor refuses
        step(False)
        return "default"


def measure(
    spec: FamilySpec | ModelSpec,
    *,
    steps: int = 3,
    device: str = "CPU:0",
    seed: int = 0,
    warm_up_steps: int = WARM_UP_STEPS,
) -> Measurement:
    """Measure in this process (call it in a fresh one: see `measure_in_subprocess`)."""
    for key, value in child_env(device).items():
        os.environ.setdefault(key, value)
    import tensorflow as tf

    pin_threads(tf)
    from profilers.builders import build, make_batch

    result = Measurement(status="failed", tf_version=tf.__version__, device=device)
    result.device_total_bytes = _device_total(device)
    try:
        with tf.device(device):
            built = build(spec, seed=seed)
            x_np, y_np = make_batch(spec, seed=seed)
            x, y = _batch_tensor(tf, x_np), _batch_tensor(tf, y_np)
            del x_np, y_np
            step = _step_function(tf, built.model, x, y)
            result.executor = _warm_up(tf, step)  # tracing, optimizer slots
            for _ in range(warm_up_steps - 1):  # until the allocator's layout settles
                step(result.executor == "single-threaded")
            gc.collect()
            result.resident_bytes = int(tf.config.experimental.get_memory_info(device)["current"])
            times = []
            for _ in range(steps):
                gc.collect()
                tf.config.experimental.reset_memory_stats(device)
                start = time.perf_counter()
                step(result.executor == "single-threaded")
                times.append(time.perf_counter() - start)
                result.step_peaks.append(
                    int(tf.config.experimental.get_memory_info(device)["peak"])
                )
        result.peak_bytes = max(result.step_peaks)
        result.step_time_s = sorted(times)[len(times) // 2]
        result.status = "ok"
    except tf.errors.ResourceExhaustedError as error:
        result.status, result.error = "oom", str(error).strip()[:2000]
    except MemoryError as error:
        result.status, result.error = "oom", f"MemoryError: {error}"[:2000]
    except Exception as error:
        result.status, result.error = "failed", f"{type(error).__name__}: {error}"[:2000]
    return result


def measure_in_subprocess(
    spec: FamilySpec | ModelSpec,
    *,
    steps: int = 3,
    device: str = "CPU:0",
    memory_limit_bytes: int | None = None,
    timeout_s: float | None = 1800,
    seed: int = 0,
    warm_up_steps: int = WARM_UP_STEPS,
    time_budget_s: float | None = None,
) -> Measurement:
    """Run `measure` in a fresh Python process; failures come back as a status.

    With `time_budget_s`, the step count is first fitted to the budget by
    `profilers.budget.plan_steps` (fewer measured steps, down to one), and a spec whose
    steps cannot fit it is refused (status "failed", the reason naming what would run it)
    before any process starts.
    """
    if time_budget_s is not None:
        from profilers.budget import plan_steps

        planned = plan_steps(spec, steps, warm_up_steps, time_budget_s, device)
        if planned.refused is not None:
            return Measurement(status="failed", device=device, error=planned.refused)
        steps = planned.steps
    command = [sys.executable, "-m", "profilers.allocator", "--steps", str(steps)]
    command += ["--warm-up-steps", str(warm_up_steps)]
    command += ["--device", device, "--seed", str(seed)]
    if memory_limit_bytes is not None:
        command += ["--memory-limit-bytes", str(memory_limit_bytes)]
    env = {**os.environ, **child_env(device)}
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)  # keep TF's default (oneDNN on)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    try:
        done = subprocess.run(
            command,
            input=canonical_json(spec),
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO_ROOT,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Measurement(status="failed", device=device, error=f"timed out after {timeout_s}s")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return Measurement.from_dict(json.loads(line[len(RESULT_PREFIX) :]))
    tail = (done.stderr or "")[-2000:]
    if done.returncode == -signal.SIGKILL:
        return Measurement(status="oom", device=device, error=f"killed by SIGKILL\n{tail}")
    oom_markers = ("MemoryError", "ResourceExhaustedError", "std::bad_alloc", "OOM")
    if any(marker in tail for marker in oom_markers):
        return Measurement(status="oom", device=device, error=tail)
    return Measurement(
        status="failed", device=device, error=f"exit status {done.returncode}\n{tail}"
    )


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Measure one training step's peak (JSON in).")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="CPU:0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warm-up-steps", type=int, default=WARM_UP_STEPS)
    parser.add_argument("--memory-limit-bytes", type=int, default=None)
    parser.add_argument("--spec", default=None, help="spec JSON (default: read stdin)")
    args = parser.parse_args(argv)
    spec = parse_spec(args.spec if args.spec is not None else sys.stdin.read())
    if args.memory_limit_bytes is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (args.memory_limit_bytes, args.memory_limit_bytes))
    try:
        result = measure(
            spec,
            steps=args.steps,
            device=args.device,
            seed=args.seed,
            warm_up_steps=args.warm_up_steps,
        )
    except MemoryError as error:
        result = Measurement(status="oom", device=args.device, error=f"MemoryError: {error}")
    print(RESULT_PREFIX + result.to_json(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
