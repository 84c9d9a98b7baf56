"""The notifier's queue: deduplicated, rate-limited digests sent from one background thread.

:class:`~mailwarden.notify.sink.NotifySink` adds one
:class:`~mailwarden.notify.alertmail.AlertEvent` per
recipient (admin or sender) from the milter's thread and returns at once; nothing here waits on
SMTP in a milter callback. Per recipient, the first event opens a box that is sent after
``batch_seconds`` (a burst becomes one mail) and never sooner than ``digest_seconds`` after the
previous mail to that recipient; events arriving meanwhile join the box (at most
``max_events_per_mail`` listed, the rest counted). The same message is never listed twice for one
recipient, all recipients together get at most ``max_mails_per_hour`` mails, and at most
``max_pending`` events wait in memory (beyond that they are dropped and counted). A failed send is
retried with backoff up to ``max_attempts`` times. Closing sends what is pending right away.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mailwarden.metrics import Metrics
from mailwarden.notify.alertmail import AlertEvent

log = logging.getLogger("mailwarden.notify.sink")

SEEN_LIMIT = 20000
HOUR = 3600.0

# (recipient, kind "admin"|"sender", events, events left out) -> None; raises when sending failed.
SendFn = Callable[[str, str, list[AlertEvent], int], None]


@dataclass(frozen=True, slots=True)
class Limits:
    batch_seconds: float = 30.0
    digest_seconds: float = 900.0
    max_mails_per_hour: int = 60
    max_events_per_mail: int = 50
    max_pending: int = 10000
    retry_seconds: float = 60.0
    max_attempts: int = 3


@dataclass(slots=True)
class _Box:
    kind: str
    due: float
    events: list[AlertEvent] = field(default_factory=list)
    left_out: int = 0
    attempts: int = 0


class DigestQueue:
    def __init__(self, limits: Limits, send: SendFn, metrics: Metrics,
                 clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self._send, self._metrics, self._clock = send, metrics, clock
        self._cond = threading.Condition()
        self._boxes: dict[str, _Box] = {}
        self._last_sent: dict[str, float] = {}
        self._sent_times: collections.deque[float] = collections.deque()
        self._seen: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        self._pending = 0
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._thread.start()

    def add(self, recipient: str, kind: str, event: AlertEvent) -> str:
        """Queue ``event`` for ``recipient``: ``queued``, ``duplicate`` or ``dropped``."""
        with self._cond:
            key = (recipient, event.ref)
            if key in self._seen:
                return "duplicate"
            self._seen[key] = None
            if len(self._seen) > SEEN_LIMIT:
                self._seen.popitem(last=False)
            if self._closing or self._pending >= self.limits.max_pending:
                return "dropped"
            box = self._boxes.get(recipient)
            if box is None:
                box = self._boxes[recipient] = _Box(kind, self._first_due(recipient))
            if len(box.events) < self.limits.max_events_per_mail:
                box.events.append(event)
                self._pending += 1
            else:
                box.left_out += 1
            self._cond.notify()
            return "queued"

    def _first_due(self, recipient: str) -> float:
        now = self._clock()
        previous = self._last_sent.get(recipient)
        earliest = now if previous is None else previous + self.limits.digest_seconds
        return max(now + self.limits.batch_seconds, earliest)

    def _budget_free_at(self, now: float) -> float:
        """When the hourly mail budget next allows a mail (``now`` if it does already)."""
        while self._sent_times and self._sent_times[0] <= now - HOUR:
            self._sent_times.popleft()
        if len(self._sent_times) < self.limits.max_mails_per_hour:
            return now
        return self._sent_times[0] + HOUR

    def _next(self) -> tuple[str, _Box] | float | None:
        """A due box to send, else seconds to wait (None: nothing pending)."""
        if not self._boxes:
            return None
        now = self._clock()
        recipient, box = min(self._boxes.items(), key=lambda item: item[1].due)
        ready = now if self._closing else max(box.due, self._budget_free_at(now))
        if ready > now:
            return ready - now
        del self._boxes[recipient]
        self._pending -= len(box.events)
        return recipient, box

    def _run(self) -> None:
        while True:
            with self._cond:
                step = self._next()
                while not isinstance(step, tuple):
                    if self._closing and step is None:
                        return
                    self._cond.wait(step)
                    step = self._next()
            self._deliver(*step)

    def _deliver(self, recipient: str, box: _Box) -> None:
        over_budget = self._closing and self._budget_free_at(self._clock()) > self._clock()
        if over_budget:
            self._metrics.notify_events.labels("dropped").inc(len(box.events))
            return
        try:
            self._send(recipient, box.kind, box.events, box.left_out)
        except Exception as exc:  # noqa: BLE001 - SMTP, OS and protocol errors alike
            self._metrics.notifications.labels(box.kind, "failed").inc()
            log.warning("alert mail to a %s recipient failed (attempt %d): %s", box.kind,
                        box.attempts + 1, exc)
            self._retry(recipient, box)
            return
        self._metrics.notifications.labels(box.kind, "sent").inc()
        with self._cond:
            now = self._clock()
            self._last_sent[recipient] = now
            self._sent_times.append(now)
            if len(self._last_sent) > SEEN_LIMIT:
                horizon = now - self.limits.digest_seconds
                self._last_sent = {r: t for r, t in self._last_sent.items() if t > horizon}

    def _retry(self, recipient: str, box: _Box) -> None:
        box.attempts += 1
        with self._cond:
            if box.attempts >= self.limits.max_attempts or self._closing:
                self._metrics.notify_events.labels("dropped").inc(len(box.events))
                return
            newer = self._boxes.pop(recipient, None)
            if newer is not None:
                self._pending -= len(newer.events)
                room = self.limits.max_events_per_mail - len(box.events)
                box.events += newer.events[:max(room, 0)]
                box.left_out += newer.left_out + max(len(newer.events) - max(room, 0), 0)
            box.due = self._clock() + self.limits.retry_seconds * 2 ** (box.attempts - 1)
            self._boxes[recipient] = box
            self._pending += len(box.events)
            self._cond.notify()

    def close(self, timeout: float = 30.0) -> None:
        """Send what is pending now (within the hourly budget), then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
