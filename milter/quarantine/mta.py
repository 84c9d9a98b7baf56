"""MTA backends for quarantine review: the hold queue as the MTA itself sees it.

The milter can only ask the MTA to quarantine a message; releasing or deleting it afterwards is done
with the MTA's own tools, which this module wraps for ``mailwarden quarantine``. Postfix turns the
milter quarantine into its hold queue (``postqueue -j`` lists it, ``postcat -q`` shows a queued
message, ``postsuper -H`` releases and ``postsuper -d`` deletes, all with ``-c CONFIG_DIR`` for a
non-default instance); Sendmail keeps quarantined jobs in its queue directory (see
:mod:`mailwarden.quarantine.sendmail`). Every tool failure becomes an :class:`MtaError`, and a
missing privilege becomes an :class:`MtaPermissionError` with a message an operator can act on.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

# Queue name of a message the milter quarantined (Postfix: the hold queue).
HOLD = "hold"


class MtaError(Exception):
    """An MTA tool failed or is missing; the message is safe to print."""


class MtaPermissionError(MtaError):
    """The MTA refused for lack of privilege (not root, not a trusted user)."""


class MtaNotFound(MtaError):
    """The message is not (or no longer) in the hold queue / quarantine."""


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    queue_id: str
    queue: str  # "hold" when quarantined; else the MTA's queue name (deferred, active, ...)
    arrival: float
    size: int
    sender: str
    recipients: tuple[str, ...]
    reason: str = ""  # the quarantine reason when the MTA keeps it (Sendmail)
    location: str = ""  # where the MTA keeps the files (Sendmail's queue directory)


@dataclass(frozen=True, slots=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def errtext(self) -> str:
        return self.stderr.decode("utf-8", "replace").strip()


# Runs one command (argv) and returns its result; injected by tests, subprocess by default.
Runner = Callable[[Sequence[str]], Completed]


def run_command(argv: Sequence[str], timeout: float = 120.0) -> Completed:
    try:
        out = subprocess.run(list(argv), capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise MtaError(f"{argv[0]}: command not found (is the MTA installed and on PATH?)") \
            from None
    except subprocess.TimeoutExpired:
        raise MtaError(f"{argv[0]} did not answer within {timeout:g}s") from None
    return Completed(out.returncode, out.stdout, out.stderr)


class MailQueue(Protocol):
    """What quarantine review needs from an MTA."""

    name: str

    def messages(self) -> dict[str, QueuedMessage]:
        """Every queued message the MTA reports, by queue ID (held ones have queue "hold")."""
        ...

    def headers(self, queue_id: str) -> bytes: ...

    def content(self, queue_id: str) -> bytes:
        """Headers, blank line and body of a held message."""
        ...

    def release(self, queue_id: str) -> None: ...

    def delete(self, queue_id: str) -> None: ...


_PERMISSION_HINTS = (
    "reserved for the superuser",
    "permission denied",
    "not owner",
    "unauthorized configuration directory",
    "requires special privileges",
    "not trusted",
    "operation not permitted",
)


def check(result: Completed, argv: Sequence[str], what: str) -> Completed:
    """Raise a clear :class:`MtaError` (or permission error) for a failed command."""
    if result.returncode == 0:
        return result
    text = result.errtext or f"exit status {result.returncode}"
    tool = argv[0].rsplit("/", 1)[-1]
    if any(hint in text.lower() for hint in _PERMISSION_HINTS):
        raise MtaPermissionError(
            f"{what}: not permitted: {tool} said: {text} (run this command as root)")
    raise MtaError(f"{what}: {tool} failed: {text}")


class PostfixQueue:
    """Postfix's queue through its own tools; ``config_dir`` selects an instance (``-c``)."""

    name = "postfix"

    def __init__(self, config_dir: str = "", runner: Runner = run_command):
        self._conf = ["-c", config_dir] if config_dir else []
        self._run = runner

    def _tool(self, tool: str, *args: str, what: str) -> Completed:
        argv = [tool, *self._conf, *args]
        return check(self._run(argv), argv, what)

    def messages(self) -> dict[str, QueuedMessage]:
        out = self._tool("postqueue", "-j", what="listing the queue")
        return parse_postqueue_json(out.stdout)

    def headers(self, queue_id: str) -> bytes:
        return self._postcat(queue_id, "-h")

    def content(self, queue_id: str) -> bytes:
        return self._postcat(queue_id, "-hb")

    def _postcat(self, queue_id: str, flags: str) -> bytes:
        argv = ["postcat", *self._conf, "-q", flags, _safe_id(queue_id)]
        result = self._run(argv)
        if result.returncode != 0 and "no such file" in result.errtext.lower():
            raise MtaNotFound(f"{queue_id} is not in the Postfix queue")
        return check(result, argv, f"reading {queue_id}").stdout

    def release(self, queue_id: str) -> None:
        out = self._tool("postsuper", "-H", _safe_id(queue_id), what=f"releasing {queue_id}")
        if _postsuper_count(out, "Released from hold") == 0:
            raise MtaNotFound(f"{queue_id} is not in the Postfix hold queue")
        # A released message waits in the deferred queue for the next queue run: deliver now.
        self._run(["postqueue", *self._conf, "-i", queue_id])

    def delete(self, queue_id: str) -> None:
        out = self._tool("postsuper", "-d", _safe_id(queue_id), HOLD,
                         what=f"deleting {queue_id}")
        if _postsuper_count(out, "Deleted") == 0:
            raise MtaNotFound(f"{queue_id} is not in the Postfix hold queue")


_QUEUE_ID_RE = re.compile(r"^[0-9A-Za-z]{5,32}$")


def _safe_id(queue_id: str) -> str:
    """Queue IDs go on a command line: refuse anything but letters and digits (no options)."""
    if not _QUEUE_ID_RE.match(queue_id):
        raise MtaError(f"not a queue ID: {queue_id!r}")
    return queue_id


def _postsuper_count(result: Completed, label: str) -> int:
    """postsuper reports "Released from hold: N message(s)" / "Deleted: N message(s)"."""
    match = re.search(rf"{re.escape(label)}: (\d+) message", result.errtext)
    if match is None:
        raise MtaError(f"postsuper gave no count ({label!r}): {result.errtext or 'no output'}")
    return int(match.group(1))


def parse_postqueue_json(data: bytes) -> dict[str, QueuedMessage]:
    """``postqueue -j``: one JSON object per line."""
    out: dict[str, QueuedMessage] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            rcpts = tuple(str(r["address"]) for r in item.get("recipients", ()))
            msg = QueuedMessage(
                queue_id=str(item["queue_id"]), queue=str(item["queue_name"]),
                arrival=float(item.get("arrival_time", 0)),
                size=int(item.get("message_size", 0)), sender=str(item.get("sender", "")),
                recipients=rcpts,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise MtaError(f"cannot parse postqueue -j output: {exc}") from None
        out[msg.queue_id] = msg
    return out
