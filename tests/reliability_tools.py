"""Shared helpers for the reliability and fuzz tests (issue 8): configs, corpus, hostile mail.

The reliability tests run the *default* detectors (``deploy/mailwarden.toml`` with the repo's
``models/`` and a temporary state directory) against hostile input, through pymilter's TestCtx,
through a real Postfix and in a soak run. This module gives them: the example config with chosen
keys rewritten (:func:`deploy_config_text`), corpus messages read in place from
``/work/shared/corpora/`` (never copied), builders for hostile messages (deep nesting, huge headers,
zip bombs, 8-bit and invalid charsets) and ``/proc`` probes (RSS, descriptors). How mail is
driven into the milter (pymilter's TestCtx, SMTP senders) is in ``reliability_drivers.py``.
"""

from __future__ import annotations

import base64
import io
import os
import re
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from mailwarden.config import Config, load_config
from mailwarden.message import Envelope, Message

REPO = Path(__file__).resolve().parent.parent
CORPORA = REPO.parent / "shared" / "corpora"
PHISHING = CORPORA / "phishing_pot" / "phishing_2019-2024.tar.gz"
SPAM = CORPORA / "spamassassin" / "spam.tar.gz"
EASY_HAM = CORPORA / "spamassassin" / "easy_ham.tar.gz"
# Real messages on which email.policy.default raises (Phishing Pot PROVENANCE.md).
BREAKERS = (176, 187, 271, 284, 290)
MiB = 1024 * 1024
# A valid (Luhn, issuer range) card number with its context: the leak detector finds it.
CARD = b"Customer card number 4539 5787 6362 1486 expiry 12/27 CVV 123, please charge it.\r\n"


# --- configuration -------------------------------------------------------------------------

def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def deploy_config_text(overrides: dict[tuple[str, str], object], extra: str = "") -> str:
    """``deploy/mailwarden.toml`` with ``(section, key)`` values rewritten in place.

    Every override must hit a ``key = value`` line of that section (a renamed key fails loudly)."""
    section, done, out = "", set(), []
    for line in (REPO / "deploy" / "mailwarden.toml").read_text().splitlines():
        header = re.fullmatch(r"\[([\w.]+)\]\s*", line)
        if header:
            section = header.group(1)
        match = re.fullmatch(r"(\w+)\s*=.*", line)
        key = (section, match.group(1) if match else "")
        if key in overrides:
            out.append(f"{key[1]} = {toml_value(overrides[key])}")
            done.add(key)
        else:
            out.append(line)
    missing = set(overrides) - done
    assert not missing, f"keys not in deploy/mailwarden.toml: {sorted(missing)}"
    return "\n".join(out) + "\n" + extra


def default_overrides(state_dir: Path, **milter: object) -> dict[tuple[str, str], object]:
    """The example config with the repo's models, a private state dir, no metrics port and
    one process (the soak and load tests watch that process's memory, descriptors and threads)."""
    values: dict[tuple[str, str], object] = {
        ("milter", "processes"): 1,
        ("paths", "model_dir"): str(REPO / "models"),
        ("paths", "state_dir"): str(state_dir),
        ("metrics", "enabled"): False,
    }
    values.update({("milter", key): value for key, value in milter.items()})
    return values


def default_config(state_dir: Path, **milter: object) -> Config:
    """The shipped defaults (every default detector) as a loaded :class:`Config`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    text = deploy_config_text(default_overrides(state_dir, **milter))
    config = load_config(state_dir / "mailwarden.toml", text=text)
    return replace(config, model_dir=REPO / "models", state_dir=state_dir)


# --- corpus ------------------------------------------------------------------------------------

def corpus_members(archive: Path, every: int = 1, limit: int | None = None,
                   wanted: set[str] | None = None) -> list[tuple[str, bytes]]:
    """(member name, bytes) of regular files of a corpus archive, read in place."""
    assert archive.exists(), f"shared corpus missing: {archive} (see /work/shared/corpora)"
    out: list[tuple[str, bytes]] = []
    with tarfile.open(archive) as tar:
        for number, member in enumerate(m for m in tar if m.isfile()):
            if wanted is not None and member.name not in wanted:
                continue
            if wanted is None and number % every:
                continue
            handle = tar.extractfile(member)
            if handle is not None:
                out.append((member.name, handle.read()))
            if limit is not None and len(out) >= limit:
                break
    return out


def breaker_messages() -> list[tuple[str, bytes]]:
    names = {f"phishing/sample-{n}.eml" for n in BREAKERS}
    found = corpus_members(PHISHING, wanted=names)
    assert {n for n, _ in found} == names, "the corpus breakers moved"
    return found


# --- hostile messages --------------------------------------------------------------------------

HEAD = (b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\n"
        b"Date: Mon, 02 Sep 2024 10:00:00 +0000\r\nMessage-ID: <rel@example.org>\r\n"
        b"MIME-Version: 1.0\r\n")


def nested_multipart(levels: int, core: bytes, subject: str = "nested") -> bytes:
    """``levels`` multiparts, each in the previous one, around a text/plain ``core``."""
    out = [HEAD, f"Subject: {subject}\r\n".encode()]
    for level in range(levels):
        out.append(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n'
                   % (level, level))
    out.append(b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + core + b"\r\n")
    out.extend(b"--b%d--\r\n" % level for level in reversed(range(levels)))
    return b"".join(out)


def multipart(parts: Sequence[bytes], subject: str = "parts", boundary: str = "==rel==") -> bytes:
    """A multipart/mixed message of ready-made MIME entities (headers + blank line + body)."""
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    return (HEAD + f"Subject: {subject}\r\nContent-Type: multipart/mixed; "
                   f'boundary="{boundary}"\r\n\r\n'.encode() + body
            + b"--" + boundary.encode() + b"--\r\n")


def base64_part(data: bytes, filename: str, ctype: str = "application/octet-stream") -> bytes:
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: base64\r\n"
            f'Content-Disposition: attachment; filename="{filename}"\r\n\r\n').encode() + encoded


def text_part(text: bytes, charset: str = "utf-8", cte: str = "8bit") -> bytes:
    return (f"Content-Type: text/plain; charset={charset}\r\n"
            f"Content-Transfer-Encoding: {cte}\r\n\r\n").encode() + text


def zip_of(members: dict[str, bytes], level: int = 9) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def nested_zip(levels: int, leaf: bytes) -> bytes:
    """A zip in a zip ... ``levels`` deep around ``leaf.txt``."""
    data = zip_of({"leaf.txt": leaf})
    for level in range(levels - 1):
        data = zip_of({f"layer{level}.zip": data})
    return data


def zip_bomb(uncompressed: int) -> bytes:
    """One member of ``uncompressed`` zero bytes (ratio about 1000:1)."""
    return zip_of({"zeros.bin": bytes(uncompressed)})


def overlapping_zip_bomb(members: int, kernel: int = 2 * MiB) -> bytes:
    """Many central-directory entries pointing at the *same* compressed kernel (Fifield's
    non-recursive bomb, simplified): each member claims ``kernel`` bytes, the file stays small."""
    single = zip_of({"k.bin": bytes(kernel)})
    local_end = single.find(b"PK\x01\x02")
    central = single[local_end:single.find(b"PK\x05\x06")]
    entries = []
    for n in range(members):
        name = f"k{n:05}.bin".encode()
        entry = bytearray(central[:46]) + name
        entry[28:30] = len(name).to_bytes(2, "little")
        entries.append(bytes(entry))
    directory = b"".join(entries)
    end = (b"PK\x05\x06" + bytes(4) + members.to_bytes(2, "little") * 2
           + len(directory).to_bytes(4, "little") + local_end.to_bytes(4, "little") + bytes(2))
    return single[:local_end] + directory + end


def snapshot(data: bytes, queue_id: str = "Q1", sender: str = "alice@example.org",
             max_bytes: int = 10 * MiB) -> Message:
    kept = data[:max_bytes]
    return Message(Envelope(queue_id, sender, ("bob@example.net",), auth_user=sender),
                   kept, len(data), truncated=len(data) > max_bytes)


# --- process probes ----------------------------------------------------------------------------

def rss_kib(pid: int | str = "self") -> int:
    return status_kib("VmRSS", pid)


def status_kib(field: str, pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@contextmanager
def peak_rss_growth() -> Iterator[list[int]]:
    """KiB by which this process's peak RSS rose above its RSS at entry (``box[0]``, set on
    exit): the kernel's high-water mark is reset first (``/proc/self/clear_refs`` 5), so C
    allocations (zlib, numpy) count as well as Python's."""
    Path("/proc/self/clear_refs").write_text("5")
    before = status_kib("VmRSS")
    box = [0]
    yield box
    box[0] = status_kib("VmHWM") - before


def open_fds(pid: int | str = "self") -> list[str]:
    """What each open descriptor of ``pid`` points at (sockets, files, '(deleted)' temp files)."""
    out = []
    base = Path(f"/proc/{pid}/fd")
    for entry in base.iterdir():
        try:
            out.append(os.readlink(entry))
        except OSError:
            continue  # closed between listing and reading
    return out


def slope(values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` against their index."""
    n = len(values)
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    num = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    den = sum((i - mean_x) ** 2 for i in range(n))
    return num / den if den else 0.0
