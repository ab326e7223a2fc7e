"""The uplink worker: spooled packages -> one vendor API over httpx (or a broker), with retries.

Up to `in_flight` uploads run at once over one keep-alive client, so one slow answer does not
stall the queue. Packages are read on the spool's read connection (never behind a commit);
each outcome (acknowledged, retry later, dead letter) goes into the spool's next group commit,
and the package is not fetched again until that outcome is durable.

What each answer does:
- 2xx: acknowledged; the package is deleted from the spool.
- 408, 429, 5xx, a network error or a timeout: transient; retried with exponential backoff
  and jitter (or after `Retry-After`, when the receiver sends one), for as long as it takes.
- 401 and 403: the credentials are wrong, not the package: the package stays pending and the
  whole uplink pauses and retries later, so fixing the key loses nothing.
- any other 4xx: the receiver refuses this package for good; it moves to the spool's
  dead-letter table with the status and the receiver's message.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import Enum

import httpx

from gateway.spool import AsyncSpool, Changes, StoredPackage
from gateway.vendors.extensions import REPLAYED_HEADER

log = logging.getLogger(__name__)


class Outcome(Enum):
    """What an HTTP answer means for the package."""

    OK = "ok"
    RETRY = "retry"
    AUTH = "auth"
    PERMANENT = "permanent"


def classify(status: int) -> Outcome:
    """Map an HTTP status to what the uplink does with the package."""
    if 200 <= status < 300:
        return Outcome.OK
    if status in (401, 403):
        return Outcome.AUTH
    if status in (408, 429) or status >= 500:
        return Outcome.RETRY
    return Outcome.PERMANENT


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


@dataclass
class RetryPolicy:
    """Backoff for transient failures and for refused credentials."""

    initial: float = 1.0
    cap: float = 300.0
    auth_pause: float = 60.0
    max_retry_after: float = 3600.0

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with 'equal jitter': half fixed, half random."""
        ceiling = min(self.cap, self.initial * 2 ** min(attempts, 30))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass
class Answer:
    """What a receiver said to one package."""

    outcome: Outcome
    detail: str  # for logs and the package's last error
    retry_after: float | None = None  # seconds the receiver asked to wait
    replayed: bool = False  # it had this package already
    status: int | None = None  # the HTTP status (or the broker's reason code)


class BearerAuth(httpx.Auth):
    """Authorization: Bearer <token> (OAuth-style APIs: the hub, UP)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request):
        """Add the header."""
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


DEFAULT_IN_FLIGHT = 4


class Uplink:
    """Delivers one uplink's packages from the spool, oldest first, several at a time."""

    def __init__(self, name: str, base_url: str, timeout: float = 30.0, policy: RetryPolicy | None = None,
                 in_flight: int = DEFAULT_IN_FLIGHT) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.policy = policy or RetryPolicy()
        self.in_flight = in_flight
        self.counters: Counter[str] = Counter()
        self.last_ok: float | None = None
        self.last_error: str | None = None
        self.resume_at = 0.0
        self.paused_on_credentials = False  # the last pause came from refused credentials
        self.last_ok_by_stream: dict[str, float] = {}  # stream key -> time of its last accepted upload
        self.auth: httpx.Auth | None = None
        self.on_ack: Callable[[float], None] | None = None  # age (s) of an acknowledged package's first sample
        self.on_answer: Callable[[StoredPackage, Answer, float], None] | None = None  # and the attempt's seconds
        self._wake = asyncio.Event()
        self._sending: dict[int, asyncio.Task] = {}
        self._settling: set[int] = set()  # outcome written, not yet committed: not to be fetched again
        self._streams: dict[int, str] = {}  # package id -> its stream, while under way or settling

    def build_request(self, client: httpx.AsyncClient, package: StoredPackage) -> httpx.Request:
        """The vendor request that delivers the package (each HTTP uplink says how)."""
        raise NotImplementedError

    def is_replay(self, response: httpx.Response) -> bool:
        """True when the receiver says it had this package already (Idempotent-Replayed: true)."""
        return response.headers.get(REPLAYED_HEADER, "").lower() == "true"

    def wake(self) -> None:
        """New packages are in the spool (or an upload ended)."""
        self._wake.set()

    def open(self):
        """The client uploads go through (an async context manager): an httpx keep-alive pool."""
        limits = httpx.Limits(max_connections=self.in_flight, max_keepalive_connections=self.in_flight)
        return httpx.AsyncClient(timeout=self.timeout, limits=limits)

    async def ready(self, stop: asyncio.Event) -> None:
        """Until the uplink can send (always, over HTTP: a failure is an answer of its own)."""

    async def run(self, spool: AsyncSpool, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; uploads under way then finish (or time out) first."""
        async with self.open() as client:
            try:
                while not stop.is_set():
                    now = time.time()
                    if self.resume_at > now:
                        await self._wait(stop, self.resume_at - now)
                        continue
                    await self.ready(stop)
                    if stop.is_set():
                        break
                    room = self.in_flight - len(self._sending)
                    if room <= 0:
                        await self._wait(stop, 5.0)
                        continue
                    batch = await spool.read(spool.reader.due, self.name, now, room,
                                             set(self._sending) | self._settling, set(self._streams.values()))
                    if not batch:
                        nxt = await spool.read(spool.reader.next_attempt, self.name)
                        # Due but excluded (under way, or an outcome not yet durable): the wake comes.
                        await self._wait(stop, 5.0 if nxt is None else min(5.0, max(0.05, nxt - now)))
                        continue
                    for package in batch:
                        task = asyncio.create_task(self._deliver(client, spool, package),
                                                   name=f"upload {self.name} {package.key}")
                        self._sending[package.id] = task
                        self._streams[package.id] = package.stream
                        task.add_done_callback(lambda _t, pid=package.id: self._sent(pid))
            finally:
                if self._sending:
                    await asyncio.wait(list(self._sending.values()), timeout=self.timeout)
                for task in list(self._sending.values()):
                    task.cancel()

    def _sent(self, package_id: int) -> None:
        self._sending.pop(package_id, None)
        self._wake.set()

    def _settled(self, package_id: int) -> None:
        self._settling.discard(package_id)
        self._streams.pop(package_id, None)
        self._wake.set()

    async def _wait(self, stop: asyncio.Event, seconds: float) -> None:
        self._wake.clear()
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    def _settle(self, spool: AsyncSpool, package_id: int, changes: Changes) -> None:
        """Write an outcome; the package is not fetched again until it is durable."""
        self._settling.add(package_id)
        spool.write(changes).add_done_callback(lambda _f, pid=package_id: self._settled(pid))

    async def attempt(self, client, package: StoredPackage) -> Answer:
        """Send one package; what the receiver answered (HTTP: the status and its meaning)."""
        try:
            request = self.build_request(client, package)
        except ValueError as exc:  # a package this uplink cannot send (a relay takes what gateways made)
            return Answer(Outcome.PERMANENT, f"cannot make the request: {exc}")
        try:
            response = await client.send(request, auth=self.auth)
        except httpx.HTTPError as exc:
            return Answer(Outcome.RETRY, f"{type(exc).__name__}: {exc}")
        outcome = classify(response.status_code)
        if outcome is Outcome.OK:
            return Answer(outcome, "", replayed=self.is_replay(response), status=response.status_code)
        return Answer(outcome, f"HTTP {response.status_code}: {response.text[:500]}",
                      retry_after(response.headers.get("Retry-After"), time.time()), status=response.status_code)

    async def _deliver(self, client, spool: AsyncSpool, package: StoredPackage) -> None:
        """Send one package and write what its answer means."""
        started = time.perf_counter()
        answer = await self.attempt(client, package)
        if self.on_answer:
            self.on_answer(package, answer, time.perf_counter() - started)
        outcome, detail = answer.outcome, answer.detail
        if outcome is Outcome.OK:
            self._settle(spool, package.id, Changes(acks=[package.id]))
            self.counters["acked"] += 1
            if answer.replayed:
                self.counters["replayed"] += 1
            self.last_ok = time.time()
            self.last_ok_by_stream[package.stream] = self.last_ok
            self.paused_on_credentials = False
            if self.on_ack:
                self.on_ack(self.last_ok - package.sample_time)
            return
        if outcome is Outcome.RETRY:
            delay = answer.retry_after
            if delay is not None:
                self.counters["retry_after_honoured"] += 1
                delay = min(delay, self.policy.max_retry_after)
            self._transient(spool, package, detail, delay)
            return
        if outcome is Outcome.AUTH:
            self.counters["auth_refused"] += 1
            self.last_error = detail
            if self.resume_at <= time.time():  # one line per pause, not one per upload under way
                log.error("uplink %s: %s refused our credentials (%s); pausing %.0f s, nothing is dropped",
                          self.name, self.base_url, detail, self.policy.auth_pause)
            self._settle(spool, package.id,
                         Changes(retries=[(package.id, time.time() + self.policy.auth_pause, detail)]))
            self.resume_at = max(self.resume_at, time.time() + self.policy.auth_pause)
            self.paused_on_credentials = True
            return
        self.counters["dead_lettered"] += 1
        self.last_error = detail
        log.error("uplink %s: package %s refused for good, kept as a dead letter: %s", self.name, package.key, detail)
        self._settle(spool, package.id, Changes(dead=[(package.id, detail, answer.status)]))

    def _transient(self, spool: AsyncSpool, package: StoredPackage, detail: str, delay: float | None) -> None:
        if delay is None:
            delay = self.policy.backoff(package.attempts)
        self.counters["retried"] += 1
        self.last_error = detail
        log.warning("uplink %s: %s; retrying %s in %.1f s", self.name, detail, package.key, delay)
        self._settle(spool, package.id, Changes(retries=[(package.id, time.time() + delay, detail)]))
        self.resume_at = max(self.resume_at, time.time() + delay)

    @property
    def state(self) -> str:
        """'ok', 'retrying' (a transient failure: waiting out its backoff) or 'paused' (credentials refused)."""
        if self.paused_on_credentials:
            return "paused"
        return "retrying" if self.resume_at > time.time() else "ok"

    def status(self) -> dict:
        """Counters and health for status pages."""
        return {"name": self.name, "base_url": self.base_url, "counters": dict(self.counters),
                "last_ok": self.last_ok, "last_error": self.last_error, "in_flight": len(self._sending),
                "paused_for_s": round(max(0.0, self.resume_at - time.time()), 1), "state": self.state}
