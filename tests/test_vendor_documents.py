"""Conformance: every example of the four vendor documents, run verbatim against the emulators.

Each `curl` line of ../shared/vendor-docs (and the UP document's raw HTTP examples, and the
Hexoskin document's "> https://..." example URLs) runs through the real curl binary over HTTPS,
its URL untouched: `--connect-to` sends the vendor's host to the emulator, which serves each
vendor at its root for its host name and holds a certificate for it from a private CA.
Placeholders the documents use for ids, keys and cursors are replaced by real ones made first
(PLACEHOLDERS); nothing else is changed. Each answer must have the document's status class and
carry every field name of the document's example answer, except the differences EXPLAINED says.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from gateway.vendors import hexoskin as hx
from gateway.vendors.kardia import recording_body
from simulators.cloud import tls
from simulators.cloud.app import VENDOR_HOSTS, Credentials, build_app
from simulators.cloud.server import BackgroundServer

DOCS = Path(__file__).resolve().parent.parent.parent / "shared" / "vendor-docs"
KEY = "7863674b-1919-432b-90d5-838fb8207d3f"  # the Kardia document's own example key
UP_TOKEN = "up-doc-token"
ATHLETE = ("athlete@hexoskin.com", "hexoskin")
START = 1_700_000_000 * hx.TICKS_PER_SECOND

# Field names of a document's example that the emulator does not return, and why.
EXPLAINED = {
    # The Kardia examples use older spellings; the document's object tables (which the emulator
    # follows) say mainsFrequency and leadI (../shared/notes: "older spellings").
    "kardia": {"mains_freq": "mainsFrequency", "lead_I": "leadI"},
}


@dataclass
class Example:
    """One example of a document: the curl arguments, the example answer's text, where it is."""

    doc: str
    line: int
    args: list[str]
    answer: str | None = None

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: curl {shlex.join(self.args)}"


def _fenced_after(lines: list[str], i: int, within: int = 6) -> str | None:
    """The text of the next fenced block after line i (within a few lines), if there is one."""
    for j in range(i + 1, min(i + 1 + within, len(lines))):
        if lines[j].startswith("```"):
            end = next((k for k in range(j + 1, len(lines)) if lines[k].startswith("```")), len(lines))
            return "\n".join(lines[j + 1:end])
        text = lines[j].strip()
        if text and not text.startswith((">", "https://")) and text != "or":
            return None
    return None


def _curls(doc: str, lines: list[str]) -> list[Example]:
    out = []
    for i, line in enumerate(lines):
        inline = re.findall(r"`(curl [^`]+)`", line)
        if inline:
            out += [Example(doc, i + 1, shlex.split(text)[1:]) for text in inline]
            continue
        if not line.strip().startswith("curl "):
            continue
        text, j = line.strip(), i
        while text.endswith("\\"):
            j += 1
            text = text[:-1] + " " + lines[j].strip()
        answer = None
        for k in range(j + 1, min(j + 8, len(lines))):
            if lines[k].startswith("> Example Response"):
                answer = _fenced_after(lines, k)
                break
        out.append(Example(doc, i + 1, shlex.split(text)[1:], answer))
    return out


def _raw_http(doc: str, lines: list[str]) -> list[Example]:
    """The UP document's `METHOD URL HTTP/1.1` examples with their headers, body and "Will return:"."""
    out = []
    for i, line in enumerate(lines):
        m = re.match(r"(GET|POST|PUT|DELETE) (https://\S+) HTTP/1\.1", line)
        if not m:
            continue
        args, j = ["-X", m[1], m[2]], i + 1
        while lines[j].strip():
            header = re.match(r"([A-Za-z-]+):\s*(.*\S)", lines[j])
            if header and header[1].lower() != "host":
                args += ["-H", f"{header[1]}: {header[2]}"]
            elif not header:
                args += ["--data-binary", lines[j].strip()]
            j += 1
        answer = None
        ret = next((k for k in range(j, min(j + 6, len(lines))) if lines[k].startswith("Will return")), None)
        if ret is not None:
            end = next((k for k in range(ret + 2, len(lines)) if re.match(r"[A-Z][a-z]", lines[k])), len(lines))
            answer = "\n".join(lines[ret + 1:end])
        out.append(Example(doc, i + 1, args, answer))
    return out


def _example_urls(doc: str, lines: list[str]) -> list[Example]:
    """The Hexoskin document's "> https://..." example URLs, each followed by its example answer."""
    out = []
    for i, line in enumerate(lines):
        m = re.match(r"(?:>.*?)?(https://api\.hexoskin\.com/\S+?):?$", line.strip())
        if m:
            out.append(Example(doc, i + 1, ["-u", ":".join(ATHLETE), m[1]], _fenced_after(lines, i)))
    return out


def examples(name: str) -> list[Example]:
    """Every example of one document, in its order."""
    lines = (DOCS / name).read_text().splitlines()
    found = _curls(name, lines) + _raw_http(name, lines) + _example_urls(name, lines)
    return sorted(found, key=lambda e: e.line)


def field_names(text: str) -> set[str]:
    """Every field name in an example answer's text (tolerant: the documents' JSON is not always valid)."""
    return set(re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"\s*:', text))


def answer_names(obj) -> set[str]:
    """Every field name at any depth of a JSON answer."""
    if isinstance(obj, dict):
        return set(obj) | {n for v in obj.values() for n in answer_names(v)}
    if isinstance(obj, list):
        return {n for v in obj for n in answer_names(v)}
    return set()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """The emulators over HTTPS with the vendors' hosts in their certificate, and real objects to name."""
    if not DOCS.is_dir():
        message = f"the vendor documents are not at {DOCS} (../shared/vendor-docs beside the clone)"
        if os.environ.get("WG_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (scripts/test.sh installs it with apt)")
    tmp = tmp_path_factory.mktemp("docs")
    secure = tls.made(tmp / "tls", ["127.0.0.1", *VENDOR_HOSTS])
    creds = Credentials([KEY], up_tokens=[UP_TOKEN])
    with BackgroundServer(build_app(tmp / "cloud", creds), secure=secure) as server:
        trust = secure.ca_file
        places = _made_objects(server, trust)
        yield server, trust, places, tmp


def _vendor(server, trust, host: str, headers: dict | None = None, **kwargs) -> httpx.Client:
    """A client of one vendor's emulator at its root, reached by its host name."""
    return httpx.Client(base_url=server.url, headers={"Host": host, **(headers or {})},
                        verify=ssl.create_default_context(cafile=trust), timeout=30, **kwargs)


def _made_objects(server, trust) -> dict[str, str]:
    """Objects for the documents' placeholder ids, made through the APIs; placeholder -> real."""
    with _vendor(server, trust, "api.kardia.com", auth=(KEY, "")) as k:
        pid = k.post("/v1/patients", data={"mrn": "DOC-1", "dob": "1970-01-01", "email": "doc@example.com"}
                     ).raise_for_status().json()["id"]
        body = recording_body(pid, "2026-11-23T10:00:00.000+01:00", 300, 60, 500, np.arange(9000) % 3000 - 1500)
        rid = k.post("/v1/recordings", content=body, headers={"Content-Type": "application/json"}
                     ).raise_for_status().json()["id"]
    with _vendor(server, trust, "api.hexoskin.com", auth=ATHLETE) as h:
        n = 600
        data = {hx.HEART_RATE: hx.series(START + 256 * np.arange(n // 256 + 1), np.full(n // 256 + 1, 70)),
                hx.BREATHING_RATE: hx.series(START + 256 * np.arange(3), [15, 15, 16]),
                hx.ECG_I: hx.series(START + np.arange(n), np.arange(n) % 400),
                hx.RR_INTERVAL: hx.series([START + 200, START + 420], [220, 220])}
        h.post("/api/v1/data/", content=hx.data_body("HXSKIN1200001773", START, "1.0", data),
               headers={"Content-Type": "application/json"}).raise_for_status()
        record = h.get("/api/v1/record/").json()["objects"][0]["id"]
        account = h.get("/api/v1/account/").json()["objects"][0]
        rng = h.post("/api/v1/range/", json={"name": "doc", "start": START, "end": START + n}).raise_for_status()
        track = h.post("/api/v1/track/", json={"name": "doc", "range": rng.json()["resource_uri"]}).raise_for_status()
        h.post("/api/v1/trackpoint/", json={"track": track.json()["resource_uri"], "time": "2023-11-14T22:13:20+00:00",
                                            "position": [-73.6, 45.5]}).raise_for_status()
    with _vendor(server, trust, "jawbone.com", headers={"Authorization": f"Bearer {UP_TOKEN}"}) as u:
        # More than a page (25), so the list example has its next link as the document's does.
        xids = [u.post("/nudge/api/v.1.0/users/@me/cardiac_events", data={"heart_rate": "64", "title": t}
                       ).raise_for_status().json()["data"]["xid"] for t in ("read", "delete", *"x" * 30)]
    return {
        "YOUR-API-KEY": KEY, "wNSEDeLOEPQE5rznkJmwbnjpxfdst93i": pid, "3wde1eem9vy4y1a0rv3y98u2a": rid,
        "record=37700": f"record={record}", "record=43419": f"record={record}", "range=63624": f"range={rng.json()['id']}",
        "track=80": f"track={track.json()['id']}",
        "profile/[ID]": f"profile/{account['profile']['id']}/", "user/[userID]": f"user/{account['id']}/",
        # The GET example names an event; the DELETE example (later in the document) another.
        "GET-0ac1wXjUAYQ": xids[0], "DELETE-0ac1wXjUAYQ": xids[1],
    }


def _placed(example: Example, places: dict[str, str]) -> list[str]:
    method = example.args[example.args.index("-X") + 1] if "-X" in example.args else "GET"
    out = []
    for arg in example.args:
        for old, new in places.items():
            if old.startswith(("GET-", "DELETE-")):
                if old.startswith(method + "-"):
                    arg = arg.replace(old.split("-", 1)[1], new)
            else:
                arg = arg.replace(old, new)
        out.append(arg)
    return out


def run(cloud, example: Example) -> tuple[int, str, bytes]:
    """The example through curl, its URL untouched: (status, content type, body)."""
    server, trust, places, tmp = cloud
    args = _placed(example, places)
    if ">" in args:  # the document's redirection to a file: curl writes the body there instead
        args = args[:args.index(">")]
    args = [a for a in args if a != "-i"]  # headers are read with -w, not mixed into the body
    out = tmp / "answer"
    if example.doc.startswith("up-"):  # the document's requests leave out the OAuth token
        args += ["-H", f"Authorization: Bearer {UP_TOKEN}"]
    connect = [a for host in VENDOR_HOSTS for a in ("--connect-to", f"{host}:443:127.0.0.1:{server.port}")]
    proc = subprocess.run(["curl", "-sS", "--cacert", trust, *connect, "-o", str(out),
                           "-w", "%{http_code} %{content_type}", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{example}\n{proc.stderr}"
    status, _, ctype = proc.stdout.partition(" ")
    return int(status), ctype, out.read_bytes()


# Examples whose answer differs from the document's, and why (README: the emulators).
NOT_AS_SHOWN = {
    # A placeholder cursor: the emulator's cursors are its own, and one it did not make is a 400.
    "ZW5kQ3Vyc29yc2Rh=": 400,
    # The document's first request has no credentials, and it also says every request needs them.
    "curl -i https://api.hexoskin.com/api/v1/datatype/": 401,
}


@pytest.mark.parametrize("doc", ["kardia-pro-api.md", "hexoskin-api.md", "up-band-cardiac-api.md",
                                 "human-api-conventions.md"])
def test_every_example_of_the_document_answers_as_shown(cloud, doc):
    found = examples(doc)
    assert len(found) >= {"kardia-pro-api.md": 12, "hexoskin-api.md": 20, "up-band-cardiac-api.md": 4,
                          "human-api-conventions.md": 1}[doc], [str(e) for e in found]
    vendor = doc.split("-")[0]
    failures = []
    for example in found:
        status, ctype, body = run(cloud, example)
        expected = next((code for text, code in NOT_AS_SHOWN.items() if text in str(example)), None)
        if expected is not None:
            if status != expected:
                failures.append(f"{example}: {status}, expected {expected}")
            continue
        if not 200 <= status < 300:
            failures.append(f"{example}: {status} {body[:200]!r}")
            continue
        if example.answer is None or "json" not in ctype:
            continue
        missing = field_names(example.answer) - answer_names(json.loads(body)) - set(EXPLAINED.get(vendor, {}))
        if missing:
            failures.append(f"{example}: the answer lacks {sorted(missing)}")
    assert not failures, "\n".join(failures)


def test_the_binary_and_pdf_examples_give_what_they_say(cloud):
    """The zip of the Hexoskin cookbook decodes as its script does; the Kardia PDF is a PDF."""
    by_doc = {d: examples(d) for d in ("hexoskin-api.md", "kardia-pro-api.md")}
    zipped = next(e for e in by_doc["hexoskin-api.md"] if "octet-stream" in str(e))
    status, ctype, body = run(cloud, zipped)
    assert status == 200 and ctype == "application/octet-stream"
    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert any(n.endswith("ECG_I.wav") for n in names) and any(n.endswith("RR_interval.hxd") for n in names)
    pdf = next(e for e in by_doc["kardia-pro-api.md"] if ".pdf" in str(e))
    status, ctype, body = run(cloud, pdf)
    assert status == 200 and ctype == "application/pdf" and body.startswith(b"%PDF")
