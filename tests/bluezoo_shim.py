"""BlueZoo 1.0.2 with two things BlueZ does that BlueZoo leaves out, then BlueZoo's own main.

- When a central disconnects, BlueZ ends its notification sessions (the peripheral's GATT
  application gets StopNotify) and forgets the remote GATT objects, so the next connection
  resolves them afresh. BlueZoo keeps both: a reconnect then fails to export the objects again
  (EEXIST) and the old subscription keeps forwarding values.
- During discovery BlueZ reports every advertisement it receives, from a device it already
  knows too (its RSSI changes), so a new scan sees it. BlueZoo only reports changed
  properties, so a device found by one scan is invisible to the next.
Run as a script, with BlueZoo's arguments.
"""

from __future__ import annotations

import contextlib

from bluezoo import adapter, bluezoo, device

_disconnect = device.Device.disconnect


async def _disconnect_like_bluez(self, uuid=None):
    await _disconnect(self, uuid)
    for link in list(self.services.values()):
        subscription = getattr(link, "client_props_changed_subscription", None)
        if subscription is not None:
            subscription.unsubscribe()
            link.client_props_changed_subscription = None
            with contextlib.suppress(Exception):  # the peripheral may be gone already
                await link.client.StopNotify()
        self.peer_adapter.mock.remove_object(link)
    self.services.clear()
    await self.ServicesResolved.set_async(False)


device.Device.disconnect = _disconnect_like_bluez

_add_device = adapter.Adapter.add_device


async def _add_device_like_bluez(self, dev):
    await _add_device(self, dev)
    known = self.devices.get(dev.get_object_path())
    if known is not dev and known is not None:  # seen again: report the advertisement, as BlueZ does
        await known.Name.set_async(known.name_)


adapter.Adapter.add_device = _add_device_like_bluez

if __name__ == "__main__":
    bluezoo.main()
