"""``mailwarden user`` and ``mailwarden web-link`` from the command line, and the [web] section."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mailwarden.config import load_config
from mailwarden.options import ConfigError
from mailwarden.web.links import read_token, secret_key

from conftest import REPO, write_config


def run(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailwarden", *args, "--config", str(config)],
                          input=stdin, capture_output=True, text=True, timeout=120, check=False)


def test_user_commands_read_passwords_from_stdin_and_store_argon2id(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    out = run(config, "user", "add", "Rita", "--role", "reviewer", stdin="a good password\n")
    assert out.returncode == 0, out.stderr
    assert run(config, "user", "add", "rita", "--role", "admin",
               stdin="a good password\n").returncode == 1  # exists
    assert run(config, "user", "add", "bob", "--role", "reviewer", stdin="short\n").returncode == 1
    assert run(config, "user", "list").stdout == "rita\treviewer\n"
    db = tmp_path / "state" / "web.sqlite"
    stored = sqlite3.connect(db).execute("SELECT hash FROM users").fetchone()[0]
    assert stored.startswith("$argon2id$") and "a good password" not in db.read_bytes().decode(
        "latin-1")
    assert run(config, "user", "passwd", "rita", stdin="another password\n").returncode == 0
    assert sqlite3.connect(db).execute("SELECT hash FROM users").fetchone()[0] != stored
    assert run(config, "user", "remove", "rita").returncode == 0
    assert run(config, "user", "list").stdout == ""
    assert run(config, "user", "remove", "rita").returncode == 1


def test_web_link_prints_a_signed_link(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra='[web]\nbase_url = "https://review.example/"\n')
    out = run(config, "web-link", "MW-ABC", "--action", "release")
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip()
    assert url.startswith("https://review.example/link/")
    link = read_token(secret_key(tmp_path / "state" / "web-secret.key"), url.rsplit("/", 1)[1],
                      3600)
    assert (link.ref, link.action) == ("MW-ABC", "release")
    assert run(write_config(tmp_path), "web-link", "MW-ABC").returncode == 2  # no base_url


def test_web_section_defaults_equal_the_shipped_example() -> None:
    assert load_config(REPO / "deploy" / "mailwarden.toml").web == load_config().web
    assert load_config().web.listen.startswith("127.0.0.1:")  # type: ignore[union-attr]


@pytest.mark.parametrize("text", ['[web]\nlisten = "0.0.0.0"\n', "[web]\nlogin_attempts = 0\n",
                                  "[web]\nunknown = 1\n"])
def test_web_section_refuses_bad_values(text: str) -> None:
    with pytest.raises(ConfigError, match="web"):
        load_config(text=text)


def test_web_listen_option_is_validated(tmp_path: Path) -> None:
    out = run(write_config(tmp_path), "web", "--listen", "nonsense")
    assert out.returncode == 2 and "HOST:PORT" in out.stderr
