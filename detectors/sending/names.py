"""The sending detector's vocabulary, defined once: its score name and its feature names.

The detector, the policy, the metrics (whose anomaly ``reason`` label takes only these values),
the audit log and the report all import these names from here; nothing else spells them out.
"""

from __future__ import annotations

# The detector's score (``scores[SCORE]``, 0..1) and the type of its finding.
SCORE = "sending_anomaly"
FINDING_TYPE = SCORE
# A held sender's message: its finding type, and the score set to 1 on it.
HOLD_TYPE = "sender_hold"
HELD_SCORE = "sending_held"

FEATURES: tuple[str, ...] = (
    "msgs_1m", "msgs_10m", "msgs_1h_vs_usual", "msgs_1d_vs_usual", "recipients",
    "recipients_vs_usual",
    "distinct_recipients_1h", "new_recipient_share", "new_domain_share", "new_domains_10m",
    "external_share", "webmail_share", "hour_rarity", "weekday_rarity", "size_vs_usual",
    "attachment_vs_usual", "new_thread_vs_usual",
)
