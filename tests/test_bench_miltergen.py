"""Tests of the bench load generator against real pymilter milters started by the tests.

The no-op milter (``bench/noop_milter.py``) and the scripted dummy (``bench/dummy_milter.py``) run
as child processes on sockets in ``tmp_path``; the generator drives a handful of messages through
them. Assertions are on counts (messages, verdicts, commands sent, replies read) that follow from
the milter's negotiation and the messages, never on timings.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import milterload  # noqa: E402
import milterprocs  # noqa: E402
import milterproto  # noqa: E402
from miltergen import LoadConfig, load_messages, run_load  # noqa: E402
from milterreport import percentile  # noqa: E402


def _message(index: int, verdict: str | None = None, body_lines: int = 3) -> bytes:
    head = (f"From: Sender <sender{index}@example.com>\nTo: rcpt{index}@example.net\n"
            f"Cc: other{index}@example.org\nSubject: test {index}\n"
            "X-Folded: first part\n\tsecond part\n")
    if verdict:
        head += f"X-Bench-Verdict: {verdict}\n"
    return (head + "\n" + "".join(f"line {n}\n" for n in range(body_lines))).encode()


@pytest.fixture
def mail_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "mail"
    folder.mkdir()
    for index in range(5):
        (folder / f"m{index}.eml").write_bytes(_message(index))
    return folder


def _start(tmp_path: Path, name: str, transport: str, extra: list[str] | None = None,
           ) -> Iterator[str]:
    spec = milterprocs.socket_spec(transport, tmp_path, name)
    command = milterprocs.builtin_command(name.split("-", maxsplit=1)[0], extra or [])
    with milterprocs.running(command, spec, tmp_path / f"{name}.log", 30, grace=0.5):
        yield spec


@pytest.fixture(params=["unix", "inet"])
def noop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from _start(tmp_path, "noop_milter", request.param)


@pytest.fixture
def replying_noop(tmp_path: Path) -> Iterator[str]:
    yield from _start(tmp_path, "noop_milter-reply", "unix", ["--reply"])


@pytest.fixture
def dummy(tmp_path: Path) -> Iterator[str]:
    yield from _start(tmp_path, "dummy_milter", "unix", ["--cpu-ms", "0"])


def _run(spec: str, messages: list[milterload.PreparedMessage], total: int,
         per_connection: int = 1, concurrency: int = 3) -> dict[str, object]:
    config = LoadConfig(socket=spec, concurrency=concurrency, messages=total,
                        per_connection=per_connection, timeout=20)
    return run_load(config, messages)


def test_noop_milter_no_reply_steps_are_not_awaited(noop: str, mail_dir: Path) -> None:
    messages = load_messages([str(mail_dir)], 100, 0)
    report = _run(noop, messages, total=12, per_connection=2)
    assert report["messages"] == 12 and report["errors"] == 0
    assert report["verdicts"] == {"accept": 12}
    sent = report["commands_sent"]
    assert isinstance(sent, dict)
    connections = sent["QUIT"]
    assert connections >= 6  # at most two messages per connection
    # Only the negotiation and the end of message are answered.
    assert report["replies_read"] == {"OPTNEG": connections, "EOM": 12}
    assert sent["HEADER"] == 12 * 5 and sent["RCPT"] == 12 * 2 and sent["BODY"] == 12
    # Steps without a callback are negotiated away and never sent.
    assert not {"CONNECT", "HELO", "DATA"} & set(sent)
    # One ABORT after each message and one more before each QUIT, as Postfix does.
    assert sent["ABORT"] == 12 + connections and sent["OPTNEG"] == connections
    negotiated = report["negotiated"]
    assert isinstance(negotiated, dict)
    assert {"NR_MAIL", "NR_RCPT", "NR_HDR", "NR_EOH", "NR_BODY", "NOCONNECT", "NOHELO"} <= set(
        negotiated["protocol"])


def test_replying_milter_gets_every_step_awaited(replying_noop: str, mail_dir: Path) -> None:
    messages = load_messages([str(mail_dir)], 100, 0)
    report = _run(replying_noop, messages, total=10)
    assert report["messages"] == 10 and report["errors"] == 0
    assert report["replies_read"] == {"OPTNEG": 10, "MAIL": 10, "RCPT": 20, "HEADER": 50,
                                      "EOH": 10, "BODY": 10, "EOM": 10}


def test_verdicts_are_counted_as_the_milter_decides(dummy: str, tmp_path: Path) -> None:
    folder = tmp_path / "verdicts"
    folder.mkdir()
    verdicts = ["accept", "accept", "continue", "reject", "tempfail", "discard", "quarantine",
                "addheader", "chgheader"]
    for index, verdict in enumerate(verdicts):
        (folder / f"m{index}.eml").write_bytes(_message(index, verdict))
    report = _run(dummy, load_messages([str(folder)], 100, 0), total=len(verdicts))
    assert report["errors"] == 0
    # quarantine, addheader and chgheader end in ACCEPT after their requests.
    assert report["verdicts"] == {"accept": 5, "continue": 1, "reject": 1, "tempfail": 1,
                                  "discard": 1}
    assert report["quarantined"] == {"messages": 1}
    assert report["modifications"] == {"addheader": 1, "chgheader": 1}
    assert report["replycodes"] == {"550 5.7.1": 1}
    assert report["decided_at"] == {"EOM": len(verdicts)}


def test_unreachable_milter_counts_errors_not_verdicts(tmp_path: Path) -> None:
    messages = load_messages([], 3, 1000)
    report = _run(f"unix:{tmp_path / 'absent.sock'}", messages, total=4, concurrency=2)
    assert report["messages"] == 4 and report["errors"] == 4
    assert report["verdicts"] == {"error": 4}
    assert report["replies_read"] == {}


def test_cli_json_report_finds_the_milter_process(tmp_path: Path) -> None:
    spec = milterprocs.socket_spec("unix", tmp_path, "noop")
    command = milterprocs.builtin_command("noop_milter")
    with milterprocs.running(command, spec, ready_timeout=30, grace=0.5) as proc:
        out = subprocess.run(
            [sys.executable, str(BENCH / "miltergen.py"), "--socket", spec, "-n", "8", "-c", "2",
             "--limit", "4", "--synthetic-size", "70000", "--json"],
            capture_output=True, text=True, check=True, timeout=120)
    report = json.loads(out.stdout)
    assert report["messages"] == 8 and report["verdicts"] == {"accept": 8}
    assert report["milter_process"]["pid"] == proc.pid
    # 70 kB bodies go in two chunks of at most 65,535 bytes.
    assert report["commands_sent"]["BODY"] == 16


def test_split_message_unfolds_like_postfix() -> None:
    data = b"Subject: hi\r\nX-Folded: a\r\n\tb\r\nnot a header\r\nTo: x@y.z\r\n\r\nbody"
    headers, body = milterload.split_message(data)
    assert headers == [(b"Subject", b" hi"), (b"X-Folded", b" a\n\tb")]
    assert body == [b"not a header", b"To: x@y.z", b"", b"body"]


def test_body_chunks_respect_the_protocol_limit() -> None:
    lines = [b"x" * 999] * 200
    chunks = milterload.body_chunks(lines)
    assert all(len(chunk) <= milterproto.MAX_BODY_CHUNK for chunk in chunks)
    assert b"".join(chunks) == (b"x" * 999 + b"\r\n") * 200
    assert len(chunks) == math.ceil(200 * 1001 / 65535)


def test_prepare_takes_envelope_from_headers_unless_given() -> None:
    msg = milterload.prepare("s", _message(7))
    assert msg.sender == "sender7@example.com"
    assert msg.recipients == ("rcpt7@example.net", "other7@example.org")
    forced = milterload.prepare("s", _message(7), "a@b.c", ["d@e.f"])
    assert (forced.sender, forced.recipients) == ("a@b.c", ("d@e.f",))


def test_optneg_reply_with_macro_lists_is_decoded() -> None:
    payload = milterproto.optneg_payload(6, 0x21, 0x80 | 0x4000)
    payload += b"\0\0\0\x02{auth_authen} i\0"
    negotiated = milterproto.parse_optneg(milterproto.Reply(milterproto.OPTNEG, payload))
    assert negotiated.macro_lists == {milterproto.MAIL: (b"{auth_authen}", b"i")}
    assert not negotiated.awaits(milterproto.HEADER) and not negotiated.awaits(milterproto.MAIL)
    assert negotiated.awaits(milterproto.RCPT) and negotiated.sends(milterproto.HELO)
    with pytest.raises(milterproto.ProtocolError):
        milterproto.parse_optneg(milterproto.Reply(milterproto.OPTNEG, payload[:8]))


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, q) for q in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert percentile([3.0], 99) == 3.0 and percentile([], 50) == 0.0
