"""Imported before the server starts (tests/test_load.py): brings back the old connection
handling, to show the load test catches it. A request's session is no longer released
before computing nor closed when the route returns: it holds its pooled connection across
the computation and the response's validation, as before the fix."""

from __future__ import annotations

from typing import Any

import app.db.session

app.db.session.release = lambda session: None  # bound by the services at their import

import app.api.deps  # noqa: E402  (imports the services: after the patch above)


def _unchanged(endpoint: Any) -> Any:
    return endpoint


app.api.deps.releasing = _unchanged  # the routes wrap their endpoints at their import
