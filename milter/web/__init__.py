"""The review web interface: held mail triaged in a browser, evidence first, actions with reasons.

``mailwarden web`` (:mod:`mailwarden.web.commands`) serves a Flask application
(:mod:`mailwarden.web.app`) with waitress on loopback; it authenticates reviewers against
:mod:`mailwarden.web.accounts` and does everything that touches held mail through a
:class:`~mailwarden.web.backend.Backend`: in-process (:class:`~mailwarden.web.backend.Direct`,
the same :mod:`mailwarden.quarantine.review` code as the CLI) or through the privileged helper
``mailwarden web-helper`` (:mod:`mailwarden.web.helper`) on a unix socket. docs/review.md
describes the contract, roles and security.
"""
