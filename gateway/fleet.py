"""The fleet's wire format on the MQTT broker: topics, and a spooled package as an MQTT 5 message.

Topics (`prefix` is `wearable-gateway` unless configured):
- `<prefix>/<gateway>/packages/<device>/<target>`: one spooled package, QoS 1. `<device>` is the
  device's serial (the first part of the package's stream key), `<target>` the name of the vendor
  uplink that delivers it on the relay (the gateway's uplink of the same name).
- `<prefix>/<gateway>/status`: the gateway's status, retained; its last will (also retained)
  says `"online": false`.

A package message: the body as the payload, exactly as the gateway's packager made it; its MQTT 5
Content Type; and user properties `key` (the idempotency key), `target`, `kind`, `stream`, `first`,
`end`, `sample_time`, `evictable` and `v` (this format's version). MQTT 3.1.1 has no properties:
the fleet needs an MQTT 5 broker (Mosquitto 2, EMQX, HiveMQ, VerneMQ all are).
"""

from __future__ import annotations

import math
import re

from gateway.broker import Received, publish_properties
from gateway.spool import Package, StoredPackage

FORMAT_VERSION = "1"
DEFAULT_PREFIX = "wearable-gateway"
_LEVEL_UNSAFE = re.compile(r"[/+#\x00-\x1f]")
REQUIRED = ("key", "target", "kind", "stream", "first", "end", "sample_time")


class BadMessage(ValueError):
    """A message on a package topic that is not a package this relay can deliver."""


def level(text: str) -> str:
    """Text made safe as one topic level (no '/', '+', '#' or control characters)."""
    return _LEVEL_UNSAFE.sub("_", text) or "_"


def package_topic(prefix: str, gateway: str, device: str, target: str) -> str:
    """Where a gateway publishes one package."""
    return f"{prefix}/{level(gateway)}/packages/{level(device)}/{level(target)}"


def status_topic(prefix: str, gateway: str) -> str:
    """Where a gateway keeps its retained status (and its last will)."""
    return f"{prefix}/{level(gateway)}/status"


def package_filter(prefix: str, group: str | None = None) -> str:
    """Every gateway's packages; as a shared subscription of `group` when given."""
    flt = f"{prefix}/+/packages/+/+"
    return f"$share/{group}/{flt}" if group else flt


def status_filter(prefix: str) -> str:
    """Every gateway's status."""
    return f"{prefix}/+/status"


def status_gateway(prefix: str, topic: str) -> str | None:
    """The gateway a status topic belongs to; None if the topic is not a status topic."""
    if not topic.startswith(prefix + "/"):
        return None
    rest = topic[len(prefix) + 1:].split("/")
    return rest[0] if len(rest) == 2 and rest[1] == "status" and rest[0] else None


def encode(prefix: str, gateway: str, package: StoredPackage):
    """(topic, payload, properties) of one spooled package."""
    device = package.stream.split("/", 1)[0]
    props = publish_properties(package.content_type, {
        "v": FORMAT_VERSION, "key": package.key, "target": package.uplink, "kind": package.kind,
        "stream": package.stream, "first": str(package.first), "end": str(package.end),
        "sample_time": repr(float(package.sample_time)), "evictable": "1" if package.evictable else "0"})
    return package_topic(prefix, gateway, device, package.uplink), package.body, props


def decode(message: Received) -> tuple[str, Package]:
    """(gateway, package) of a package message, the stream key prefixed with the gateway; BadMessage if it is not one."""
    parts = message.topic.split("/")
    if len(parts) < 5 or parts[-3] != "packages" or not parts[-4]:
        raise BadMessage(f"not a package topic: {message.topic!r}")
    gateway, target = parts[-4], parts[-1]
    p = message.properties
    missing = [k for k in REQUIRED if not p.get(k)]
    if missing:
        raise BadMessage(f"missing user properties {', '.join(missing)} (an MQTT 5 package message has them)")
    if p.get("v", FORMAT_VERSION) != FORMAT_VERSION:
        raise BadMessage(f"format version {p['v']!r}; this relay reads {FORMAT_VERSION}")
    if p["target"] != target:
        raise BadMessage(f"target {p['target']!r} does not match the topic's {target!r}")
    try:
        first, end, sample_time = int(p["first"]), int(p["end"]), float(p["sample_time"])
    except ValueError:
        raise BadMessage("first, end and sample_time must be numbers") from None
    if end < first or not math.isfinite(sample_time):
        raise BadMessage(f"bad range {first}..{end} or sample_time {p['sample_time']!r}")
    if not p.get("content_type"):
        raise BadMessage("no content type")
    return gateway, Package(target, p["key"], p["kind"], f"{gateway}/{p['stream']}", first, end, sample_time,
                            p["content_type"], message.payload, p.get("evictable") == "1")
