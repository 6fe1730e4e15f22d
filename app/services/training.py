"""Training jobs: the checks a train request needs beyond its schema, and its stored results.

A train job stores everything it runs with: the spec (its batch is the training batch, so
the paired memory estimate is of the batch that trains), `params["train"]` and
`params["evaluate"]` with every default filled in. Its artifacts (checkpoint, `.keras`
model, loss history) live under `<data_dir>/jobs/<id>/`; its BER curve in `ber_results`;
its figures of merit (CsiNet's NMSE and rho, DetNet's BER at 12 dB) in `job_metrics`.
No TensorFlow here: the API and the CLI use this module.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, cast

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.api.schemas import EvaluateParams, TrainParams
from app.db.models import BerResult, JobMetric
from estimator.spec import FamilySpec, ModelSpec

# What the optimizer names of the spec train with when `train.lr` is not given
# (profilers/builders.py builds them with these rates).
DEFAULT_LR = {"adam": 1e-3, "sgd": 1e-2, "momentum": 1e-2}
DETNET_RECEIVERS = 30  # N of the green-DetNet paper's experiments (K = 20)
DETNET_TRAIN_SNR_DB = (0.0, 15.0)  # the paper's training SNRs, drawn per sample here
MAX_ONE_HOT_BITS = 16  # ae / ae-embedding: 2^(k*nt) messages, one output each
BER_FIELDS = (
    "detector",
    "ebn0_db",
    "bits",
    "bit_errors",
    "ber",
    "ci_low",
    "ci_high",
    "symbols",
    "symbol_errors",
    "messages",
    "message_errors",
    "tx_energy",
)
MODEL_FILE = "model.keras"
WEIGHTS_FILE = "final.weights.h5"
HISTORY_FILE = "history.json"
CHECKPOINT_FILE = "checkpoint.npz"
PID_FILE = "train.pid"
PROGRESS_FILE = "progress.json"  # a local run's progress (a job's is on its row)


class InvalidTraining(ValueError):
    """A train request that its schema accepts but that cannot run; names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def ml_candidates(k: int, nt: int) -> int:
    return int((2**k) ** nt)


def training_kind(spec: FamilySpec | ModelSpec) -> str:
    """'autoencoder' (the paper's families), 'csinet' (a real 2048-in, 2048-out model with
    MSE loss: CSI of 32 antennas x 32 delay taps in, its reconstruction out) or 'detnet'
    (DetNet layers and the 'detnet' loss), or InvalidTraining naming `spec`."""
    from estimator.families import CSINET_VALUES
    from estimator.layers import resolve as resolve_layers
    from estimator.records import is_family

    if is_family(spec):
        return "autoencoder"
    model = cast(ModelSpec, spec)
    kinds = {layer.type for layer in model.layers}
    if model.loss == "detnet" and kinds == {"detnet_layer"}:
        return "detnet"
    width = resolve_layers(model)[-1].out_features
    csi_shaped = model.input_kind == "real" and model.input_size == width == CSINET_VALUES
    if csi_shaped and model.loss == "mse":
        return "csinet"
    raise InvalidTraining(
        "spec",
        "train jobs take a family spec (ae, ae-embedding, bae, tanh-bae), a CsiNet (real "
        f"{CSINET_VALUES} values in and out, loss mse) or a DetNet (detnet_layer layers, "
        "loss detnet)",
    )


def resolve(
    spec: FamilySpec | ModelSpec, train: TrainParams, evaluate: EvaluateParams
) -> tuple[FamilySpec | ModelSpec, TrainParams, EvaluateParams]:
    """The spec at the training batch and the parameters with their defaults resolved.

    Raises InvalidTraining naming the field (`spec.n`, `train.lr`, `evaluate.baselines`...).
    """
    kind = training_kind(spec)
    if spec.optimizer == "none":
        raise InvalidTraining("spec.optimizer", "'none' never updates: use adam, sgd or momentum")
    if kind == "autoencoder":
        _check_autoencoder(cast(FamilySpec, spec), train, evaluate)
    else:
        train, evaluate = _resolve_seed_family(kind, cast(ModelSpec, spec), train, evaluate)
    batch = train.batch if train.batch is not None else spec.batch
    spec = spec.model_copy(update={"batch": batch})
    lr = train.lr if train.lr is not None else DEFAULT_LR[spec.optimizer]
    return spec, train.model_copy(update={"batch": batch, "lr": lr}), evaluate


def _check_autoencoder(spec: FamilySpec, train: TrainParams, evaluate: EvaluateParams) -> None:
    from profilers.phy.detectors import DEFAULT_MAX_CANDIDATES

    if train.receivers is not None:
        raise InvalidTraining("train.receivers", "only for DetNet (the family's nr sets N_R)")
    if spec.n != 1:
        raise InvalidTraining("spec.n", f"training uses one channel use (N = 1), got {spec.n}")
    if spec.family in ("ae", "ae-embedding") and spec.k * spec.nt > MAX_ONE_HOT_BITS:
        raise InvalidTraining(
            "spec.k",
            f"a one-hot autoencoder with k*nt = {spec.k * spec.nt} bits has "
            f"2^{spec.k * spec.nt} outputs: train at most {MAX_ONE_HOT_BITS} bits "
            "(the bit-wise families have no such limit)",
        )
    nr = spec.receive_antennas
    if train.channel != "rayleigh" and nr != spec.nt:
        raise InvalidTraining(
            "spec.nr", f"the {train.channel} channel has N_R = N_T = {spec.nt}, got nr = {nr}"
        )
    if "zf" in evaluate.baselines and nr < spec.nt:
        raise InvalidTraining(
            "evaluate.baselines", f"zf needs nr >= nt, got nr = {nr}, nt = {spec.nt}"
        )
    if "ml" in evaluate.baselines and ml_candidates(spec.k, spec.nt) > DEFAULT_MAX_CANDIDATES:
        raise InvalidTraining(
            "evaluate.baselines",
            f"ml searches (2^k)^nt = {ml_candidates(spec.k, spec.nt)} candidates, more than "
            f"the limit of {DEFAULT_MAX_CANDIDATES}: drop 'ml' or use fewer antennas or bits",
        )


def _resolve_seed_family(
    kind: str, spec: ModelSpec, train: TrainParams, evaluate: EvaluateParams
) -> tuple[TrainParams, EvaluateParams]:
    """CsiNet and DetNet: no channel choice; DetNet's N, SNR range and baselines filled in."""
    defaults = TrainParams()
    for name in ("channel", "cross"):
        if getattr(train, name) != getattr(defaults, name):
            raise InvalidTraining(f"train.{name}", f"not for {kind} (its data are fixed)")
    if kind == "csinet":
        if train.receivers is not None:
            raise InvalidTraining("train.receivers", "only for DetNet")
        if "baselines" in evaluate.model_fields_set and evaluate.baselines:
            raise InvalidTraining("evaluate.baselines", "csinet has no classical baselines")
        return train, evaluate.model_copy(update={"baselines": []})
    first = spec.layers[0]
    assert first.type == "detnet_layer"
    receivers = train.receivers if train.receivers is not None else DETNET_RECEIVERS
    if receivers < first.transmitters:
        raise InvalidTraining(
            "train.receivers",
            f"DetNet's loss normalises by zero forcing, which needs N >= K = "
            f"{first.transmitters}, got {receivers}",
        )
    if "ml" in evaluate.baselines and "baselines" in evaluate.model_fields_set:
        raise InvalidTraining("evaluate.baselines", "detnet compares with zf and mmse only")
    snr = train.train_ebn0_db
    if "train_ebn0_db" not in train.model_fields_set:
        snr = list(DETNET_TRAIN_SNR_DB)
    baselines = [b for b in evaluate.baselines if b != "ml"]
    return (
        train.model_copy(update={"receivers": receivers, "train_ebn0_db": snr}),
        evaluate.model_copy(update={"baselines": baselines}),
    )


# --- Artifacts ----------------------------------------------------------------------------


def job_dir(data_dir: Path, job_id: int) -> Path:
    return Path(data_dir) / "jobs" / str(job_id)


def artifact(data_dir: Path, job_id: int, name: str) -> Path | None:
    path = job_dir(data_dir, job_id) / name
    return path if path.is_file() else None


def read_history(data_dir: Path, job_id: int) -> list[dict[str, Any]] | None:
    """The loss per step, as the training wrote it (None before there is any)."""
    path = artifact(data_dir, job_id, HISTORY_FILE)
    if path is None:
        return None
    data = json.loads(path.read_text())
    return [{"step": int(step), "loss": float(loss)} for step, loss in data["loss"]]


# --- BER rows -----------------------------------------------------------------------------


def store_ber(session: Session, job_id: int, rows: list[dict[str, Any]]) -> None:
    """Replace the job's BER rows (inside the caller's transaction)."""
    session.execute(delete(BerResult).where(BerResult.job_id == job_id))
    for row in rows:
        session.add(BerResult(job_id=job_id, **{name: row[name] for name in BER_FIELDS}))


def ber_rows(session: Session, job_id: int) -> list[dict[str, Any]]:
    """The job's BER rows: the model's curve first, then the baselines, by Eb/N0."""
    found = session.scalars(
        select(BerResult).where(BerResult.job_id == job_id).order_by(BerResult.id)
    )
    rows = []
    for item in found:
        row = {name: getattr(item, name) for name in BER_FIELDS}
        row["ser"] = item.symbol_errors / item.symbols if item.symbols else 0.0
        row["bler"] = item.message_errors / item.messages if item.messages else 0.0
        row["errors"] = item.bit_errors
        rows.append(row)
    return rows


# --- Metrics ------------------------------------------------------------------------------


def store_metrics(session: Session, job_id: int, rows: list[dict[str, Any]]) -> None:
    """Replace the job's metrics (inside the caller's transaction); a value that is not a
    finite number is not stored."""
    session.execute(delete(JobMetric).where(JobMetric.job_id == job_id))
    for row in rows:
        if not math.isfinite(float(row["value"])):
            continue
        session.add(
            JobMetric(
                job_id=job_id,
                name=str(row["name"]),
                value=float(row["value"]),
                ebn0_db=row.get("ebn0_db"),
                detail=dict(row.get("detail") or {}),
            )
        )


def metric_rows(session: Session, job_id: int) -> list[dict[str, Any]]:
    """The job's metrics in the order the run reported them."""
    found = session.scalars(
        select(JobMetric).where(JobMetric.job_id == job_id).order_by(JobMetric.id)
    )
    return [
        {"name": m.name, "value": m.value, "ebn0_db": m.ebn0_db, "detail": m.detail} for m in found
    ]
