"""`mailwarden report`: aggregates of a real audit log, and the page in headless Chromium."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import random
import shutil
import subprocess
from pathlib import Path

from mailwarden.cli import main
from mailwarden.message import Envelope, Message
from mailwarden.metrics import Metrics
from mailwarden.report.rows import read_rows
from mailwarden.sinks.audit import AuditFile, AuditSink
from mailwarden.sinks.keyfile import InstallSecret
from mailwarden.verdict import Action, Confidence, Decision, Finding

START = 1725235200.0  # 2024-09-02 00:00 UTC
KEY = b"r" * 32
VERDICTS = {Action.ACCEPT: 0, Action.QUARANTINE: 0, Action.REJECT: 0}
CHROMIUM = "/usr/bin/chromium"


def decision(verdict: Action, anomaly: float, findings: tuple[Finding, ...]) -> Decision:
    return Decision(verdict, verdict, sum(f.score for f in findings), {"sending_anomaly": anomaly},
                    findings, (), "MW-000000000000", "enforce")


def sender_hash(address: str) -> str:
    """The audit log's keyed hash, computed here from its definition (docs/operations.md)."""
    sub_key = hmac.new(KEY, b"mailwarden/audit-sender", hashlib.sha256).digest()
    return hmac.new(sub_key, address.encode(), hashlib.sha256).hexdigest()[:24]


def write_log(path: Path, seed: int = 7) -> dict[str, object]:
    """Three days of traffic through the real audit sink; returns what was written."""
    rng = random.Random(seed)
    key_file = path.parent / "mailwarden.key"
    key_file.write_text(KEY.hex())
    sink = AuditSink(AuditFile(path), "hashed", InstallSecret(key_file), Metrics())
    expect: dict[str, object] = {"verdicts": dict.fromkeys(("accept", "quarantine", "reject"), 0),
                                 "cards": 0, "wild_anomalous": 0}
    verdicts: dict[str, int] = expect["verdicts"]  # type: ignore[assignment]
    for i in range(600):
        at = START + i * 432.0  # every 7.2 minutes over three days
        wild = i >= 500 and i % 2 == 0  # a compromised account on day three
        sender = "mallory@example.org" if wild else f"user{i % 12}@example.org"
        anomaly = rng.uniform(0.85, 0.99) if wild else rng.uniform(0.02, 0.4)
        findings: tuple[Finding, ...] = ()
        if wild:
            findings = (Finding("sending", "sending_anomaly", 6 * anomaly, 1, "envelope",
                                "recipients to 14 new domains", Confidence.HIGH,
                                (("reasons", "new_domains_10m,msgs_10m"),)),)
            expect["wild_anomalous"] = int(str(expect["wild_anomalous"])) + 1
        elif i % 25 == 0:
            findings = (Finding("leak", "credit_card", 4.0 * 2, 2, "body", "****1111",
                                Confidence.HIGH),)
            expect["cards"] = int(str(expect["cards"])) + 2
        verdict = Action.QUARANTINE if wild or findings else Action.ACCEPT
        if i % 100 == 99:
            verdict = Action.REJECT
        verdicts[verdict.value] += 1
        env = Envelope(f"Q{i}", sender, ("x@example.net",), received_at=at)
        sink.handle(Message(env, b"", 1000), decision(verdict, anomaly, findings))
    sink.close()
    return expect


def test_rows_and_summary_match_what_was_logged(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    expect = write_log(log)
    with gzip.open(tmp_path / "audit.jsonl.1.gz", "wt") as old:  # a rotated, compressed file
        old.write(log.read_text().splitlines()[0].replace("Q0", "OLD") + "\n{broken\n")
    rows, bad = read_rows([log, tmp_path / "audit.jsonl.1.gz"])
    assert bad == 1 and len(rows) == 601
    assert rows == sorted(rows, key=lambda r: r.at)
    out = tmp_path / "out"
    assert main(["report", str(log), "-o", str(out), "--top", "5"]) == 0
    page = (out / "index.html").read_text()
    verdicts = expect["verdicts"]
    assert isinstance(verdicts, dict)
    assert (f"accept {verdicts['accept']}" in page and f"quarantine {verdicts['quarantine']}"
            in page and f"reject {verdicts['reject']}" in page)
    assert f"credit_card {expect['cards']}" in page
    wild = sender_hash("mallory@example.org")
    first_row = page.split('<table class="senders">')[1].split("<tr>")[2]
    assert f"<td>{wild}</td>" in first_row
    assert f"<td>{expect['wild_anomalous']}</td>" in first_row
    assert "new_domains_10m" in first_row
    assert "mallory" not in page
    for name in ("volume", "verdicts", "findings", "anomaly"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_log_still_renders(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["report", str(tmp_path / "empty.jsonl"), "-o", str(tmp_path / "o")]) == 0
    page = (tmp_path / "o" / "index.html").read_text()
    assert "No sender had an anomaly score" in page
    assert all((tmp_path / "o" / f"{n}.png").stat().st_size > 1000
               for n in ("volume", "verdicts", "findings", "anomaly"))


PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images].map(i => [i.getAttribute("src"), i.complete, i.naturalWidth]);
  const ids = [...document.querySelectorAll("section")].map(s => s.id);
  document.body.setAttribute("data-probe", JSON.stringify({imgs, ids}));
});
</script>"""


def chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
           *extra, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def test_page_renders_in_headless_chromium(tmp_path: Path) -> None:
    from matplotlib.image import imread

    assert shutil.which(CHROMIUM), "Debian's chromium is missing: run scripts/bootstrap"
    write_log(tmp_path / "audit.jsonl")
    out = tmp_path / "out"
    assert main(["report", str(tmp_path / "audit.jsonl"), "-o", str(out)]) == 0
    probe = out / "probe.html"  # the page itself has no script; the probe copy adds one
    probe.write_text((out / "index.html").read_text().replace("</body>", PROBE + "</body>"))
    done = chromium(probe, tmp_path / "profile", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    marker = done.stdout.split('data-probe="', 1)[1].split('"', 1)[0]
    state = json.loads(marker.replace("&quot;", '"'))
    assert state["ids"] == ["summary", "volume", "verdicts", "findings", "anomaly", "senders",
                            "models"]
    assert [s for s, _, _ in state["imgs"]] == ["volume.png", "verdicts.png", "findings.png",
                                                "anomaly.png"]
    assert all(complete and width == 1000 for _, complete, width in state["imgs"])
    shot = tmp_path / "shot.png"
    done = chromium(out / "index.html", tmp_path / "profile2", f"--screenshot={shot}",
                    "--window-size=1200,2400")
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = imread(str(shot))[..., :3]
    assert pixels.shape[:2] == (2400, 1200)
    non_white = (pixels < 0.95).any(axis=2).mean()
    reds = ((pixels[..., 0] > 0.75) & (pixels[..., 1] < 0.3) & (pixels[..., 2] < 0.3)).sum()
    assert non_white > 0.03  # text, tables and figures, not a blank page
    assert reds > 200  # the reject bars and the 95th-percentile line were painted
