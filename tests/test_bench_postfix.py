"""End-to-end check of the bench's throwaway Postfix with a real milter and ``smtp-source``.

Starts ``bench/postfix_sandbox.py`` on loopback with the no-op or the scripted dummy milter in
``smtpd_milters``, sends a few messages with Postfix's own ``smtp-source``, and checks what Postfix
logged, then that ``stop()`` leaves no master process and no files. Needs root and Postfix.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import milterprocs  # noqa: E402
import postfix_sandbox  # noqa: E402

SMTP_SOURCE = "/usr/sbin/smtp-source"

pytestmark = [
    pytest.mark.postfix,
    pytest.mark.skipif(os.geteuid() != 0 or not Path(postfix_sandbox.POSTFIX).exists()
                       or not Path(SMTP_SOURCE).exists(), reason="needs root and Postfix"),
]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the postfix user can traverse (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="mw-bench-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _milter(shared_dir: Path, name: str, extra: list[str]) -> Iterator[str]:
    spec = milterprocs.socket_spec("unix", shared_dir, name)
    with milterprocs.running(milterprocs.builtin_command(name, extra), spec,
                             shared_dir / f"{name}.log", 30, grace=0.5):
        Path(spec[5:]).chmod(0o666)
        yield spec


def _send(instance: postfix_sandbox.PostfixInstance, message: Path, count: int,
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SMTP_SOURCE, "-s", "2", "-m", str(count), "-F", str(message), "-f", "a@example.com",
         "-t", "b@example.org", f"127.0.0.1:{instance.port}"],
        capture_output=True, text=True, timeout=120, check=False)


def test_messages_pass_the_noop_milter_and_are_discarded(shared_dir: Path) -> None:
    message = shared_dir / "m.eml"
    message.write_text("From: a@example.com\nTo: b@example.org\nSubject: hi\n\nhello\n")
    for spec in _milter(shared_dir, "noop_milter", []):
        with postfix_sandbox.start(milter_socket=spec) as instance:
            assert _send(instance, message, 5).returncode == 0
            assert instance.wait_for(lambda i: i.count("status=sent") >= 5, 30)
            assert len(set(instance.queue_ids())) == 5
            assert instance.count("milter") == 0  # no milter errors or actions logged
            master = instance.master_pid()
            root = instance.root
        assert master is not None
        with pytest.raises(ProcessLookupError):
            os.kill(master, 0)
        assert not root.exists()


def test_milter_reject_reaches_the_smtp_client(shared_dir: Path) -> None:
    message = shared_dir / "m.eml"
    message.write_text("From: a@example.com\nTo: b@example.org\nX-Bench-Verdict: reject\n\nx\n")
    for spec in _milter(shared_dir, "dummy_milter", ["--cpu-ms", "0"]):
        with postfix_sandbox.start(milter_socket=spec) as instance:
            done = _send(instance, message, 2)
            assert "550" in done.stderr
            assert instance.wait_for(lambda i: i.count("milter-reject") >= 1, 30)
            assert instance.count("status=sent") == 0
