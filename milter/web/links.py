"""Signed, expiring, single-use links for notification mail (``mailwarden web-link``).

A link names one held message (its reference) and one action and carries a random nonce, signed
with itsdangerous under the interface's secret key. Opening it (GET) never acts: it shows the
item and a confirmation form; the action is the POST of that form, by a logged-in reviewer with
the role for it, and the nonce is then recorded as used so the link works once. A link older than
``[web] link_max_age_seconds`` or with a bad signature is refused.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

LINK_ACTIONS = ("open", "release", "delete")
# The signing key, in the state directory (made on first use by the web process, `web-link` or
# the notifier).
KEY_FILE = "web-secret.key"
_SALT = "mailwarden.web.link"


class LinkError(Exception):
    """A link that cannot be used; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class Link:
    ref: str
    action: str
    nonce: str


def secret_key(path: Path) -> bytes:
    """The interface's signing key: 32 random bytes in ``path`` (0600), made on first use."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        with path.open("xb") as stream:
            path.chmod(0o600)
            stream.write(key)
        if os.geteuid() == 0:  # made by root (`web-link`): the web process must read it
            owner = path.parent.stat()
            os.chown(path, owner.st_uid, owner.st_gid)
    if len(key) < 32:
        raise LinkError(f"{path}: secret key too short ({len(key)} bytes)")
    return key


def make_token(key: bytes, ref: str, action: str) -> str:
    if action not in LINK_ACTIONS:
        raise LinkError(f"unknown link action {action!r} (one of {', '.join(LINK_ACTIONS)})")
    serializer = URLSafeTimedSerializer(key, salt=_SALT)
    return str(serializer.dumps({"r": ref.upper(), "a": action, "n": secrets.token_urlsafe(12)}))


def read_token(key: bytes, token: str, max_age: float) -> Link:
    serializer = URLSafeTimedSerializer(key, salt=_SALT)
    try:
        data = serializer.loads(token, max_age=int(max_age))
    except SignatureExpired:
        raise LinkError("this link has expired") from None
    except BadSignature:
        raise LinkError("this link is not valid") from None
    try:
        link = Link(str(data["r"]), str(data["a"]), str(data["n"]))
    except (KeyError, TypeError):
        raise LinkError("this link is not valid") from None
    if link.action not in LINK_ACTIONS:
        raise LinkError("this link is not valid")
    return link


def make_url(key: bytes, base_url: str, ref: str, action: str) -> str:
    if not base_url:
        raise LinkError("[web] base_url is not set: links need the interface's address")
    return f"{base_url.rstrip('/')}/link/{make_token(key, ref, action)}"
