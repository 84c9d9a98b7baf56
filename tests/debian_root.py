"""A throwaway Debian 12 root (debootstrap minbase) for the package tests, and systemd emulation.

:class:`DebianRoot` copies a cached minimal Debian 12 root (the one ``shared/tools/fresh-debian-ci``
keeps in ``$TMPDIR/fresh-deb12``, debootstrapped here if missing), points apt at the host's Debian
mirror, and runs commands in it with ``chroot``. Services never start by themselves (policy-rc.d).
Downloaded packages are kept in ``$TMPDIR/mailwarden-apt-archives`` between runs (hard links).

systemd is not running in CI, so :class:`Unit` reads the installed unit file and
:meth:`Unit.command` builds the command line that starts one of its ``Exec*`` commands the way
systemd would: as ``User=``/``Group=`` with their groups, ``UMask=``, ``Environment=``,
``NoNewPrivileges=`` and no capabilities, in a mount namespace where the root is read-only except
the unit's ``RuntimeDirectory``/``StateDirectory``/``LogsDirectory``/``ReadWritePaths``
(``ProtectSystem=strict``) with a private ``/tmp`` (``PrivateTmp=``), and in a network namespace
of its own (so the packaged metrics port cannot clash with anything on the machine).
"""

from __future__ import annotations

import configparser
import fcntl
import functools
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from postfix_instance import public_tmpdir

TMP = Path(os.environ.get("TMPDIR", "/tmp"))
BASE = TMP / "fresh-deb12"
APT_ARCHIVES = TMP / "mailwarden-apt-archives"
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
UNIT_PATH = "/lib/systemd/system/mailwarden.service"
# Brings the loopback interface of a new network namespace up (SIOCGIFFLAGS/SIOCSIFFLAGS, IFF_UP)
# with the host's python3, so the tests need no iproute2.
LO_UP = ("import fcntl, socket, struct; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
         "r = struct.pack('16sH22x', b'lo', 0); "
         "f = struct.unpack('16sH22x', fcntl.ioctl(s, 0x8913, r))[1]; "
         "fcntl.ioctl(s, 0x8914, struct.pack('16sH22x', b'lo', f | 1))")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def host_mirror() -> str:
    for line in SOURCES.read_text().splitlines():
        if line.startswith("URIs:"):
            return line.split()[1]
    raise RuntimeError(f"no URIs in {SOURCES}")


def ensure_base() -> Path:
    """The cached debootstrap minbase root (about a minute to build the first time)."""
    with (TMP / "fresh-deb12.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (BASE / "bin/bash").exists():
            new = Path(f"{BASE}.new")
            shutil.rmtree(new, ignore_errors=True)
            subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(new),
                            host_mirror()], check=True, capture_output=True, timeout=1200)
            new.rename(BASE)
    return BASE


def link_debs(source: Path, target: Path) -> None:
    """Share downloaded packages between roots by hard links (each root keeps its own apt lock)."""
    for deb in source.glob("*.deb"):
        try:
            os.link(deb, target / deb.name)
        except FileExistsError:
            pass
        except OSError:  # another file system
            shutil.copy2(deb, target / deb.name)


class DebianRoot:
    def __init__(self, path: Path):
        self.path = path
        self._mounts: list[Path] = []

    @classmethod
    def create(cls, prefix: str) -> DebianRoot:
        base = ensure_base()
        work = public_tmpdir(prefix)
        root = cls(work / "root")
        subprocess.run(["cp", "-a", str(base), str(root.path)], check=True, timeout=600)
        root.configure_apt()
        root.mount("proc", "-t", "proc", "proc")
        root.mount("dev", "--bind", "/dev")
        APT_ARCHIVES.mkdir(parents=True, exist_ok=True)
        link_debs(APT_ARCHIVES, root.file("/var/cache/apt/archives"))
        return root

    def configure_apt(self) -> None:
        shutil.copy("/etc/resolv.conf", self.file("/etc/resolv.conf"))
        if SOURCES.exists():
            shutil.copy(SOURCES, self.file(str(SOURCES)))
            self.file("/etc/apt/sources.list").write_text("")
        policy = self.file("/usr/sbin/policy-rc.d")
        policy.write_text("#!/bin/sh\n# no service starts by itself in this test root\nexit 101\n")
        policy.chmod(0o755)

    def mount(self, target: str, *args: str) -> None:
        path = self.path / target
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *args, str(path)], check=True)
        self._mounts.append(path)

    def file(self, path: str) -> Path:
        return self.path / path.lstrip("/")

    def run(self, *cmd: str, check: bool = True, timeout: float = 600,
            input_data: str | None = None) -> subprocess.CompletedProcess[str]:
        env = ["env", "-i", f"PATH={PATH}", "HOME=/root", "LANG=C.UTF-8",
               "DEBIAN_FRONTEND=noninteractive"]
        out = subprocess.run(["chroot", str(self.path), *env, *cmd], capture_output=True,
                             timeout=timeout, check=False,
                             input=input_data, text=True)
        if check and out.returncode != 0:
            raise AssertionError(f"{shlex.join(cmd)} exited {out.returncode}:\n"
                                 f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        return out

    def apt(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return self.run("apt-get", "-q", "-y", "-o", "Dpkg::Use-Pty=0", *args, timeout=1500)
        finally:
            link_debs(self.file("/var/cache/apt/archives"), APT_ARCHIVES)

    def uid(self, user: str) -> int:
        return int(self.run("id", "-u", user).stdout)

    def gid(self, group: str) -> int:
        return int(self.run("getent", "group", group).stdout.split(":")[2])

    def release_mounts(self) -> None:
        """Unmount /proc and /dev (before a container manager mounts its own)."""
        for path in reversed(self._mounts):
            subprocess.run(["umount", "-l", str(path)], check=False)
        self._mounts.clear()

    def remove(self) -> None:
        self.release_mounts()
        # --one-file-system: never follow a mount that could not be undone into the host.
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.path.parent)], check=False)


@dataclass
class Unit:
    """The parts of a systemd service that decide how its commands run."""

    user: str
    group: str
    umask: str
    exec_start_pre: list[str]
    exec_start: str
    exec_reload: str
    environment: dict[str, str]
    directories: dict[str, str] = field(default_factory=dict)  # path -> mode
    read_write: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, text: str) -> Unit:
        parser = configparser.RawConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        multi: dict[str, list[str]] = {}
        for line in text.splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                multi.setdefault(key.strip(), []).append(value.strip())
        parser.read_string(text)
        s = parser["Service"]
        env = dict(item.split("=", 1) for v in multi.get("Environment", []) for item in v.split())
        dirs = {f"{prefix}/{s[key]}": s.get(f"{key}Mode", "0755")
                for key, prefix in (("RuntimeDirectory", "/run"), ("StateDirectory", "/var/lib"),
                                    ("LogsDirectory", "/var/log")) if key in s}
        return cls(user=s["User"], group=s["Group"], umask=s.get("UMask", "0022"),
                   exec_start_pre=multi.get("ExecStartPre", []), exec_start=s["ExecStart"],
                   exec_reload=s["ExecReload"], environment=env, directories=dirs,
                   read_write=" ".join(multi.get("ReadWritePaths", [])).split())

    def prepare_directories(self, root: DebianRoot) -> None:
        """What systemd does for RuntimeDirectory= and friends before starting the service."""
        for path, mode in self.directories.items():
            root.run("install", "-d", "-o", self.user, "-g", self.group, "-m", mode, path)

    def command(self, root: DebianRoot, line: str) -> list[str]:
        """The host command that runs one Exec line ('+' prefix: as root, unsandboxed)."""
        if line.startswith("+"):
            return ["chroot", str(root.path), *shlex.split(line[1:])]
        writable = [*self.directories, *(p.lstrip("-") for p in self.read_write)]
        writable = [p for p in writable if root.file(p).is_dir()]
        env = {"PATH": PATH, "HOME": f"/var/lib/{self.user}", "USER": self.user,
               "LOGNAME": self.user, "SHELL": "/usr/sbin/nologin", **self.environment}
        script = "\n".join([
            "set -e", f'/usr/bin/python3 -c "{LO_UP}"', 'R="$1"; shift',
            'mount --rbind "$R" "$R"',
            *(f'mount --bind "$R{p}" "$R{p}"' for p in writable),
            'mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"',
            'mount -t tmpfs -o mode=1777 tmpfs "$R/var/tmp"',
            'mount -o remount,bind,ro "$R"', f"umask {self.umask}", 'exec chroot "$R" "$@"'])
        setpriv = ["setpriv", f"--reuid={self.user}", f"--regid={self.group}", "--init-groups",
                   "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all"]
        return ["unshare", "--mount", "--net", "--propagation", propagation(), "sh", "-c", script,
                "sandbox", str(root.path), "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                *setpriv, "--", *shlex.split(line)]


@functools.cache
def propagation() -> str:
    """``private`` where / is a mount point; inside a plain chroot (no mount at /, as in
    shared/tools/fresh-debian-ci) making / private fails, so mounts stay ``unchanged``: the
    sandbox's binds then also appear on the host's mount of the chroot, under the throwaway root."""
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                           capture_output=True, check=False)
    return "private" if probe.returncode == 0 else "unchanged"


class Daemon:
    """``mailwarden run`` started from the installed unit's ExecStart, as systemd would."""

    def __init__(self, root: DebianRoot):
        self.root = root
        self.unit = Unit.read(root.file(UNIT_PATH).read_text())
        self.log_path = root.path.parent / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pre_output = ""

    def start(self, socket: Path, timeout: float = 60) -> Daemon:
        self.unit.prepare_directories(self.root)
        for line in self.unit.exec_start_pre:
            out = subprocess.run(self.unit.command(self.root, line), capture_output=True,
                                 text=True, timeout=300, check=False)
            assert out.returncode == 0, f"ExecStartPre={line}: {out.stdout}{out.stderr}"
            self.pre_output += out.stdout + out.stderr
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.unit.command(self.root, self.unit.exec_start),
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not socket.exists():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log()
            time.sleep(0.1)
        return self

    def reload(self) -> None:
        assert self.proc is not None
        line = self.unit.exec_reload.replace("$MAINPID", str(self.proc.pid))
        subprocess.run(self.unit.command(self.root, line), check=True, timeout=30)

    def metrics(self, port: int) -> str:
        assert self.proc is not None
        code = f"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{port}/metrics')" \
               ".read().decode())"
        return subprocess.run(["nsenter", f"--net=/proc/{self.proc.pid}/ns/net", "/usr/bin/python3",
                               "-c", code], capture_output=True, text=True, check=True).stdout

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class NetNamespace:
    """A network namespace of its own (loopback only), kept alive by a bind-mounted file."""

    def __init__(self, path: Path):
        self.path = path
        path.touch()
        subprocess.run(["unshare", f"--net={path}", "/usr/bin/python3", "-c", LO_UP], check=True)

    def command(self, *cmd: str) -> list[str]:
        return ["nsenter", f"--net={self.path}", *cmd]

    def remove(self) -> None:
        subprocess.run(["umount", str(self.path)], check=False)
        self.path.unlink(missing_ok=True)
