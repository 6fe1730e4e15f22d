"""Sweeps, the CI gate, the largest batch and the device catalog, on top of the engine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.limits import check_budget
from app.db.models import Device
from app.db.session import release
from app.services.estimates import engine_call, totals
from app.services.streaming import each_bounded, ndjson
from estimator.calibration import Calibration
from estimator.engine import ENGINE_VERSION, Mode, cached_plan
from estimator.errors import InvalidInput as invalid
from estimator.gate import Basis, check, device_calibration, required_bytes
from estimator.search import max_batch
from estimator.spec import MAX_MESSAGE_BITS, AnySpec
from estimator.sweep import Grid, sweep
from estimator.units import GIB, parse_size

_GRID_LISTS = ("family", "k", "nt", "batch", "precision", "optimizer")


def check_grid(grid: Grid, max_cells: int) -> None:
    if grid.size > max_cells:
        longest = max(_GRID_LISTS, key=lambda name: len(getattr(grid, name)))
        shape = " x ".join(f"{len(getattr(grid, name))} {name}" for name in _GRID_LISTS)
        raise invalid(
            longest,
            f"the grid has {grid.size} cells ({shape}); at most {max_cells} are allowed in "
            f"{grid.mode} mode: "
            f"list fewer values (the longest list is '{longest}')",
        )
    bits = max(grid.k) * max(grid.nt)
    if bits > MAX_MESSAGE_BITS:
        raise invalid(
            "k",
            f"max(k) * max(nt) = {bits} bits: message spaces beyond 2^{MAX_MESSAGE_BITS} "
            "are not supported",
        )


def _row(row: Any) -> dict[str, Any]:
    return {
        "family": row.family,
        "k": row.k,
        "nt": row.nt,
        "batch": row.batch,
        "precision": row.precision,
        "optimizer": row.optimizer,
        **totals(row.total_bytes),
    }


def run_sweep(grid: Grid, max_cells: int) -> dict[str, Any]:
    check_grid(grid, max_cells)

    def rows_checked() -> list[Any]:
        rows = []
        for row in sweep(grid):
            check_budget()
            rows.append(row)
        return rows

    rows = engine_call(grid.mode, rows_checked)
    return {
        "mode": grid.mode,
        "engine_version": ENGINE_VERSION,
        "cells": len(rows),
        "rows": [_row(row) for row in rows],
    }


def stream_sweep(grid: Grid, max_cells: int) -> Iterator[bytes]:
    """The sweep as NDJSON: a line per cell under its own budget, then a summary."""
    check_grid(grid, max_cells)

    def cells() -> Iterator[Any]:
        return iter(engine_call(grid.mode, sweep, grid))

    def summary(lines: list[dict[str, Any]]) -> dict[str, Any]:
        errors = sum(1 for line in lines if "error" in line)
        return {
            "mode": grid.mode,
            "engine_version": ENGINE_VERSION,
            "cells": len(lines) - errors,
            "errors": errors,
        }

    lines = each_bounded(cells(), lambda _, row: _row(row))
    return ndjson(lines, summary)


def list_devices(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(select(Device).order_by(Device.memory_bytes, Device.name))
    return [
        {
            "name": d.name,
            "label": d.label,
            "memory_bytes": d.memory_bytes,
            "memory_gib": d.memory_bytes / GIB,
            "note": d.note,
        }
        for d in rows
    ]


def resolve_memory(
    session: Session, device: str | None, vram: str | None
) -> tuple[str | None, int]:
    """(device name, bytes) from exactly one of a catalog device name and a size like 80GiB."""
    if (device is None) == (vram is None):
        raise invalid("device", "give exactly one of 'device' (a catalog name) and 'vram'")
    if vram is not None:
        try:
            return None, parse_size(vram)
        except ValueError as error:
            raise invalid("vram", str(error)) from None
    assert device is not None
    found = session.get(Device, device.strip().lower())
    if found is None:
        known = ", ".join(session.scalars(select(Device.name).order_by(Device.name)))
        raise invalid("device", f"unknown device {device!r}; known devices: {known}")
    return found.name, found.memory_bytes


def verdict_calibration(device: str | None, mode: Mode) -> Calibration | None:
    """The one rule of every fit verdict (estimator.gate): a named device's prior only."""
    return device_calibration(device, mode)


def _memory_target(
    session: Session, device: str | None, vram: str | None, mode: Mode
) -> tuple[str | None, int, Calibration | None]:
    """The device name, its bytes and its calibration; the session's reads end here (the
    computation that follows holds no connection)."""
    name, vram_bytes = resolve_memory(session, device, vram)
    calibrated = verdict_calibration(name, mode)
    release(session)
    return name, vram_bytes, calibrated


def _verdict(
    index: int,
    label: str | None,
    spec: AnySpec,
    vram_bytes: int,
    mode: Mode,
    calibrated: Calibration | None,
    basis: Basis,
) -> dict[str, Any]:
    verdict = engine_call(
        mode,
        check,
        label or f"specs[{index}]",
        spec,
        vram_bytes,
        mode,
        calibrated,
        basis,
        field=f"specs.{index}",
    )
    return {
        "name": verdict.name,
        "fits": verdict.fits,
        "vram_bytes": verdict.vram_bytes,
        "reason": verdict.reason,
        "calibration": verdict.calibration,
        "basis": verdict.basis,
        "peak_bytes": verdict.peak_bytes,
        "upper_bytes": verdict.upper_bytes,
        **totals(verdict.total_bytes),
    }


def gate(
    session: Session,
    specs: list[tuple[str | None, AnySpec]],
    device: str | None,
    vram: str | None,
    mode: Mode,
    basis: Basis = "upper",
) -> dict[str, Any]:
    name, vram_bytes, calibrated = _memory_target(session, device, vram, mode)
    verdicts = []
    for index, (label, spec) in enumerate(specs):
        check_budget()
        verdicts.append(_verdict(index, label, spec, vram_bytes, mode, calibrated, basis))
    return {
        "fits": all(v["fits"] for v in verdicts),
        "device": name,
        "vram_bytes": vram_bytes,
        "mode": mode,
        "basis": basis,
        "engine_version": ENGINE_VERSION,
        "verdicts": verdicts,
    }


def stream_gate(
    session: Session,
    specs: list[tuple[str | None, AnySpec]],
    device: str | None,
    vram: str | None,
    mode: Mode,
    basis: Basis = "upper",
) -> Iterator[bytes]:
    """The gate as NDJSON: a verdict line per spec (each under its own budget; a refused
    spec is an error line), then a summary whose `fits` is true only if every spec fits."""
    name, vram_bytes, calibrated = _memory_target(session, device, vram, mode)

    def line(index: int, item: tuple[str | None, AnySpec]) -> dict[str, Any]:
        return {"index": index, **_verdict(index, *item, vram_bytes, mode, calibrated, basis)}

    def summary(lines: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "fits": len(lines) == len(specs) and all(line.get("fits") for line in lines),
            "specs": len(specs),
            "errors": sum(1 for line in lines if "error" in line),
            "device": name,
            "vram_bytes": vram_bytes,
            "mode": mode,
            "basis": basis,
            "engine_version": ENGINE_VERSION,
        }

    return ndjson(each_bounded(specs, line), summary)


def largest_batch(
    session: Session,
    spec: AnySpec,
    device: str | None,
    vram: str | None,
    mode: Mode,
    basis: Basis = "upper",
) -> dict[str, Any]:
    name, vram_bytes, calibrated = _memory_target(session, device, vram, mode)
    batch: int = engine_call(
        mode, max_batch, spec, vram_bytes, mode, basis, calibrated, field="spec"
    )
    at_max: dict[str, Any] = {
        "total_bytes": None,
        "total_bytes_decimal": None,
        "total_gib": None,
        "peak_bytes": None,
        "upper_bytes": None,
    }
    if batch > 0:
        plan = engine_call(mode, cached_plan, spec, mode)
        at_max = {
            **totals(required_bytes(plan, batch, basis, calibrated)),
            "peak_bytes": plan.total_bytes(batch),
            "upper_bytes": plan.upper_bytes(batch),
        }
    applied = "none"
    if calibrated is not None and calibrated.source != "none":
        applied = f"{calibrated.source} ({calibrated.pairs} pairs)"
    return {
        "max_batch": batch,
        "fits": batch > 0,
        "device": name,
        "vram_bytes": vram_bytes,
        "mode": mode,
        "basis": basis,
        "calibration": applied,
        "engine_version": ENGINE_VERSION,
        **at_max,
    }
