"""Logging for a service: one line per event, text or JSON, never a credential.

Under systemd (JOURNAL_STREAM set) text lines carry no timestamp: journald adds its own, and
the level becomes the journal priority through the `<N>` prefix journald understands. A
traceback stays on the line of its event (newlines become " | "), so `journalctl -g` finds it.

Every configured secret, and the forms it takes on the wire (base64 in HTTP Basic with an
empty or any user name), is replaced by `[redacted]` in whatever is logged, including
messages from libraries and tracebacks.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import time
from collections import deque
from typing import TextIO

REDACTED = "[redacted]"
# syslog priorities journald reads from a "<N>" line prefix
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def secret_forms(secrets: list[str]) -> list[str]:
    """Each secret and its base64 forms as they appear in Basic auth headers, longest first."""
    forms: set[str] = set()
    for s in secrets:
        if not s:
            continue
        forms.add(s)
        for text in (f"{s}:", f":{s}"):
            forms.add(base64.b64encode(text.encode()).decode())
    return sorted(forms, key=len, reverse=True)


class ServiceFormatter(logging.Formatter):
    """Text or JSON, one line per event, secrets redacted."""

    def __init__(self, fmt: str = "text", secrets: list[str] | None = None, journald: bool | None = None) -> None:
        super().__init__()
        self.json = fmt == "json"
        self.forms = secret_forms(secrets or [])
        self.journald = ("JOURNAL_STREAM" in os.environ) if journald is None else journald

    def redact(self, text: str) -> str:
        """The text with every secret form replaced."""
        for form in self.forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text

    def format(self, record: logging.LogRecord) -> str:
        """One redacted line."""
        message = record.getMessage()
        if record.exc_info:
            message = f"{message} | {self.formatException(record.exc_info)}"
        message = self.redact(message)
        if self.json:
            obj = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                   + f".{int(record.msecs):03d}Z", "level": record.levelname, "logger": record.name, "msg": message}
            return json.dumps(obj, ensure_ascii=False)
        message = message.replace("\r", "").replace("\n", " | ")
        if self.journald:
            return f"<{PRIORITY.get(record.levelno, 6)}>{record.levelname} {record.name}: {message}"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        return f"{stamp}.{int(record.msecs):03d} {record.levelname} {record.name}: {message}"


def setup(level: str = "INFO", fmt: str = "text", secrets: list[str] | None = None,
          stream: TextIO | None = None) -> logging.Handler:
    """Route every logger to one handler on stderr with the service format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(ServiceFormatter(fmt, secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def add_secrets(secrets: list[str]) -> None:
    """Redact these too, from now on, in every handler set up here (a reloaded configuration's)."""
    for handler in logging.getLogger().handlers:
        fmt = getattr(handler, "formatter_", None) or handler.formatter
        if isinstance(fmt, ServiceFormatter):
            fmt.forms = sorted(set(fmt.forms) | set(secret_forms(secrets)), key=len, reverse=True)


class RecentErrors(logging.Handler):
    """Keeps the last warnings and errors (redacted) for the status page."""

    def __init__(self, secrets: list[str] | None = None, keep: int = 50) -> None:
        super().__init__(level=logging.WARNING)
        self.formatter_ = ServiceFormatter("text", secrets, journald=False)
        self.items: deque[dict[str, object]] = deque(maxlen=keep)

    def emit(self, record: logging.LogRecord) -> None:
        """Remember one record."""
        try:
            message = self.formatter_.redact(record.getMessage()).replace("\n", " | ")
            self.items.append({"time": record.created, "level": record.levelname, "logger": record.name,
                               "message": message})
        except Exception:  # a status page must never break logging
            self.handleError(record)
