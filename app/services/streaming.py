"""Large sweeps and gates answered as a stream: one NDJSON line per cell or spec, then a
summary line. Each item gets the request's budget afresh (its units and its time limit:
the stream as a whole is bounded by the cell and spec limits), and the stream stops when
the client goes away (the request budget's disconnect mark, estimator.budget.Cancelled)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from estimator.budget import Budget, bounded, current
from estimator.errors import Cancelled, InvalidInput

NDJSON = "application/x-ndjson"

_Item = TypeVar("_Item")


def wants_stream(accept: str | None) -> bool:
    return accept is not None and NDJSON in accept


def fresh(budget: Budget | None) -> Budget | None:
    """The request's budget, unspent and restarted (its disconnect mark shared)."""
    if budget is None:
        return None
    return dataclasses.replace(budget, spent=0, started=time.monotonic())


def each_bounded(
    items: Iterable[_Item], line: Callable[[int, _Item], dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """`line(index, item)` for each item under a fresh budget; an item refused (its input,
    its budget) gives an error line and the stream goes on; a disconnect raises Cancelled."""
    request_budget = current()
    iterator = iter(items)
    index = 0
    while True:
        # The budget is set and reset within one step: each step of a streamed body may run
        # in a context of its own.
        last = False
        with bounded(fresh(request_budget)):
            try:
                item = next(iterator)
            except StopIteration:
                return
            except InvalidInput as error:  # the iterator itself failed: nothing follows
                out, last = _error_line(index, error), True
            else:
                try:
                    out = line(index, item)
                except InvalidInput as error:
                    out = _error_line(index, error)
        yield out
        if last:
            return
        index += 1


def _error_line(index: int, error: InvalidInput) -> dict[str, Any]:
    return {"index": index, "error": {"field": error.field, "message": error.reason}}


def ndjson(
    lines: Iterable[dict[str, Any]], summary: Callable[[list[dict[str, Any]]], dict[str, Any]]
) -> Iterator[bytes]:
    """Encode `lines` one per line, then `{"summary": summary(lines)}`; a stream whose
    client went away just ends (no summary: nobody reads it, and it would be partial)."""
    seen: list[dict[str, Any]] = []
    try:
        for line in lines:
            seen.append(line)
            yield json.dumps(line, default=str).encode() + b"\n"
    except Cancelled:
        return
    yield json.dumps({"summary": summary(seen)}, default=str).encode() + b"\n"


def too_large_to_buffer(field: str, count: int, what: str, limit: int) -> InvalidInput:
    return InvalidInput(
        field,
        f"{count} {what} in framework mode are more than {limit} answered in one body "
        f"(PHYMEM_MAX_BUFFERED_ITEMS): ask for a stream with 'Accept: {NDJSON}' (one line "
        "per item, then a summary line), or send fewer",
    )
