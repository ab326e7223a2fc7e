"""The Hexoskin resources: their filters, ordering, methods, writable fields and JSON shapes.

Writable resources keep raw values (ids, HexoTimestamps) and show references as URIs
(`/api/v1/<resource>/<id>/`). Read-only catalogues (datatype, metric, trainingroutine,
activitytype) are built in. Activity types 8 (resting) and 12 (sleep) are the document's;
the other ids and the training routines are this emulator's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from gateway.vendors import hexoskin as hx
from simulators.cloud.hexoskin.tastypie import ROOT, Field, ref_tail

TS_OPS = ("exact", "range", "gt", "gte", "lt", "lte")
RECORD_IDLE_S = 600  # a record with no upload for this long is `complete`, else `realtime`


def uri(resource: str, oid: Any = None) -> str:
    """<root>/api/v1/<resource>/<id>/ (the list view without an id)."""
    return f"{ROOT.get()}{hx.API_PREFIX}{resource}/" + (f"{oid}/" if oid is not None else "")


def ref_id(value: object, resource: str) -> int | None:
    """The id in a reference given as a URI (`/api/v1/<resource>/<id>/`) or a bare id; None if neither."""
    text = ref_tail(str(value), resource)
    return int(text) if text.isdigit() and not isinstance(value, bool) else None


def iso(hexo_ts: int | None) -> str | None:
    """A HexoTimestamp as an ISO 8601 UTC time (seconds)."""
    if hexo_ts is None:
        return None
    return datetime.fromtimestamp(hexo_ts / hx.TICKS_PER_SECOND, timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Writable:
    """A field clients may set: its kind (int, float, str, ref, position, any), required on create, choices."""

    kind: str
    required: bool = False
    refers_to: str | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resource:
    """What a resource allows."""

    name: str
    fields: dict[str, Field]
    list_methods: tuple[str, ...] = ("GET",)
    detail_methods: tuple[str, ...] = ("GET",)
    writable: dict[str, Writable] = field(default_factory=dict)
    stored: bool = True  # kept in the store (else built in or computed)

    @property
    def attributes(self) -> set[str]:
        """Every field name a client may see (filterable or not)."""
        return {*self.fields, *self.writable, "id", "resource_uri", *(("user",) if self.stored else ())}


def _ref(resource: str, ops=("exact", "in")) -> Field:
    return Field(int, ops, refers_to=resource)


WRITE_LIST = ("GET", "POST", "PATCH")
WRITE_DETAIL = ("GET", "PUT", "PATCH", "DELETE")

RESOURCES: dict[str, Resource] = {r.name: r for r in (
    Resource("account", {}, stored=False),
    Resource("user", {"id": Field(int, ("exact", "in"), True), "email": Field(str)}, ("GET",), ("GET", "PUT", "PATCH"),
             {"first_name": Writable("str"), "last_name": Writable("str")}, stored=False),
    Resource("profile", {"id": Field(int, ("exact", "in"), True), "user": _ref("user")}, ("GET",),
             ("GET", "PUT", "PATCH"),
             {"date_of_birth": Writable("str"), "gender": Writable("str", choices=("M", "F", "O")),
              "height": Writable("float"), "weight": Writable("float"),
              "unit_system": Writable("str", choices=("metric", "imperial")), "preferences": Writable("any")}),
    Resource("datatype", {"dataid": Field(int, ("exact", "in"), True), "name": Field(str, ("exact", "in"), True)},
             stored=False),
    Resource("metric", {"id": Field(int, ("exact", "in"), True), "name": Field(str, ("exact", "in"), True)},
             stored=False),
    Resource("activitytype", {"id": Field(int, ("exact", "in"), True)}, stored=False),
    Resource("trainingroutine", {"id": Field(int, ("exact", "in"), True), "activitytype": _ref("activitytype")},
             stored=False),
    Resource("record", {"id": Field(int, ("exact", "in"), True), "device": Field(str, ("exact", "in"), True),
                        "start": Field(int, TS_OPS, True), "end": Field(int, TS_OPS, True), "user": _ref("user"),
                        "status": Field(str)},
             WRITE_LIST, WRITE_DETAIL,
             {"device": Writable("str", True), "start": Writable("int", True), "end": Writable("int"),
              "firmware_rev": Writable("str"), "soft_uid": Writable("str"),
              "status": Writable("str", choices=("realtime", "complete"))}),
    Resource("range", {"id": Field(int, ("exact", "in"), True), "name": Field(str, ("exact", "in"), True),
                       "start": Field(int, TS_OPS, True), "end": Field(int, TS_OPS, True), "user": _ref("user"),
                       "trainingroutine": _ref("trainingroutine")},
             WRITE_LIST, WRITE_DETAIL,
             {"name": Writable("str", True), "start": Writable("int", True), "end": Writable("int", True),
              "trainingroutine": Writable("ref", refers_to="trainingroutine"), "note": Writable("str")}),
    Resource("annotation", {"id": Field(int, ("exact", "in"), True), "start": Field(int, TS_OPS, True),
                            "end": Field(int, TS_OPS, True), "user": _ref("user"), "record": _ref("record"),
                            "datatype": _ref("datatype")},
             WRITE_LIST, WRITE_DETAIL,
             {"annotation": Writable("str", True), "start": Writable("int", True), "end": Writable("int"),
              "datatype": Writable("ref", refers_to="datatype"), "record": Writable("ref", refers_to="record")}),
    Resource("track", {"id": Field(int, ("exact", "in"), True), "range": _ref("range"), "user": _ref("user")},
             WRITE_LIST, WRITE_DETAIL,
             {"name": Writable("str"), "range": Writable("ref", refers_to="range"), "source": Writable("str"),
              "distance": Writable("float"), "area": Writable("float")}),
    Resource("trackpoint", {"id": Field(int, ("exact", "in"), True), "track": _ref("track"),
                            "time": Field(str, ("exact", "range", "gt", "gte", "lt", "lte"), True)},
             WRITE_LIST, WRITE_DETAIL,
             {"track": Writable("ref", True, refers_to="track"), "time": Writable("str", True),
              "position": Writable("position", True), "altitude": Writable("float"), "speed": Writable("float"),
              "course": Writable("float"), "horizontal_accuracy": Writable("float"),
              "vertical_accuracy": Writable("float")}),
)}

ACTIVITY_TYPES = [{"id": 1, "name": "Other"}, {"id": 2, "name": "Running"}, {"id": 3, "name": "Walking"},
                  {"id": 8, "name": "Resting"}, {"id": 12, "name": "Sleep"}]
TRAINING_ROUTINES = [{"id": 1, "name": "Free training", "activitytype": 1},
                     {"id": 2, "name": "Running", "activitytype": 2},
                     {"id": 3, "name": "Walking", "activitytype": 3},
                     {"id": 4, "name": "Rest test", "activitytype": 8},
                     {"id": 5, "name": "Sleep", "activitytype": 12}]


def catalogue(name: str) -> list[dict[str, Any]]:
    """A built-in read-only resource's objects (raw values)."""
    from simulators.cloud.hexoskin.report import METRICS, metric_resource

    if name == "datatype":
        return [{"dataid": d.dataid, "name": d.name, "info": d.info, "freq": d.freq, "hexo_freq": d.hexo_freq,
                 "resource_uri": uri("datatype", d.dataid)} for d in sorted(hx.DATATYPES.values(),
                                                                           key=lambda d: d.dataid)]
    if name == "metric":
        return [metric_resource(m) for m in METRICS.values()]
    if name == "activitytype":
        return [{**a, "resource_uri": uri("activitytype", a["id"])} for a in ACTIVITY_TYPES]
    if name == "trainingroutine":
        return [{**t, "resource_uri": uri("trainingroutine", t["id"])} for t in TRAINING_ROUTINES]
    raise KeyError(name)


def key_of(name: str) -> str:
    """The field that is a built-in resource's id."""
    return "dataid" if name == "datatype" else "id"


def show_catalogue(name: str, obj: dict[str, Any]) -> dict[str, Any]:
    """A built-in object with its references as URIs."""
    if name == "trainingroutine":
        return {**obj, "activitytype": uri("activitytype", obj["activitytype"])}
    return obj


def show_user(u, profile_id: int | None, full_profile: dict[str, Any] | None = None) -> dict[str, Any]:
    """A user as lists and records show it (the profile as a URI, or embedded for `account`)."""
    return {"email": u.email, "first_name": u.first_name, "id": u.id, "is_staff": False, "last_name": u.last_name,
            "profile": full_profile if full_profile is not None else (uri("profile", profile_id) if profile_id
                                                                      else None),
            "resource_uri": uri("user", u.id), "username": u.email}


def show(name: str, obj: dict[str, Any], user_summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """A stored object as the API shows it (a record's status already decided by the caller)."""
    res = RESOURCES[name]
    out = {k: v for k, v in obj.items() if k not in ("last_upload",)}
    for fname, spec in res.writable.items():
        if spec.kind == "ref":
            out[fname] = uri(spec.refers_to, obj[fname]) if obj.get(fname) is not None else None
        else:
            out.setdefault(fname, None)
    out["user"] = uri("user", obj["user"])
    out["resource_uri"] = uri(name, obj["id"])
    if name in ("record", "range", "annotation"):
        out["start_date"] = iso(obj.get("start"))
    if name == "record":
        out["device"] = uri("device", obj["device"])
        out["user"] = user_summary or out["user"]
        out["data_status"] = {}
    if name == "annotation":
        out["last_update"] = obj.get("last_update")
    if name == "record":
        # The document's record fields that describe the shirt's own binary upload (not public): empty.
        out.update({k: out.get(k) for k in ("data", "dev_id")})
        out.update({k: out.get(k) or 0 for k in ("npages", "n_uploaded_timelines", "soft_protocole")})
    if name == "profile":
        # The fitness the vendor derives from fitness tests; the emulator runs none: only height and weight.
        out["fitness"] = {"fitness_percentile": None, "height": out.get("height"), "hr_max": None,
                          "hr_recov": None, "hr_rest": None, "vo2_max": None, "weight": out.get("weight")}
    return out


# Tastypie's discovery: the resource list (`/api/`, `/api/v1/`) and each resource's schema,
# generated from the definitions above. Help texts are Tastypie's defaults for each field type.
_TYPES = {int: "integer", float: "float", str: "string", "int": "integer", "float": "float", "str": "string",
          "ref": "related", "position": "list", "any": "dict"}
_HELP = {"integer": "Integer data. Ex: 2673", "float": "Floating point numeric data. Ex: 26.73",
         "string": 'Unicode string data. Ex: "Hello World"',
         "related": "A single related resource. Can be either a URI or set of nested resource data.",
         "list": "A list of data. Ex: ['abc', 26.73, 8]", "dict": "A dictionary of data. Ex: {'price': 26.73}"}
# The computed resources (no stored objects): their GET arguments, as filters.
COMPUTED = {"data": ("GET", "POST"), "ecg": ("GET",), "report": ("GET",)}
_COMPUTED_FIELDS = {
    "data": {"data": "dict", "user": "related", "record": "related", "datatype": "integer", "range": "related",
             "start": "integer", "end": "integer"},
    "ecg": {"data": "dict", "user": "related", "record": "related", "range": "related"},
    "report": {"data": "list", "include_metrics": "string", "record": "related", "range": "related"},
}


def resource_list() -> dict[str, dict[str, str]]:
    """`/api/v1/`: every resource's list endpoint and schema."""
    return {name: {"list_endpoint": uri(name), "schema": uri(name) + "schema/"}
            for name in sorted([*RESOURCES, *COMPUTED])}


def _field(kind: str, nullable: bool, readonly: bool, unique: bool = False) -> dict[str, Any]:
    out = {"blank": False, "default": "No default provided.", "help_text": _HELP[kind], "nullable": nullable,
           "readonly": readonly, "type": kind, "unique": unique}
    if kind == "related":
        out["related_type"] = "to_one"
    return out


def schema(name: str) -> dict[str, Any]:
    """`/api/v1/<name>/schema/`: fields, methods, filtering and ordering of one resource."""
    if name in COMPUTED:
        fields = {f: _field(kind, True, True) for f, kind in _COMPUTED_FIELDS[name].items()}
        return {"allowed_detail_http_methods": [], "allowed_list_http_methods": [m.lower() for m in COMPUTED[name]],
                "default_format": "application/json", "default_limit": 20, "fields": fields,
                "filtering": {f: ["exact"] for f in fields if f != "data"}, "ordering": []}
    res = RESOURCES[name]
    fields: dict[str, dict[str, Any]] = {}
    for fname, f in res.fields.items():
        kind = "related" if f.refers_to else _TYPES[f.kind]
        fields[fname] = _field(kind, fname not in ("id", "dataid"), fname not in res.writable,
                               unique=fname in ("id", "dataid"))
    for fname, w in res.writable.items():
        fields[fname] = _field(_TYPES[w.kind], not w.required, False)
    fields.setdefault(key_of(name), _field("integer", False, True, unique=True))
    fields["resource_uri"] = _field("string", False, True)
    if res.stored:
        fields.setdefault("user", _field("related", False, False))
    return {"allowed_detail_http_methods": [m.lower() for m in res.detail_methods],
            "allowed_list_http_methods": [m.lower() for m in res.list_methods],
            "default_format": "application/json", "default_limit": 20, "fields": dict(sorted(fields.items())),
            "filtering": {fname: list(f.ops) for fname, f in sorted(res.fields.items())},
            "ordering": sorted(fname for fname, f in res.fields.items() if f.orderable)}
