"""Tastypie list-view semantics as the Hexoskin document describes them, framework-free.

- Filters: `field__op=value` with op in exact, in, range, gt, gte, lt, lte; a bare `field=value`
  means exact. `in` and `range` take comma-separated values; `range` is inclusive. A field
  that refers to another resource accepts its URI (`/api/v1/user/99/`) or its bare id. As in
  Tastypie, an argument that names no field of the resource is ignored (clients send their
  own, e.g. `flat`); one that names a field the resource does not filter on, or an op it does
  not allow, is a 400 naming the parameter.
- Ordering: `order_by=a,-b` (descending with `-`), only on the fields a resource allows.
- Paging: `limit` (default 20; never more than 1000; 0 means as many as allowed) and
  `offset`; `meta` carries limit, next, offset, previous and total_count, `next`/`previous`
  being the list URI with the same query and the neighbouring page.
- Methods: DELETE and PUT on a list view are always 405; POST to a detail view is 405; PUT
  to a detail that does not exist is 404 (never a create).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

API_PREFIX = "/api/v1/"
# The path the API is served under for this request ("" at the vendor's root, "/hexoskin" in the
# prefix layout): every URI written carries it, so a client can follow them in either layout.
ROOT: ContextVar[str] = ContextVar("tastypie_root", default="")
DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
OPS = ("exact", "in", "range", "gt", "gte", "lt", "lte")


class QueryError(ValueError):
    """A 400: the query cannot be understood."""


class MethodError(Exception):
    """A 404 or 405 from the method rules."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Field:
    """A filterable or orderable field: its type, the ops it allows, and whether it is a reference."""

    kind: type = int  # int, float or str
    ops: tuple[str, ...] = ("exact",)
    orderable: bool = False
    refers_to: str | None = None  # resource name when the value is another resource's URI


@dataclass
class ListQuery:
    """A parsed list request."""

    filters: list[tuple[str, str, list[Any]]]
    order: list[tuple[str, bool]]  # (field, descending)
    limit: int
    offset: int


@contextmanager
def rooted(root: str) -> Iterator[None]:
    """URIs written inside carry `root` (the path the API is served under for this request)."""
    token = ROOT.set(root)
    try:
        yield
    finally:
        ROOT.reset(token)


def ref_tail(text: str, resource: str) -> str:
    """What follows `/api/v1/<resource>/` in a URI of either layout, without the slash; the text if not one."""
    head, sep, tail = text.partition(f"{API_PREFIX}{resource}/")
    return tail.rstrip("/") if sep and head in ("", ROOT.get()) else text


def _value(name: str, field: Field, text: str) -> Any:
    if field.refers_to:
        text = ref_tail(text, field.refers_to)
    try:
        return field.kind(text)
    except ValueError:
        raise QueryError(f"{name}: {text!r} is not a valid {field.kind.__name__}") from None


def parse(params: Iterable[tuple[str, str]], fields: dict[str, Field], known: Iterable[str] = ()) -> ListQuery:
    """A list request's query parameters against the resource's filtering and ordering options.

    `known`: the resource's other field names (not filterable: a 400); any other name is ignored."""
    known = set(known)
    filters, order = [], []
    limit, offset = DEFAULT_LIMIT, 0
    for key, text in params:
        if key == "limit":
            limit = _count(key, text)
            limit = MAX_LIMIT if limit == 0 else min(limit, MAX_LIMIT)
        elif key == "offset":
            offset = _count(key, text)
        elif key == "order_by":
            for part in filter(None, text.split(",")):
                name = part.lstrip("-")
                if name not in fields or not fields[name].orderable:
                    raise QueryError(f"order_by: cannot order by {name!r}"
                                     f" (allowed: {', '.join(sorted(n for n, f in fields.items() if f.orderable))})")
                order.append((name, part.startswith("-")))
        elif key == "format":
            continue
        else:
            name, _, op = key.partition("__")
            op = op or "exact"
            field = fields.get(name)
            if field is None and name not in known:
                continue
            if field is None:
                raise QueryError(f"{key}: the {name!r} field does not allow filtering"
                                 f" (filters: {', '.join(sorted(fields))})")
            if op not in OPS or op not in field.ops:
                raise QueryError(f"{key}: {name} allows {', '.join(field.ops)}, not {op!r}")
            values = [_value(key, field, v) for v in text.split(",")] if op in ("in", "range") else \
                [_value(key, field, text)]
            if op == "range" and len(values) != 2:
                raise QueryError(f"{key}: a range is two comma-separated values")
            filters.append((name, op, values))
    return ListQuery(filters, order, limit, offset)


def _count(key: str, text: str) -> int:
    if not text.isdigit():
        raise QueryError(f"{key}: must be a non-negative integer, not {text!r}")
    return int(text)


def _matches(value: Any, op: str, args: list[Any]) -> bool:
    if value is None:
        return False
    if op == "exact":
        return value == args[0]
    if op == "in":
        return value in args
    if op == "range":
        return args[0] <= value <= args[1]
    return {"gt": value > args[0], "gte": value >= args[0], "lt": value < args[0], "lte": value <= args[0]}[op]


def select(objects: Sequence[dict[str, Any]], q: ListQuery, key=lambda obj, name: obj.get(name)
           ) -> tuple[list[dict[str, Any]], int]:
    """The page of objects the query asks for and how many matched; `key` reads a field's raw value."""
    rows = [o for o in objects if all(_matches(key(o, name), op, args) for name, op, args in q.filters)]
    for name, descending in reversed(q.order):  # stable sorts, last key first
        rows.sort(key=lambda o: (key(o, name) is None, key(o, name)), reverse=descending)
    return rows[q.offset:q.offset + q.limit], len(rows)


def list_body(path: str, params: Sequence[tuple[str, str]], q: ListQuery, page: list[dict], total: int) -> dict:
    """The list view: meta (with next and previous pages) and objects."""
    kept = [(k, v) for k, v in params if k not in ("limit", "offset")]

    def page_uri(offset: int) -> str:
        return f"{path}?{urlencode(kept + [('limit', q.limit), ('offset', offset)], safe=',/')}"

    nxt = page_uri(q.offset + q.limit) if q.offset + q.limit < total else None
    prev = page_uri(max(0, q.offset - q.limit)) if q.offset > 0 else None
    return {"meta": {"limit": q.limit, "next": nxt, "offset": q.offset, "previous": prev, "total_count": total},
            "objects": page}


def check_method(view: str, method: str, allowed: Iterable[str], exists: bool = True) -> None:
    """The document's method rules, then the resource's own list of methods."""
    method = method.upper()
    if view == "list" and method in ("DELETE", "PUT"):
        raise MethodError(405, f"{method} is not allowed on a list view")
    if view == "detail" and method == "POST":
        raise MethodError(405, "POST is not allowed on a detail view")
    permitted = set(allowed) | ({"HEAD"} if "GET" in allowed else set())
    if method not in permitted:
        raise MethodError(405, f"{method} is not allowed here (allowed: {', '.join(sorted(permitted))})")
    if view == "detail" and not exists:
        raise MethodError(404, "no such object (PUT never creates one)" if method == "PUT" else "no such object")
