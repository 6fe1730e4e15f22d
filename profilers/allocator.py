"""Measure the allocator peak of training steps, in a fresh process.

`measure(spec)` builds the model with `profilers.builders`, runs `warm_up_steps` (3)
warm-up steps (the first traces the step function and creates the optimizer slots; the
allocator's layout settles over the next two), then, for each of `steps` steps, resets the
allocator statistics and reads `tf.config.experimental.get_memory_info(device)["peak"]`.
The reported `peak_bytes` is the largest of these per-step peaks: everything alive at the
worst moment of a step (weights, optimizer slots, the input batch and labels, activations
kept for the backward pass, gradients and temporaries).

A measurement must not share a process with another one (TensorFlow's allocators,
thread pools and caches persist), so callers use `measure_in_subprocess`, which runs
`python -m profilers.allocator` with the spec as JSON on stdin and reads one JSON line
back. Out of memory is told by type: a `ResourceExhaustedError` or `MemoryError` caught in
the child, a child killed by SIGKILL (the kernel's OOM killer) or aborted by an uncaught
`std::bad_alloc` (`crash_status`); any other failure is "failed". The caller never
crashes. A memory limit is the process's address space on a CPU and TensorFlow's
per-device allocator limit on a GPU (`memory_limit_kind`).

Repeatable measurements (fresh processes of one spec should give the same bytes) rest on:

- oneDNN on (TF's default kernels) and TF's BFC allocator for the CPU
  (`TF_CPU_ALLOCATOR_USE_BFC=true`, the allocator GPUs use: 256-byte rounding, chunk
  reuse). oneDNN's own allocator would send small tensors to a malloc pool that
  `get_memory_info` does not count.
- Inter- and intra-op thread pools pinned to one thread before any op runs
  (`pin_threads`, which refuses to measure when it cannot).
- TF's single-threaded executor for the step function
  (`function_executor_type("SINGLE_THREADED_EXECUTOR")`): the traced step's ops run one
  by one in one topological order, where the default executor's calling and pool threads
  race. Graphs it refuses (reference-typed edges, v1 control flow) fall back to the
  default executor; `Measurement.executor` says which one ran.
- `PYTHONHASHSEED=0` and a `gc.collect()` before each measured step, so Python-side
  ordering and garbage collection of eager tensors are the same in every process.
- The input batch and labels always copied into TF's allocator (`_batch_tensor`):
  `tf.constant(ndarray)` aliases a numpy copy when it happens to be 64-byte aligned and
  copies it into the allocator otherwise, which would differ per process.
- The optimizer's slot variables created eagerly when the model is built
  (`profilers.builders.build`), not inside a traced initialisation graph whose op order
  varies per process.

What still varies: the single-threaded executor orders the step graph's nodes by
`GetReversePostOrder(graph)`, whose DFS walks each node's out-edges from a hash set keyed
by Edge pointers once a node has more than eight (gtl::FlatSet, graph/edgeset.h), so heap
addresses decide the order of independent nodes and a minority of processes land on
other allocator layouts (up to ~29% apart at batch 256). That is why a measurement is the
median of several fresh processes (`phymem profile --runs`, benchmarks/accuracy.md) and
why the estimator states an `upper_bytes` beside its expected peak.
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
    # oneDNN's CPU kernels, which framework mode was traced with (estimator.framework.BASIS).
    # TF turns them on by default only on CPUs with AVX512 VNNI/BF16 or AMX; elsewhere (an
    # AVX2 AMD EPYC, seen here) its Eigen kernels run, and Eigen's Conv2DBackpropFilter
    # takes a 28 MB temporary on CsiNet 1/16 at batch 32 (65.0 MB measured against 36.2 MB
    # modelled; `python -m profilers.trace explain`): set, so that every host measures the
    # same kernels.
    "TF_ENABLE_ONEDNN_OPTS": "1",
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
    """One inter- and one intra-op thread: repeatable allocation order depends on it, so a
    process whose runtime already started with other pools refuses to measure."""
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(1)
    except RuntimeError:  # the runtime is initialized; its pools may already be pinned
        pass
    pools = (
        tf.config.threading.get_inter_op_parallelism_threads(),
        tf.config.threading.get_intra_op_parallelism_threads(),
    )
    if pools != (1, 1):
        raise RuntimeError(
            f"TensorFlow's thread pools could not be pinned to one thread (inter, intra = "
            f"{pools}): measurements in this process would not repeat"
        )


def memory_limit_kind(device: str) -> str:
    """How a profile's memory limit is applied on `device`: the process's address space
    (RLIMIT_AS) on a CPU, TensorFlow's own per-device allocator limit on a GPU, where an
    address-space limit would only cap the host side."""
    return "address-space" if device.upper().startswith("CPU") else "device-allocator"


def limit_device_memory(tf: Any, device: str, limit_bytes: int) -> None:
    """Cap a GPU's allocator at `limit_bytes` (before TensorFlow initializes the device)."""
    kind, _, index = device.upper().partition(":")
    gpus = tf.config.list_physical_devices(kind)
    position = int(index or 0)
    if position >= len(gpus):
        raise RuntimeError(f"no device {device} to limit (found {len(gpus)} of kind {kind})")
    megabytes = max(1, limit_bytes // 2**20)  # TensorFlow takes the limit in MiB
    tf.config.set_logical_device_configuration(
        gpus[position], [tf.config.LogicalDeviceConfiguration(memory_limit=megabytes)]
    )


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
    device_memory_limit_bytes: int | None = None,
) -> Measurement:
    """Measure in this process (call it in a fresh one: see `measure_in_subprocess`)."""
    for key, value in child_env(device).items():
        os.environ.setdefault(key, value)
    import tensorflow as tf

    pin_threads(tf)
    if device_memory_limit_bytes is not None:
        limit_device_memory(tf, device, device_memory_limit_bytes)
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
    status = crash_status(done.returncode, tail)
    return Measurement(status=status, device=device, error=f"exit status {done.returncode}\n{tail}")


# libstdc++'s last words when an uncaught exception ends the process: the type it names
UNCAUGHT_BAD_ALLOC = "terminate called after throwing an instance of 'std::bad_alloc'"


def crash_status(returncode: int, stderr_tail: str) -> str:
    """The status of a child that died before printing its result. Out of memory is told by
    the signal (SIGKILL: the kernel's OOM killer) or by the type of the uncaught C++
    exception that aborted it (std::bad_alloc); exceptions Python sees are classified by
    type in the child itself (`measure`). Anything else is a failure, whatever it says."""
    if returncode == -signal.SIGKILL:
        return "oom"
    if returncode == -signal.SIGABRT and UNCAUGHT_BAD_ALLOC in stderr_tail:
        return "oom"
    return "failed"


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
    limit = args.memory_limit_bytes
    if limit is not None and memory_limit_kind(args.device) == "address-space":
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        result = measure(
            spec,
            steps=args.steps,
            device=args.device,
            seed=args.seed,
            warm_up_steps=args.warm_up_steps,
            device_memory_limit_bytes=(
                limit if memory_limit_kind(args.device) == "device-allocator" else None
            ),
        )
    except MemoryError as error:
        result = Measurement(status="oom", device=args.device, error=f"MemoryError: {error}")
    print(RESULT_PREFIX + result.to_json(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
