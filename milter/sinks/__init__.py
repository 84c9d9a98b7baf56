"""After the decision: the sink registry (:mod:`.base`) and the audit log (:mod:`.audit`).

Sinks see every :class:`mailwarden.verdict.Decision` the engine makes; they never change it.
"""
