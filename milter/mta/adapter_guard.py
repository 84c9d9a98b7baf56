"""What keeps each milter callback safe, beside the adapter (:mod:`mailwarden.mta.adapter`).

:func:`guarded` wraps a callback so that nothing it raises reaches libmilter; :func:`_uncaught`
(installed as ``sys.excepthook`` by :func:`install_excepthook`) catches what pymilter's C layer
itself fails on before a callback runs (a header name that is not UTF-8) and hands it to the
connection bound to this Python thread state (:func:`bind_thread`: pymilter gives each milter
connection its own); :func:`client_address` normalises the client address once, at connect, for
every network match (an IPv4-mapped ``::ffff:a.b.c.d`` becomes ``a.b.c.d``).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("mailwarden.milter")
# The connection whose callback runs on this Python thread state: pymilter gives each milter
# connection its own, so this is how an error raised in pymilter's C layer (before any of our
# code runs) finds its connection (:func:`_uncaught`).
_current = threading.local()


def bind_thread(milter: object) -> None:
    """Called when a connection's object is built (in its own thread state, at negotiation)."""
    _current.milter = milter


def install_excepthook() -> None:
    sys.excepthook = _uncaught


def guarded(callback: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Catch everything a callback raises: log with the queue ID, count, fail by policy."""

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def inner(self: Any, *args: Any) -> Any:
            try:
                return func(self, *args)
            except Exception:  # noqa: BLE001 - nothing may reach libmilter as an exception
                return self.on_callback_error(callback)

        return inner

    return wrap


def client_address(raw: str) -> str:
    """The client address as every network match must see it: an IPv4-mapped IPv6 address
    (``::ffff:a.b.c.d``, how a dual-stack MTA reports an IPv4 client) as its IPv4 address."""
    text = raw.strip("[]").removeprefix("IPv6:")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return raw
    mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
    return str(mapped or addr)


def _uncaught(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    """``sys.excepthook``, which pymilter's C layer calls (``PyErr_Print``) for an exception
    raised before a callback runs (a header name that is not UTF-8): to its connection."""
    milter = getattr(_current, "milter", None)
    report = getattr(milter, "on_uncaught", None)
    if isinstance(exc, Exception) and report is not None:
        try:
            report(exc)
            return
        except Exception:  # then the default report, below
            log.exception("reporting an unreadable header field failed")
    sys.__excepthook__(kind, exc, tb)


def to_bytes(value: object) -> bytes:
    return str(value).encode("utf-8", "surrogateescape")


def strip_brackets(address: str) -> str:
    return address.strip().removeprefix("<").removesuffix(">")
