"""Schemathesis against the app's own OpenAPI, in process (ASGI), on a SQLite file.

Positive and negative cases for every operation: no 5xx; every status, content type,
header and body as documented. Bounded: a fixed number of examples per operation,
derandomized, no deadline; at least 1000 requests in all. (Not checked: that every
schema-invalid body is refused; like FastAPI by default, the API coerces lax input
such as "6" for 6 or 0 for false.)
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from app.core.config import Settings
from app.db.migrate import upgrade
from app.main import create_app

MAX_EXAMPLES = 100
MIN_REQUESTS = 1000
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
_calls: dict[str, int] = {}


# The app is built at import (Schemathesis reads its OpenAPI to generate the tests); its
# database is created, and migrated, only when the tests run (the engine connects lazily).
_DIR = Path(tempfile.mkdtemp(prefix="phymem-schemathesis-"))
_URL = f"sqlite:///{_DIR / 'phymem.db'}"
_APP = create_app(
    Settings(
        database_url=_URL,
        data_dir=_DIR,
        max_sweep_cells=2000,
        max_framework_sweep_cells=50,
        check_migrations=False,
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], deterministic=True
)


@pytest.fixture(scope="module", autouse=True)
def _database() -> Iterator[None]:
    upgrade(_URL)
    yield
    _APP.state.engine.dispose()
    shutil.rmtree(_DIR, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api(case: Any) -> None:
    key = f"{case.method} {case.path}"
    _calls[key] = _calls.get(key, 0) + 1
    case.call_and_validate(checks=CHECKS)


def test_enough_requests() -> None:
    if not _calls:
        pytest.skip("the generated tests did not run (deselected)")
    print(f"schemathesis requests: {sum(_calls.values())} {_calls}")
    assert sum(_calls.values()) >= MIN_REQUESTS, _calls
