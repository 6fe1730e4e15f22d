"""Grappler's static memory estimate of a spec's training step, and the AddNs it would rewrite.

    python -m profilers.grappler_static SPEC.json   # or the spec's JSON text itself

Grappler's memory optimizer (SchedulingPass) rewrites an AddN with more than two inputs
into an accumulation into a temporary variable when the graph's static peak estimate
(GraphMemory::InferStatically) exceeds 0.8 x the device's memory and one of the AddN's
inputs is alive at that peak; the rewrite's reference edges make profilers.allocator fall
back to the default executor. This tool builds the Keras train step as profilers.allocator
measures it, runs grappler's other passes on it (memory optimisation off), and prints the
static peak of the result, the largest tensors alive at it and, per AddN, its inputs alive
there; then whether the full pipeline rewrites. It is the trace behind
estimator.rewrites.static_peak.

The step's variables are captured resource placeholders without shapes, so each becomes a
VarHandleOp of its variable's shape and dtype: the reads then have their sizes and are
scheduled as the step's other ops.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from estimator.spec import FamilySpec, ModelSpec

GRAPPLER_PRESSURE = 0.8  # SchedulingPass: used_memory > 0.8 x memory_size
CPU_MEMORY = 256 << 20  # ThreadPoolDevice's memory limit


@dataclass
class StaticPeak:
    peak_bytes: int
    threshold_bytes: int
    largest: list[tuple[str, int]]  # (tensor, bytes) alive at the peak, largest first
    addn_inputs_alive: dict[str, list[str]] = field(default_factory=dict)
    rewritten: bool = False  # the full pipeline added a TemporaryVariable


def _train_step_metagraph(tf: Any, spec: FamilySpec | ModelSpec) -> Any:
    from tensorflow.python.ops import handle_data_util

    from profilers.builders import build, make_batch

    model = build(spec).model
    x_np, y_np = make_batch(spec)
    x, y = tf.constant(x_np), tf.constant(y_np)
    model.train_on_batch(x, y)  # builds the optimizer's variables

    @tf.function  # type: ignore[untyped-decorator]
    def step(x: Any, y: Any) -> Any:
        return model.train_step((x, y))

    concrete = step.get_concrete_function(x, y)
    graph = concrete.graph
    with graph.as_default():
        metagraph = tf.compat.v1.train.export_meta_graph(graph=graph)
    handles = {}
    for op in graph.get_operations():
        if op.type == "Placeholder" and op.outputs[0].dtype == tf.resource:
            data = handle_data_util.get_resource_handle_data(op.outputs[0])
            if data is not None and data.shape_and_type:
                handles[op.name] = data.shape_and_type[0]
    for node in metagraph.graph_def.node:
        if node.name in handles:
            shape_and_type = handles[node.name]
            node.op = "VarHandleOp"
            node.attr.clear()
            node.attr["dtype"].type = shape_and_type.dtype
            node.attr["shape"].shape.CopyFrom(shape_and_type.shape)
            node.attr["shared_name"].s = node.name.encode()
            node.attr["container"].s = b""
    fetch = metagraph.collection_def["train_op"].node_list.value
    fetch.extend(tensor.name for tensor in concrete.outputs)
    return metagraph


def static_peak(spec: FamilySpec | ModelSpec, top: int = 14) -> StaticPeak:
    """Grappler's static peak of the step (call it in a fresh process)."""
    from profilers import allocator

    for key, value in allocator.child_env("CPU:0").items():
        os.environ.setdefault(key, value)
    import tensorflow as tf
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
    from tensorflow.python.grappler import cluster as gcluster
    from tensorflow.python.grappler import item as gitem
    from tensorflow.python.grappler import tf_optimizer

    allocator.pin_threads(tf)
    metagraph = _train_step_metagraph(tf, spec)
    cluster = gcluster.Cluster(disable_detailed_stats=True, disable_timeline=True)
    results: dict[str, Any] = {}
    for memory in (True, False):
        config = config_pb2.ConfigProto()
        rewrites = config.graph_options.rewrite_options
        rewrites.min_graph_nodes = -1
        if not memory:
            rewrites.memory_optimization = rewriter_config_pb2.RewriterConfig.NO_MEM_OPT
        results[str(memory)] = tf_optimizer.OptimizeGraph(config, metagraph, cluster=cluster)
    optimised = tf.compat.v1.MetaGraphDef()
    optimised.CopyFrom(metagraph)
    optimised.graph_def.CopyFrom(results["False"])
    item = gitem.Item(optimised, ignore_colocation=True)
    (used, live), *_ = cluster.DeterminePeakMemoryUsage(item).values()
    alive = {name for name, *_ in live}
    addns = {}
    for node in results["False"].node:
        inputs = [name for name in node.input if not name.startswith("^")]
        if node.op == "AddN" and len(inputs) > 2:
            addns[node.name] = [name for name in inputs if name.split(":")[0] in alive]
    largest = sorted(((name, size) for name, _, size, *_ in live), key=lambda t: -t[1])
    return StaticPeak(
        peak_bytes=int(used),
        threshold_bytes=int(GRAPPLER_PRESSURE * CPU_MEMORY),
        largest=largest[:top],
        addn_inputs_alive=addns,
        rewritten=any(node.op == "TemporaryVariable" for node in results["True"].node),
    )


def main(argv: list[str] | None = None) -> int:
    from profilers.allocator import parse_spec

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m profilers.grappler_static SPEC.json|SPEC_JSON", file=sys.stderr)
        return 2
    text = Path(args[0]).read_text() if not args[0].lstrip().startswith("{") else args[0]
    try:
        spec = parse_spec(text)
    except ValueError as error:
        print(f"spec: {error}", file=sys.stderr)
        return 2
    result = static_peak(spec)
    print(
        f"static peak {result.peak_bytes} B ({result.peak_bytes / result.threshold_bytes:.3f}"
        f" x the rewrite threshold {result.threshold_bytes} B)"
    )
    for name, size in result.largest:
        print(f"  {size:>12} {name}")
    for name, inputs in result.addn_inputs_alive.items():
        print(f"AddN {name}: inputs alive at the peak {inputs or 'none'}")
    print("rewritten by the full pipeline:", result.rewritten)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
