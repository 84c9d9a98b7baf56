"""Strict, typed reading of one TOML table.

Every configuration section (the milter's own and each detector's ``[detectors.NAME]``) is read
through an :class:`Options` object: each getter checks the type and range of one key, and
:meth:`Options.finish` refuses keys nobody asked for. Errors are :class:`ConfigError` values that
name the dotted key and, when known, the line of the file, so a bad config refuses to start with a
message an operator can act on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


class ConfigError(Exception):
    """A configuration problem, with the dotted key and the file line when known."""

    def __init__(self, key: str, reason: str, line: int | None = None, path: str | None = None):
        self.key = key
        self.reason = reason
        self.line = line
        self.path = path
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        elif self.line:
            where = f"line {self.line}: "
        return f"{where}{self.key}: {self.reason}"


class Options:
    """Typed accessors over one table; remembers which keys were read."""

    def __init__(self, table: Mapping[str, Any], prefix: str, lines: LineFinder | None = None,
                 defaults: dict[str, Any] | None = None):
        self._table = dict(table)
        self._prefix = prefix
        self._lines = lines
        self._seen: set[str] = set()
        # When given, every key read is recorded with its default (dotted key -> default): how a
        # test proves that the shipped example file shows every key with the code's default.
        self._defaults = defaults

    @property
    def prefix(self) -> str:
        return self._prefix

    def error(self, key: str, reason: str) -> ConfigError:
        dotted = f"{self._prefix}.{key}" if self._prefix else key
        line = self._lines.line_of(dotted) if self._lines else None
        path = self._lines.path if self._lines else None
        return ConfigError(dotted, reason, line, path)

    def keys(self) -> list[str]:
        return list(self._table)

    def child(self, table: Mapping[str, Any], prefix: str) -> Options:
        """Options over another table (e.g. an array-of-tables entry), same file and lines."""
        return Options(table, prefix, self._lines, self._defaults)

    def without(self, keys: tuple[str, ...]) -> Options:
        """The same table minus ``keys`` (read by someone else), e.g. a detector's own options."""
        rest = {k: v for k, v in self._table.items() if k not in keys}
        return Options(rest, self._prefix, self._lines, self._defaults)

    def has(self, key: str) -> bool:
        return key in self._table

    def raw(self, key: str, default: Any = None) -> Any:
        self._seen.add(key)
        if self._defaults is not None:
            self._defaults.setdefault(f"{self._prefix}.{key}" if self._prefix else key, default)
        return self._table.get(key, default)

    def section(self, key: str) -> Options:
        value = self.raw(key, {})
        if not isinstance(value, dict):
            raise self.error(key, "must be a table")
        dotted = f"{self._prefix}.{key}" if self._prefix else key
        return Options(value, dotted, self._lines, self._defaults)

    def get_bool(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def get_str(self, key: str, default: str, choices: tuple[str, ...] | None = None) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def get_opt_str(self, key: str) -> str | None:
        value = self.raw(key)
        if value is not None and not isinstance(value, str):
            raise self.error(key, f"must be a string, got {value!r}")
        return value

    def get_int(self, key: str, default: int, minimum: int | None = None) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        return value

    def get_float(
        self,
        key: str,
        default: float | None,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float | None:
        value = self.raw(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be at most {maximum}, got {value}")
        return float(value)

    def get_number(self, key: str, default: float, minimum: float | None = None) -> float:
        value = self.get_float(key, default, minimum)
        assert value is not None
        return value

    def get_str_list(self, key: str, default: list[str]) -> list[str]:
        value = self.raw(key, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"must be a list of strings, got {value!r}")
        return list(value)

    def finish(self) -> None:
        """Refuse keys that no getter asked for (typos must not be silently ignored)."""
        unknown = sorted(set(self._table) - self._seen)
        if unknown:
            raise self.error(unknown[0], "unknown key")


_TABLE_RE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_RE = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")


class LineFinder:
    """Maps a dotted key back to the line of the TOML text that set it (best effort)."""

    def __init__(self, text: str, path: str | None = None):
        self.path = path
        self._lines: dict[str, int] = {}
        table = ""
        for number, line in enumerate(text.splitlines(), start=1):
            header = _TABLE_RE.match(line)
            if header:
                table = header.group(1).replace('"', "").replace(" ", "")
                self._lines.setdefault(table, number)
                continue
            key = _KEY_RE.match(line)
            if key:
                name = key.group(1).strip().replace('"', "")
                dotted = f"{table}.{name}" if table else name
                self._lines.setdefault(dotted, number)

    def line_of(self, dotted: str) -> int | None:
        key = dotted
        while key:
            if key in self._lines:
                return self._lines[key]
            key = key.rpartition(".")[0]
        return None
