"""The command-line contract: check, score and replay outputs and exit codes."""

from __future__ import annotations

import io
import json
import mailbox
import tarfile
from pathlib import Path

import pytest

from mailwarden.cli import main

from conftest import message_bytes, write_config


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "mail"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.eml").write_bytes(message_bytes(subject="a"))
    (folder / "sub" / "b.eml").write_bytes(message_bytes(subject="b", marker="reject"))
    return folder


def test_check_lists_detectors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "check", "--config", str(write_config(tmp_path)))
    assert status == 0
    assert "detector testmarker: enabled" in out
    assert "mode: enforce" in out


def test_check_prints_the_worker_count_from_the_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    text = config.read_text()
    assert "\nprocesses = 1\n" in text
    config.write_text(text.replace("\nprocesses = 1\n", "\nprocesses = 3\n", 1))
    status, out, _ = run(capsys, "check", "--config", str(config))
    assert status == 0
    assert "processes: 3" in out


def test_run_refuses_a_negative_process_count(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--processes", "-1"])
    assert exit_.value.code == 2
    assert "--processes: must be a whole number >= 0, got '-1'" in capsys.readouterr().err


def test_check_bad_config_exits_2_with_key_and_line(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[milter]\nmode = "observe"\ntimeout_seconds = "soon"\n')
    status, _, err = run(capsys, "check", "--config", str(bad))
    assert status == 2
    assert f"{bad}:3: milter.timeout_seconds: must be a number" in err


def test_score_json_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "score", "--json", "--config", str(write_config(tmp_path)),
                         str(corpus(tmp_path)))
    assert status == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [Path(r["source"]).name for r in records] == ["a.eml", "b.eml"]
    clean, bad = records
    assert clean["verdict"] == "accept"
    assert bad["verdict"] == "reject"
    assert clean["message_id"] == "<t1@example.org>"
    for r in records:
        assert set(r) >= {"source", "message_id", "verdict", "score", "scores", "findings"}
        assert "testmarker" in r["scores"]  # every enabled model's raw score, even when 0
    finding = bad["findings"][0]
    assert set(finding) >= {"detector", "type", "score", "count", "location", "evidence"}
    assert finding["type"] == "test_reject"


def test_score_reads_mbox_and_tar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    box = mailbox.mbox(str(tmp_path / "box.mbox"))
    box.add(message_bytes(subject="m1"))
    box.add(message_bytes(subject="m2", marker="quarantine"))
    box.flush()
    archive = tmp_path / "mail.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = message_bytes(subject="t1", marker="reject")
        info = tarfile.TarInfo("inner/t1.eml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    status, out, _ = run(capsys, "score", "--json", "--config", str(write_config(tmp_path)),
                         str(tmp_path / "box.mbox"), str(archive))
    assert status == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["source"].removeprefix(str(tmp_path) + "/") for r in records] == [
        "box.mbox#1", "box.mbox#2", "mail.tar.gz:inner/t1.eml"]
    assert [r["verdict"] for r in records] == ["accept", "quarantine", "reject"]


def test_replay_orders_by_date(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    for name, day in (("1-late.eml", 9), ("2-early.eml", 3), ("3-middle.eml", 5)):
        data = message_bytes(subject=name).replace(b"Mon, 02 Sep 2024", f"0{day} Sep 2024".encode())
        (folder / name).write_bytes(data)
    status, out, _ = run(capsys, "replay", "--json", "--config", str(write_config(tmp_path)),
                         str(folder))
    assert status == 0
    assert [Path(json.loads(line)["source"]).name for line in out.splitlines()] == [
        "2-early.eml", "3-middle.eml", "1-late.eml"]


def test_inbound_direction_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mail = tmp_path / "q.eml"
    mail.write_bytes(message_bytes(marker="quarantine"))
    _, out, _ = run(capsys, "score", "--json", "--direction", "inbound", "--config",
                    str(write_config(tmp_path)), str(mail))
    assert json.loads(out)["verdict"] == "accept"  # inbound has no thresholds by default


def test_missing_path_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "score", "--config", str(write_config(tmp_path)),
                         str(tmp_path / "nope.eml"))
    assert status == 1
    assert "nope.eml" in err


def test_score_explain_names_each_contribution(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    mail = tmp_path / "held.eml"
    mail.write_bytes(message_bytes(subject="held", marker="quarantine"))
    config = str(write_config(tmp_path))
    status, out, _ = run(capsys, "score", "--explain", "--config", config, str(mail))
    assert status == 0
    assert "total 6.00 = testmarker=6.00 (scores add up across detectors; " \
           "quarantine>=5 reject>=10)" in out
    assert "testmarker: test_quarantine x1 adds 6.00" in out
    assert "because: score 6.00 >= quarantine threshold 5 (testmarker=6.00)" in out
    status, out, _ = run(capsys, "score", "--explain", "--json", "--config", config, str(mail))
    record = json.loads(out)
    assert record["contributions"] == {"testmarker": 6.0}
    assert record["explanation"].startswith("contributions testmarker=6.00 = 6.00 against "
                                            "quarantine>=5 reject>=10: score 6.00 >=")


def test_check_as_root_leaves_state_the_daemons_user_can_write(
        capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import pwd
    import shutil
    import subprocess
    import sys

    from conftest import REPO, config_text
    from postfix_instance import public_tmpdir

    assert os.geteuid() == 0, "the CI runs the suite as root"
    root = public_tmpdir("mw-check-")
    try:
        nobody = pwd.getpwnam("nobody")
        state = root / "state"
        state.mkdir()
        os.chown(state, nobody.pw_uid, nobody.pw_gid)
        config = root / "mailwarden.toml"
        config.write_text(config_text(root, extra="[detectors.sending]\nenabled = true\n")
                          .replace(str(root / "models"), str(REPO / "models")))
        config.chmod(0o644)
        status, out, _ = run(capsys, "check", "--config", str(config))
        assert status == 0 and "detector sending: enabled" in out, out
        made = sorted(p.name for p in state.iterdir())
        assert "sending.sqlite" in made, made
        assert {(p.stat().st_uid, p.stat().st_gid) for p in state.iterdir()} == {
            (nobody.pw_uid, nobody.pw_gid)}
        as_daemon = subprocess.run(
            ["runuser", "-u", "nobody", "--", sys.executable, "-m", "mailwarden", "check",
             "--config", str(config)], capture_output=True, text=True, timeout=300, check=False)
        assert as_daemon.returncode == 0, as_daemon.stderr
        assert "detector sending: enabled" in as_daemon.stdout, as_daemon.stdout
        assert "UNAVAILABLE" not in as_daemon.stdout
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_man_page_covers_every_command() -> None:
    import argparse

    from mailwarden.cli import build_parser

    from conftest import REPO

    page = (REPO / "packaging/debian/mailwarden.1").read_text()
    commands = build_parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    assert isinstance(commands, argparse._SubParsersAction)
    for name, sub in commands.choices.items():
        assert f".B {name}".replace("-", "\\-") in page, name
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices:
                    assert child in page.split(f".B {name} ", 1)[1].split("\n", 1)[0], child
