"""Tastypie list semantics of the Hexoskin emulator: filters, ordering, paging, method rules."""

from __future__ import annotations

import pytest

from simulators.cloud.hexoskin import tastypie as tp

RECORD_FIELDS = {
    "device": tp.Field(str, ("exact", "in")),
    "start": tp.Field(int, ("exact", "range", "gt", "gte", "lt", "lte"), orderable=True),
    "end": tp.Field(int, ("exact", "range", "gt", "gte", "lt", "lte"), orderable=True),
    "user": tp.Field(int, ("exact", "in"), refers_to="user"),
}
RECORDS = [{"id": i, "device": f"HXSKIN{i % 3}", "start": 1000 + 10 * (i % 7), "end": 2000 + i, "user": 1 + i % 2}
           for i in range(45)]


def run(query: list[tuple[str, str]]):
    q = tp.parse(query, RECORD_FIELDS)
    page, total = tp.select(RECORDS, q)
    return q, page, total, tp.list_body("/api/v1/record/", query, q, page, total)


def test_default_page_and_meta():
    q, page, total, body = run([])
    assert (q.limit, q.offset, total, len(page)) == (20, 0, 45, 20)
    assert body["meta"] == {"limit": 20, "next": "/api/v1/record/?limit=20&offset=20", "offset": 0,
                            "previous": None, "total_count": 45}


def test_paging_to_the_end_with_next_and_previous():
    seen, query = [], [("limit", "20")]
    while True:
        q, page, total, body = run(query)
        seen += [o["id"] for o in page]
        if body["meta"]["next"] is None:
            break
        nxt = body["meta"]["next"].split("?", 1)[1]
        query = [tuple(kv.split("=", 1)) for kv in nxt.split("&")]
    assert seen == list(range(45))
    assert body["meta"]["previous"] == "/api/v1/record/?limit=20&offset=20"


@pytest.mark.parametrize("query, ids", [
    ([("device", "HXSKIN1")], [i for i in range(45) if i % 3 == 1]),
    ([("device__exact", "HXSKIN1")], [i for i in range(45) if i % 3 == 1]),
    ([("device__in", "HXSKIN0,HXSKIN2")], [i for i in range(45) if i % 3 != 1]),
    ([("start__gt", "1040")], [i for i in range(45) if 1000 + 10 * (i % 7) > 1040]),
    ([("start__gte", "1040")], [i for i in range(45) if 1000 + 10 * (i % 7) >= 1040]),
    ([("start__lt", "1010")], [i for i in range(45) if 1000 + 10 * (i % 7) < 1010]),
    ([("start__lte", "1010")], [i for i in range(45) if 1000 + 10 * (i % 7) <= 1010]),
    ([("start__range", "1010,1030")], [i for i in range(45) if 1010 <= 1000 + 10 * (i % 7) <= 1030]),
    ([("user", "/api/v1/user/2/")], [i for i in range(45) if i % 2 == 1]),
    ([("user__in", "1,/api/v1/user/2/")], list(range(45))),
    ([("device", "HXSKIN1"), ("start__gte", "1030")], [i for i in range(45) if i % 3 == 1 and i % 7 >= 3]),
])
def test_filters(query, ids):
    _, page, total, _ = run(query + [("limit", "0")])
    assert [o["id"] for o in page] == ids and total == len(ids)


def test_order_by_ascending_descending_and_several_keys():
    _, page, _, _ = run([("order_by", "-start,end"), ("limit", "1000")])
    keys = [(o["start"], o["end"]) for o in page]
    assert keys == sorted(keys, key=lambda k: (-k[0], k[1]))


def test_limit_is_capped_at_1000_and_zero_means_the_cap():
    many = [{"id": i} for i in range(1500)]
    for text in ("0", "5000"):
        q = tp.parse([("limit", text)], {})
        page, total = tp.select(many, q)
        assert (q.limit, len(page), total) == (1000, 1000, 1500)


@pytest.mark.parametrize("query, message", [
    ([("firmware_rev", "1.0")], "'firmware_rev' field does not allow filtering"),
    ([("device__gt", "x")], "device allows exact, in, not 'gt'"),
    ([("start__near", "1")], "not 'near'"),
    ([("start", "soon")], "not a valid int"),
    ([("start__range", "1,2,3")], "two comma-separated values"),
    ([("order_by", "device")], "cannot order by 'device'"),
    ([("limit", "-1")], "non-negative integer"),
    ([("offset", "x")], "non-negative integer"),
])
def test_bad_queries_are_400s_that_name_the_parameter(query, message):
    with pytest.raises(tp.QueryError, match=message):
        tp.parse(query, RECORD_FIELDS, {"firmware_rev"})


def test_arguments_that_name_no_field_are_ignored_as_tastypie_does():
    q = tp.parse([("colour", "red"), ("flat", "True"), ("device", "HXA")], RECORD_FIELDS, {"firmware_rev"})
    assert q.filters == [("device", "exact", ["HXA"])]


@pytest.mark.parametrize("view, method, exists, status", [
    ("list", "DELETE", True, 405), ("list", "PUT", True, 405), ("detail", "POST", True, 405),
    ("detail", "PUT", False, 404), ("detail", "GET", False, 404), ("detail", "PATCH", True, 405),
])
def test_method_rules(view, method, exists, status):
    allowed = ("GET", "POST", "PUT", "DELETE") if method != "PATCH" else ("GET",)
    with pytest.raises(tp.MethodError) as err:
        tp.check_method(view, method, allowed, exists)
    assert err.value.status == status


def test_allowed_methods_pass():
    tp.check_method("list", "POST", ("GET", "POST", "PATCH"))
    tp.check_method("list", "PATCH", ("GET", "POST", "PATCH"))
    tp.check_method("detail", "PUT", ("GET", "PUT"), exists=True)
    tp.check_method("detail", "HEAD", ("GET",), exists=True)
