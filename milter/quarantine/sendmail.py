"""The Sendmail backend of quarantine review: its quarantine as ``mailq -qQ`` shows it.

Sendmail (8.13 and later) keeps a milter-quarantined job in its queue directory with the control
file renamed from ``qf<ID>`` to ``hf<ID>`` and the reason in a ``q`` line. ``sendmail -bp -qQ``
(the same as ``mailq -qQ``) lists those jobs, ``sendmail -qQ -qI<ID> -Q`` releases one (a ``-Q``
without a reason un-quarantines) and ``sendmail -qI<ID>`` then delivers it; Sendmail has no delete
command, so a delete removes the job's ``hf``/``df``/``xf`` files. ``-C FILE`` selects a
non-default configuration. The output formats parsed here were captured from Sendmail 8.17.1.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

from mailwarden.quarantine.mta import (
    HOLD,
    Completed,
    MtaError,
    MtaNotFound,
    MtaPermissionError,
    QueuedMessage,
    Runner,
    check,
    run_command,
)

_ENTRY_RE = re.compile(
    r"^(?P<id>[0-9A-Za-z]{6,32})(?P<flag>[*X-]?)\s+(?P<size>\d+)\s+(?:(?P<prio>\d+)\+?\s+)?"
    r"(?P<time>(?:[A-Z][a-z]{2} )?[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d)\s+(?P<sender>\S*)\s*$"
)
_DIR_RE = re.compile(r"^\s*(?P<dir>/\S+) \(\d+ requests?")
_BODY_TYPES = {"7BIT", "8BITMIME", "BINARYMIME"}


class SendmailQueue:
    name = "sendmail"

    def __init__(self, config_file: str = "", sendmail: str = "sendmail",
                 runner: Runner = run_command):
        self._conf = ["-C", config_file] if config_file else []
        self._sendmail = sendmail or "sendmail"
        self._run = runner

    def _tool(self, *args: str, what: str) -> Completed:
        argv = [self._sendmail, *self._conf, *args]
        return check(self._run(argv), argv, what)

    def messages(self) -> dict[str, QueuedMessage]:
        out = self._tool("-bp", "-qQ", what="listing the quarantine")
        return parse_mailq(out.stdout.decode("utf-8", "replace"))

    def _held(self, queue_id: str) -> QueuedMessage:
        _safe_id(queue_id)
        msg = self.messages().get(queue_id)
        if msg is None:
            raise MtaNotFound(f"{queue_id} is not in the Sendmail quarantine")
        return msg

    def headers(self, queue_id: str) -> bytes:
        control = _read(self._file(self._held(queue_id), "hf"))
        return parse_control_headers(control)

    def content(self, queue_id: str) -> bytes:
        msg = self._held(queue_id)
        head = parse_control_headers(_read(self._file(msg, "hf")))
        return head + b"\n" + _read(self._file(msg, "df"))

    def release(self, queue_id: str) -> None:
        self._held(queue_id)
        self._tool("-qQ", f"-qI{queue_id}", "-Q", what=f"releasing {queue_id}")
        if queue_id in self.messages():
            raise MtaError(f"releasing {queue_id}: sendmail left it in the quarantine")
        # Deliver now rather than at the next queue run; a failure here only delays delivery.
        self._run([self._sendmail, *self._conf, f"-qI{queue_id}"])

    def delete(self, queue_id: str) -> None:
        msg = self._held(queue_id)
        for prefix in ("hf", "df", "xf"):
            path = self._file(msg, prefix)
            try:
                path.unlink(missing_ok=True)
            except PermissionError:
                raise MtaPermissionError(
                    f"deleting {queue_id}: not permitted to remove {path} (run as root)") from None
            except OSError as exc:
                raise MtaError(f"deleting {queue_id}: {exc}") from None

    @staticmethod
    def _file(msg: QueuedMessage, prefix: str) -> Path:
        """``<queue dir>/<prefix><ID>``, or in the ``qf``/``df``/``xf`` subdirectory if used."""
        base = Path(msg.location) if msg.location else Path("/var/spool/mqueue")
        sub = {"hf": "qf"}.get(prefix, prefix)
        nested = base / sub / f"{prefix}{msg.queue_id}"
        return nested if (base / sub).is_dir() else base / f"{prefix}{msg.queue_id}"


def _safe_id(queue_id: str) -> str:
    if not re.match(r"^[0-9A-Za-z]{6,32}$", queue_id):
        raise MtaError(f"not a queue ID: {queue_id!r}")
    return queue_id


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError:
        raise MtaPermissionError(f"not permitted to read {path} (run as root)") from None
    except FileNotFoundError:
        raise MtaNotFound(f"{path.name[2:]} is no longer in the Sendmail queue") from None


def parse_mailq(text: str, now: float | None = None) -> dict[str, QueuedMessage]:
    """Jobs listed by ``sendmail -bp -qQ`` (plain or ``-v`` layout), all with queue "hold"."""
    out: dict[str, QueuedMessage] = {}
    location = ""
    current: dict[str, object] | None = None
    for line in text.splitlines():
        directory = _DIR_RE.match(line)
        entry = _ENTRY_RE.match(line)
        if directory:
            location = directory.group("dir")
        elif entry:
            _flush(current, out)
            current = {"id": entry.group("id"), "size": int(entry.group("size")),
                       "arrival": _when(entry.group("time"), now), "location": location,
                       "sender": entry.group("sender").strip("<>"), "rcpts": [], "reason": ""}
        elif current is not None and line[:1].isspace():
            _continuation(line.strip(), current)
    _flush(current, out)
    return out


def _continuation(text: str, current: dict[str, object]) -> None:
    rcpts = current["rcpts"]
    assert isinstance(rcpts, list)
    if not text or text.startswith(("(", "Total requests:")) or text in _BODY_TYPES:
        return
    if text.startswith("QUARANTINE:"):
        current["reason"] = text.removeprefix("QUARANTINE:").strip()
    else:
        rcpts.append(text.strip("<>"))


def _flush(current: dict[str, object] | None, out: dict[str, QueuedMessage]) -> None:
    if current is None:
        return
    rcpts = current["rcpts"]
    assert isinstance(rcpts, list)
    msg = QueuedMessage(
        queue_id=str(current["id"]), queue=HOLD, arrival=float(str(current["arrival"])),
        size=int(str(current["size"])), sender=str(current["sender"]),
        recipients=tuple(str(r) for r in rcpts), reason=str(current["reason"]),
        location=str(current["location"]),
    )
    out[msg.queue_id] = msg


def _when(text: str, now: float | None) -> float:
    """mailq shows no year: take the latest year that does not put the time in the future."""
    now = time.time() if now is None else now
    stamp = " ".join(text.split()[-3:])  # "Nov 22 20:13" (the weekday, if any, is dropped)
    year = datetime.fromtimestamp(now).year
    for candidate in (year, year - 1):
        try:
            when = datetime.strptime(f"{candidate} {stamp}", "%Y %b %d %H:%M").timestamp()
        except ValueError:
            continue  # Feb 29 in a year without it
        if when <= now + 86400:
            return when
    return 0.0


def parse_control_headers(control: bytes) -> bytes:
    """The header lines of a Sendmail control (``qf``/``hf``) file as message headers.

    ``H`` lines carry one header each, optionally prefixed with ``?flags?`` (conditional
    headers); a folded header continues on lines starting with white space.
    """
    lines: list[bytes] = []
    in_header = False
    for line in control.splitlines():
        if line.startswith(b"H"):
            value = line[1:]
            if value.startswith(b"?"):
                end = value.find(b"?", 1)
                value = value[end + 1:] if end > 0 else value
            lines.append(value)
            in_header = True
        elif in_header and line[:1] in (b" ", b"\t"):
            lines.append(line)
        else:
            in_header = False
    return b"".join(item + b"\n" for item in lines)
