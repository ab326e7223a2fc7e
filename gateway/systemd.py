"""systemd's notify protocol (sd_notify(3)): READY, WATCHDOG, STOPPING and STATUS.

Datagrams of "KEY=value" lines to the AF_UNIX socket named by $NOTIFY_SOCKET ("@" means the
abstract namespace). Ten lines of socket code; a library (sdnotify, systemd-python) would add a
dependency, and systemd-python a C build, for less than that. Outside systemd every call is a
no-op, so the daemon runs the same by hand.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends notifications when the service manager asked for them."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        self.address = ("\0" + address[1:]) if address.startswith("@") else address
        self.watchdog_s: float | None = None
        usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return bool(self.address)

    def send(self, *lines: str) -> bool:
        """Send one notification; False (and a log line) if it could not be delivered."""
        if not self.address:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never block the event loop: a receiver that stops reading fills its queue (ten
                # datagrams by default) and a blocking send would then hang the whole daemon.
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(lines).encode(), self.address)
            return True
        except BlockingIOError:
            log.warning("systemd notify queue at %s is full; dropped %s", self.address, lines[0])
            return False
        except OSError as exc:
            log.warning("systemd notify to %s failed: %s", self.address, exc)
            return False

    def ready(self, status: str = "") -> bool:
        """READY=1: start-up is complete."""
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        """RELOADING=1: the configuration is being read again (READY=1 follows)."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}", "STATUS=reloading")

    def stopping(self) -> bool:
        """STOPPING=1: shutting down."""
        return self.send("STOPPING=1", "STATUS=stopping")

    def status(self, text: str) -> bool:
        """STATUS=: a one-line state for `systemctl status`."""
        return self.send(f"STATUS={text}")

    async def watchdog(self) -> None:
        """Ping WATCHDOG=1 at half the interval, from the event loop: a stuck loop stops the pings."""
        if not self.watchdog_s:
            return
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_s / 2)

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
