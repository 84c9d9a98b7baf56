"""Notifications: alert mail to admins (and optionally the sender) about held or refused mail.

A decision sink (section ``[notify]``, off by default). When the applied action of a message is one
of ``actions`` (quarantine and reject by default; with ``observe = true`` also what observe mode
would have done), it builds an :class:`~mailwarden.notify.alertmail.AlertEvent` (queue ID,
reference, time, verdict, finding types with counts, confidence and masked fragments: never content,
subject or attachments) for :class:`~mailwarden.notify.queue.DigestQueue`, whose background thread
sends rate-limited, deduplicated digests by SMTP to the local MTA (127.0.0.1:25 by default) or a
relay, or through ``sendmail(1)``. In pre-fork mode only worker 0 has that queue; the other workers
hand their events over through :mod:`mailwarden.notify.spool`, so the limits hold for the daemon as
configured, whatever worker saw the message. Alert mail is signed (see
:mod:`mailwarden.notify.alertmail`) and :meth:`NotifySink.exempt` lets the engine pass an intact
alert from our own address unscanned: a notification is never held, notified about, and so on in a
loop.
"""

from __future__ import annotations

import logging
import os
import smtplib
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mailwarden.detectors.sending.names import FINDING_TYPE, HOLD_TYPE
from mailwarden.message import Message, domain_of
from mailwarden.metrics import Metrics
from mailwarden.notify.alertmail import (
    AlertEvent,
    LinkMaker,
    body_text,
    compose,
    event_from,
    verify,
)
from mailwarden.notify.queue import DigestQueue, Limits
from mailwarden.notify.spool import (
    MIN_POLL_SECONDS,
    POLL_SECONDS,
    SPOOL_FILE,
    NotifySpool,
    SpoolRelay,
)
from mailwarden.options import Options
from mailwarden.sinks.base import register_sink
from mailwarden.sinks.keyfile import InstallSecret
from mailwarden.verdict import Action, Decision, Direction

if TYPE_CHECKING:
    from mailwarden.config import Config

log = logging.getLogger("mailwarden.notify.sink")
ACTIONS = ("quarantine", "reject", "tempfail")


class Transport(Protocol):
    def send(self, sender: str, recipient: str, data: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class SmtpTransport:
    host: str
    port: int
    timeout: float

    def send(self, sender: str, recipient: str, data: bytes) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            smtp.sendmail(sender, [recipient], data)


@dataclass(frozen=True, slots=True)
class SendmailTransport:
    command: tuple[str, ...]
    timeout: float

    def send(self, sender: str, recipient: str, data: bytes) -> None:
        done = subprocess.run([*self.command, "-f", sender, "--", recipient], input=data,
                              capture_output=True, timeout=self.timeout, check=False)
        if done.returncode != 0:
            error = done.stderr.decode("utf-8", "replace").strip()[:200]
            raise OSError(f"{self.command[0]} exited {done.returncode}: {error}")


@dataclass(frozen=True, slots=True)
class Settings:
    admins: tuple[str, ...]
    notify_sender: bool
    sender_domains: frozenset[str]
    from_address: str
    hostname: str
    actions: frozenset[str]
    observe: bool
    max_age: float


class NotifySink:
    """With ``spool`` and ``sending=False`` (pre-fork workers but the first), events go to the
    spool; otherwise to this sink's own queue, which then also takes the spool's events."""

    name = "notify"

    def __init__(self, settings: Settings, transport: Transport, limits: Limits,
                 secret: InstallSecret, metrics: Metrics, mode: str, *,
                 spool: NotifySpool | None = None, sending: bool = True,
                 poll_seconds: float = POLL_SECONDS, links: LinkMaker | None = None):
        self.settings = settings
        self._links = links  # signed review links for admins ([web] base_url), or None
        self.mode = mode  # the engine's mode, for the decisions of exempted alert mail
        self._transport = transport
        self._secret = secret
        self._metrics = metrics
        self._spool = spool
        self.queue = DigestQueue(limits, self._send, metrics) if sending or spool is None else None
        self._relay = (SpoolRelay(spool, self._offer, poll_seconds)
                       if spool is not None and self.queue is not None else None)

    def wanted(self, decision: Decision) -> bool:
        if decision.mode == "enforce":
            return decision.action.value in self.settings.actions
        return self.settings.observe and decision.verdict.value in self.settings.actions

    def recipients(self, message: Message) -> list[tuple[str, str]]:
        out = [(admin, "admin") for admin in self.settings.admins]
        sender = message.envelope.mail_from.strip()
        domains = self.settings.sender_domains
        if (self.settings.notify_sender and "@" in sender
                and message.envelope.direction is Direction.OUTBOUND
                and (not domains or domain_of(sender) in domains)
                and sender.lower() != self.settings.from_address.lower()
                and sender.lower() not in {a.lower() for a in self.settings.admins}):
            out.append((sender, "sender"))
        return out

    def handle(self, message: Message, decision: Decision) -> None:
        if not self.wanted(decision):
            return
        if later_in_episode(decision):
            self._metrics.notify_events.labels("episode").inc()
            return
        event = event_from(message, decision)
        for recipient, kind in self.recipients(message):
            if self.queue is not None:
                self._offer(recipient, kind, event)
            elif self._spool is not None and not self._spool.put(recipient, kind, event):
                self._metrics.notify_events.labels("dropped").inc()
            # a spooled event is counted by the sending worker, as queued, duplicate or dropped

    def _offer(self, recipient: str, kind: str, event: AlertEvent) -> None:
        if self.queue is not None:
            self._metrics.notify_events.labels(self.queue.add(recipient, kind, event)).inc()

    def _send(self, recipient: str, kind: str, events: list[AlertEvent], left_out: int) -> None:
        count = len(events) + left_out
        host = self.settings.hostname
        subject = (f"[mailwarden] {count} message(s) held or refused on {host}" if kind == "admin"
                   else f"[mailwarden] {count} of your message(s) held or refused")
        body = body_text(events, host, kind == "admin", left_out, self._links)
        key = self._secret.derive("alert-mail")
        data = compose(key, self.settings.from_address, recipient, subject, body)
        self._transport.send(self.settings.from_address, recipient, data)

    def exempt(self, message: Message) -> Decision | None:
        """An accept decision for our own intact alert mail; None for anything else."""
        if message.envelope.mail_from.strip().lower() != self.settings.from_address.lower():
            return None
        if not verify(self._secret.derive("alert-mail"), message, self.settings.max_age):
            return None
        self._metrics.alert_exempt.inc()
        return Decision(verdict=Action.ACCEPT, action=Action.ACCEPT, score=0.0, scores={},
                        findings=(), reasons=("mailwarden alert mail (signature verified)",),
                        ref="MW-" + uuid.uuid4().hex[:12].upper(), mode=self.mode)

    def close(self) -> None:
        if self._relay is not None:
            self._relay.close()
        if self.queue is not None:
            self.queue.close()
        if self._spool is not None:
            self._spool.close()


def _limits(options: Options) -> Limits:
    return Limits(
        batch_seconds=options.get_number("batch_seconds", 30.0, minimum=0.0),
        digest_seconds=options.get_number("digest_seconds", 900.0, minimum=0.0),
        max_mails_per_hour=options.get_int("max_mails_per_hour", 60, minimum=1),
        max_events_per_mail=options.get_int("max_events_per_mail", 50, minimum=1),
        max_pending=options.get_int("max_pending", 10000, minimum=1),
        retry_seconds=options.get_number("retry_seconds", 60.0, minimum=0.0),
        max_attempts=options.get_int("max_attempts", 3, minimum=1),
    )


def _transport(options: Options) -> Transport:
    # SMTP to the local MTA by default: sendmail(1) needs postdrop's setgid bit, which a unit
    # with NoNewPrivileges=yes (as packaged) does not grant.
    kind = options.get_str("transport", "smtp", ("smtp", "sendmail"))
    command = options.get_str_list("sendmail_command", ["/usr/sbin/sendmail", "-i"])
    host = options.get_str("smtp_host", "127.0.0.1")
    port = options.get_int("smtp_port", 25, minimum=1)
    timeout = options.get_number("timeout_seconds", 30.0, minimum=0.1)
    if not command:
        raise options.error("sendmail_command", "must name a program")
    if kind == "smtp":
        return SmtpTransport(host, port, timeout)
    return SendmailTransport(tuple(command), timeout)


def _settings(options: Options) -> Settings:
    admins = tuple(options.get_str_list("admins", []))
    if any("@" not in a for a in admins):
        raise options.error("admins", "every entry must be a mail address")
    actions = options.get_str_list("actions", ["quarantine", "reject"])
    if not actions or any(a not in ACTIONS for a in actions):
        raise options.error("actions", f"must be a non-empty list of: {', '.join(ACTIONS)}")
    hostname = options.get_str("hostname", "") or socket.gethostname()
    from_address = options.get_str("from_address", "") or f"mailwarden@{hostname}"
    if "@" not in from_address:
        raise options.error("from_address", "must be a mail address")
    return Settings(
        admins=admins, notify_sender=options.get_bool("notify_sender", False),
        sender_domains=frozenset(d.lower() for d in options.get_str_list("sender_domains", [])),
        from_address=from_address, hostname=hostname, actions=frozenset(actions),
        observe=options.get_bool("observe", False),
        max_age=options.get_number("alert_max_age_seconds", 172800.0, minimum=60.0),
    )


@register_sink("notify")
def build(options: Options, config: Config, metrics: Metrics) -> NotifySink | None:
    enabled = options.get_bool("enabled", False)
    settings = _settings(options)
    transport = _transport(options)
    limits = _limits(options)
    key_file = options.get_str("key_file", "")
    options.finish()
    if not enabled:
        return None
    if not settings.admins and not settings.notify_sender:
        raise options.error("admins", "notify is enabled but has no admins and notify_sender "
                                      "is false")
    secret = InstallSecret(Path(key_file) if key_file else config.state_dir / "mailwarden.key")
    links = review_links(config)
    if config.workers <= 1:
        return NotifySink(settings, transport, limits, secret, metrics, config.milter.mode,
                          links=links)
    sending = config.worker_index == 0
    spool = NotifySpool(config.state_dir / SPOOL_FILE, limits.max_pending)
    if sending:
        log.info("this worker (pid %d) sends the alert mail of all %d workers",
                 os.getpid(), config.workers)
    else:
        log.info("alert events of this worker (pid %d) go to worker 0 through %s",
                 os.getpid(), spool.path)
    # Spooled events must reach the queue before a batch opened by worker 0's own event is due.
    poll = max(MIN_POLL_SECONDS, min(POLL_SECONDS, limits.batch_seconds / 3))
    return NotifySink(settings, transport, limits, secret, metrics, config.milter.mode,
                      spool=spool, sending=sending, poll_seconds=poll, links=links)


def later_in_episode(decision: Decision) -> bool:
    """A message held only because its sender is held, after the message that engaged the hold:
    the episode was alerted once, at its start (one alert per episode, not per message). Mail
    that is held for findings of its own is still alerted."""
    holds = [f for f in decision.findings if f.type == HOLD_TYPE]
    others = [f for f in decision.findings if f.type not in (HOLD_TYPE, FINDING_TYPE)]
    return bool(holds) and not others and not any(dict(f.details).get("engaged") for f in holds)


def review_links(config: Config) -> LinkMaker | None:
    """Signed, single-use, expiring links into the review interface for admins' alert mail,
    when ``[web] base_url`` is set: opening one shows the item (a GET never acts); releasing is a
    POST after the confirmation page, by a logged-in reviewer with the role for it."""
    if config.web is None or not config.web.base_url:
        return None
    from mailwarden.web.links import KEY_FILE, make_url, secret_key

    key = secret_key(config.state_dir / KEY_FILE)
    base = config.web.base_url

    def make(ref: str) -> list[tuple[str, str]]:
        return [("Review", make_url(key, base, ref, "open")),
                ("Release", make_url(key, base, ref, "release"))]

    return make
