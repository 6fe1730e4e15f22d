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
  TFLite's sparsity encoding. The Dense and Conv2D kernels are pruned or clustered
  (what TFMOT wraps), and DetNet's layer through a subclass that hands TFMOT its three
  kernels w1, w2, w3 (`_tfmot_detnet_class`; the same maths); any other custom layer is
  refused by name. tf-keras pulls the full `tensorflow` wheel, so this part runs in a
  second environment, the compress venv (`make compress-env`: `.venv-compress`, or the
  interpreter named by `PHYMEM_COMPRESS_PYTHON`), and the main venv keeps `tensorflow-cpu`.
- with `latency_runs`, each float/int8 file's (and the sparse pruned files') median
  batch-1 latency with the LiteRT interpreter on one thread, XNNPack on and off.

Weights are random, not trained: sizes depend on the weights only through gzip, where
trained weights compress a little differently (docs/compression.md).
"""

from __future__ import annotations

import argparse
import functools
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
COMPRESS_PYTHON = "PHYMEM_COMPRESS_PYTHON"  # the compress environment's interpreter
COMPRESS_VENV = ".venv-compress"  # its default, made by `make compress-env`


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
    from profilers.builders import build_deployed

    model = build_deployed(spec)
    return {fmt: _file_sizes(_convert(model, fmt), latency_runs) for fmt in TFLITE_FORMATS}


def _kernels(model: Any) -> list[Any]:
    """Every kernel TFMOT prunes or clusters, as arrays: a Dense/Conv2D layer's kernel,
    DetNet's w1, w2, w3 (what estimator.compression counts as kernels)."""
    import numpy as np

    found = []
    for layer in model.layers:
        if hasattr(layer, "get_prunable_weights"):
            found += [np.asarray(weight) for weight in layer.get_prunable_weights()]
        elif getattr(layer, "kernel", None) is not None:
            found.append(np.asarray(layer.kernel))
    return found


def _kernel_sparsity(model: Any) -> float:
    kernels = _kernels(model)
    total = sum(kernel.size for kernel in kernels)
    return sum(int((kernel == 0).sum()) for kernel in kernels) / total if total else 0.0


def _tfmot_detnet_class() -> type:
    """DetNet's layer as TFMOT sees it: its three kernels prunable and clusterable, its
    maths (`call`) the builder's. TFMOT's clustering wrapper reads and replaces a weight by
    attribute name, so each kernel is a property onto its Dense (w1.kernel, ...)."""
    import tensorflow_model_optimization as tfmot

    from profilers.builders import _detnet_layer_class

    base: Any = _detnet_layer_class()
    prunable: Any = tfmot.sparsity.keras.PrunableLayer
    clusterable: Any = tfmot.clustering.keras.ClusterableLayer

    def kernel_of(dense: str) -> property:
        def read(self: Any) -> Any:
            return getattr(self, dense).kernel

        def write(self: Any, value: Any) -> None:
            getattr(self, dense).kernel = value

        return property(read, write)

    class TfmotDetNetLayer(base, prunable, clusterable):  # type: ignore[misc]
        w1_kernel, w2_kernel, w3_kernel = (kernel_of(name) for name in ("w1", "w2", "w3"))

        def build(self, input_shape: Any) -> None:
            # tf-keras marks a layer built only when it builds itself on a call; TFMOT's
            # strip_clustering builds the clean layer directly, then sets its weights
            super().build(input_shape)
            self.built = True

        def get_prunable_weights(self) -> list[Any]:
            return [self.w1.kernel, self.w2.kernel, self.w3.kernel]

        def get_clusterable_weights(self) -> list[tuple[str, Any]]:
            return [(f"{name}_kernel", getattr(self, name).kernel) for name in DETNET_KERNELS]

        def get_config(self) -> dict[str, Any]:  # strip_clustering rebuilds from it
            sizes = {"transmitters": self.k, "hidden": self.hidden, "v": self.v}
            return {**super().get_config(), **sizes}

    return TfmotDetNetLayer


DETNET_KERNELS = ("w1", "w2", "w3")


def _tfmot_layer(layer: Any) -> Any | None:
    """The layer TFMOT wraps in its place (the layer itself, or DetNet's as
    `_tfmot_detnet_class`, with its weights); None for a layer without kernels. A custom
    layer of profilers' own that is neither is refused by name."""
    import tensorflow as tf

    if isinstance(layer, tf.keras.layers.Dense | tf.keras.layers.Conv2D):
        return layer
    if type(layer).__name__ == "DetNetLayer":
        config = layer.get_config()
        sizes = {"transmitters": layer.k, "hidden": layer.hidden, "v": layer.v}
        twin = _tfmot_detnet_class()(**sizes, name=config["name"], dtype=config["dtype"])
        twin.build(layer.input_shape)
        twin.set_weights(layer.get_weights())
        return twin
    if type(layer).__module__.startswith("profilers.") and layer.trainable_weights:
        raise ValueError(
            f"layer {layer.name!r}: {type(layer).__name__} is a custom layer, which "
            "TFMOT cannot prune or cluster"
        )
    return None


def _wrap_kernels(model: Any, wrap: Any) -> Any:
    import tensorflow as tf

    def clone(layer: Any) -> Any:
        found = _tfmot_layer(layer)
        return layer if found is None else wrap(found)

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

    return max((len(np.unique(kernel)) for kernel in _kernels(model)), default=0)


def tfmot_sizes(
    spec: AnySpec, *, prune: float | None, cluster: int | None, latency_runs: int = 0
) -> dict[str, Any]:
    """Pruned and clustered TFLite sizes; call in a process where `TF_USE_LEGACY_KERAS=1`
    was set before TensorFlow was imported."""
    if os.environ.get(LEGACY_KERAS) != "1":
        raise RuntimeError(f"tfmot_sizes: set {LEGACY_KERAS}=1 before TensorFlow is imported")
    from profilers.builders import build_deployed

    model = build_deployed(spec)
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


def _run_part(
    python: str, args: list[str], env: dict[str, str], timeout_s: float
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        command = [python, "-m", "profilers.compression", *args, "--out", str(out)]
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if done.returncode != 0 or not out.exists():
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            last = lines[-1] if lines else f"exit status {done.returncode}"
            raise RuntimeError(f"compression measurement failed: {last}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def compress_python() -> str:
    """The compress environment's interpreter, which runs the TFMOT part: the one named by
    `PHYMEM_COMPRESS_PYTHON`, else the repository's `.venv-compress` (`make compress-env`)
    where it exists, else this interpreter (the extra installed here)."""
    from profilers.allocator import REPO_ROOT

    configured = os.environ.get(COMPRESS_PYTHON, "").strip()
    if configured:
        return configured
    default = REPO_ROOT / COMPRESS_VENV / "bin" / "python"
    return str(default) if default.exists() else sys.executable


@functools.cache
def _has_modules(python: str, *names: str) -> bool:
    """Whether `python` can import every module named (found, not imported: no TensorFlow
    starts); another interpreter is asked in a short subprocess."""
    from importlib.util import find_spec

    if python == sys.executable:
        return all(find_spec(name) is not None for name in names)
    probe = "import sys, importlib.util as u; sys.exit(not all(map(u.find_spec, sys.argv[1:])))"
    try:
        done = subprocess.run([python, "-c", probe, *names], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


TFMOT_MODULES = ("tf_keras", "tensorflow_model_optimization")


def tfmot_available() -> bool:
    """Whether the compress environment (`compress_python`) has tf-keras and the Model
    Optimization Toolkit."""
    return _has_modules(compress_python(), *TFMOT_MODULES)


def _tflite_python(latency_runs: int) -> str:
    """This interpreter converts; latency needs LiteRT (the compress extra), so without it
    here the compress environment converts and times the files."""
    if latency_runs and not _has_modules(sys.executable, "ai_edge_litert"):
        other = compress_python()
        if _has_modules(other, "ai_edge_litert"):
            return other
    return sys.executable


def _environment() -> dict[str, str | None]:
    """The interpreter and packages a measuring process ran on (either environment)."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "python": sys.executable,
        "tensorflow": installed("tensorflow") or installed("tensorflow-cpu"),
        "tf_keras": installed("tf-keras"),
        "tensorflow_model_optimization": installed("tensorflow-model-optimization"),
        "ai_edge_litert": installed("ai-edge-litert"),
    }


def framework_versions(measured: dict[str, Any] | None = None) -> dict[str, str | None]:
    """Versions of what the measuring processes ran on: each part's own report in
    `measured` (either environment), else this interpreter's packages (read without
    importing TensorFlow)."""
    import platform

    from estimator.engine import ENGINE_VERSION

    here = _environment()
    parts = ((measured or {}).get("environment") or {}).values()
    reported = {k: v for part in parts for k, v in part.items() if v and k != "python"}
    found = {k: reported.get(k) or here[k] for k in here if k != "python"}
    return {**found, "python": platform.python_version(), "phymem_engine": ENGINE_VERSION}


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
    tfmot = prune is not None or cluster is not None
    if tfmot and not tfmot_available():
        raise RuntimeError(MISSING_TFMOT)
    tflite = _run_part(_tflite_python(latency_runs), ["--spec", spec_json, *runs], base, timeout_s)
    measured: dict[str, Any] = {"environment": {"tflite": tflite.pop("environment")}}
    measured["tflite"] = tflite
    if tfmot:
        args = ["--spec", spec_json, "--tfmot", *runs]
        args += ["--prune", str(prune)] if prune is not None else []
        args += ["--cluster", str(cluster)] if cluster is not None else []
        legacy = base | {LEGACY_KERAS: "1"}
        part = _run_part(compress_python(), args, legacy, timeout_s)
        measured["environment"]["tfmot"] = part.pop("environment")
        measured |= part
    return measured


MISSING_TFMOT = (
    "pruning/clustering measurement needs the compress environment (tf-keras, "
    f"tensorflow-model-optimization): `make compress-env` makes {COMPRESS_VENV}, or set "
    f"{COMPRESS_PYTHON} to an interpreter with `pip install 'phymem[compress]'`"
)


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
    result["environment"] = _environment()
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
