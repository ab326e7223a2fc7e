"""BlueZoo 1.0.2 with what BlueZ does when a central's link drops, which BlueZoo leaves out.

When a central disconnects, BlueZ ends its notification sessions (the peripheral's GATT
application gets StopNotify) and forgets the remote GATT objects, so the next connection
resolves them afresh. BlueZoo keeps both: a reconnect then fails to export the objects again
(EEXIST) and the old notification subscription keeps forwarding values. This wrapper adds the
missing steps and runs BlueZoo's own main. Run as a script, with BlueZoo's arguments.
"""

from __future__ import annotations

import contextlib

from bluezoo import bluezoo, device

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

if __name__ == "__main__":
    bluezoo.main()
