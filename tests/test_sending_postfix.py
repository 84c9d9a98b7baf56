"""Sender hold end to end: a real Postfix, a real daemon (enforce mode, fresh state), the real CLI.

A throwaway Postfix (postfix_instance.py) hands mail to ``mailwarden run`` with the sending
detector on. A blast to new recipients from a sender never seen before engages a sender hold:
the sender's later messages wait in Postfix's hold queue, ``mailwarden senders list`` shows the
sender (masked), and after ``mailwarden senders clear`` its next message is delivered. A reviewer
can also hold a sender by hand (``senders hold``).
"""

from __future__ import annotations

import json
import shutil
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, message_bytes, write_config
from milter_process import MilterProcess
from postfix_instance import PostfixInstance, public_tmpdir

pytestmark = pytest.mark.postfix
SENDING = f"""
[detectors.sending]
enabled = true
model_dir = "{REPO / 'models' / 'sending'}"
"""


@dataclass
class Stack:
    postfix: PostfixInstance
    milter: MilterProcess
    config: Path
    root: Path


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    root = public_tmpdir("mw-senders-")
    sock = root / "mw.sock"
    postfix = PostfixInstance(f"unix:{sock}")
    config = write_config(root, extra=SENDING)
    milter = MilterProcess(config, sock).start()
    postfix.start()
    yield Stack(postfix, milter, config, root)
    postfix.remove()
    milter.stop()
    shutil.rmtree(root, ignore_errors=True)


def senders(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "mailwarden", "senders", *args, "--config", str(stack.config)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False,
                          cwd=stack.root)


def send_many(stack: Stack, sender: str, rcpts: list[str], subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", stack.postfix.port, timeout=30) as smtp:
        for i, rcpt in enumerate(rcpts):
            data = message_bytes(subject=f"{subject}-{i}", body=f"{subject} {i}\n",
                                 sender=sender, to=rcpt)
            smtp.sendmail(sender, [rcpt], data)


def held_subjects(stack: Stack) -> list[str]:
    out = []
    for entry in stack.postfix.held():
        head = subprocess.run(["postcat", "-c", str(stack.postfix.etc), "-q", "-h",
                               str(entry["queue_id"])], capture_output=True, text=True,
                              check=False).stdout
        out += [line[9:] for line in head.splitlines() if line.startswith("Subject: ")]
    return out


def wait_for(predicate, what: str, stack: Stack, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}; queue {stack.postfix.queue()}; milter log "
                         f"{stack.milter.log()[-2000:]}")


def delivered_with(stack: Stack, token: str) -> bool:
    return any(token.encode() in m for m in stack.postfix.delivered())


def test_blast_holds_the_sender_until_a_reviewer_clears_it(stack: Stack) -> None:
    sender = "blaster@mailwarden.test"
    send_many(stack, sender, [f"n{i}@sink.test" for i in range(80)], "blast")
    wait_for(lambda: any(s.startswith("blast-") for s in held_subjects(stack)),
             "no blast message held", stack)
    listed = senders(stack, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["sender"] for r in rows] == ["b***@mailwarden.test"], rows
    send_many(stack, sender, ["bob@sink.test"], "after-hold")
    wait_for(lambda: "after-hold-0" in held_subjects(stack), "later message not held", stack)
    cleared = senders(stack, "clear", sender, "--reviewer", "tester")
    assert cleared.returncode == 0, cleared.stderr
    send_many(stack, sender, ["bob@sink.test"], "after-clear")
    wait_for(lambda: delivered_with(stack, "after-clear 0"), "cleared sender not delivered",
             stack)
    shown = senders(stack, "show", sender, "--json")
    events = [e["event"] for e in json.loads(shown.stdout)["audit"]]
    assert events == ["engaged", "cleared"], shown.stdout


def test_reviewer_hold_and_clear(stack: Stack) -> None:
    sender = "carol@mailwarden.test"
    send_many(stack, sender, ["bob@sink.test"], "carol-first")
    wait_for(lambda: delivered_with(stack, "carol-first 0"), "first not delivered", stack)
    assert senders(stack, "hold", sender, "--reason", "phoned in").returncode == 0
    send_many(stack, sender, ["bob@sink.test"], "carol-held")
    wait_for(lambda: "carol-held-0" in held_subjects(stack), "not held after hold", stack)
    assert senders(stack, "clear", sender).returncode == 0
    send_many(stack, sender, ["bob@sink.test"], "carol-free")
    wait_for(lambda: delivered_with(stack, "carol-free 0"), "not delivered after clear", stack)
