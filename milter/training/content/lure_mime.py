"""MIME dress for the synthetic phishing lures of :mod:`mailwarden.training.content.lures`.

It sits inside offline training, between the lure text generator and the detector's message path:
:func:`lure_message` wraps a generated lure into an RFC 5322 message whose structure is drawn, with
the caller's seeded generator, from fixed shares: a brand display name on an unrelated sender
domain, plain text or HTML, an action link whose visible text names another domain or whose
target is an IP address, a punycode host or a URL shortener, and sometimes an attached HTML page
with a password form. The shares are a stated prior, not measurements of real phishing; every host
is made up (documentation addresses, ``.example``-like names, well-known shortener names).
"""

from __future__ import annotations

import html
import random
from email.message import EmailMessage

BRAND_SITES = ("www.paypal.com", "login.microsoftonline.com", "www.amazon.com",
               "secure.chase.com", "appleid.apple.com", "www.netflix.com", "www.dhl.com")
SHORT_HOSTS = ("bit.ly", "tinyurl.com", "cutt.ly", "rb.gy", "is.gd")
IP_HOSTS = ("192.0.2.17", "198.51.100.23", "203.0.113.80")
PUNY_HOSTS = ("xn--pypal-4ve.com", "xn--micrsoft-p2a.com", "xn--amazn-mye.net")
REPLY_DOMAINS = ("mail-helpdesk.example", "account-team.example", "customer-care.example")
ANCHORS = ("Verify now", "Sign in", "Review activity", "View document", "Confirm your account",
           "Update payment", "Click here", "Log in")
# Shares of each structural trait among lures.
P_HTML = 0.65
P_BRAND_NAME = 0.5
P_SHOWN_URL = 0.25
P_ATTACHMENT = 0.12
P_REPLY_TO = 0.25
P_HIDDEN = 0.2
FILLER = ("Thank you for your order, the meeting notes are attached for your review.",
          "Please find the agenda for next week and let me know if the time works.")
HOST_SHARES = (("domain", 0.6), ("short", 0.15), ("ip", 0.15), ("puny", 0.10))


def lure_message(rng: random.Random, slots: dict[str, str], subject: str, body: list[str],
                 action: str, signature: str) -> bytes:
    """One lure as message bytes (structure drawn from ``rng``)."""
    msg = EmailMessage()
    domain = slots["domain"]
    display = f"{slots['brand']} Security" if rng.random() < P_BRAND_NAME else "Account Services"
    msg["From"] = f'"{display}" <no-reply@{domain}>'
    msg["To"] = f"{slots['first'].lower()}@example.com"
    msg["Subject"] = subject
    if rng.random() < P_REPLY_TO:
        msg["Reply-To"] = f"support-desk@{rng.choice(REPLY_DOMAINS)}"
    label, _, url = action.rpartition(" ")
    url = _target(rng, url, domain)
    plain = "\n\n".join([*body, f"{label} {url}", signature])
    msg.set_content(plain)
    if rng.random() < P_HTML:
        shown = f"https://{rng.choice(BRAND_SITES)}/signin" if rng.random() < P_SHOWN_URL \
            else rng.choice(ANCHORS)
        paragraphs = "".join(f"<p>{html.escape(line)}</p>" for line in body)
        if rng.random() < P_HIDDEN:
            paragraphs += f'<div style="font-size:0px;color:#ffffff">{rng.choice(FILLER)}</div>'
        msg.add_alternative(
            f"<html><body>{paragraphs}<p><a href=\"{html.escape(url)}\">{html.escape(shown)}"
            f"</a></p><p>{html.escape(signature)}</p></body></html>", subtype="html")
    if rng.random() < P_ATTACHMENT:
        msg.add_attachment(_login_page(slots).encode("utf-8"), maintype="text", subtype="html",
                           filename=rng.choice(("Secure_Message.html", "Invoice.htm",
                                                "Document.shtml")))
    for part in msg.walk():  # the email package draws boundaries from the clock otherwise
        if part.is_multipart():
            part.set_boundary(f"=_lure_{rng.getrandbits(64):016x}")
    return bytes(msg)


def _target(rng: random.Random, url: str, domain: str) -> str:
    pick, roll = "domain", rng.random()
    for name, share in HOST_SHARES:
        if roll < share:
            pick = name
            break
        roll -= share
    if pick == "short":
        return f"https://{rng.choice(SHORT_HOSTS)}/{rng.randint(10000, 99999):x}"
    host = {"ip": rng.choice(IP_HOSTS), "puny": rng.choice(PUNY_HOSTS)}.get(pick, domain)
    return url.replace(domain, host, 1)


def _login_page(slots: dict[str, str]) -> str:
    return (f"<html><body><h3>{html.escape(slots['brand'])} sign-in</h3>"
            f"<form method=\"post\" action=\"https://{slots['domain']}/auth\">"
            "<input type=\"email\" name=\"user\"><input type=\"password\" name=\"pass\">"
            "<button>Sign in</button></form></body></html>")
