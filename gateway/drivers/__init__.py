"""Device drivers, found by name through the `wearable_gateway.drivers` entry point group."""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points

from gateway.drivers.base import Driver

ENTRY_POINT_GROUP = "wearable_gateway.drivers"
# The built-in drivers, also registered as entry points; listed here so a source checkout
# that was never installed still finds them.
BUILTIN = {"kardiamobile": "gateway.drivers.kardiamobile:KardiaMobileDriver",
           "hexoskin": "gateway.drivers.hexoskin:HexoskinDriver",
           "upband": "gateway.drivers.upband:UpBandDriver"}


def available() -> dict[str, str]:
    """Driver name -> 'module:Class' for every installed driver."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.value
    return found


def load(name: str) -> type[Driver]:
    """The driver class registered under `name`; KeyError with the known names if none."""
    target = available().get(name)
    if target is None:
        raise KeyError(f"unknown driver {name!r}; installed drivers: {', '.join(sorted(available()))}")
    module, _, attr = target.partition(":")
    cls = getattr(import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise TypeError(f"driver {name!r} ({target}) is not a gateway.drivers.base.Driver")
    return cls
