"""Prometheus and Grafana assets, tested against the real thing.

``promtool`` checks the shipped scrape config and rules and runs the rules' unit tests. Then a
real Prometheus (Debian's, on loopback, scrape interval 1 s) scrapes a real ``mailwarden run``
that a throwaway Postfix feeds with clean, quarantined, rejected and anomalous mail: the metrics
must move by exactly what was sent, every rule must load and evaluate, and every panel expression
of the Grafana dashboard must answer through Prometheus' HTTP API.
"""

from __future__ import annotations

import json
import math
import shutil
import smtplib
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, message_bytes, write_config
from milter_process import MilterProcess
from postfix_instance import PostfixInstance, free_port, public_tmpdir

pytestmark = pytest.mark.prometheus
PROM_DIR = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "mailwarden.json"
VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m",
             "$instance": ".*", "${instance}": ".*"}
# A new sender is compared with the organisation's new senders, so its blast must be large to
# stand out: about 30 messages to 8 new domains each engage a sender hold (issue 15).
CLEAN, HELD, REFUSED, BURST = 8, 3, 2, 36


def promtool(*args: str) -> str:
    done = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60,
                          cwd=PROM_DIR, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_promtool_checks_config_rules_and_unit_tests() -> None:
    assert "SUCCESS: 10 rules found" in promtool("check", "rules", "mailwarden-rules.yml")
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in promtool("test", "rules", "mailwarden-rules.test.yml")


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in panels(dashboard) for t in p.get("targets", [])]


def test_dashboard_is_importable_and_uses_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["instance"]["datasource"]["uid"] == "${DS_PROMETHEUS}"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)) and dashboard["uid"] and dashboard["schemaVersion"] >= 36
    for panel in panels(dashboard):
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
            assert panel["targets"] and all(t["datasource"] == panel["datasource"]
                                            for t in panel["targets"])
    rows = [p["title"] for p in panels(dashboard) if p["type"] == "row"]
    assert rows == ["Traffic and verdicts", "Findings", "Sending anomalies", "Latency", "Errors",
                    "Models"]
    exprs = " ".join(e for _, e in expressions())
    assert exprs.count("histogram_quantile(") >= 6 and "mailwarden_model_info" in exprs


class Prometheus:
    def __init__(self, root: Path, target_port: int):
        self.root = root
        self.port = free_port()
        config = (PROM_DIR / "prometheus.yml").read_text()
        config = config.replace("scrape_interval: 15s", "scrape_interval: 1s")
        config = config.replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        config = config.replace("127.0.0.1:9899", f"127.0.0.1:{target_port}")
        assert f"127.0.0.1:{target_port}" in config and "scrape_interval: 1s" in config
        shutil.copy(PROM_DIR / "mailwarden-rules.yml", root)
        (root / "prometheus.yml").write_text(config)
        log = (root / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={root / 'prometheus.yml'}",
             f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2):
                    return
            except OSError:
                assert self.proc.poll() is None, (self.root / "prometheus.log").read_text()
                time.sleep(0.2)
        raise AssertionError("prometheus did not become ready")

    def wait_scraped(self, samples: int = 3, timeout: float = 30) -> None:
        """Until the target has been scraped (targets apply a few seconds after start)."""
        deadline = time.monotonic() + timeout
        while not self.query(f'count_over_time(up{{job="mailwarden"}}[1m]) >= {samples}'):
            assert time.monotonic() < deadline, (self.root / "prometheus.log").read_text()
            time.sleep(0.5)

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        return list(data["result"]) if data["resultType"] == "vector" else [
            {"metric": {}, "value": data["result"]}]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[PostfixInstance, MilterProcess, Prometheus]]:
    root = public_tmpdir("mw-prom-")
    extra = (f'[detectors.leak]\nenabled = true\nweight = 0.25\n'
             f'[detectors.sending]\nenabled = true\nmodel_dir = "{REPO}/models/sending"\n')
    milter = MilterProcess(write_config(root, extra=extra), root / "mw.sock").start()
    prometheus = postfix = None
    try:
        prometheus = Prometheus(root, milter.metrics_port)
        postfix = PostfixInstance(milter.spec).start()
        prometheus.wait_scraped()  # a baseline before any mail, so rate() sees the traffic
        yield postfix, milter, prometheus
    finally:
        for closer in (postfix.remove if postfix else None, milter.stop,
                       prometheus.stop if prometheus else None):
            if closer is not None:
                closer()
        shutil.rmtree(root, ignore_errors=True)


def send_traffic(postfix: PostfixInstance) -> None:
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
        for i in range(CLEAN):
            smtp.sendmail(f"user{i}@mailwarden.test", ["bob@sink.test"],
                          message_bytes(subject=f"clean {i}", body="Lunch at noon?\n"))
        for i in range(HELD):
            smtp.sendmail("carol@mailwarden.test", ["bob@sink.test"],
                          message_bytes(subject=f"held {i}", marker="quarantine",
                                        body="Card 4556 7375 8689 9855 as agreed.\n"))
        for i in range(REFUSED):
            with pytest.raises(smtplib.SMTPDataError):
                smtp.sendmail("dave@mailwarden.test", ["bob@sink.test"],
                              message_bytes(subject=f"refused {i}", marker="reject"))
            smtp.rset()
        for i in range(BURST):  # one account mailing many new domains at once
            rcpts = [f"x{j}@d{i}-{j}.example" for j in range(8)]
            smtp.sendmail("mallory@mailwarden.test", rcpts, message_bytes(subject=f"b{i}"))


def total(milter: MilterProcess, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for f in text_string_to_metric_families(milter.metrics())
               for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def assert_metrics_moved(milter: MilterProcess, before: dict[str, float]) -> None:
    sent = CLEAN + HELD + REFUSED + BURST
    assert total(milter, "mailwarden_messages_total") - before["messages"] == sent
    assert total(milter, "mailwarden_messages_total", verdict="reject",
                 action="reject") == REFUSED
    assert total(milter, "mailwarden_findings_total", type="test_quarantine") == HELD
    assert total(milter, "mailwarden_findings_total", detector="leak", type="credit_card") == HELD
    assert total(milter, "mailwarden_scan_duration_seconds_count") - before["stages"] == 5 * sent
    assert total(milter, "mailwarden_audit_records_total", result="written") == sent
    assert total(milter, "mailwarden_sending_anomaly_score_count") == sent
    assert total(milter, "mailwarden_findings_total", type="sending_anomaly") >= 1
    assert total(milter, "mailwarden_findings_total", type="sender_hold") >= 1
    assert total(milter, "mailwarden_sending_anomalies_total") >= 1
    assert total(milter, "mailwarden_senders_anomalous", detector="sending") == 1
    assert total(milter, "mailwarden_state_store_up", detector="sending") == 1
    assert total(milter, "mailwarden_milter_callback_errors_total") == 0
    assert total(milter, "mailwarden_scan_budget_seconds") == 2.0


def assert_every_panel_answers(prometheus: Prometheus) -> None:
    silent = []
    for title, expr in expressions():
        result = prometheus.query(substitute(expr))
        if not [r for r in result if not math.isnan(float(r["value"][1]))]:
            silent.append(f"{title}: {expr}")
    assert silent == [], "panels without data:\n" + "\n".join(silent)


@pytest.mark.postfix
def test_metrics_move_with_the_mail_and_every_panel_answers(live) -> None:  # type: ignore[no-untyped-def]
    postfix, milter, prometheus = live
    before = {"messages": total(milter, "mailwarden_messages_total"),
              "stages": total(milter, "mailwarden_scan_duration_seconds_count")}
    send_traffic(postfix)
    assert_metrics_moved(milter, before)
    sent = CLEAN + HELD + REFUSED + BURST
    deadline = time.monotonic() + 20  # wait for a scrape that saw all of it, and one more
    while not prometheus.query(f"sum(mailwarden_messages_total) >= {sent}"):
        assert time.monotonic() < deadline, "prometheus never saw the traffic"
        time.sleep(0.5)
    time.sleep(2.0)
    assert_every_panel_answers(prometheus)
    by_verdict = {r["metric"]["verdict"]: float(r["value"][1]) for r in prometheus.query(
        'sum by (verdict) (increase(mailwarden_messages_total[1m]))')}
    assert by_verdict["quarantine"] > 0 and by_verdict["reject"] > 0 and by_verdict["accept"] > 0
    models = prometheus.query("mailwarden_model_info")
    assert {m["metric"]["detector"] for m in models} == {"leak", "sending", "testmarker"}
    p99 = prometheus.query('histogram_quantile(0.99, sum by (le) (rate('
                           'mailwarden_scan_duration_seconds_bucket{stage="total"}[1m])))')
    assert 0 < float(p99[0]["value"][1]) < 2.0
    rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
    assert len(rules) == 10 and all(r["health"] == "ok" for r in rules), rules
