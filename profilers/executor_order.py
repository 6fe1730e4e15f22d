"""The order TensorFlow's single-threaded executor runs a training step in, from its graph.

    python -m profilers.executor_order SPEC.json OUT_DIR   # trace + graph of one process

The single-threaded executor (tensorflow/core/common_runtime/single_threaded_executor.cc)
runs its kernels in one fixed order, computed once per graph by `GetReversePostOrder`: a
depth-first search from the source node that takes each node's out-edges in the order they
were added (a stack: the last edge added is followed first), and the reverse of the order
in which nodes are left. The graph is the function's partition graph after grappler,
rebuilt from a GraphDef by GraphConstructor, which adds a node once all its inputs exist
(the lowest GraphDef index first) and each edge when its consumer is added; nodes without
inputs hang off the source.

So the allocation order of a step, and through it the framework mode's live set at the
peak, follows from the partition graph. This module rebuilds that order from the graph TF
dumps (`TF_DUMP_GRAPH_PREFIX`, the `after_partition_passes` file) and compares it with the
order of the same process's traced allocations (`profilers.trace`): on a traced step the
two agree on all but one or two of the ~30 allocating ops, which is the evidence that the
order is the graph's reverse post-order. It also shows why fresh processes of one spec
allocate in different orders: grappler emits the nodes of the same graph in a different
GraphDef order from one process to the next, and the search follows that order.
`estimator/steps.py` does not yet generate the step graph itself (it writes the orders
read off traces per layer type), which is where the framework mode's remaining sequence
misses come from (benchmarks/accuracy-misses.md).
"""

from __future__ import annotations

import bisect
import glob
import itertools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOURCE, SINK = 0, 1


@dataclass
class StepGraph:
    names: dict[int, str]  # node id -> name (0: source, 1: sink)
    out_edges: dict[int, list[int]]  # node id -> consumers, in the order the edges were added
    constants: set[str]  # Const nodes: evaluated once when the executor is built, not in order


def load_graph_def(path: str) -> Any:
    from google.protobuf import text_format
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef()
    with open(path) as handle:
        text_format.Parse(handle.read(), graph)
    return graph


def construct(graph_def: Any) -> StepGraph:
    """The Graph GraphConstructor builds: ids in the order nodes are added, edges with them."""
    nodes = list(graph_def.node)
    index = {node.name: i for i, node in enumerate(nodes)}

    def producer(name: str) -> int:
        return index[name.lstrip("^").split(":")[0]]

    pending = [len(node.input) for node in nodes]
    consumers: list[list[int]] = [[] for _ in nodes]
    for i, node in enumerate(nodes):
        for name in node.input:
            consumers[producer(name)].append(i)
    ready = [i for i, count in enumerate(pending) if count == 0]
    added: list[int] = []
    while ready:
        node = ready.pop(0)
        added.append(node)
        for consumer in consumers[node]:
            pending[consumer] -= 1
            if pending[consumer] == 0:
                bisect.insort(ready, consumer)
    ids = {node: n + 2 for n, node in enumerate(added)}
    out_edges: dict[int, list[int]] = {n: [] for n in range(len(nodes) + 2)}
    for node in added:
        for name in nodes[node].input:
            out_edges[ids[producer(name)]].append(ids[node])
    for node in added:  # FixupSourceAndSinkEdges, in id order
        if not nodes[node].input:
            out_edges[SOURCE].append(ids[node])
        if not out_edges[ids[node]]:
            out_edges[ids[node]].append(SINK)
    names = {ids[node]: nodes[node].name for node in added} | {SOURCE: "_SOURCE", SINK: "_SINK"}
    constants = {node.name for node in nodes if node.op == "Const"}
    return StepGraph(names, out_edges, constants)


def reverse_post_order(graph: StepGraph) -> list[str]:
    """GetReversePostOrder: node names in the order the executor runs them (constants
    left out: the executor evaluates them once, before any step)."""
    stack: list[tuple[int, bool]] = [(SOURCE, False)]
    visited: set[int] = set()
    left: list[int] = []
    while stack:
        node, leaving = stack.pop()
        if leaving:
            left.append(node)
            continue
        if node in visited:
            continue
        visited.add(node)
        stack.append((node, True))
        stack.extend((out, False) for out in graph.out_edges[node] if out not in visited)
    ordered = (graph.names[node] for node in reversed(left))
    return [name for name in ordered if name not in graph.constants]


def traced_op_order(trace: dict[str, Any], order: list[str]) -> list[str]:
    """The graph's ops in the trace's last complete step, in the order of their first
    allocation; steps are cut where the first allocating op of `order` recurs."""
    in_graph = set(order)
    ops = [
        e["tf_op"] for e in trace["events"] if e["kind"] == "alloc" and e.get("tf_op") in in_graph
    ]
    position = {name: n for n, name in enumerate(order)}
    first = min(set(ops), key=position.__getitem__)
    starts = [n for n, op in enumerate(ops) if op == first]
    step = ops[starts[-2] : starts[-1]] if len(starts) > 1 else ops
    return list(dict.fromkeys(step))


def agreement(order: list[str], traced: list[str]) -> tuple[int, int]:
    """(pairs of consecutive traced ops the order runs in the same order, pairs compared)."""
    position = {name: n for n, name in enumerate(order)}
    common = [op for op in traced if op in position]
    pairs = list(itertools.pairwise(common))
    return sum(position[a] < position[b] for a, b in pairs), len(pairs)


def record_with_graph(spec_path: str, folder: str) -> tuple[str, str]:
    """Trace one fresh process with TF's graph dumps on; (trace path, partition graph path)."""
    os.makedirs(folder, exist_ok=True)
    trace_path = os.path.join(folder, "trace.json")
    env = {**os.environ, "TF_DUMP_GRAPH_PREFIX": folder, "TF_DUMP_GRAPH_NAME_FILTER": "*"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    command = [sys.executable, "-m", "profilers.trace", "record", spec_path, trace_path]
    subprocess.run(command, check=True, capture_output=True, env=env)
    (graph_path,) = glob.glob(os.path.join(folder, "*one_step*after_partition_passes.pbtxt"))
    return trace_path, graph_path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    trace_path, graph_path = record_with_graph(argv[0], argv[1])
    with open(trace_path) as handle:
        trace = json.load(handle)
    order = reverse_post_order(construct(load_graph_def(graph_path)))
    same, pairs = agreement(order, traced_op_order(trace, order))
    print(json.dumps({"agreeing_pairs": same, "pairs": pairs, "graph": graph_path}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
