"""Estimates as a service: compute with the engine, store each spec once, read them back."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import CursorResult, bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db.models import Estimate as EstimateRow
from app.db.models import Measurement as MeasurementRow
from app.db.models import Spec as SpecRow
from app.db.models import utcnow
from app.db.session import begin_write, release
from app.services.filters import where_given, where_spec
from estimator.engine import ENGINE_VERSION, Estimate, Mode, estimate
from estimator.errors import InvalidInput, NotFound
from estimator.spec import AnySpec, FamilySpec, ModelSpec, canonical_json
from estimator.units import gib_value


@dataclass(frozen=True)
class StoreLimit:
    """How much an anonymous caller may add to the database: specs up to `max_spec_bytes`
    of canonical JSON while the specs table holds fewer than `max_specs` rows. Past
    either, the estimate is computed and answered but not stored (id null)."""

    max_specs: int
    max_spec_bytes: int


@dataclass(frozen=True)
class StoredEstimate:
    id: int | None  # None: computed, not stored (past the anonymous store limit)
    spec_hash: str
    spec: dict[str, Any]
    result: dict[str, Any]
    created_at: datetime
    computed: bool  # False when read back from the database

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "spec_hash": self.spec_hash,
            "spec": self.spec,
            "created_at": self.created_at,
            **self.result,
        }


def totals(total: int) -> dict[str, Any]:
    """An exact byte count in the API's three forms."""
    return {
        "total_bytes": total,
        "total_bytes_decimal": str(total),
        "total_gib": gib_value(total),
    }


def mode_unavailable(error: ImportError) -> InvalidInput:
    return InvalidInput(
        "mode",
        f"the 'framework' mode is not available on this server ({error}); use mode 'paper'",
    )


def engine_call(mode: Mode, call: Any, *args: Any, field: str = "") -> Any:
    """Run an engine function on a validated spec.

    Input errors are the engine's `InvalidInput` (re-labelled with `field` when it names
    none); any other exception is a fault of the engine and propagates (a 500).
    """
    try:
        return call(*args)
    except ImportError as error:
        if mode == "framework":
            raise mode_unavailable(error) from None
        raise
    except InvalidInput as error:
        if error.field or not field:
            raise
        raise type(error)(field, error.reason) from None
    except ValidationError as error:  # a spec the engine built from validated input
        first = error.errors()[0]
        inner = ".".join(str(part) for part in first["loc"])
        raise InvalidInput(
            ".".join(part for part in (field, inner) if part),
            str(first["msg"]).removeprefix("Value error, "),
        ) from None


def compute(spec: AnySpec, mode: Mode) -> dict[str, Any]:
    """The estimate's JSON form; framework mode charges the request's budget as it runs
    (estimator.budget), and an estimate past it is refused naming the layers."""

    def run() -> dict[str, Any]:
        result: Estimate = estimate(spec, mode)
        return result.to_dict()

    field = "layers" if isinstance(spec, ModelSpec) else ""
    result: dict[str, Any] = engine_call(mode, run, field=field)
    return result


def _insert(session: Session, table: Any) -> Any:
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database dialect {name!r}")


# Built once: the hot path of a repeated estimate is one indexed join, no ORM entities.
_COLUMNS = select(
    EstimateRow.id,
    EstimateRow.result,
    EstimateRow.created_at,
    SpecRow.spec_hash,
    SpecRow.canonical_json,
).join(SpecRow, EstimateRow.spec_id == SpecRow.id)
_STORED = _COLUMNS.where(
    SpecRow.spec_hash == bindparam("spec_hash"),
    EstimateRow.mode == bindparam("mode"),
    EstimateRow.engine_version == bindparam("engine_version"),
)
_BY_ID = _COLUMNS.where(EstimateRow.id == bindparam("estimate_id"))


def _stored(session: Session, spec_hash: str, mode: str) -> Any:
    params = {"spec_hash": spec_hash, "mode": mode, "engine_version": ENGINE_VERSION}
    return session.execute(_STORED, params).first()


def _record(row: Any, computed: bool) -> StoredEstimate:
    return StoredEstimate(
        id=row.id,
        spec_hash=row.spec_hash,
        spec=json.loads(row.canonical_json),
        result=row.result,
        created_at=row.created_at,
        computed=computed,
    )


def _may_store(session: Session, canonical: str, limit: StoreLimit | None) -> bool:
    if limit is None:
        return True
    if len(canonical.encode()) > limit.max_spec_bytes:
        return False
    stored = session.scalar(select(func.count()).select_from(SpecRow)) or 0
    return stored < limit.max_specs


def get_or_create(
    session: Session, spec: AnySpec, mode: Mode, limit: StoreLimit | None = None
) -> StoredEstimate:
    """The stored estimate of (spec, mode, engine version), computing and storing it once
    (within `limit`, for anonymous callers)."""
    canonical = canonical_json(spec)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    found = _stored(session, digest, mode)
    if found is not None:
        return _record(found, computed=False)

    store = _may_store(session, canonical, limit)
    release(session)
    result = compute(spec, mode)
    if not store:
        return StoredEstimate(
            id=None,
            spec_hash=digest,
            spec=json.loads(canonical),
            result=result,
            created_at=utcnow(),
            computed=True,
        )
    is_family = isinstance(spec, FamilySpec)
    begin_write(session)
    session.execute(
        _insert(session, SpecRow)
        .values(
            spec_hash=digest,
            kind="family" if is_family else "model",
            family=spec.family if isinstance(spec, FamilySpec) else None,
            k=spec.k if isinstance(spec, FamilySpec) else None,
            nt=spec.nt if isinstance(spec, FamilySpec) else None,
            canonical_json=canonical,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["spec_hash"])
    )
    spec_id = session.execute(select(SpecRow.id).where(SpecRow.spec_hash == digest)).scalar_one()
    session.execute(
        _insert(session, EstimateRow)
        .values(
            spec_id=spec_id,
            mode=mode,
            engine_version=ENGINE_VERSION,
            total_bytes=str(result["total_bytes"]),
            breakdown=result["breakdown"],
            result=result,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["spec_id", "mode", "engine_version"])
    )
    row = _stored(session, digest, mode)
    session.commit()
    return _record(row, computed=True)


def get(session: Session, estimate_id: int) -> StoredEstimate:
    found = session.execute(_BY_ID, {"estimate_id": estimate_id}).first()
    if found is None:
        raise NotFound(f"no estimate with id {estimate_id}")
    return _record(found, computed=False)


def search(
    session: Session,
    *,
    family: str | None,
    k: int | None,
    nt: int | None,
    mode: str | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    query = select(EstimateRow, SpecRow).join(SpecRow, EstimateRow.spec_id == SpecRow.id)
    query = where_spec(query, family=family, k=k, nt=nt)
    query = where_given(query, (EstimateRow.mode, mode))
    query = query.order_by(EstimateRow.id).limit(limit).offset(offset)
    items = []
    row: EstimateRow
    spec: SpecRow
    for row, spec in session.execute(query).tuples():
        total = int(row.total_bytes)
        items.append(
            {
                "id": row.id,
                "spec_hash": spec.spec_hash,
                "kind": spec.kind,
                "family": spec.family,
                "k": spec.k,
                "nt": spec.nt,
                "batch": row.result["batch"],
                "mode": row.mode,
                "engine_version": row.engine_version,
                "created_at": row.created_at,
                **totals(total),
            }
        )
    return items


def prune_stale(session: Session) -> int:
    """Delete estimates of other engine versions that no measurement refers to."""
    measured = select(MeasurementRow.estimate_id).where(MeasurementRow.estimate_id.is_not(None))
    stale = delete(EstimateRow).where(
        EstimateRow.engine_version != ENGINE_VERSION, EstimateRow.id.not_in(measured)
    )
    removed: int = cast(CursorResult[Any], session.execute(stale)).rowcount
    session.commit()
    return removed
