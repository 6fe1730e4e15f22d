"""Measured model size under compression: TFLite files, pruned and clustered models.

Worker side only (imports TensorFlow). Two measurements, each in a fresh process
(`measure_in_subprocess`), because they need different Keras versions:

- `tflite_sizes`: the spec's Keras 3 model (profilers/builders.py), untrained, converted
  with `tf.lite.TFLiteConverter` to float32, float16 and dynamic-range int8; the file's
  bytes and its gzip bytes (level 9).
- `tfmot_sizes`: the Model Optimization Toolkit works on tf-keras (Keras 2) models only,
  and tf-keras is what `tf.keras` gives when `TF_USE_LEGACY_KERAS=1` is set before
  TensorFlow is first imported, so this part runs in a process started with that
  variable. Magnitude pruning to sparsity s (ConstantSparsity, masks applied by one
  training step at learning rate 0, so the weights are the initial ones, then
  `strip_pruning`) and weight clustering to C clusters (k-means++ centroids,
  `strip_clustering`), each converted to a float32 and a dynamic-range TFLite file; the
  pruned model also with `EXPERIMENTAL_SPARSITY`, which stores sparse kernels in
  TFLite's sparsity encoding. Only Dense and Conv2D kernels are pruned or clustered
  (what TFMOT wraps); a model with a custom layer (DetNet's) is refused by name.
- with `latency_runs`, each float/int8 file's (and the sparse pruned files') median
  batch-1 latency with the LiteRT interpreter on one thread, XNNPack on and off.

Weights are random, not trained: sizes depend on the weights only through gzip, where
trained weights compress a little differently (docs/compression.md).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from estimator.spec import AnySpec, canonical_json

TFLITE_FORMATS = ("fp32", "fp16", "int8")
LEGACY_KERAS = "TF_USE_LEGACY_KERAS"


def _file_sizes(flatbuffer: bytes, latency_runs: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = {
        "bytes": len(flatbuffer),
        "gzip_bytes": len(gzip.compress(flatbuffer, 9)),
    }
    if latency_runs:
        found["latency_s"] = {}
        for name, xnnpack in (("xnnpack", True), ("builtin", False)):
            try:
                found["latency_s"][name] = latency(flatbuffer, latency_runs, xnnpack=xnnpack)
            except RuntimeError as error:  # XNNPack refuses some sparse files
                found["latency_error"] = {name: str(error).splitlines()[0][:300]}
    return found


def latency(flatbuffer: bytes, runs: int, *, xnnpack: bool) -> float:
    """Median seconds of one batch-1 inference with the LiteRT interpreter on one thread,
    XNNPack (the default delegate) on or off, after 3 warm-up runs."""
    import statistics
    import time

    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(
        model_content=flatbuffer, num_threads=1, experimental_op_resolver_type=resolver
    )
    interpreter.allocate_tensors()
    entry = interpreter.get_input_details()[0]
    sample = np.random.default_rng(0).random(entry["shape"], dtype=np.float32)
    interpreter.set_tensor(entry["index"], sample.astype(entry["dtype"]))
    times = []
    for run in range(runs + 3):
        started = time.perf_counter()
        interpreter.invoke()
        if run >= 3:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def _convert(model: Any, fmt: str, *, sparsity: bool = False) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    optimizations = []
    if fmt in ("fp16", "int8"):
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if fmt == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if sparsity:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    return bytes(converter.convert())


def tflite_sizes(spec: AnySpec, latency_runs: int = 0) -> dict[str, dict[str, Any]]:
    """Bytes and gzip bytes of the spec's TFLite file in each format, and with
    `latency_runs` its median latency (the builder follows `TF_USE_LEGACY_KERAS`)."""
    from profilers.builders import build

    model = build(spec, compile_model=False).model
    return {fmt: _file_sizes(_convert(model, fmt), latency_runs) for fmt in TFLITE_FORMATS}


def _kernel_sparsity(model: Any) -> float:
    import numpy as np

    zeros = total = 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is not None:
            values = np.asarray(kernel)
            zeros += int((values == 0).sum())
            total += values.size
    return zeros / total if total else 0.0


def _refuse_custom_layers(model: Any) -> None:
    for layer in model.layers:
        if type(layer).__module__.startswith("profilers."):
            raise ValueError(
                f"layer {layer.name!r}: {type(layer).__name__} is a custom layer, which "
                "TFMOT cannot prune or cluster"
            )


def _wrap_kernels(model: Any, wrap: Any) -> Any:
    import tensorflow as tf

    def clone(layer: Any) -> Any:
        if isinstance(layer, tf.keras.layers.Dense | tf.keras.layers.Conv2D):
            return wrap(layer)
        return layer

    return tf.keras.models.clone_model(model, clone_function=clone)


def pruned_model(model: Any, sparsity: float) -> Any:
    """The model with the fraction `sparsity` of every Dense/Conv2D kernel zeroed by
    magnitude (TFMOT), pruning wrappers stripped."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    schedule = tfmot.sparsity.keras.ConstantSparsity(sparsity, begin_step=0, frequency=1)
    wrapped = _wrap_kernels(
        model,
        lambda layer: tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule),
    )
    wrapped.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    shape = (1, *wrapped.input_shape[1:])
    x = np.zeros(shape, dtype="float32")
    y = np.zeros((1, *wrapped.output_shape[1:]), dtype="float32")
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
    wrapped.fit(x, y, epochs=1, verbose=0, callbacks=callbacks)
    return tfmot.sparsity.keras.strip_pruning(wrapped)


def clustered_model(model: Any, clusters: int) -> Any:
    """Every Dense/Conv2D kernel replaced by its nearest of `clusters` centroids
    (k-means++ initialisation, TFMOT), clustering wrappers stripped."""
    import tensorflow_model_optimization as tfmot

    init = tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS
    wrapped = _wrap_kernels(
        model,
        lambda layer: tfmot.clustering.keras.cluster_weights(
            layer, number_of_clusters=clusters, cluster_centroids_init=init
        ),
    )
    return tfmot.clustering.keras.strip_clustering(wrapped)


def _distinct_kernel_values(model: Any) -> int:
    import numpy as np

    return max(
        (
            len(np.unique(np.asarray(layer.kernel)))
            for layer in model.layers
            if getattr(layer, "kernel", None) is not None
        ),
        default=0,
    )


def tfmot_sizes(
    spec: AnySpec, *, prune: float | None, cluster: int | None, latency_runs: int = 0
) -> dict[str, Any]:
    """Pruned and clustered TFLite sizes; call in a process where `TF_USE_LEGACY_KERAS=1`
    was set before TensorFlow was imported."""
    if os.environ.get(LEGACY_KERAS) != "1":
        raise RuntimeError(f"tfmot_sizes: set {LEGACY_KERAS}=1 before TensorFlow is imported")
    from profilers.builders import build

    model = build(spec, compile_model=False).model
    _refuse_custom_layers(model)
    found: dict[str, Any] = {}
    if prune is not None:
        pruned = pruned_model(model, prune)
        found["pruned"] = {
            "sparsity": prune,
            "kernel_sparsity_measured": round(_kernel_sparsity(pruned), 6),
            "fp32": _file_sizes(_convert(pruned, "fp32")),
            "int8": _file_sizes(_convert(pruned, "int8")),
            "fp32_sparse": _file_sizes(_convert(pruned, "fp32", sparsity=True), latency_runs),
            "int8_sparse": _file_sizes(_convert(pruned, "int8", sparsity=True), latency_runs),
        }
    if cluster is not None:
        clustered = clustered_model(model, cluster)
        found["clustered"] = {
            "clusters": cluster,
            "distinct_values_max": _distinct_kernel_values(clustered),
            "fp32": _file_sizes(_convert(clustered, "fp32")),
            "int8": _file_sizes(_convert(clustered, "int8")),
        }
    return found


def _run_part(args: list[str], env: dict[str, str], timeout_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        command = [sys.executable, "-m", "profilers.compression", *args, "--out", str(out)]
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if done.returncode != 0 or not out.exists():
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            last = lines[-1] if lines else f"exit status {done.returncode}"
            raise RuntimeError(f"compression measurement failed: {last}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def tfmot_available() -> bool:
    """Whether tf-keras and the Model Optimization Toolkit are installed (the `compress`
    extra); checked without importing TensorFlow."""
    from importlib.util import find_spec

    return (
        find_spec("tf_keras") is not None and find_spec("tensorflow_model_optimization") is not None
    )


def framework_versions() -> dict[str, str | None]:
    """Versions of what the measuring processes run (this interpreter's packages), read
    without importing TensorFlow."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from estimator.engine import ENGINE_VERSION

    def installed(*names: str) -> str | None:
        for name in names:
            try:
                return version(name)
            except PackageNotFoundError:
                continue
        return None

    return {
        "tensorflow": installed("tensorflow-cpu", "tensorflow"),
        "ai_edge_litert": installed("ai-edge-litert"),
        "tensorflow_model_optimization": installed("tensorflow-model-optimization"),
        "python": platform.python_version(),
        "phymem_engine": ENGINE_VERSION,
    }


def measure_in_subprocess(
    spec: AnySpec,
    *,
    prune: float | None = None,
    cluster: int | None = None,
    latency_runs: int = 0,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """`tflite_sizes` in a fresh process and, with `prune` or `cluster`, `tfmot_sizes` in
    another one started with `TF_USE_LEGACY_KERAS=1`."""
    from profilers.allocator import REPO_ROOT

    spec_json = canonical_json(spec)
    base = {k: v for k, v in os.environ.items() if k != LEGACY_KERAS}
    base["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    base.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    runs = ["--latency-runs", str(latency_runs)]
    measured: dict[str, Any] = {"tflite": _run_part(["--spec", spec_json, *runs], base, timeout_s)}
    if prune is not None or cluster is not None:
        if not tfmot_available():
            raise RuntimeError(
                "pruning/clustering measurement needs the compress extra "
                "(pip install 'phymem[compress]': tf-keras, tensorflow-model-optimization)"
            )
        args = ["--spec", spec_json, "--tfmot", *runs]
        args += ["--prune", str(prune)] if prune is not None else []
        args += ["--cluster", str(cluster)] if cluster is not None else []
        measured |= _run_part(args, base | {LEGACY_KERAS: "1"}, timeout_s)
    return measured


def recipe_file(
    measured: dict[str, Any], quantize: str, prune: float | None, cluster: int | None
) -> dict[str, int] | None:
    """The measured file that matches one `phymem compress` recipe (None where none was
    measured: float16 after pruning or clustering, or pruning and clustering together)."""
    fmt = {"none": "fp32", "float16": "fp16", "dynamic": "int8"}[quantize]
    if prune and cluster:
        return None
    part = measured["pruned"] if prune else measured["clustered"] if cluster else None
    if part is None:
        found: dict[str, int] = measured["tflite"][fmt]
        return found
    return part.get(fmt)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> None:
    from profilers.allocator import parse_spec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="The spec as JSON.")
    parser.add_argument("--tfmot", action="store_true", help="Pruned/clustered sizes.")
    parser.add_argument("--prune", type=float, default=None)
    parser.add_argument("--cluster", type=int, default=None)
    parser.add_argument("--latency-runs", type=int, default=0, help="0: no latency.")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    spec = parse_spec(args.spec)
    if args.tfmot:
        result: dict[str, Any] = tfmot_sizes(
            spec, prune=args.prune, cluster=args.cluster, latency_runs=args.latency_runs
        )
    else:
        result = tflite_sizes(spec, args.latency_runs)
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
