"""Review interface end to end: Debian's chromium (headless, chromedriver) through a real Postfix.

A throwaway Postfix hands mail to ``mailwarden run`` in enforce mode (the test detector holds
``X-Mailwarden-Test: quarantine`` messages); ``mailwarden web-helper`` runs postcat/postsuper
for ``mailwarden web``, which only talks to it over its unix socket. Accounts are made with
``mailwarden user add`` (password on stdin). The web process runs as ``nobody``, as the packaged
unit runs it unprivileged: everything privileged goes through the helper. A reviewer logs in,
finds the held message, sees its masked evidence and not its body, cannot reveal, releases it
and it is delivered; a POST whose CSRF token was removed is refused; a notification link does
nothing on GET and releases after the confirmation. Screenshots go to docs/figures/review-*.png.
"""

from __future__ import annotations

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
from postfix_instance import PostfixInstance, free_port, public_tmpdir, wait_listening

pytestmark = pytest.mark.postfix
ADMIN = "security@sink.test"  # the notifier's admin: delivered into the sink's Maildir
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402

PASSWORD = "a long test password"
FIGURES = REPO / "docs" / "figures"


@dataclass
class Stack:
    postfix: PostfixInstance
    milter: MilterProcess
    config: Path
    base: str
    procs: list[subprocess.Popen[bytes]]


def mailwarden(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailwarden", *args, "--config", str(config)],
                          input=stdin, capture_output=True, text=True, timeout=120, check=False)


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    wait_listening(port, proc, what=f"web: {log}")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    root = public_tmpdir("mw-web-")
    sock, helper, port = root / "mw.sock", root / "helper.sock", free_port()
    postfix = PostfixInstance(f"unix:{sock}")
    extra = (f'[web]\nlisten = "127.0.0.1:{port}"\nhelper_socket = "{helper}"\n'
             f'helper_users = ["nobody"]\nbase_url = "http://127.0.0.1:{port}"\n'
             f'[quarantine]\npostfix_config = "{postfix.etc}"\n'
             f'[notify]\nenabled = true\nadmins = ["{ADMIN}"]\n'
             f'batch_seconds = 0.5\ndigest_seconds = 0.5\n'
             f'from_address = "mailwarden@mx.mailwarden.test"\ntransport = "smtp"\n'
             f'smtp_host = "127.0.0.1"\nsmtp_port = {postfix.port}\n')
    config = write_config(root, extra=extra)
    state = root / "state"  # owned by the web's user, as /var/lib/mailwarden is packaged
    state.mkdir()
    shutil.chown(state, "nobody")
    for name, role in (("rita", "reviewer"), ("april", "approver")):
        out = mailwarden(config, "user", "add", name, "--role", role, stdin=PASSWORD + "\n")
        assert out.returncode == 0, out.stderr
    milter = MilterProcess(config, sock).start()
    postfix.start()
    procs = []
    for args, log in ((["web-helper"], root / "helper.log"), (["web"], root / "web.log")):
        user = ["runuser", "-u", "nobody", "--"] if args == ["web"] else []
        procs.append(subprocess.Popen([*user, sys.executable, "-m", "mailwarden", *args,
                                       "--config", str(config)], stdout=log.open("ab"),
                                      stderr=subprocess.STDOUT))
        if args == ["web-helper"]:
            while not helper.exists():
                assert procs[0].poll() is None, log.read_text()
                time.sleep(0.05)
    _wait_port(port, procs[1], root / "web.log")
    yield Stack(postfix, milter, config, f"http://127.0.0.1:{port}", procs)
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=20)
    postfix.remove()
    milter.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                "--disable-dev-shm-usage", "--no-proxy-server"):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def send(stack: Stack, subject: str) -> str:
    data = message_bytes(subject=subject, body=f"SECRETBODY of {subject}\n",
                         marker="quarantine", sender="alice@mailwarden.test", to="bob@sink.test")
    with smtplib.SMTP("127.0.0.1", stack.postfix.port, timeout=30) as smtp:
        smtp.sendmail("alice@mailwarden.test", ["bob@sink.test"], data)
    qid = stack.postfix.held_with_subject(subject)
    if qid is not None:
        return qid
    raise AssertionError(f"{subject} not held: {stack.milter.log()[-2000:]}")


def events(stack: Stack, qid: str) -> list[tuple[str, str, str]]:
    """The quarantine store's audit rows for ``qid``: (action, actor, detail)."""
    import sqlite3

    db = sqlite3.connect(stack.config.parent / "state" / "quarantine.sqlite")
    try:
        rows = db.execute("SELECT action, actor, detail FROM events WHERE queue_id = ?", (qid,))
        return [tuple(r) for r in rows]
    finally:
        db.close()


def held_ids(stack: Stack) -> set[str]:
    return {str(q["queue_id"]) for q in stack.postfix.held()}


def release_link_from_alert(stack: Stack, qid: str, timeout: float = 30.0) -> str:
    """The Release link of the admin's alert mail that names ``qid``, as delivered by Postfix."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for mail in stack.postfix.delivered():
            text = mail.decode("utf-8", "replace")
            if "X-Mailwarden-Alert: v1;" in text and f"Queue ID:   {qid}" in text:
                lines = text.split(f"Queue ID:   {qid}", 1)[1].splitlines()
                return next(line.split()[1] for line in lines if "Release:" in line)
        time.sleep(0.2)
    raise AssertionError(f"no alert mail for {qid}: {stack.milter.log()[-2000:]}")


def wait_delivered(stack: Stack, subject: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(f"Subject: {subject}".encode() in m for m in stack.postfix.delivered()):
            return
        time.sleep(0.2)
    raise AssertionError(f"{subject} not delivered: {stack.postfix.queue()}")


def wait_text(driver: object, text: str, timeout: float = 20.0) -> None:
    """Wait until the page (after a form submission) says ``text``."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: text in d.page_source,  # type: ignore[attr-defined]
                                         f"page never said {text!r}")


def login(driver: object, stack: Stack, user: str) -> None:
    d = driver  # type: ignore[assignment]
    d.delete_all_cookies() if d.current_url.startswith(stack.base) else None  # type: ignore[attr-defined]
    d.get(stack.base + "/login")  # type: ignore[attr-defined]
    d.find_element(By.ID, "username").send_keys(user)  # type: ignore[attr-defined]
    d.find_element(By.ID, "password").send_keys(PASSWORD)  # type: ignore[attr-defined]
    d.find_element(By.ID, "login").click()  # type: ignore[attr-defined]
    wait_text(d, f"{user} (")
    assert f"{user} (" in d.find_element(By.CLASS_NAME, "who").text  # type: ignore[attr-defined]


def test_reviewer_finds_sees_evidence_not_body_releases_and_it_is_delivered(
        stack: Stack, browser: object) -> None:
    d: object = browser
    qid = send(stack, "web-release-1")
    login(d, stack, "rita")
    d.get(stack.base + "/?detector=testmarker")  # type: ignore[attr-defined]
    d.find_element(By.LINK_TEXT, qid)  # type: ignore[attr-defined]
    FIGURES.mkdir(parents=True, exist_ok=True)
    d.save_screenshot(str(FIGURES / "review-list.png"))  # type: ignore[attr-defined]
    d.find_element(By.LINK_TEXT, qid).click()  # type: ignore[attr-defined]
    evidence = d.find_element(By.ID, "findings").text  # type: ignore[attr-defined]
    assert "test_quarantine" in evidence and "testmarker" in evidence
    assert "Subject: web-release-1" in d.find_element(By.ID, "headers").text  # type: ignore[attr-defined]
    assert "SECRETBODY" not in d.page_source  # type: ignore[attr-defined]
    assert d.find_elements(By.ID, "reveal") == []  # type: ignore[attr-defined]
    d.save_screenshot(str(FIGURES / "review-message.png"))  # type: ignore[attr-defined]
    page = d.current_url  # type: ignore[attr-defined]
    d.get(page + "/reveal")  # type: ignore[attr-defined]
    assert "needs the approver role" in d.find_element(By.ID, "error").text  # type: ignore[attr-defined]
    assert "SECRETBODY" not in d.page_source  # type: ignore[attr-defined]
    d.get(page)  # type: ignore[attr-defined]
    d.find_element(By.ID, "action-release").click()  # type: ignore[attr-defined]
    d.find_element(By.ID, "reason").send_keys("expected quarterly report")  # type: ignore[attr-defined]
    d.find_element(By.ID, "submit-action").click()  # type: ignore[attr-defined]
    wait_text(d, "done for " + qid)
    wait_delivered(stack, "web-release-1")
    assert qid not in held_ids(stack)
    assert ("released", "web:rita", "expected quarterly report") in events(stack, qid)


def test_post_without_csrf_token_is_refused(stack: Stack, browser: object) -> None:
    d: object = browser
    qid = send(stack, "web-csrf-1")
    login(d, stack, "rita")
    d.get(stack.base + "/")  # type: ignore[attr-defined]
    d.find_element(By.LINK_TEXT, qid).click()  # type: ignore[attr-defined]
    d.execute_script(  # type: ignore[attr-defined]
        "document.querySelector('#act input[name=csrf_token]').remove()")
    d.find_element(By.ID, "action-delete").click()  # type: ignore[attr-defined]
    d.find_element(By.ID, "reason").send_keys("no token")  # type: ignore[attr-defined]
    d.find_element(By.ID, "submit-action").click()  # type: ignore[attr-defined]
    wait_text(d, "CSRF token is missing")
    assert qid in held_ids(stack)


def test_notification_link_does_nothing_on_get_and_releases_after_confirmation(
        stack: Stack, browser: object) -> None:
    d: object = browser
    qid = send(stack, "web-link-1")
    url = release_link_from_alert(stack, qid)  # the link in the notification mail itself
    assert url.startswith(stack.base + "/link/"), url
    login(d, stack, "rita")
    for _ in range(2):
        d.get(url)  # type: ignore[attr-defined]
        assert "Nothing has been done yet" in d.page_source  # type: ignore[attr-defined]
    time.sleep(1.0)
    assert qid in held_ids(stack)
    d.save_screenshot(str(FIGURES / "review-confirm.png"))  # type: ignore[attr-defined]
    d.find_element(By.ID, "reason").send_keys("approved by the sender's manager")  # type: ignore[attr-defined]
    d.find_element(By.ID, "confirm-submit").click()  # type: ignore[attr-defined]
    wait_delivered(stack, "web-link-1")
    d.get(url)  # type: ignore[attr-defined]
    assert "already used" in d.find_element(By.ID, "error").text  # type: ignore[attr-defined]


def test_approver_reveals_with_a_reason(stack: Stack, browser: object) -> None:
    d: object = browser
    qid = send(stack, "web-reveal-1")
    login(d, stack, "april")
    d.get(stack.base + "/")  # type: ignore[attr-defined]
    d.find_element(By.LINK_TEXT, qid).click()  # type: ignore[attr-defined]
    assert "SECRETBODY" not in d.page_source  # type: ignore[attr-defined]
    d.find_element(By.ID, "reveal").click()  # type: ignore[attr-defined]
    d.find_element(By.ID, "reveal-reason").send_keys("sender disputes the hold")  # type: ignore[attr-defined]
    d.find_element(By.ID, "reveal-submit").click()  # type: ignore[attr-defined]
    wait_text(d, "SECRETBODY of web-reveal-1")
    assert ("revealed", "web:april", "sender disputes the hold") in events(stack, qid)
    assert "SECRETBODY of web-reveal-1" in d.find_element(By.ID, "body").text  # type: ignore[attr-defined]


def test_new_hold_appears_without_reload(stack: Stack, browser: object) -> None:
    d: object = browser
    login(d, stack, "rita")
    d.get(stack.base + "/")  # type: ignore[attr-defined]
    marker = d.find_element(By.ID, "held")  # type: ignore[attr-defined]
    time.sleep(1.0)  # the page's event stream is open
    qid = send(stack, "web-live-1")
    try:
        wait_text(d, "New hold: " + qid, timeout=30)
    except Exception:
        logs = d.get_log("browser")  # type: ignore[attr-defined]
        web = (Path(stack.config).parent / "web.log").read_text()[-3000:]
        raise AssertionError(f"{logs}\n{web}\n{d.page_source[:3000]}") from None  # type: ignore[attr-defined]
    assert marker.is_displayed()  # the same page: no reload happened
