"""POST /v1/compress: the estimated stored size of one compression recipe."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from app.api.schemas import ApiSpec, pure
from app.services import compression

router = APIRouter(prefix="/v1/compress", tags=["compression"])


class CompressRequest(BaseModel):
    """A spec and one recipe: magnitude pruning, quantization, clustering, group pruning."""

    model_config = ConfigDict(extra="forbid")

    spec: ApiSpec
    prune: float = Field(default=0.0, ge=0, lt=1, description="Magnitude-pruning sparsity.")
    quantize: Literal["none", "float16", "dynamic"] = "none"
    scales: Literal["tensor", "channel"] = Field(default="tensor", description="int8 scales.")
    cluster: int | None = Field(default=None, ge=2, le=2**16, description="Weight clusters C.")
    group_prune: float = Field(
        default=0.0, ge=0, lt=1, description="Fraction of each kernel's input groups removed."
    )


class CompressOut(BaseModel):
    recipe: dict[str, Any]
    params: int
    fp32_bytes: int
    size_bytes: dict[str, int] = Field(description="Stored bytes by storage (dense, sparse, ...).")
    reduction: dict[str, float] = Field(description="1 - size / fp32 size, by storage.")
    macs_dense: int
    group_pruned: dict[str, Any] | None = None


COMPRESS_EXAMPLES: dict[str, Any] = {
    "csinet": {
        "summary": "AE k=8, N_T=4, pruned 50% and int8",
        "value": {
            "spec": {"family": "ae", "k": 8, "nt": 4},
            "prune": 0.5,
            "quantize": "dynamic",
        },
    }
}


@router.post("", response_model=CompressOut, summary="Estimate one compression recipe")
def estimate_compression(
    request: Annotated[CompressRequest, Body(openapi_examples=COMPRESS_EXAMPLES)],
) -> Any:
    """Stored bytes of the spec's weights under one recipe, estimated (no model is built;
    `phymem compress --measure` measures it). Nothing is stored."""
    return compression.recipe(
        pure(request.spec),
        prune=request.prune,
        quantize=request.quantize,
        scales=request.scales,
        cluster=request.cluster,
        group_prune=request.group_prune,
    )
