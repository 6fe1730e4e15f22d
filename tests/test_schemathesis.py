"""Schemathesis against the app's own OpenAPI, in process (ASGI), on a SQLite file and on
PostgreSQL (every generated test runs once per database).

Positive and negative cases for every operation: no 5xx; every status, content type,
header and body as documented. Bounded: a fixed number of examples per operation,
derandomized, no deadline; at least 1000 requests per database.
PHYMEM_SCHEMATHESIS_EXAMPLES raises the examples per operation (the README's
10,000-request hostile run). (Not checked: that every
schema-invalid body is refused; like FastAPI by default, the API coerces lax input
such as "6" for 6 or 0 for false.)
"""

from __future__ import annotations

import os
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
from app.db.session import make_engine, make_sessionmaker
from app.main import create_app

MAX_EXAMPLES = int(os.environ.get("PHYMEM_SCHEMATHESIS_EXAMPLES", "100"))
MIN_REQUESTS = 1000
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
_calls: dict[str, dict[str, int]] = {}
_backend = ["sqlite"]


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


@pytest.fixture(scope="module", autouse=True, params=["sqlite", "postgres"])
def _database(request: pytest.FixtureRequest) -> Iterator[None]:
    """The app's database: the SQLite file, or a fresh PostgreSQL database swapped in."""
    _backend[0] = request.param
    if request.param == "sqlite":
        upgrade(_URL)
        yield
        _APP.state.engine.dispose()
        shutil.rmtree(_DIR, ignore_errors=True)
        return
    request.applymarker(pytest.mark.postgres)
    databases = request.getfixturevalue("postgres_databases")
    url = databases.create()
    upgrade(url)
    saved = _APP.state.engine, _APP.state.sessionmaker
    engine = make_engine(url, **_APP.state.settings.pool_options)
    _APP.state.engine, _APP.state.sessionmaker = engine, make_sessionmaker(engine)
    try:
        yield
    finally:
        _APP.state.engine, _APP.state.sessionmaker = saved
        engine.dispose()
        databases.drop(url)


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
    calls = _calls.setdefault(_backend[0], {})
    calls[key] = calls.get(key, 0) + 1
    case.call_and_validate(checks=CHECKS)


def test_enough_requests() -> None:
    calls = _calls.get(_backend[0], {})
    if not calls:
        pytest.skip("the generated tests did not run (deselected)")
    print(f"schemathesis requests on {_backend[0]}: {sum(calls.values())} {calls}")
    assert sum(calls.values()) >= MIN_REQUESTS, calls
