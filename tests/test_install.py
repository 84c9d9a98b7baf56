"""What an installation can do (issue 13): every command but ``run`` works without pymilter, and
``pip install .`` with no extras, in a fresh venv, is a working install.

The first test runs the CLI in a subprocess where ``import Milter`` fails. The second builds a
fresh virtualenv without system site packages (PyPI's releases, pymilter built from source), runs
the commands an operator would, then uninstalls pymilter and runs them again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from mailbuild import attach, der_body, docx_bytes, mail

from conftest import REPO

NO_PYMILTER = ("import sys; sys.modules['Milter'] = None; sys.modules['milter'] = None; "
               "from mailwarden.cli import main; sys.exit(main(sys.argv[1:]))")
LURE = ("Your mailbox password expires today. Verify your account now to avoid suspension: "
        "log in at the secure portal and confirm your password and banking details immediately.")


def _key_in_docx() -> bytes:
    msg = mail("Please find the deployment notes attached.")
    key = f"-----BEGIN RSA PRIVATE KEY-----\n{der_body()}\n-----END RSA PRIVATE KEY-----"
    attach(msg, docx_bytes(["Deployment notes", *key.split("\n")]), "notes.docx",
           "vnd.openxmlformats-officedocument.wordprocessingml.document")
    msg["From"], msg["To"] = "dev@example.org", "someone@example.net"
    return msg.as_bytes()


def _lure() -> bytes:
    msg = mail(LURE, subject="Action required: verify your account")
    msg["From"], msg["To"] = "it-support@example.org", "user@example.net"
    return msg.as_bytes()


def _write_inputs(tmp: Path) -> dict[str, Path]:
    state = tmp / "state"
    state.mkdir()
    paths = {"config": tmp / "mailwarden.toml", "empty_models": tmp / "empty",
             "bad_config": tmp / "bad.toml", "lure": tmp / "lure.eml", "docx": tmp / "docx.eml",
             "audit": tmp / "audit.jsonl", "tar": tmp / "mail.tar.gz"}
    paths["empty_models"].mkdir()
    paths["config"].write_text(f'[paths]\nstate_dir = "{state}"\n')
    paths["bad_config"].write_text(
        f'[paths]\nstate_dir = "{state}"\nmodel_dir = "{paths["empty_models"]}"\n')
    paths["lure"].write_bytes(_lure())
    paths["docx"].write_bytes(_key_in_docx())
    with tarfile.open(paths["tar"], "w:gz") as tar:
        tar.add(paths["lure"], "lure.eml")
    paths["audit"].write_text(json.dumps({"time": "2026-12-08T01:00:00+00:00", "verdict": "accept",
                                          "direction": "outbound", "mode": "observe",
                                          "scores": {}, "findings": {}}) + "\n")
    return paths


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=cwd, env=env,
                          check=False)


def _commands_work(python: list[str], paths: dict[str, Path], tmp: Path) -> None:
    cfg = ["--config", str(paths["config"])]
    check = _run([*python, "check", *cfg], tmp)
    assert check.returncode == 0, check.stderr
    for name in ("content", "sending", "leak"):
        assert f"detector {name}: enabled" in check.stdout, check.stdout
    scored = _run([*python, "score", *cfg, "--json", str(paths["lure"]), str(paths["docx"])], tmp)
    assert scored.returncode == 0, scored.stderr
    lure, docx = (json.loads(line) for line in scored.stdout.splitlines())
    assert lure["scores"]["phishing"] > 0.5, lure["scores"]
    assert any(f["type"] == "private_key" for f in docx["findings"]), docx["findings"]
    assert "BEGIN RSA" not in scored.stdout  # evidence, never the key
    bad = _run([*python, "check", "--config", str(paths["bad_config"])], tmp)
    assert bad.returncode != 0
    assert "detector content is enabled but cannot load" in bad.stderr, bad.stderr
    replay = _run([*python, "replay", *cfg, str(paths["tar"])], tmp)
    assert replay.returncode == 0, replay.stderr
    listed = _run([*python, "quarantine", "list", *cfg], tmp)
    # With no Postfix running here it lists its own records and says the queue is unreachable.
    assert listed.returncode == 0 or "showing mailwarden's records only" in listed.stderr
    assert "Traceback" not in listed.stderr, listed.stderr
    report = _run([*python, "report", str(paths["audit"]), "-o", str(tmp / "report")], tmp)
    assert report.returncode == 0 or "matplotlib" in report.stderr, report.stderr


def test_every_command_but_run_works_without_pymilter(tmp_path: Path) -> None:
    paths = _write_inputs(tmp_path)
    _commands_work([sys.executable, "-c", NO_PYMILTER], paths, tmp_path)
    assert (tmp_path / "report" / "index.html").exists()
    run = _run([sys.executable, "-c", NO_PYMILTER, "run", "--config", str(paths["config"])],
               tmp_path)
    assert run.returncode != 0  # run, and only run, needs pymilter


@pytest.mark.slow
def test_pip_install_without_extras_is_a_working_install(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
           "--disable-pip-version-check"]
    built = _run([*pip, str(REPO)], tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    paths = _write_inputs(tmp_path)
    cli = [str(venv / "bin" / "mailwarden")]
    where = _run([str(venv / "bin" / "python"), "-c",
                  "import mailwarden.cli as c; print(c.__file__)"], tmp_path)
    assert str(venv) in where.stdout, where  # the installed copy, not the source tree
    _commands_work(cli, paths, tmp_path)
    removed = _run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-y", "pymilter"],
                   tmp_path)
    assert removed.returncode == 0, removed.stderr
    _commands_work(cli, paths, tmp_path)
