"""The states a job and a measurement can be in: one list, read by the database's CHECK
constraints, the API's schemas, the service and the CLI.

Plain Python (no SQLAlchemy, no pydantic), so the CLI can import it cheaply.
"""

from __future__ import annotations

from typing import Literal, get_args

JobStatus = Literal["queued", "running", "succeeded", "failed", "oom", "cancelled"]
JOB_STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
# A job in one of these states never runs again.
TERMINAL_STATUSES: frozenset[JobStatus] = frozenset({"succeeded", "failed", "oom", "cancelled"})
MEASUREMENT_STATUSES = ("ok", "oom", "failed")
# What a measurement measured: the training peak (bytes in use), a model's stored size
# (bytes) or its inference latency (microseconds).
MeasurementQuantity = Literal["training_peak", "model_size", "latency"]
MEASUREMENT_QUANTITIES: tuple[MeasurementQuantity, ...] = get_args(MeasurementQuantity)
