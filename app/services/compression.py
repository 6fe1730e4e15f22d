"""Model size and compute: the estimator's compression figures of one spec, and the
measured ones stored as pairs beside them."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.orm import Session

from app.db.session import begin_write
from app.services import estimates, measurements
from estimator.compression import compression_summary, model_bytes, recipe_report
from estimator.engine import Mode, model_for
from estimator.layers import resolve
from estimator.spec import AnySpec

if TYPE_CHECKING:
    from estimator.layers import ResolvedLayer


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


# What each measured TFLite file tests: (part, file, which of its sizes, the estimate's
# recipe). The converter gives int8 kernels per-channel scales, so those files pair with
# the per-channel estimate; the dense files of pruned and clustered models pair through
# gzip, which squeezes their zeros and repeats about as the bitmap and index encodings do.
SIZE_PAIRS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("tflite", "fp32", "bytes", {}),
    ("tflite", "fp16", "bytes", {"fmt": "fp16"}),
    ("tflite", "int8", "bytes", {"fmt": "int8", "scales": "channel"}),
    ("pruned", "fp32", "gzip_bytes", {"storage": "bitmap"}),
    ("pruned", "int8", "gzip_bytes", {"fmt": "int8", "scales": "channel", "storage": "bitmap"}),
    ("pruned", "fp32_sparse", "bytes", {"storage": "sparse"}),
    ("pruned", "int8_sparse", "bytes", {"fmt": "int8", "scales": "channel", "storage": "sparse"}),
    ("clustered", "fp32", "gzip_bytes", {}),
    ("clustered", "int8", "gzip_bytes", {"fmt": "int8", "scales": "channel"}),
)


def _part_recipe(part: str, found: dict[str, Any]) -> dict[str, Any]:
    if part == "pruned":
        return {"sparsity": float(found["sparsity"])}
    if part == "clustered":
        return {"clusters": int(found["clusters"])}
    return {}


def size_pairs(layers: list[ResolvedLayer], measured: dict[str, Any]) -> list[dict[str, Any]]:
    """A 'model_size' pair for every measured file: its bytes (or gzip bytes) beside the
    estimator's bytes of the recipe that file stores."""
    rows = []
    for part, name, size, recipe in SIZE_PAIRS:
        found = measured.get(part) or {}
        if name not in found:
            continue
        options = {**recipe, **_part_recipe(part, found)}
        fmt = options.pop("fmt", "fp32")
        rows.append(
            {
                "quantity": "model_size",
                "measured_value": int(found[name][size]),
                "estimated_value": model_bytes(layers, fmt, **options),
                "detail": {
                    "file": f"{part}/{name}",
                    "size": "gzip" if size == "gzip_bytes" else "file",
                    "recipe": {"fmt": fmt, **options},
                },
            }
        )
    return rows


MICRO = Decimal("0.001")  # latency kept to the nanosecond, in microseconds


def latency_rows(measured: dict[str, Any], runs: int) -> list[dict[str, Any]]:
    """A 'latency' measurement (median microseconds, batch 1) per file and delegate. The
    estimator has no latency model, so these stand alone (no estimated value)."""
    rows = []
    for part, files in measured.items():
        for name, found in files.items():
            if not isinstance(found, dict):
                continue
            for delegate, seconds in (found.get("latency_s") or {}).items():
                detail = {"file": f"{part}/{name}", "delegate": delegate, "runs": runs}
                rows.append(
                    {
                        "quantity": "latency",
                        "measured_value": str(Decimal(repr(seconds)).scaleb(6).quantize(MICRO)),
                        "estimated_value": None,
                        "detail": detail,
                    }
                )
    return rows


def store_measured(
    session: Session,
    spec: AnySpec,
    measured: dict[str, Any],
    *,
    latency_runs: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Store `phymem compress --measure`'s results as measurements of the spec's
    paper-mode estimate (sizes do not depend on the mode; framework mode refuses the
    conv and DetNet layers): model-size pairs and latency measurements."""
    from profilers.compression import framework_versions

    estimate = estimates.get_or_create(session, spec, "paper")
    assert estimate.id is not None  # stored: no anonymous store limit here
    layers = resolve(model_for(spec, "paper"))
    rows = size_pairs(layers, measured) + latency_rows(measured, latency_runs)
    begin_write(session)
    ids = measurements.store_quantities(
        session, estimate.id, rows, device=device, framework_versions=framework_versions(measured)
    )
    session.commit()
    return {"estimate_id": estimate.id, "measurement_ids": ids}
