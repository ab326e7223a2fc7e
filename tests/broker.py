"""A real Mosquitto broker on a free loopback port, persistence in a temporary directory."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.chain import free_port

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
PASSWD = shutil.which("mosquitto_passwd")


class Mosquitto:
    """One broker process; stop() and start() again keep its port and its persisted state."""

    def __init__(self, directory: Path, users: dict[str, str] | None = None, tls: bool = False) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"{'mqtts' if tls else 'mqtt'}://127.0.0.1:{self.port}"
        self.ca_file: Path | None = None
        self.log = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None
        # As root, mosquitto would switch to the user "mosquitto", who cannot read this directory: stay.
        lines = [f"user {getpass.getuser()}", f"listener {self.port} 127.0.0.1",
                 "persistence true", f"persistence_location {self.dir}/", "autosave_interval 1",
                 "max_queued_messages 1000000", "max_inflight_messages 100",
                 f"log_dest file {self.log}", "log_type error", "log_type warning", "log_type notice",
                 "log_type information"]
        if users:
            pw = self.dir / "passwd"
            pw.write_text("")
            for user, password in users.items():
                subprocess.run([PASSWD, "-b", str(pw), user, password], check=True, capture_output=True)
            pw.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines += ["allow_anonymous true"]
        if tls:
            self.ca_file = self._certificates()
            lines += [f"cafile {self.ca_file}", f"certfile {self.dir / 'server.crt'}",
                      f"keyfile {self.dir / 'server.key'}"]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def _certificates(self) -> Path:
        """A throwaway CA and a server certificate for 127.0.0.1 it signed (openssl)."""
        d = self.dir

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
                "-subj", "/CN=wearable-gateway test CA")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
                "-subj", "/CN=127.0.0.1")
        (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
        return d / "ca.crt"

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until it accepts connections."""
        assert MOSQUITTO, "mosquitto is not installed (scripts/test.sh installs Debian's package)"
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"mosquitto exited: {self.log.read_text() if self.log.exists() else ''}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not listen in time"
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: it saves its state to disk and exits."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.proc = None

    def restart(self) -> None:
        """Stop, then start on the same port with the state it saved."""
        self.stop()
        self.start()
