"""Training jobs: train a family's autoencoder over a MIMO channel, measure, evaluate.

Three layers, as for profile jobs:

- `run_task(payload)` runs inside the job's Ray task: it starts `python -m
  app.worker.training` (a fresh process, so the allocator statistics are the run's own and
  a crash or SIGKILL does not take the Ray worker down) and reads one JSON result line back.
  A child killed by a signal comes back as status "interrupted": the dispatcher puts the job
  back in the queue (`queue.retry_or_fail`), and the next attempt resumes from the last
  checkpoint.
- `train_and_evaluate(payload)` is the child: phase "build" (the Keras model from the spec,
  through `profilers.builders`; a checkpoint restored if there is one), "train" (the spec's
  optimizer over the chosen channel at the training Eb/N0; a checkpoint every
  `checkpoint_every` steps; the allocator peak read as `profilers.allocator` reads it), and
  "evaluate" (BER/SER/BLER of the trained model and of the classical baselines through
  `profilers.phy`). Progress goes to the job row as it runs (`queue.set_training_progress`,
  at most every `PROGRESS_EVERY_S`, and at every checkpoint and phase change).
- `record(...)` writes the outcome in the dispatcher: the job's result, the measurement
  paired with the estimate of the same spec and batch, and the BER rows.

The training model is the spec's layer list (`engine.model_for(spec, "framework")`, each
layer built by `profilers.builders`) with the spec's channel and noise layers replaced by
`MimoChannel`, which applies the job's channel to the encoder's output: y = H x + n with
[Re | Im] laid out as the builder lays them out. Bits, the channel (rayleigh) and the noise
are drawn with numpy from one seeded generator, saved in every checkpoint, so a resumed run
sees the data an uninterrupted one would have seen. Definitions (README "Training jobs"):
one channel use, each transmit antenna one complex symbol; AE and BAE normalize their
batch to Es = 1 per antenna; the Tanh-BAE's tanh outputs are scaled by 1/sqrt(2) per real
dimension (peak energy 1 per antenna); N0 = Es / (k Eb/N0) with Es = 1 per antenna;
rayleigh gives the decoder H as well: [Re y | Im y | Re H | Im H] (H row-major), so its
first decoder layer is wider than the estimator's spec counts.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import math
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.api.schemas import EvaluateParams, TrainParams
from app.services import training as paths
from estimator.spec import AnySpec, FamilySpec, ModelSpec

_log = logging.getLogger("phymem.worker")

RESULT_PREFIX = "PHYMEM_TRAIN_RESULT "
PROGRESS_EVERY_S = 0.5
WARM_UP_STEPS = 3  # as profilers.allocator: steps before the allocator peak is read
TANH_SCALE = 1.0 / math.sqrt(2.0)  # tanh-bae: peak energy 1 per antenna
ONE_HOT_FAMILIES = ("ae", "ae-embedding")


# --- Keras layers of the training model (registered: the .keras file loads by name) -------


@functools.cache
def _layers() -> tuple[type, type]:
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="phymem")
    class UnitEnergy(keras.layers.Layer):  # type: ignore[misc]
        """AE/BAE power normalization: the batch's mean energy per complex symbol is 1."""

        def call(self, x: Any) -> Any:
            energy = ops.mean(ops.square(x)) * 2.0  # Re^2 + Im^2 per complex value
            return x * ops.rsqrt(energy + 1e-12)

    @keras.saving.register_keras_serializable(package="phymem")
    class MimoChannel(keras.layers.Layer):  # type: ignore[misc]
        """y = H x + n per sample, reals as [Re | Im]: a fixed H (awgn, cross), or per-sample
        H given as an input (rayleigh: [Re H | Im H], each (nr, nt) row-major)."""

        def __init__(self, nt: int, nr: int, matrix: list[list[float]] | None, **kwargs: Any):
            super().__init__(**kwargs)
            self.nt, self.nr, self.matrix = nt, nr, matrix

        def call(self, inputs: list[Any]) -> Any:
            x, noise = inputs[0], ops.cast(inputs[1], inputs[0].dtype)
            xr, xi = x[:, : self.nt], x[:, self.nt :]
            if self.matrix is not None:
                m = ops.cast(ops.convert_to_tensor(np.asarray(self.matrix).T), x.dtype)
                yr, yi = ops.matmul(xr, m), ops.matmul(xi, m)
            else:
                h = ops.cast(inputs[2], x.dtype)
                size = self.nr * self.nt
                hr = ops.reshape(h[:, :size], (-1, self.nr, self.nt))
                hi = ops.reshape(h[:, size:], (-1, self.nr, self.nt))
                yr = ops.einsum("brt,bt->br", hr, xr) - ops.einsum("brt,bt->br", hi, xi)
                yi = ops.einsum("brt,bt->br", hr, xi) + ops.einsum("brt,bt->br", hi, xr)
            return ops.concatenate([yr, yi], axis=-1) + noise

        def compute_output_shape(self, input_shapes: Any) -> Any:
            return (input_shapes[0][0], 2 * self.nr)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "nt": self.nt, "nr": self.nr, "matrix": self.matrix}

    return UnitEnergy, MimoChannel


def load_model(path: str | Path) -> Any:
    """A trained job's `.keras` file as a Keras model (registers the channel layers first)."""
    import keras

    _layers()
    return keras.saving.load_model(path)


@dataclass
class TrainingModel:
    """The compiled training model and the encoder / decoder that evaluation runs."""

    model: Any
    encoder: Any
    decoder: Any
    loss: str


def _training_inputs(model_spec: Any, nt: int, nr: int, fixed: bool) -> tuple[Any, ...]:
    """The training model's inputs (message, noise, h) and the decoder's (rx)."""
    import keras

    dtype = "int32" if model_spec.input_kind == "index" else "float32"
    message = keras.Input(shape=(model_spec.input_size,), dtype=dtype, name="message")
    noise = keras.Input(shape=(2 * nr,), dtype="float32", name="noise")
    h_in = keras.Input(shape=(2 * nr * nt,), dtype="float32", name="h")
    rx = keras.Input(shape=(2 * nr + (0 if fixed else 2 * nr * nt),), name="rx")
    return message, noise, h_in, rx


def _split_layers(spec: FamilySpec, model_spec: Any, policy: str) -> tuple[list[Any], list[Any]]:
    """The spec's Keras layers before and after its channel (the channel and noise
    layers dropped: `MimoChannel` replaces them)."""
    import keras

    from estimator.layers import resolve
    from profilers.builders import _layer_group

    unit_energy, _ = _layers()
    encoder_layers: list[Any] = []
    decoder_layers: list[Any] = []
    current = encoder_layers
    last_index = len(model_spec.layers) - 1
    for layer, info in zip(model_spec.layers, resolve(model_spec), strict=True):
        if layer.type in ("complex_channel", "gaussian_noise"):
            current = decoder_layers
        elif layer.type == "power_norm":
            current.append(unit_energy(dtype=policy, name=info.name))
        else:
            current.extend(_layer_group(layer, info, policy, info.index == last_index, info.name))
    if spec.family == "tanh-bae":
        encoder_layers.append(keras.layers.Rescaling(TANH_SCALE, dtype=policy, name="peak_1"))
    return encoder_layers, decoder_layers


def _chain(layers: list[Any], x: Any) -> Any:
    for item in layers:
        x = item(x)
    return x


def build_training_model(spec: FamilySpec, train: TrainParams) -> TrainingModel:
    """The spec's autoencoder with the job's channel in place of the spec's channel layers."""
    import keras

    from estimator.engine import model_for
    from profilers.builders import make_optimizer
    from profilers.phy.channels import ChannelSpec, fixed_matrix

    _, mimo_channel = _layers()
    model_spec = model_for(spec, "framework")
    keras.utils.set_random_seed(train.seed)
    policy = "mixed_float16" if model_spec.precision == "mixed" else "float32"
    nt, nr = spec.nt, spec.receive_antennas
    channel = ChannelSpec(train.channel, nt, nr, train.cross)
    matrix = None if channel.kind == "rayleigh" else fixed_matrix(channel).real.tolist()
    message, noise, h_in, rx = _training_inputs(model_spec, nt, nr, matrix is not None)
    encoder_layers, decoder_layers = _split_layers(spec, model_spec, policy)

    symbols = _chain(encoder_layers, message)
    channel_inputs = [symbols, noise] if matrix is not None else [symbols, noise, h_in]
    y = mimo_channel(nt, nr, matrix, dtype=policy, name="mimo_channel")(channel_inputs)
    if matrix is None:
        y = keras.layers.Concatenate(name="with_csi", dtype=policy)([y, h_in])
    inputs = [message, noise] if matrix is not None else [message, noise, h_in]
    model = keras.Model(inputs, _chain(decoder_layers, y), name="phymem_train")
    optimizer = make_optimizer(model_spec.optimizer)
    optimizer.learning_rate = float(train.lr or 0.0)
    model.compile(optimizer=optimizer, loss=model_spec.loss, jit_compile=False)
    model.optimizer.build(model.trainable_variables)  # eagerly, as profilers.builders does

    encoder = keras.Model(message, symbols, name="encoder")
    decoder = keras.Model(rx, _chain(decoder_layers, rx), name="decoder")
    return TrainingModel(model, encoder, decoder, model_spec.loss)


# --- Data ---------------------------------------------------------------------------------


def bit_weights(width: int) -> np.ndarray:
    return (1 << np.arange(width - 1, -1, -1)).astype(np.int64)


def message_inputs(spec: FamilySpec, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The encoder input and the label of each message (its bits, MSB first)."""
    if spec.family not in ONE_HOT_FAMILIES:
        as_float = bits.astype(np.float32)
        return as_float, as_float
    index = bits.astype(np.int64) @ bit_weights(bits.shape[1])
    if spec.family == "ae-embedding":
        return index.reshape(-1, 1).astype(np.int32), index.astype(np.int32)
    one_hot = np.zeros((bits.shape[0], 1 << bits.shape[1]), dtype=np.float32)
    one_hot[np.arange(bits.shape[0]), index] = 1.0
    return one_hot, one_hot


def decide_bits(spec: FamilySpec, output: np.ndarray) -> np.ndarray:
    """Hard decisions: bit-wise (sigmoid > 1/2), or the most likely message's bits."""
    width = spec.k * spec.nt
    if spec.family not in ONE_HOT_FAMILIES:
        return (output > 0.5).astype(np.uint8)
    index = np.argmax(output, axis=1)
    shifts = np.arange(width - 1, -1, -1)
    decided: np.ndarray = ((index[:, None] >> shifts[None, :]) & 1).astype(np.uint8)
    return decided


def reals(z: np.ndarray) -> np.ndarray:
    """[Re | Im] of a (batch, ...) complex array, flattened per sample (row-major)."""
    flat = z.reshape(z.shape[0], -1)
    out: np.ndarray = np.concatenate([flat.real, flat.imag], axis=1).astype(np.float32)
    return out


def train_batch(
    spec: FamilySpec, train: TrainParams, rng: np.random.Generator
) -> tuple[list[np.ndarray], np.ndarray]:
    """One step's inputs ([message, noise(, h)]) and labels, per the job's definitions."""
    from profilers.phy.baselines import random_bits
    from profilers.phy.channels import ChannelSpec, draw_channel, noise_n0

    batch = int(train.batch or spec.batch)
    nt, nr, k = spec.nt, spec.receive_antennas, spec.k
    bits = random_bits((batch, k * nt), rng)
    message, labels = message_inputs(spec, bits)
    if isinstance(train.train_ebn0_db, list):
        low, high = train.train_ebn0_db
        ebn0 = rng.uniform(low, high, size=(batch, 1))
    else:
        ebn0 = np.full((batch, 1), float(train.train_ebn0_db))
    n0 = noise_n0(ebn0, k)  # Es = 1 per antenna
    noise = rng.standard_normal((batch, 2 * nr)) * np.sqrt(n0 / 2.0)
    inputs = [message, noise.astype(np.float32)]
    if train.channel == "rayleigh":
        h = draw_channel(ChannelSpec("rayleigh", nt, nr), batch, rng)
        inputs.append(reals(h))
    return inputs, labels


# --- Checkpoints --------------------------------------------------------------------------


@dataclass
class RunState:
    step: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)
    rng_state: dict[str, Any] | None = None
    peak_bytes: int | None = None
    step_peaks: list[int] = field(default_factory=list)
    untrained: list[dict[str, Any]] | None = None  # the task's metrics before step 1


def save_checkpoint(path: Path, model: Any, state: RunState) -> None:
    """Weights, optimizer variables and run state in one file, replaced atomically."""
    arrays: dict[str, np.ndarray] = {}
    for i, value in enumerate(model.get_weights()):
        arrays[f"w{i}"] = value
    for i, variable in enumerate(model.optimizer.variables):
        arrays[f"o{i}"] = np.asarray(variable.numpy())
    meta = asdict(state)
    arrays["state"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)


def load_checkpoint(path: Path, model: Any) -> RunState | None:
    if not path.is_file():
        return None
    with np.load(path) as data:
        weights = [data[f"w{i}"] for i in range(len(model.get_weights()))]
        slots = [data[f"o{i}"] for i in range(len(model.optimizer.variables))]
        meta = json.loads(bytes(data["state"]).decode())
    model.set_weights(weights)
    for variable, value in zip(model.optimizer.variables, slots, strict=True):
        variable.assign(value)
    return RunState(
        step=int(meta["step"]),
        history=[(int(s), float(v)) for s, v in meta["history"]],
        rng_state=meta["rng_state"],
        peak_bytes=meta.get("peak_bytes"),
        step_peaks=list(meta.get("step_peaks") or []),
        untrained=meta.get("untrained"),
    )


def write_history(path: Path, history: list[tuple[int, float]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"loss": history}))
    os.replace(tmp, path)


# --- Progress -----------------------------------------------------------------------------


class Cancelled(RuntimeError):
    """The job's lease is gone (cancelled, or re-leased): stop."""


class Progress:
    """Writes the job row's progress columns, throttled. Without a database (a local
    `phymem train`) the same values go to `progress.json` in the run's directory."""

    def __init__(
        self, database_url: str | None, owner: str | None, job_id: int | None, workdir: Path
    ):
        self.job_id, self.owner = job_id, owner
        self.last = 0.0
        self.sessions: Any = None
        self.file = workdir / paths.PROGRESS_FILE
        self.values: dict[str, Any] = {}
        if database_url and owner and job_id is not None:
            from app.db.session import make_engine, make_sessionmaker

            self.engine = make_engine(database_url)
            self.sessions = make_sessionmaker(self.engine)

    def __call__(self, force: bool = False, **values: Any) -> None:
        now = time.monotonic()
        self.values.update(values)
        if not force and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        if self.sessions is None:
            tmp = self.file.with_name(self.file.name + ".tmp")
            tmp.write_text(json.dumps(self.values))
            os.replace(tmp, self.file)
            return
        from app.services import queue

        with self.sessions() as session:
            held = queue.set_training_progress(session, str(self.owner), self.job_id or 0, **values)
        if not held:
            raise Cancelled(f"job {self.job_id}: lease lost (cancelled or re-leased)")

    def close(self) -> None:
        if self.sessions is not None:
            self.engine.dispose()


# --- Evaluation ---------------------------------------------------------------------------


def model_link(spec: FamilySpec, train: TrainParams, net: TrainingModel) -> Callable[..., Any]:
    """The trained model as a Monte Carlo link of profilers.phy (encoder -> channel ->
    decoder), N0 from the nominal Es = 1 so any energy excess shows in tx_energy."""
    import tensorflow as tf

    from profilers.phy.baselines import random_bits
    from profilers.phy.channels import ChannelSpec, draw_channel, noise_n0, transmit
    from profilers.phy.montecarlo import LinkOutcome

    k, nt, nr = spec.k, spec.nt, spec.receive_antennas
    channel = ChannelSpec(train.channel, nt, nr, train.cross)
    encode = tf.function(lambda m: net.encoder(m, training=False))
    decode = tf.function(lambda r: net.decoder(r, training=False))

    def link(batch: int, ebn0_db: float, rng: np.random.Generator) -> LinkOutcome:
        bits = random_bits((batch, k * nt), rng)
        message, _ = message_inputs(spec, bits)
        out = np.asarray(encode(tf.constant(message)), dtype=np.float64)
        x = out[:, :nt] + 1j * out[:, nt:]
        h = draw_channel(channel, batch, rng)
        y = transmit(x, h, noise_n0(ebn0_db, k), rng)
        rx = reals(y) if channel.is_fixed else np.concatenate([reals(y), reals(h)], axis=1)
        decided = decide_bits(spec, np.asarray(decode(tf.constant(rx))))
        energy = float(np.mean(np.abs(x) ** 2))
        return LinkOutcome(bits, decided, energy, symbol_bits=k)

    return link


def simulate_links(
    links: list[tuple[str, Any]], evaluate: EvaluateParams, on_point: Callable[[str, float], None]
) -> list[dict[str, Any]]:
    """BER rows of each (name, link) in turn on the evaluation grid; `on_point(name, x)`
    announces each point before it runs."""
    from profilers.phy.montecarlo import parse_grid, simulate

    grid = parse_grid(evaluate.ebn0_db)
    rows: list[dict[str, Any]] = []
    for name, link in links:
        rest = iter(grid[1:])

        def announce(_point: Any, name: str = name, rest: Any = rest) -> None:
            upcoming = next(rest, None)
            if upcoming is not None:
                on_point(name, upcoming)

        on_point(name, grid[0])
        points = simulate(
            link,
            grid,
            detector=name,
            target_errors=evaluate.target_errors,
            max_bits=evaluate.max_bits,
            seed=evaluate.seed,
            on_point=announce,
        )
        rows.extend(point.row() for point in points)
    return rows


def evaluate_all(
    spec: FamilySpec,
    train: TrainParams,
    evaluate: EvaluateParams,
    net: TrainingModel,
    on_point: Callable[[str, float], None],
) -> list[dict[str, Any]]:
    """BER rows of the trained model, then of each baseline, on the evaluation grid."""
    from profilers.phy.baselines import baseline_link
    from profilers.phy.channels import ChannelSpec

    channel = ChannelSpec(train.channel, spec.nt, spec.receive_antennas, train.cross)
    links: list[tuple[str, Any]] = [(spec.family, model_link(spec, train, net))]
    links += [(name, baseline_link(name, spec.k, channel)) for name in evaluate.baselines]
    return simulate_links(links, evaluate, on_point)


@dataclass
class AutoencoderTask:
    """The MIMO autoencoders' part of a training job (see `app.worker.seed_tasks.Task`):
    bits over the job's channel, BER rows of the model and the baselines, no metrics."""

    spec: FamilySpec
    train: TrainParams
    evaluation: EvaluateParams
    net: TrainingModel = field(init=False)
    model: Any = field(init=False)

    def __post_init__(self) -> None:
        self.net = build_training_model(self.spec, self.train)
        self.model = self.net.model

    def batch(self, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
        return train_batch(self.spec, self.train, rng)

    def metrics(self, *, untrained: bool = False) -> list[dict[str, Any]]:
        return []

    def evaluate(self, on_point: Callable[[str, float], None]) -> list[dict[str, Any]]:
        return evaluate_all(self.spec, self.train, self.evaluation, self.net, on_point)


def make_task(spec: AnySpec, train: TrainParams, evaluate: EvaluateParams) -> Any:
    """The job's task: the family's data, metrics and evaluation."""
    from app.worker.seed_tasks import make_task as seed_task

    kind = paths.training_kind(spec)
    if kind == "autoencoder":
        assert isinstance(spec, FamilySpec)
        return AutoencoderTask(spec, train, evaluate)
    assert isinstance(spec, ModelSpec)
    return seed_task(kind, spec, train, evaluate)


# --- The child process --------------------------------------------------------------------


def _step_runner(model: Any) -> Callable[[list[Any], Any], float]:
    """train_on_batch on TF's single-threaded executor where the graph allows (as
    profilers.allocator measures), else the default executor."""
    import tensorflow as tf
    from tensorflow.python.eager import context

    from profilers.allocator import SINGLE_THREADED_EXECUTOR

    single = [True]

    def run(x: list[Any], y: Any) -> float:
        if single[0]:
            try:
                with context.function_executor_type(SINGLE_THREADED_EXECUTOR):
                    return float(model.train_on_batch(x, y))
            except tf.errors.UnimplementedError:
                single[0] = False
        return float(model.train_on_batch(x, y))

    return run


@dataclass
class LoopStats:
    """What the training loop measured in this attempt."""

    resumed_from: int
    done_here: int = 0
    times: list[float] = field(default_factory=list)
    train_s: float = 0.0


def _checkpoint(
    workdir: Path, model: Any, state: RunState, rng: np.random.Generator, run_peaks: list[int]
) -> None:
    state.rng_state = dict(rng.bit_generator.state)
    if run_peaks:
        state.peak_bytes = max([*run_peaks, state.peak_bytes or 0])
        state.step_peaks = run_peaks[-5:]
    save_checkpoint(workdir / paths.CHECKPOINT_FILE, model, state)
    write_history(workdir / paths.HISTORY_FILE, state.history)


def _train_loop(
    tf: Any,
    device: str,
    task: Any,
    state: RunState,
    train: TrainParams,
    workdir: Path,
    progress: Progress,
) -> LoopStats:
    """Steps from `state.step` to `train.steps`: the allocator peak of each step after the
    warm-up, a checkpoint every `checkpoint_every` steps, progress as it goes."""
    from profilers.allocator import _batch_tensor

    total = train.steps
    rng = np.random.default_rng(train.seed)
    if state.rng_state is not None:
        rng.bit_generator.state = state.rng_state
    stats = LoopStats(resumed_from=state.step)
    step = _step_runner(task.model)
    run_peaks: list[int] = []
    parent = os.getppid()
    gc.collect()
    loop_start = time.perf_counter()
    while state.step < total:
        if os.getppid() != parent:  # the task that started this run is gone
            raise Cancelled("the worker process that started this run is gone")
        inputs_np, labels_np = task.batch(rng)
        inputs = [_batch_tensor(tf, array) for array in inputs_np]
        labels = _batch_tensor(tf, labels_np)
        measured = stats.done_here >= min(WARM_UP_STEPS, max(total - stats.resumed_from - 1, 0))
        if measured:
            tf.config.experimental.reset_memory_stats(device)
        start = time.perf_counter()
        loss = step(inputs, labels)
        elapsed = time.perf_counter() - start
        if measured:
            run_peaks.append(int(tf.config.experimental.get_memory_info(device)["peak"]))
            stats.times.append(elapsed)
        stats.done_here += 1
        state.step += 1
        state.history.append((state.step, loss))
        if not math.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss} at step {state.step}")
        at_checkpoint = state.step % train.checkpoint_every == 0 or state.step == total
        if at_checkpoint:
            _checkpoint(workdir, task.model, state, rng, run_peaks)
        progress(
            force=at_checkpoint, step=state.step, loss=loss, progress=min(state.step / total, 0.99)
        )
    stats.train_s = time.perf_counter() - loop_start
    return stats


def with_untrained(
    metrics: list[dict[str, Any]], untrained: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Each metric with the untrained model's value beside it (detail["untrained"])."""
    before = {row["name"]: row["value"] for row in untrained or []}
    return [
        {**row, "detail": {**row["detail"], "untrained": before.get(row["name"])}}
        for row in metrics
    ]


def _result(
    tf: Any,
    device: str,
    state: RunState,
    stats: LoopStats,
    rows: list[dict[str, Any]],
    metrics: list[dict[str, Any]],
) -> dict[str, Any]:
    """The child's JSON result of a run that finished."""
    from profilers.allocator import _device_total

    return {
        "status": "ok",
        "final_loss": state.history[-1][1] if state.history else None,
        "steps": state.step,
        "resumed_from_step": stats.resumed_from,
        "steps_this_attempt": stats.done_here,
        "train_s": stats.train_s,
        "measurement": {
            "status": "ok" if state.peak_bytes else "failed",
            "peak_bytes": state.peak_bytes,
            "step_time_s": sorted(stats.times)[len(stats.times) // 2] if stats.times else None,
            "step_peaks": state.step_peaks,
            "tf_version": tf.__version__,
            "device": device,
            "device_total_bytes": _device_total(device),
            "host": platform.node(),
            "error": None if state.peak_bytes else "no measured training step",
        },
        "ber": rows,
        "metrics": metrics,
        "artifacts": {
            "model": paths.MODEL_FILE,
            "weights": paths.WEIGHTS_FILE,
            "history": paths.HISTORY_FILE,
            "checkpoint": paths.CHECKPOINT_FILE,
        },
    }


def _run(tf: Any, device: str, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Build (or restore), train, save, evaluate, inside the device scope."""
    from profilers.allocator import parse_spec

    spec = parse_spec(payload["spec_json"])
    train = TrainParams.model_validate(payload["train"])
    evaluate = EvaluateParams.model_validate(payload["evaluate"])
    workdir = Path(payload["job_dir"])
    progress(force=True, phase="build", total_steps=train.steps)
    with tf.device(device):
        task = make_task(spec, train, evaluate)
        state = load_checkpoint(workdir / paths.CHECKPOINT_FILE, task.model) or RunState()
        if state.untrained is None:
            state.untrained = task.metrics(untrained=True)
        progress(force=True, phase="train", step=state.step, total_steps=train.steps)
        stats = _train_loop(tf, device, task, state, train, workdir, progress)
        task.model.save(workdir / paths.MODEL_FILE)
        task.model.save_weights(workdir / paths.WEIGHTS_FILE)
        progress(force=True, phase="evaluate")
        rows = task.evaluate(lambda _name, ebn0_db: progress(force=True, ebn0_db=ebn0_db))
        metrics = with_untrained(task.metrics(), state.untrained)
    return _result(tf, device, state, stats, rows, metrics)


def train_and_evaluate(payload: dict[str, Any]) -> dict[str, Any]:
    """The child: build (or restore), train, save, evaluate; returns the JSON result."""
    from profilers.allocator import child_env

    device = str(payload.get("device") or "CPU:0")
    for key, value in child_env(device).items():
        os.environ.setdefault(key, value)
    import tensorflow as tf

    from profilers.allocator import pin_threads

    pin_threads(tf)
    workdir = Path(payload["job_dir"])
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / paths.PID_FILE).write_text(str(os.getpid()))
    progress = Progress(
        payload.get("database_url"), payload.get("owner"), payload.get("job_id"), workdir
    )
    try:
        return _run(tf, device, payload, progress)
    except tf.errors.ResourceExhaustedError as error:
        return {"status": "oom", "error": str(error).strip()[:2000]}
    except MemoryError as error:
        return {"status": "oom", "error": f"MemoryError: {error}"[:2000]}
    finally:
        progress.close()


def child_environment(device: str, base: Mapping[str, str]) -> dict[str, str]:
    """The training child's environment: the measurement settings, this checkout first on
    the path, and NumPy's BLAS on one thread unless `base` says otherwise: the BER link's
    products are small (inner dimension 2 N_R), where OpenBLAS threads only spin (as for
    `phymem ber`); TensorFlow does not use OpenBLAS."""
    from profilers.allocator import REPO_ROOT, child_env

    env = {**base, **child_env(device)}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), base.get("PYTHONPATH", "")) if p
    )
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


def run_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Run the training child for one job; never raises for the job's own failures."""
    from profilers.allocator import REPO_ROOT

    env = child_environment(str(payload.get("device") or "CPU:0"), os.environ)
    timeout = payload.get("timeout_s")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "app.worker.training"],
            # The child reads plain JSON; the dispatcher's Ray actor handle stays here.
            input=json.dumps({k: v for k, v in payload.items() if k != "execution_log"}),
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO_ROOT,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"status": "failed", "error": f"training timed out after {timeout}s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    tail = (done.stderr or "")[-2000:]
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        return {
            "status": "interrupted",
            "error": f"the training process was killed by {name} (out of memory, or stopped)",
            "tail": tail,
        }
    return {"status": "failed", "error": f"exit status {done.returncode}\n{tail}"}


def payload_for(job: Any, owner: str, database_url: str) -> dict[str, Any]:
    """What the dispatcher sends the Ray task for a train job."""
    from app.core.config import get_settings

    return {
        "kind": "train",
        "job_id": job.id,
        "owner": owner,
        "database_url": database_url,
        "spec_json": job.spec_json,
        "train": job.params["train"],
        "evaluate": job.params["evaluate"],
        "job_dir": str(paths.job_dir(get_settings().data_dir, job.id).resolve()),
        "timeout_s": job.params.get("timeout_s"),
        "attempt": job.attempts,
    }


def record(dispatcher: Any, job: Any, output: dict[str, Any]) -> None:
    """Write a train job's outcome (in the dispatcher process)."""
    from app.services import queue
    from app.worker import profile

    outcome = output["training"]
    placement = output.get("placement", {})
    status = outcome.get("status")
    with dispatcher.sessions() as session:
        if status == "interrupted":
            new = queue.retry_or_fail(session, dispatcher.owner, job, outcome["error"])
            _log.warning("job %d: %s: now %s", job.id, outcome["error"], new or "lease lost")
            return
        estimate = queue.estimate_for(session, job)
        if status != "ok":
            _record_failure(session, dispatcher.owner, job, estimate, status, outcome)
            return
        pair = profile.pair(
            estimate,
            outcome["measurement"],
            device_class=job.device_class,
            ray_version=placement.get("ray_version"),
        )
        queue.finish(
            session,
            dispatcher.owner,
            job,
            status="succeeded",
            result=_succeeded(job, estimate, pair, outcome, placement),
            measurement={**pair, "estimate_id": estimate["id"]},
            ber=outcome["ber"],
            metrics=outcome.get("metrics") or [],
        )
    _log.info(
        "job %d: trained %d steps (from %d), loss %.4g, %d BER rows",
        job.id,
        outcome["steps"],
        outcome["resumed_from_step"],
        outcome["final_loss"],
        len(outcome["ber"]),
    )


def _record_failure(
    session: Any,
    owner: str,
    job: Any,
    estimate: dict[str, Any],
    status: str | None,
    outcome: dict[str, Any],
) -> None:
    """A run that failed or ran out of memory: the job's error, and for an OOM its
    measurement (out of memory, no peak)."""
    from app.services import queue

    error = str(outcome.get("error") or status)
    measurement = None
    if status == "oom":
        measurement = {
            "estimate_id": estimate["id"],
            "device": job.device_class,
            "status": "oom",
            "measured_bytes": None,
        }
    queue.finish(
        session,
        owner,
        job,
        status="oom" if status == "oom" else "failed",
        result={"status": status, "error": error, "attempt": job.attempts},
        error=error,
        measurement=measurement,
    )
    _log.warning("job %d: %s: %s", job.id, status, error.splitlines()[0])


def _succeeded(
    job: Any,
    estimate: dict[str, Any],
    pair: dict[str, Any],
    outcome: dict[str, Any],
    placement: dict[str, Any],
) -> dict[str, Any]:
    """A trained job's result: the estimated-vs-measured pair and the run's facts."""
    return {
        **pair,
        "estimate_id": estimate["id"],
        "final_loss": outcome["final_loss"],
        "steps": outcome["steps"],
        "resumed_from_step": outcome["resumed_from_step"],
        "steps_this_attempt": outcome["steps_this_attempt"],
        "artifacts": outcome["artifacts"],
        "attempt": job.attempts,
        "node_id": placement.get("node_id"),
        "worker_pid": placement.get("worker_pid"),
    }


def _main() -> int:
    payload = json.loads(sys.stdin.read())
    try:
        result = train_and_evaluate(payload)
    except Exception as error:
        result = {"status": "failed", "error": f"{type(error).__name__}: {error}"[:4000]}
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
