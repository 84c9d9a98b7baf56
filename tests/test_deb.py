"""The Debian package: ``make deb`` builds it, lintian finds no error, and it holds what it should.

``built_deb`` (session scope) runs ``make deb`` once into a temporary directory; the install test
(test_deb_install.py) reuses it. The content checks compare the package with the source tree, so
they fail when a module, model or deploy file is not shipped or the unit loses a hardening line.
"""

from __future__ import annotations

import configparser
import gzip
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow
UNIT = "lib/systemd/system/mailwarden.service"


def deb_version() -> str:
    out = subprocess.run(["dpkg-parsechangelog", "-l", str(REPO / "packaging/debian/changelog"),
                          "-S", "Version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture(scope="session")
def built_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    run = subprocess.run(["make", "-C", str(REPO), "deb", f"DEB_OUT={out}"],
                         capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, f"make deb failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    debs = sorted(out.glob("mailwarden_*_all.deb"))
    assert [d.name for d in debs] == [f"mailwarden_{deb_version()}_all.deb"]
    assert (out / f"mailwarden_{deb_version()}_amd64.changes").exists()
    return debs[0]


@pytest.fixture(scope="module")
def unpacked(built_deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("unpacked")
    subprocess.run(["dpkg-deb", "-x", str(built_deb), str(root)], check=True)
    subprocess.run(["dpkg-deb", "-e", str(built_deb), str(root / "DEBIAN")], check=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def read_unit(path: Path) -> configparser.RawConfigParser:
    """A systemd unit as a mapping; repeated keys keep the last value (enough for these checks)."""
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_version_matches_setup_cfg() -> None:
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    assert deb_version() == setup["metadata"]["version"]


def test_lintian_reports_no_error(built_deb: Path) -> None:
    run = subprocess.run(["make", "-C", str(REPO), "lintian", f"DEB_OUT={built_deb.parent}"],
                         capture_output=True, text=True, timeout=600, check=False)
    tags = [line for line in run.stdout.splitlines() if line[:2] in ("E:", "W:", "I:", "N:")]
    assert run.returncode == 0, run.stdout + run.stderr
    assert not [t for t in tags if t.startswith("E:")], tags


def test_python_package_is_the_source_tree(unpacked: Path) -> None:
    site = unpacked / "usr/lib/python3/dist-packages/mailwarden"
    for folder, target in ((REPO / "milter", site), (REPO / "detectors", site / "detectors")):
        sources = sorted(p.name for p in folder.glob("*.py"))
        assert sources and sorted(p.name for p in target.glob("*.py")) == sources
        for name in sources:
            assert (target / name).read_bytes() == (folder / name).read_bytes(), name
    assert not (site / "__init__.py").exists()  # folder milter/ has none: mailwarden is namespace
    script = (unpacked / "usr/bin/mailwarden").read_text()
    assert script.startswith("#!/usr/bin/python3\n")
    assert "from mailwarden.cli import main" in script


def test_models_are_shipped_byte_for_byte(unpacked: Path) -> None:
    shipped = unpacked / "usr/lib/python3/dist-packages/mailwarden/models"
    sources = sorted(p.relative_to(REPO / "models") for p in (REPO / "models").rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts)
    assert sources, "models/ is empty"
    assert sorted(p.relative_to(shipped) for p in shipped.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts) == sources
    for rel in sources:
        assert (shipped / rel).read_bytes() == (REPO / "models" / rel).read_bytes(), rel


def test_packaged_config_is_the_example_in_observe_mode(unpacked: Path) -> None:
    conf = unpacked / "etc/mailwarden/mailwarden.toml"
    packaged, example = tomllib.loads(conf.read_text()), tomllib.loads(
        (REPO / "deploy/mailwarden.toml").read_text())
    assert packaged["milter"]["mode"] == "observe"
    assert packaged["milter"]["socket"] == "unix:/var/spool/postfix/mailwarden/mailwarden.sock"
    assert packaged["paths"]["model_dir"] == ""  # the models inside the package
    assert packaged["paths"]["state_dir"] == "/var/lib/mailwarden"
    packaged["milter"]["socket"] = example["milter"]["socket"]
    packaged["milter"]["mode"] = example["milter"]["mode"]
    assert packaged == example
    assert (unpacked / "DEBIAN/conffiles").read_text().split() == [
        "/etc/logrotate.d/mailwarden", "/etc/mailwarden/mailwarden.toml"]


def test_control_depends_on_debian_libraries(unpacked: Path) -> None:
    control = (unpacked / "DEBIAN/control").read_text()
    fields = dict(line.split(": ", 1) for line in control.splitlines() if ": " in line
                  and not line.startswith(" "))
    depends = {d.strip().split(" ")[0] for d in fields["Depends"].split(",")}
    assert {"python3-milter", "python3-sklearn", "python3-numpy", "python3-nltk",
            "python3-joblib", "python3-prometheus-client", "adduser"} <= depends
    assert not {d for d in depends if "pip" in d or d.startswith("python3-mailwarden")}
    assert "postfix | sendmail" in fields["Recommends"]
    assert "python3-matplotlib" in fields["Recommends"]  # mailwarden report, evaluate figures
    assert "python3-redis" in fields["Suggests"]


def test_unit_is_hardened(unpacked: Path) -> None:
    service = read_unit(unpacked / UNIT)["Service"]
    expected = {
        "User": "mailwarden", "Group": "mailwarden", "NoNewPrivileges": "yes",
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "PrivateDevices": "yes", "RuntimeDirectory": "mailwarden",
        "StateDirectory": "mailwarden", "UMask": "0007", "Restart": "on-failure",
        "ExecReload": "/bin/kill -HUP $MAINPID", "CapabilityBoundingSet": "",
        "ReadWritePaths": "-/var/spool/postfix/mailwarden",
        "ExecStart": "/usr/bin/mailwarden run --config /etc/mailwarden/mailwarden.toml",
        "ExecStartPre": "+/usr/libexec/mailwarden/socket-dir",
        "TimeoutStopSec": "30s",
    }
    assert {k: service.get(k) for k in expected} == expected
    text = (unpacked / UNIT).read_text()
    # One ExecStartPre only: a check there loaded every model twice per restart (the socket is
    # gone meanwhile) and could not protect the daemon systemd had already stopped.
    assert text.count("\nExecStartPre=") == 1
    assert (unpacked / "usr/libexec/mailwarden/socket-dir").stat().st_mode & 0o111


def test_deploy_files_and_docs_are_shipped(unpacked: Path) -> None:
    doc = unpacked / "usr/share/doc/mailwarden"
    for name in ("postfix/main.cf", "postfix/master.cf", "postfix/README.md",
                 "postfix/smtp_header_checks",
                 "sendmail/sendmail.mc", "sendmail/README.md", "grafana/mailwarden.json",
                 "prometheus/mailwarden-rules.yml"):
        shipped = doc / "examples" / name
        gzipped = Path(f"{shipped}.gz")  # dh_compress gzips larger documentation
        data = shipped.read_bytes() if shipped.exists() else gzip.decompress(gzipped.read_bytes())
        assert data == (REPO / "deploy" / name).read_bytes(), name
    assert (doc / "README.Debian").exists() or (doc / "README.Debian.gz").exists()
    for name in ("deployment.md", "operations.md", "quarantine.md"):
        assert (doc / name).exists() or (doc / f"{name}.gz").exists(), name
    assert (unpacked / "usr/share/man/man1/mailwarden.1.gz").exists()



def test_quarantine_timer_and_header_checks_are_shipped(unpacked: Path) -> None:
    units = unpacked / "lib/systemd/system"
    timer = read_unit(units / "mailwarden-quarantine-expire.timer")
    assert timer["Install"]["WantedBy"] == "timers.target"
    assert timer["Timer"]["OnCalendar"]
    service = read_unit(units / "mailwarden-quarantine-expire.service")["Service"]
    assert service["Type"] == "oneshot"
    assert service["ExecStart"] == ("/usr/bin/mailwarden quarantine expire --config "
                                    "/etc/mailwarden/mailwarden.toml")
    postinst = (unpacked / "DEBIAN/postinst").read_text()
    assert "enable 'mailwarden-quarantine-expire.timer'" in postinst
    assert "invoke $_dh_action 'mailwarden-quarantine-expire.timer'" in postinst
    assert "'mailwarden-quarantine-expire.service'" not in postinst  # only the timer starts it
    shipped = unpacked / "usr/share/mailwarden/postfix/smtp_header_checks"
    assert shipped.read_bytes() == (REPO / "deploy/postfix/smtp_header_checks").read_bytes()
