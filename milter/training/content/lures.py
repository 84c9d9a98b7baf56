"""A seeded generator of synthetic English phishing lures for the ``phishing`` model.

The only redistributable training corpus (SpamAssassin, 2002) holds a few dozen phishing-like spams
and no modern credential phishing, and the Phishing Pot corpus may only be used for evaluation.
:func:`lure_docs` therefore composes lures from templates of common, publicly documented phishing
themes (account verification and lock-out, unusual sign-in, mailbox quota, parcel delivery fees,
invoices and shared documents, payroll, tax refunds, prizes, crypto wallets), with brands, amounts,
deadlines and link placeholders as random slots. As in :mod:`mailwarden.training.content.synth`,
every fifth template sentence is reserved for ``phrasing="unseen"``. Each lure is a whole MIME
message read through the detector's own message path
(:func:`mailwarden.training.content.corpus.message_doc`): plain text, or HTML whose action link may
show another domain than its target, point to an IP, punycode or shortener host, with a brand
display name on an unrelated sender domain, and now and then an attached HTML page holding a
password form (:mod:`mailwarden.training.content.lure_mime`). Limits: English only, template
vocabulary, made-up domains, structure drawn from fixed shares (a prior, not measured phishing).
"""

from __future__ import annotations

import random

from mailwarden.detectors.content.detector import text_function
from mailwarden.training.content.corpus import Doc, message_doc
from mailwarden.training.content.lure_mime import lure_message
from mailwarden.training.content.synth import PEOPLE

BRANDS = ("Microsoft", "Office 365", "Outlook", "PayPal", "Netflix", "Amazon", "DHL", "FedEx",
          "Apple", "Chase", "Wells Fargo", "DocuSign", "Coinbase", "Binance", "WeTransfer",
          "Dropbox", "LinkedIn", "Bank of America", "USPS", "IRS")
DOMAINS = ("secure-login-verify.com", "account-update.net", "support-center.info",
           "mail-quota.online", "parcel-track.xyz", "docs-share.top", "wallet-sync.io",
           "billing-review.co", "auth-check.site", "refund-portal.org")

LURES: dict[str, tuple[str, ...]] = {
    "verify": (
        "We were unable to verify your {brand} account information.",
        "Please confirm your identity within {h} hours to avoid suspension of your account.",
        "Your account has been temporarily limited until you update your billing details.",
        "Failure to verify will result in permanent closure of your account.",
        "For your security, we locked your account after several failed login attempts.",
    ),
    "signin": (
        "We detected an unusual sign-in activity on your {brand} account.",
        "Location: {place}. If this was not you, secure your account now.",
        "Someone tried to access your account from a new device.",
        "Reset your password immediately using the secure link below.",
        "Review the recent activity and confirm that it was you.",
    ),
    "mailbox": (
        "Your mailbox storage is {p}% full and incoming messages will be rejected.",
        "{n} messages are pending delivery because your mailbox quota was exceeded.",
        "Upgrade your mailbox for free by signing in to the web portal.",
        "Your email password expires today; keep the same password by clicking below.",
        "Validate your mailbox now to continue receiving emails.",
    ),
    "delivery": (
        "Your package could not be delivered because of an unpaid customs fee of ${c}.",
        "{brand}: your parcel is waiting at our depot, confirm the delivery address.",
        "Pay the shipping fee today or the package will be returned to the sender.",
        "Track your shipment and schedule a new delivery date here.",
        "We attempted to deliver your item but nobody was available to sign.",
    ),
    "document": (
        "{person} shared a document with you via {brand}: Invoice_{n}.pdf",
        "You have received a secure document; sign in with your email to view it.",
        "Please review and sign the attached payment agreement before {day}.",
        "The invoice #{n} of ${c} is overdue; open the attachment to see the details.",
        "Your payment of ${c} was declined, update your card to avoid service interruption.",
    ),
    "payroll": (
        "HR has updated the salary adjustment for all staff; log in to view yours.",
        "Confirm your direct deposit information before the next payroll run.",
        "You are eligible for a tax refund of ${c}; submit the form to claim it.",
        "Your benefits enrollment will expire unless you verify your employee account.",
        "The IRS needs you to update your information to release your refund.",
    ),
    "prize": (
        "Congratulations! You have been selected to receive a ${c} gift card!",
        "Claim your reward now, this offer expires in {h} hours!",
        "You are our lucky winner of the {brand} customer survey!",
        "Only pay ${c} for shipping to receive your free prize.",
        "Answer {n} quick questions and get your exclusive bonus!",
    ),
    "crypto": (
        "Your {brand} wallet will be disabled unless you synchronize it today.",
        "Withdraw your pending {n} USDT balance by confirming your recovery phrase.",
        "A transfer of {n} BTC is awaiting your approval.",
        "Connect your wallet to claim the airdrop before it ends.",
        "Security upgrade required: re-enter your wallet seed to keep access.",
    ),
}
ACTIONS = ("Click here to verify: https://{domain}/{n}", "Sign in now: https://{domain}/login",
           "Verify now >> http://{domain}/secure?id={n}", "Update here: https://{domain}/update",
           "Open document: https://{domain}/view/{n}")
SUBJECTS = ("Action required: verify your account", "Security alert", "Your account is on hold",
            "{brand}: unusual sign-in activity", "Mailbox full", "Delivery failed",
            "Invoice #{n}", "You have a new document", "Congratulations!", "Final notice")
SIGNATURES = ("{brand} Security Team", "The {brand} Team", "{brand} Customer Service",
              "IT Helpdesk", "Account Services")
PLACES = ("Lagos, Nigeria", "Moscow, Russia", "Sao Paulo, Brazil", "Jakarta, Indonesia")


def lure_docs(seed: int, count: int, phrasing: str = "train") -> list[Doc]:
    """``count`` generated phishing lures ("train", "unseen" or "all" template sentences)."""
    name = f"synthetic:lure:{seed}:{phrasing}"
    text = text_function()
    raws = lure_messages(seed, count, phrasing)
    return [message_doc(raw, f"{name}:{i}", text) for i, raw in enumerate(raws)]


def lure_messages(seed: int, count: int, phrasing: str = "train") -> list[bytes]:
    """The messages behind :func:`lure_docs` (the same seed gives the same bytes)."""
    rng = random.Random(f"{seed}:lure:{phrasing}")
    pool = {t: _phrasing(s, phrasing) for t, s in LURES.items()}
    return [_lure(rng, pool) for _ in range(count)]


def _phrasing(sentences: tuple[str, ...], phrasing: str) -> tuple[str, ...]:
    if phrasing == "all":
        return sentences
    unseen = phrasing == "unseen"
    return tuple(s for i, s in enumerate(sentences) if (i % 5 == 4) == unseen)


def _lure(rng: random.Random, pool: dict[str, tuple[str, ...]]) -> bytes:
    slots = _slots(rng)
    lines = [rng.choice(("Dear customer,", "Dear {first},", "Hello {first},", "Dear user,"))]
    for topic in rng.sample(sorted(pool), k=rng.randint(1, 2)):
        count = min(len(pool[topic]), rng.randint(1, 3))
        lines.extend(rng.sample(pool[topic], k=count))
    action = rng.choice(ACTIONS).format(**slots)
    signature = rng.choice(SIGNATURES).format(**slots)
    subject = rng.choice(SUBJECTS).format(**slots)
    body = [line.format(**slots) for line in lines]
    return lure_message(rng, slots, subject, body, action, signature)


def _slots(rng: random.Random) -> dict[str, str]:
    person = rng.choice(PEOPLE)
    return {
        "brand": rng.choice(BRANDS), "domain": rng.choice(DOMAINS), "person": person,
        "first": person.split(maxsplit=1)[0], "place": rng.choice(PLACES),
        "day": rng.choice(("Monday", "Friday", "tomorrow", "the end of the day")),
        "h": str(rng.choice((12, 24, 48, 72))), "p": str(rng.randint(90, 99)),
        "n": str(rng.randint(10, 99999)), "c": f"{rng.randint(1, 999)}.{rng.randint(10, 99)}",
    }
