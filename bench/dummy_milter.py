"""A deliberately slow pymilter milter with scripted verdicts, to validate the bench harness.

Until ``mailwarden run`` exists, ``run_bench.py`` compares this dummy to the no-op milter: it
buffers each message like a real content filter, then at end of message burns ``--cpu-ms`` of
CPU while holding the GIL (pure Python work, as scoring would) and sleeps ``--sleep-ms`` (waiting
on I/O, GIL released). Its verdict is read from an ``X-Bench-Verdict:`` header (``accept``,
``continue``, ``reject``, ``tempfail``, ``discard``, ``quarantine``, ``addheader``,
``chgheader``), else ``--verdict`` (accept), so tests can check the generator's verdict counts.
Run: ``.venv/bin/python bench/dummy_milter.py --socket unix:/tmp/dummy.sock --cpu-ms 2``.
"""

from __future__ import annotations

import argparse
import io
import sys
import time

import Milter
from noop_milter import serve

VERDICT_HEADER = "x-bench-verdict"


def burn_cpu(seconds: float) -> None:
    """Spin for ``seconds`` of this thread's CPU time (not wall time)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class DummyMilter(Milter.Base):  # type: ignore[misc]
    cpu_seconds = 0.0
    sleep_seconds = 0.0
    default_verdict = "accept"

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.verdict = self.default_verdict

    @Milter.noreply  # type: ignore[misc,untyped-decorator]
    def envfrom(self, mailfrom: str, *params: str) -> int:
        self.buffer = io.BytesIO()
        self.verdict = self.default_verdict
        return int(Milter.CONTINUE)

    @Milter.noreply  # type: ignore[misc,untyped-decorator]
    def envrcpt(self, rcpt: str, *params: str) -> int:
        return int(Milter.CONTINUE)

    @Milter.noreply  # type: ignore[misc,untyped-decorator]
    def header(self, name: str, value: str) -> int:
        self.buffer.write(f"{name}: {value}\r\n".encode("utf-8", "surrogateescape"))
        if name.lower() == VERDICT_HEADER:
            self.verdict = value.strip().lower()
        return int(Milter.CONTINUE)

    @Milter.noreply  # type: ignore[misc,untyped-decorator]
    def eoh(self) -> int:
        self.buffer.write(b"\r\n")
        return int(Milter.CONTINUE)

    @Milter.noreply  # type: ignore[misc,untyped-decorator]
    def body(self, chunk: bytes) -> int:
        self.buffer.write(chunk)
        return int(Milter.CONTINUE)

    def eom(self) -> int:
        if self.cpu_seconds:
            burn_cpu(self.cpu_seconds)
        if self.sleep_seconds:
            time.sleep(self.sleep_seconds)
        return self.act(self.verdict)

    def act(self, verdict: str) -> int:
        if verdict == "reject":
            self.setreply("550", "5.7.1", "rejected by the bench dummy milter")
            return int(Milter.REJECT)
        if verdict == "tempfail":
            return int(Milter.TEMPFAIL)
        if verdict == "discard":
            return int(Milter.DISCARD)
        if verdict == "quarantine":
            self.quarantine("bench dummy")
            return int(Milter.ACCEPT)
        if verdict == "addheader":
            self.addheader("X-Bench-Scanned", "yes")
            return int(Milter.ACCEPT)
        if verdict == "chgheader":
            self.chgheader("Subject", 1, "[bench] changed")
            return int(Milter.ACCEPT)
        return int(Milter.CONTINUE if verdict == "continue" else Milter.ACCEPT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True, help="unix:/path or inet:PORT@HOST")
    parser.add_argument("--cpu-ms", type=float, default=2.0, help="CPU burnt per message (2)")
    parser.add_argument("--sleep-ms", type=float, default=0.0, help="sleep per message (0)")
    parser.add_argument("--verdict", default="accept",
                        help="verdict for messages without X-Bench-Verdict (accept)")
    parser.add_argument("--timeout", type=int, default=600, help="libmilter I/O timeout")
    parser.add_argument("--umask", type=lambda s: int(s, 8), default=None,
                        help="umask while creating the socket (e.g. 000 so Postfix can connect)")
    args = parser.parse_args(argv)
    DummyMilter.cpu_seconds = args.cpu_ms / 1000
    DummyMilter.sleep_seconds = args.sleep_ms / 1000
    DummyMilter.default_verdict = args.verdict
    serve(DummyMilter, "dummy-milter", args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
