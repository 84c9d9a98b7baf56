"""What a request handler of the review interface reads from its application.

:func:`mailwarden.web.app.create_app` stores the configuration, the backend, the accounts, the
sessions and the limiter in the app's extensions; the pages (:mod:`mailwarden.web.views` and its
siblings) read them through these accessors, so that they never import the app module itself.
"""

from __future__ import annotations

from typing import Any

from flask import current_app

from mailwarden.config import WebConfig
from mailwarden.quarantine.sink import QuarantineSettings


def ext(name: str) -> Any:
    return current_app.extensions[f"mw_{name}"]


def web_config() -> WebConfig:
    return ext("web")  # type: ignore[no-any-return]


def quarantine_settings() -> QuarantineSettings:
    return ext("settings")  # type: ignore[no-any-return]
