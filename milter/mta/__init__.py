"""The MTA front end: the only package that imports pymilter.

The adapter turns milter callbacks into a :class:`mailwarden.message.Message` snapshot, hands it to
the engine and applies the :class:`mailwarden.verdict.Decision`; the daemon, the pre-fork
supervisor and the socket helpers keep it serving. Nothing else in mailwarden imports this package
except ``mailwarden run``.
"""
