"""Fail-open and fail-closed through a real Postfix: a pre-fork worker killed mid-run.

Postfix stops using a milter that failed for the rest of that SMTP session and applies the
milter's ``default_action`` to every later message of it. Ten SMTP sessions of 50 messages each
run concurrently against ``mailwarden run --processes 4``; once a third of the mail is through, the
worker holding the most milter connections is killed with SIGKILL. Postfix's milter setting is
taken from the shipped snippets: ``deploy/postfix/main-enforce.cf`` (``default_action=tempfail``)
in enforce mode, ``deploy/postfix/main.cf`` (``default_action=accept``) in observe mode. The
client retries what was deferred (as a real client does), in fresh sessions, at most three times.
Every message is then accounted for: delivered with the verdict headers (scanned), delivered
without them (unscanned), held, or still deferred at the client. Run with ``-s`` for the figures
quoted in docs/deployment.md.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import smtplib
import threading
import time
from pathlib import Path

import pytest
from reliability_drivers import Job, smtp_message
from test_reliability_postfix import account, assert_each_once, delivered_by_token

from conftest import write_config
from milter_process import PreforkMilter
from postfix_instance import PostfixInstance, public_tmpdir

pytestmark = pytest.mark.postfix
REPO = Path(__file__).resolve().parent.parent
SESSIONS, PER_SESSION, RETRIES = 10, 50, 3
VERDICT = b"X-Mailwarden-Verdict: "


class FourWorkers(PreforkMilter):
    processes = 4


def shipped_milter(snippet: str, spec: str) -> str:
    """The ``smtpd_milters`` value of a shipped snippet, with the test's socket."""
    text = (REPO / "deploy" / "postfix" / snippet).read_text()
    match = re.search(r"^smtpd_milters = (\{.*\})$", text, re.MULTILINE)
    assert match, f"no smtpd_milters line in {snippet}"
    return match.group(1).replace("unix:/mailwarden/mailwarden.sock", spec)


def send_session(port: int, jobs: list[Job], codes: dict[str, int],
                 progress: list[int], lock: threading.Lock) -> None:
    """One SMTP session carrying ``jobs`` one after another; the final code of each. When the
    server ends the session (Postfix does after repeated 4xx errors), the rest counts as 421:
    deferred at the client, which retries it later as any MTA would."""
    left = list(jobs)
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        while left:
            token, sender, data = left[0]
            try:
                smtp.sendmail(sender, ["rcpt@sink.test"], data)
                code = 250
            except smtplib.SMTPServerDisconnected:
                break
            except smtplib.SMTPResponseException as exc:
                code = exc.smtp_code
            except smtplib.SMTPRecipientsRefused as exc:
                code = next(iter(exc.recipients.values()))[0]
            with lock:
                codes[token] = code
                progress[0] += 1
            left.pop(0)
    with lock:
        for token, _, _ in left:
            codes[token] = 421
            progress[0] += 1


def run_sessions(port: int, sessions: list[list[Job]], codes: dict[str, int],
                 at: int = -1, act=None) -> None:  # type: ignore[no-untyped-def]
    lock, progress = threading.Lock(), [0]
    threads = [threading.Thread(target=send_session, args=(port, s, codes, progress, lock))
               for s in sessions if s]
    for thread in threads:
        thread.start()
    while act is not None and any(t.is_alive() for t in threads):
        if progress[0] >= at:
            act()
            break
        time.sleep(0.01)
    for thread in threads:
        thread.join(timeout=600)


def busiest_worker(milter: PreforkMilter) -> int:
    """The worker with the most open sockets (each milter connection is one)."""
    def sockets(pid: int) -> int:
        try:
            links = [os.readlink(f) for f in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            return -1
        return sum(link.startswith("socket:") for link in links)

    return max(milter.workers(), key=sockets)


def kill_run(mode: str, snippet: str) -> dict[str, object]:
    root = public_tmpdir("mw-failclosed-")
    milter = FourWorkers(write_config(root), root / "mw.sock", mode)
    postfix = PostfixInstance(shipped_milter(snippet, milter.spec))
    try:
        milter.start()
        postfix.start()
        jobs = [(f"fc-{n:04}", f"user{n % 20}@mailwarden.test",
                 smtp_message(f"fc-{n:04}", f"user{n % 20}@mailwarden.test",
                              "quarantine" if n % 10 == 0 else None))
                for n in range(SESSIONS * PER_SESSION)]
        sessions = [jobs[i::SESSIONS] for i in range(SESSIONS)]
        codes: dict[str, int] = {}
        killed: list[int] = []
        run_sessions(postfix.port, sessions, codes, at=len(jobs) // 3,
                     act=lambda: (killed.append(busiest_worker(milter)),
                                  os.kill(killed[0], signal.SIGKILL)))
        first = dict(codes)
        for _ in range(RETRIES):  # the client's queue: retry what was deferred
            again = [j for j in jobs if codes.get(j[0], 0) // 100 == 4]
            if not again:
                break
            deadline = time.monotonic() + 60
            while len(milter.workers()) < 4 and time.monotonic() < deadline:
                time.sleep(0.2)
            run_sessions(postfix.port, [again[i::4] for i in range(4)], codes)
        return figures(postfix, milter, jobs, first, codes, killed)
    finally:
        postfix.remove()
        milter.stop()
        shutil.rmtree(root, ignore_errors=True)


def figures(postfix: PostfixInstance, milter: PreforkMilter, jobs: list[Job],
            first: dict[str, int], codes: dict[str, int], killed: list[int]) -> dict[str, object]:
    tokens = [t for t, _, _ in jobs]
    accepted = [t for t in tokens if codes.get(t) == 250]
    deadline = time.monotonic() + 120  # let delivery finish: account() reads each queued file
    while any(e["queue_name"] != "hold" for e in postfix.queue()) and time.monotonic() < deadline:
        time.sleep(0.5)
    places = account(postfix, accepted)
    mails = delivered_by_token(postfix)
    out: dict[str, object] = {
        "sent": len(tokens), "killed": killed, "log": milter.log(),
        "deferred_first_try": sum(first.get(t, 0) // 100 == 4 for t in tokens),
        "delivered_scanned": sum(VERDICT in m for m in mails.values()),
        "delivered_unscanned": sum(VERDICT not in m for m in mails.values()),
        "held": sum(places.get(t) == ["hold"] for t in accepted),
        "still_deferred": sum(codes.get(t, 0) // 100 == 4 for t in tokens),
        "refused": sum(codes.get(t, 0) // 100 == 5 for t in tokens),
        "unanswered": sum(t not in codes for t in tokens),
        "places": places, "accepted": accepted,
    }
    print({k: v for k, v in out.items() if k not in ("log", "places", "accepted")})
    return out


def test_enforce_with_tempfail_delivers_nothing_unscanned_and_loses_nothing() -> None:
    got = kill_run("enforce", "main-enforce.cf")
    assert got["killed"] and "died (signal 9)" in str(got["log"])
    assert got["delivered_unscanned"] == 0
    assert got["deferred_first_try"], "the kill broke no session: nothing was exercised"
    assert got["refused"] == 0 and got["unanswered"] == 0
    assert_each_once(got["places"], got["accepted"])  # type: ignore[arg-type]
    accounted = got["delivered_scanned"] + got["held"] + got["still_deferred"]  # type: ignore[operator]
    assert accounted == got["sent"], got
    assert got["held"] == SESSIONS * PER_SESSION // 10  # every marked message held, retried or not


def test_observe_with_accept_never_defers_and_loses_nothing() -> None:
    got = kill_run("observe", "main.cf")
    assert got["killed"] and "died (signal 9)" in str(got["log"])
    assert got["deferred_first_try"] == 0 and got["refused"] == 0 and got["unanswered"] == 0
    assert_each_once(got["places"], got["accepted"])  # type: ignore[arg-type]
    assert got["delivered_scanned"] + got["delivered_unscanned"] == got["sent"]  # type: ignore[operator]
