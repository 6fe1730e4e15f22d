"""Request and response bodies of the HTTP API (the specs themselves come from estimator)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
)

from app.core.statuses import JobStatus, MeasurementQuantity
from app.worker.resources import CLASS_PATTERN
from estimator.calibration import Calibration
from estimator.engine import DEFAULT_MODE, Breakdown, LayerEstimate, Mode
from estimator.gate import DEFAULT_BASIS, Basis
from estimator.spec import (
    PRINTABLE,
    SEED_FAMILIES,
    CsiNetSpec,
    DetNetSpec,
    FamilyModelSpec,
    FamilySpec,
    ModelSpec,
    SeedFamilySpec,
)
from estimator.sweep import Grid

# Tags of the spec unions below; error locations drop them (see app/api/errors.py).
FAMILY_TAG = "family-spec"
MODEL_TAG = "model-spec"
SEED_TAG = "seed-family-spec"  # csinet, detnet: the inner union's tags are the family names
UNION_TAGS = frozenset({FAMILY_TAG, MODEL_TAG, SEED_TAG, *SEED_FAMILIES})
MAX_GATE_SPECS = 1000
MAX_ID = 2**31 - 1
DeviceField = Field(
    default=None,
    max_length=64,
    pattern=PRINTABLE,
    description="A catalog device: the answer then also carries the estimate calibrated "
    "for it (GET /v1/devices/{name}/calibration).",
)
ModeField = Field(
    default=DEFAULT_MODE,
    description="'paper': the paper's cost model; 'framework': the framework's allocator.",
)


_S = TypeVar("_S", FamilySpec, ModelSpec)


def _strip(cls: type[_S], request: BaseModel) -> _S:
    # Validated by the same validators (and tighter bounds): construct without a second pass.
    values = {name: getattr(request, name) for name in cls.model_fields}
    return cls.model_construct(_fields_set=request.model_fields_set & set(values), **values)


def pure(spec: FamilySpec | ModelSpec | CsiNetSpec | DetNetSpec) -> FamilySpec | ModelSpec:
    """The estimator's own spec class (what canonical_json and spec_hash expect); a seed
    family (already expanded when read from a request) as its layer list."""
    if isinstance(spec, CsiNetSpec | DetNetSpec):
        return spec.expand()
    if type(spec) in (FamilySpec, ModelSpec, FamilyModelSpec):
        return spec
    if isinstance(spec, FamilySpec):
        return _strip(FamilySpec, spec)
    return _strip(ModelSpec, spec)


def _spec_kind(value: Any) -> str:
    if isinstance(value, dict):
        if "family" not in value:
            return MODEL_TAG
        return SEED_TAG if value["family"] in SEED_FAMILIES else FAMILY_TAG
    if isinstance(value, CsiNetSpec | DetNetSpec):
        return SEED_TAG
    return FAMILY_TAG if isinstance(value, FamilySpec) else MODEL_TAG


def _expand(spec: CsiNetSpec | DetNetSpec) -> FamilyModelSpec:
    return spec.expand()


# A spec inside a request: one of the paper's autoencoder families, CsiNet or DetNet by
# their knobs (expanded to their layer lists as they are read), or a generic layer list.
ApiSpec = Annotated[
    Annotated[FamilySpec, Tag(FAMILY_TAG)]
    | Annotated[SeedFamilySpec, AfterValidator(_expand), Tag(SEED_TAG)]
    | Annotated[ModelSpec, Tag(MODEL_TAG)],
    Discriminator(_spec_kind),
]


class FamilyEstimateRequest(FamilySpec):
    """A family spec (one of the paper's MIMO autoencoders) and the mode to estimate it in."""

    mode: Mode = ModeField
    device: str | None = DeviceField

    def spec(self) -> FamilySpec:
        return _strip(FamilySpec, self)


class ModelEstimateRequest(ModelSpec):
    """A generic sequential model spec and the mode to estimate it in."""

    mode: Mode = ModeField
    device: str | None = DeviceField

    def spec(self) -> ModelSpec:
        return _strip(ModelSpec, self)


class CsiNetEstimateRequest(CsiNetSpec):
    """CsiNet by its compression ratio, and the mode to estimate it in."""

    mode: Mode = ModeField
    device: str | None = DeviceField

    def spec(self) -> FamilyModelSpec:
        return self.expand()


class DetNetEstimateRequest(DetNetSpec):
    """DetNet by its size (K, N, layers), and the mode to estimate it in."""

    mode: Mode = ModeField
    device: str | None = DeviceField

    def spec(self) -> FamilyModelSpec:
        return self.expand()


EstimateRequest = Annotated[
    Annotated[FamilyEstimateRequest, Tag(FAMILY_TAG)]
    | Annotated[
        CsiNetEstimateRequest | DetNetEstimateRequest,
        Field(discriminator="family"),
        Tag(SEED_TAG),
    ]
    | Annotated[ModelEstimateRequest, Tag(MODEL_TAG)],
    Discriminator(_spec_kind),
]

ESTIMATE_EXAMPLES: dict[str, Any] = {
    "table2": {
        "summary": "Table 2: AE, k=6, N_T=4, batch 2048 (800.9 GiB)",
        "value": {"family": "ae", "k": 6, "nt": 4, "batch": 2048, "mode": "paper"},
    },
    "bae": {
        "summary": "BAE, k=8, N_T=64",
        "value": {"family": "bae", "k": 8, "nt": 64, "mode": "paper"},
    },
    "csinet": {
        "summary": "CsiNet, gamma = 1/16 (paper mode: framework mode has no conv traces yet)",
        "value": {"family": "csinet", "gamma": "1/16", "mode": "paper"},
    },
    "detnet": {
        "summary": "DetNet, K=20, N=30, 50 layers",
        "value": {"family": "detnet", "layers": 50, "mode": "paper"},
    },
    "model": {
        "summary": "A generic sequential model",
        "value": {
            "input_kind": "one_hot",
            "input_size": 16,
            "layers": [
                {"type": "dense", "units": 32, "activation": "relu"},
                {"type": "dense", "units": 16, "activation": "softmax"},
            ],
            "loss": "categorical_crossentropy",
            "batch": 1024,
            "mode": "paper",
        },
    },
}


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field ('' for the body).")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


# The engine's own result rows are the response schema (pydantic reads dataclasses).
LayerRow = LayerEstimate
BreakdownOut = Breakdown


class _Totals(BaseModel):
    total_bytes: int = Field(description="Exact byte count (may exceed 64 bits).")
    total_bytes_decimal: str = Field(description="The same count as a decimal string.")
    total_gib: float | str = Field(
        description="GiB; a string in scientific notation beyond float range."
    )


class EstimateSummary(_Totals):
    id: int
    spec_hash: str
    kind: Literal["family", "model"]
    family: str | None
    k: int | None
    nt: int | None
    batch: int
    mode: str
    engine_version: str
    created_at: datetime


class CalibratedOut(_Totals):
    calibration: Calibration


class EstimateOut(_Totals):
    id: int | None = Field(
        description="The stored estimate; null when not stored (the anonymous store limit)."
    )
    spec_hash: str = Field(description="SHA-256 of the spec's canonical JSON.")
    spec: dict[str, Any] = Field(description="The spec with its defaults filled in.")
    mode: str
    engine_version: str
    batch: int
    upper_bytes: int | None = Field(
        default=None,
        description="A bound no execution order of the step exceeds (paper mode: the total); "
        "what fit verdicts judge by default.",
    )
    upper_bytes_decimal: str | None = None
    upper_gib: float | str | None = None
    basis: str | None = Field(
        default=None,
        description="What the counts rest on: 'tensorflow-2.21-cpu-bfc' (framework mode: "
        "TensorFlow 2.21's CPU BFC allocator, traced; on a GPU plus the device's calibrated "
        "context) or 'paper-equations'.",
    )
    breakdown: BreakdownOut
    layers: list[LayerRow]
    created_at: datetime
    calibrated: CalibratedOut | None = Field(
        default=None, description="The total calibrated for the requested device, if any."
    )
    params: int | None = Field(default=None, description="Parameters.")
    size_bytes: dict[str, int] | None = Field(
        default=None, description="Stored weight bytes by format."
    )
    flops: int | None = Field(default=None, description="FLOPs per sample.")


class EstimateList(BaseModel):
    items: list[EstimateSummary]
    limit: int
    offset: int


class SweepRequest(Grid):
    """Every combination of the listed values (the other family parameters as given)."""


class SweepRowOut(_Totals):
    family: str
    k: int
    nt: int
    batch: int
    precision: str
    optimizer: str


class SweepOut(BaseModel):
    mode: str
    engine_version: str
    cells: int
    rows: list[SweepRowOut]


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str | None = Field(
        default=None,
        max_length=64,
        pattern=PRINTABLE,
        description="A device name from GET /v1/devices.",
        examples=["a100-80gb"],
    )
    vram: str | None = Field(
        default=None,
        max_length=64,
        pattern=PRINTABLE,
        description="A memory size instead of a device: '80GiB', '40GB' or a byte count.",
        examples=["80GiB"],
    )
    mode: Mode = ModeField
    basis: Basis = Field(
        default=DEFAULT_BASIS,
        description="What a fit is judged on: 'upper' (default), the estimate's upper_bytes, "
        "a bound no execution order of the step exceeds; 'expected', its peak_bytes, the "
        "layout most processes take.",
    )


class NamedSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None, max_length=200, pattern=PRINTABLE, description="Default: specs[i]."
    )
    spec: ApiSpec


class GateRequest(_Target):
    specs: list[NamedSpec] = Field(min_length=1, max_length=MAX_GATE_SPECS)


class VerdictOut(_Totals):
    name: str
    fits: bool
    vram_bytes: int
    reason: str
    calibration: str = Field(
        description="The device calibration applied to the estimate: 'none', or 'prior (0 "
        "pairs)' (fit verdicts use a named device's prior calibration only)."
    )
    basis: str = Field(description="'upper' or 'expected': what total_bytes is.")
    peak_bytes: int = Field(description="The estimate's expected peak (uncalibrated).")
    upper_bytes: int = Field(description="The estimate's upper bound (uncalibrated).")


class GateOut(BaseModel):
    fits: bool = Field(description="Whether every spec fits.")
    device: str | None
    vram_bytes: int
    mode: str
    basis: str
    engine_version: str
    verdicts: list[VerdictOut]


class MaxBatchRequest(_Target):
    spec: ApiSpec = Field(description="The spec; its batch is ignored.")


class MaxBatchOut(BaseModel):
    max_batch: int = Field(
        description="Largest B such that every batch 1..B fits (by the basis); 0 when not "
        "even 1 does."
    )
    fits: bool
    device: str | None
    vram_bytes: int
    mode: str
    basis: str
    calibration: str
    engine_version: str
    peak_bytes: int | None = Field(description="The expected peak at max_batch.")
    upper_bytes: int | None = Field(description="The upper bound at max_batch.")
    total_bytes: int | None = Field(
        description="What was judged at max_batch: the basis's bytes, calibration applied."
    )
    total_bytes_decimal: str | None
    total_gib: float | str | None


class DeviceOut(BaseModel):
    name: str
    label: str
    memory_bytes: int
    memory_gib: float
    note: str


# The estimator's calibration is the response schema (pydantic reads dataclasses).
CalibrationOut = Calibration


class HealthOut(BaseModel):
    status: Literal["ok"]
    database: Literal["ok"]
    engine_version: str


# --- Training jobs (kind "train") -------------------------------------------------------

DEFAULT_TRAIN_EBN0_DB = 7.0
DEFAULT_TRAIN_STEPS = 2000  # the paper: 4,096,000 samples at B = 2048
DEFAULT_CHECKPOINT_EVERY = 100
MAX_TRAIN_STEPS = 1_000_000
MAX_GRID_POINTS = 200
EBN0_RANGE_DB = (-30.0, 60.0)
MAX_DETNET_RECEIVERS = 1024
Channel = Literal["awgn", "cross", "rayleigh"]
Baseline = Literal["zf", "mmse", "ml"]
ALL_BASELINES: tuple[Baseline, ...] = ("zf", "mmse", "ml")


class TrainParams(BaseModel):
    """How a training job trains the spec's model (every default is the stored value)."""

    model_config = ConfigDict(extra="forbid")

    channel: Channel = Field(
        default="awgn",
        description="'awgn' (H = I), 'cross' (1 on the diagonal, `cross` off it) or "
        "'rayleigh' (CN(0,1) entries per sample; the decoder also gets H).",
    )
    cross: float = Field(
        default=0.3, gt=-1.0, lt=1.0, description="Off-diagonal gain of the 'cross' channel."
    )
    train_ebn0_db: float | list[float] = Field(
        default=DEFAULT_TRAIN_EBN0_DB,
        description="Training Eb/N0 in dB: one value, or [lo, hi] drawn uniformly (in dB) "
        "per sample.",
    )
    steps: int = Field(
        default=DEFAULT_TRAIN_STEPS, ge=1, le=MAX_TRAIN_STEPS, description="Optimizer steps."
    )
    lr: float | None = Field(
        default=None,
        gt=0.0,
        le=10.0,
        description="Learning rate; default the optimizer's (Adam 1e-3 as in the paper, "
        "SGD 1e-2). Stored resolved.",
    )
    batch: int | None = Field(
        default=None,
        ge=1,
        le=1 << 20,
        description="Samples per step; default the spec's batch (2048). The stored spec "
        "carries it, so the memory estimate is of the trained batch.",
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Weights, bits and noise.")
    checkpoint_every: int = Field(
        default=DEFAULT_CHECKPOINT_EVERY,
        ge=1,
        le=MAX_TRAIN_STEPS,
        description="Steps between checkpoints (a retried job resumes from the last).",
    )
    receivers: int | None = Field(
        default=None,
        ge=1,
        le=MAX_DETNET_RECEIVERS,
        description="DetNet only: receive antennas N (default 30; N >= K, the transmitters). "
        "For DetNet `train_ebn0_db` is the SNR range (default [0, 15] dB).",
    )

    @field_validator("train_ebn0_db")
    @classmethod
    def _ebn0(cls, value: float | list[float]) -> float | list[float]:
        low, high = EBN0_RANGE_DB
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and (len(value) != 2 or value[0] > value[1]):
            raise ValueError("a range is [lo, hi] with lo <= hi")
        if not all(math.isfinite(v) and low <= v <= high for v in values):
            raise ValueError(f"Eb/N0 values must lie in [{low:g}, {high:g}] dB")
        return value


class EvaluateParams(BaseModel):
    """How a training job evaluates the trained model and the classical baselines."""

    model_config = ConfigDict(extra="forbid")

    ebn0_db: str = Field(
        default="0:12:1",
        max_length=2000,
        description="Eb/N0 grid in dB: 'start:stop:step' (stop included) or 'a,b,c'.",
    )
    target_errors: int = Field(
        default=1000, ge=1, le=10**7, description="Bit errors per point before it stops."
    )
    max_bits: int = Field(default=10**7, ge=1, le=10**11, description="Bit budget per point.")
    baselines: list[Baseline] = Field(
        default_factory=lambda: list(ALL_BASELINES),
        max_length=3,
        description="Classical detectors of uncoded Gray QAM on the same channel and points.",
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Monte Carlo seed.")
    test_samples: int = Field(
        default=2000,
        ge=1,
        le=100_000,
        description="CsiNet only: held-out channels NMSE and rho are measured on.",
    )

    @field_validator("ebn0_db")
    @classmethod
    def _grid(cls, value: str) -> str:
        points = grid_points(value)
        low, high = EBN0_RANGE_DB
        if len(points) > MAX_GRID_POINTS:
            raise ValueError(f"at most {MAX_GRID_POINTS} points, got {len(points)}")
        if not all(low <= p <= high for p in points):
            raise ValueError(f"Eb/N0 values must lie in [{low:g}, {high:g}] dB")
        return value

    @field_validator("baselines")
    @classmethod
    def _unique(cls, value: list[Baseline]) -> list[Baseline]:
        if len(set(value)) != len(value):
            raise ValueError("each baseline at most once")
        return value


def grid_points(text: str) -> list[float]:
    """The Eb/N0 values of a grid string (profilers.phy's parser; numpy only)."""
    from profilers.phy.montecarlo import parse_grid

    parts = text.split(":")
    if len(parts) == 3:  # count the points before the parser lists them
        try:
            start, stop, step = (float(p) for p in parts)
        except ValueError:
            pass
        else:
            if step > 0 and stop >= start and (stop - start) / step >= MAX_GRID_POINTS:
                raise ValueError(f"at most {MAX_GRID_POINTS} points, got {text!r}")
    try:
        return parse_grid(text)
    except ValueError as error:
        raise ValueError(str(error).removeprefix("ebn0: ")) from None


# --- Jobs ----------------------------------------------------------------------------


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["profile", "train"] = Field(
        default="profile",
        description="'profile': measure one training step's peak and pair it with the "
        "estimate. 'train': train the spec's model over a channel, measure the training's "
        "peak, evaluate BER vs Eb/N0 against the classical baselines.",
    )
    spec: ApiSpec
    device_class: str = Field(
        default="cpu",
        pattern=CLASS_PATTERN,
        description="'cpu', a GPU of GET /v1/devices (e.g. a100-80gb), or a class your "
        "Ray nodes advertise as the resource device:<class>.",
    )
    steps: int = Field(default=3, ge=1, le=100, description="Measured training steps.")
    mode: Mode = Field(default="framework", description="Mode of the paired estimate.")
    memory_limit_bytes: int | None = Field(
        default=None,
        ge=2**20,
        le=2**50,
        description="Cap the measuring process's address space (a smaller device); 1 MiB to 1 PiB.",
    )
    timeout_s: float | None = Field(default=None, gt=0, le=86_400)
    max_attempts: int = Field(default=3, ge=1, le=10, description="Claims before failing.")
    train: TrainParams | None = Field(
        default=None, description="kind 'train': how to train (defaults stated per field)."
    )
    evaluate: EvaluateParams | None = Field(
        default=None, description="kind 'train': how to evaluate the trained model."
    )


Phase = Literal["build", "train", "evaluate"]


class JobOut(BaseModel):
    id: int
    url: str
    kind: str
    status: JobStatus
    device_class: str | None
    mode: str
    spec_hash: str | None
    spec: dict[str, Any] | None
    params: dict[str, Any]
    attempts: int
    max_attempts: int
    progress: float
    phase: Phase | None = Field(description="A training job's current phase.")
    step: int | None = Field(description="Training steps done.")
    total_steps: int | None = Field(description="Training steps asked for.")
    loss: float | None = Field(description="The latest training loss.")
    ebn0_db: float | None = Field(description="The Eb/N0 point being evaluated.")
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobList(BaseModel):
    items: list[JobOut]
    limit: int
    offset: int


JOB_EXAMPLES: dict[str, Any] = {
    "tiny": {
        "summary": "A tiny BAE on the CPU, one measured step",
        "value": {
            "kind": "profile",
            "spec": {"family": "bae", "k": 2, "nt": 2, "ht": 16, "hr": 32, "batch": 64},
            "device_class": "cpu",
            "steps": 1,
        },
    },
    "train": {
        "summary": "Train a small Tanh-BAE over the 2x2 cross channel, evaluate vs ZF/MMSE/ML",
        "value": {
            "kind": "train",
            "spec": {"family": "tanh-bae", "k": 2, "nt": 2, "ht": 64, "hr": 128},
            "train": {
                "channel": "cross",
                "cross": 0.3,
                "train_ebn0_db": 7,
                "steps": 2000,
                "batch": 512,
                "seed": 1,
            },
            "evaluate": {"ebn0_db": "0:10:2", "target_errors": 200, "max_bits": 1000000},
        },
    },
}


class BerRow(BaseModel):
    detector: str = Field(description="'zf', 'mmse', 'ml', or the trained family's name.")
    ebn0_db: float
    bits: int
    bit_errors: int
    errors: int = Field(description="The bit errors again (the CLI's row format).")
    ber: float
    ci_low: float = Field(description="95% Clopper-Pearson interval of the BER.")
    ci_high: float
    symbols: int
    symbol_errors: int
    ser: float
    messages: int
    message_errors: int
    bler: float
    tx_energy: float = Field(description="Measured mean |x|^2 per transmit antenna.")


class BerOut(BaseModel):
    job_id: int
    rows: list[BerRow]


class MetricRow(BaseModel):
    name: str = Field(description="'nmse_db' and 'rho' (CsiNet), 'ber' (DetNet).")
    value: float
    ebn0_db: float | None = Field(description="The SNR in dB the value is at (DetNet's BER).")
    detail: dict[str, Any] = Field(
        description="How it was measured (held-out samples, bits, interval, baselines) and "
        "`untrained`, the same metric of the model before its first step."
    )


class MetricsOut(BaseModel):
    job_id: int
    metrics: list[MetricRow]


class LossPoint(BaseModel):
    step: int
    loss: float


class HistoryOut(BaseModel):
    job_id: int
    loss: list[LossPoint]


# --- Measurements ----------------------------------------------------------------------


class MeasurementOut(BaseModel):
    id: int
    job_id: int | None
    estimate_id: int
    spec_hash: str
    kind: str
    family: str | None
    k: int | None
    nt: int | None
    batch: int | None
    mode: str
    engine_version: str
    status: Literal["ok", "oom", "failed"]
    device: str
    estimate_bytes: int
    breakdown: dict[str, int] = Field(description="The estimate's bytes by category.")
    measured_bytes: int | None
    error_pct: float | None = Field(
        description="(estimated - measured) / measured x 100 for this quantity; null "
        "without both values."
    )
    step_time_s: float | None
    nvml_peak_bytes: int | None
    framework_versions: dict[str, Any]
    created_at: datetime
    quantity: MeasurementQuantity = Field(
        description="What was measured: 'training_peak' (allocator peak, bytes), "
        "'model_size' (a TFLite file, bytes) or 'latency' (LiteRT, microseconds)."
    )
    unit: Literal["bytes", "us"]
    estimated_value: int | float | None = Field(
        description="The estimate this measurement tests, in `unit`: the estimate's total "
        "for a training peak, the recipe's stored bytes for a model size; null for latency "
        "(no latency model)."
    )
    measured_value: int | float | None = Field(description="The measured value, in `unit`.")
    detail: dict[str, Any] = Field(
        description="A size's or latency's recipe: the file, gzip or not, the delegate."
    )


class MeasurementList(BaseModel):
    items: list[MeasurementOut]
    limit: int
    offset: int


# --- Dashboard -------------------------------------------------------------------------


MAX_CURVE_POINTS = 64  # points of one batch curve (app/services/dashboard.py enforces it too)


class BatchCurveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: ApiSpec = Field(description="The spec; its batch is replaced by each of `batches`.")
    mode: Mode = DEFAULT_MODE
    batches: list[Annotated[int, Field(ge=1, le=2**40)]] = Field(
        min_length=1, max_length=MAX_CURVE_POINTS
    )


class SpecText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=200_000, description="A spec as YAML or JSON.")
