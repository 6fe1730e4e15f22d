"""Optional equality filters of the list endpoints: a parameter left out narrows nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from app.db.models import Spec as SpecRow

if TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.orm import QueryableAttribute

Query = TypeVar("Query", bound="Select[*tuple[Any, ...]]")


def where_given(query: Query, *conditions: tuple[QueryableAttribute[Any], Any]) -> Query:
    """`query` narrowed to `column == value` for each (column, value) whose value is not None."""
    for column, value in conditions:
        if value is not None:
            query = query.where(column == value)
    return query


def where_spec(query: Query, *, family: str | None, k: int | None, nt: int | None) -> Query:
    """Narrow a query joined to the specs table by family, k and N_T (None: any)."""
    return where_given(query, (SpecRow.family, family), (SpecRow.k, k), (SpecRow.nt, nt))
