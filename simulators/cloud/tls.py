"""A private CA and a server certificate for `wearable-sim cloud --tls` (trustme, the `tls` extra).

The CA is kept in the data directory and reused, so a client trusts it once; the server
certificate is issued at every start for the names asked (loopback, the vendor hosts, --host).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


class TlsError(Exception):
    """TLS cannot be set up; the message says why."""


@dataclass(frozen=True)
class ServerTls:
    """Where the certificate chain and key are, and the CA a client must trust (None: your own)."""

    cert_file: str
    key_file: str
    ca_file: str | None = None


def own(cert_file: str, key_file: str) -> ServerTls:
    """A certificate the user brings; both files must be readable."""
    for path in (cert_file, key_file):
        if not Path(path).is_file():
            raise TlsError(f"{path}: no such file")
    return ServerTls(cert_file, key_file)


def made(directory: str | Path, names: Iterable[str]) -> ServerTls:
    """A certificate for `names` from the CA in `directory` (made there on first use)."""
    try:
        import trustme
    except ImportError:
        raise TlsError("--tls needs trustme: pip install 'wearable-gateway[tls]' (or give --cert and --key)") from None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = directory / "ca.pem", directory / "ca.key"
    if ca_cert.is_file() and ca_key.is_file():
        ca = trustme.CA.from_pem(ca_cert.read_bytes(), ca_key.read_bytes())
    else:
        ca = trustme.CA(organization_name="wearable-sim", organization_unit_name="emulator CA")
        ca.private_key_pem.write_to_path(str(ca_key))
        ca_key.chmod(0o600)
        ca.cert_pem.write_to_path(str(ca_cert))
    server = ca.issue_cert(*dict.fromkeys(names))
    cert, key = directory / "server.pem", directory / "server.key"
    server.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    with open(cert, "wb") as out:
        for blob in server.cert_chain_pems:
            out.write(blob.bytes())
    return ServerTls(str(cert), str(key), str(ca_cert))
