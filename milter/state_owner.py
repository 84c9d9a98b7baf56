"""State files made by ``mailwarden check`` belong to the daemon's user, not to root.

``check`` builds the same engine as the daemon, and a detector that keeps state (the sending
detector's ``sending.sqlite``) creates its files while loading. Run as root before the daemon's
first start, as the guides do, those files used to stay root's: the daemon (user mailwarden)
then failed with "attempt to write a readonly database" and ran without that detector. This
module remembers what the state directory held before ``check`` and gives every file ``check``
added the owner and group of the state directory itself (``/var/lib/mailwarden`` is
``mailwarden:mailwarden``), so the daemon finds state it can write. Nothing is done unless the
process runs as root and the directory belongs to someone else.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("mailwarden.check")


def snapshot(state_dir: Path) -> set[Path]:
    """The paths under ``state_dir`` now (empty when it does not exist)."""
    try:
        return set(state_dir.rglob("*"))
    except OSError:
        return set()


def adopt_new(state_dir: Path, before: set[Path]) -> list[Path]:
    """Give paths created since :func:`snapshot` the state directory's owner (as root)."""
    if os.geteuid() != 0:
        return []
    try:
        owner = state_dir.stat()
    except OSError:
        return []
    if owner.st_uid == 0:
        return []
    changed = []
    for path in sorted(snapshot(state_dir) - before):
        try:
            st = path.lstat()
            if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid):
                os.lchown(path, owner.st_uid, owner.st_gid)
                changed.append(path)
        except FileNotFoundError:  # a -wal/-shm file removed at close
            continue
    for path in changed:
        log.info("state file %s created by check: given to uid %d gid %d (the owner of %s)",
                 path, owner.st_uid, owner.st_gid, state_dir)
    return changed
