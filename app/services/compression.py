"""Model size and compute for the API: the estimator's compression figures of one spec."""

from __future__ import annotations

from typing import Any, Literal

from estimator.compression import compression_summary, recipe_report
from estimator.engine import Mode, model_for
from estimator.layers import resolve
from estimator.spec import AnySpec


def size_and_flops(answer: dict[str, Any]) -> dict[str, Any]:
    """`params`, `size_bytes` (by storage format) and `flops` of a stored estimate's spec,
    of the model its mode counts."""
    from pydantic import TypeAdapter

    from estimator.spec import Spec

    spec: AnySpec = TypeAdapter(Spec).validate_python(answer["spec"])
    mode: Mode = answer["mode"]
    summary = compression_summary(resolve(model_for(spec, mode)))
    return {key: summary[key] for key in ("params", "size_bytes", "flops")}


def recipe(
    spec: AnySpec,
    *,
    prune: float,
    quantize: Literal["none", "float16", "dynamic"],
    scales: Literal["tensor", "channel"],
    cluster: int | None,
    group_prune: float,
) -> dict[str, object]:
    """One compression recipe's stored bytes (as `phymem compress` reports them)."""
    layers = resolve(model_for(spec, "paper"))
    return recipe_report(
        layers,
        prune=prune,
        quantize=quantize,
        scales=scales,
        cluster=cluster,
        group_prune=group_prune,
    )
