"""Structural and textual phishing cues of a message, for the ``content`` detector's score layer.

It sits beside :mod:`mailwarden.detectors.content.detector`: from the parsed message (no network, no
DNS) :func:`message_cues` names the cues that fire, out of one fixed vocabulary (:data:`CUES`):
links whose visible text names another domain than their target, credential forms and login-page
lures, IP-address, punycode and URL-shortener hosts, a From display name naming a brand or domain
the address does not belong to, attachments that are HTML pages (or SVG with script), and urgency
and credential wording in the detector's text, a Reply-To on another domain than From, and text
hidden from the reader (zero-size or invisible HTML, zero-width characters). The result is memoised
on the message and is only a set of cue names, so it can be put in a finding's evidence without any
content or URL.
"""

from __future__ import annotations

import email.message
import email.utils
import html
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from mailwarden.detectors.text.decoding import decode_text
from mailwarden.message import Message, decode_header_text

CUES: tuple[str, ...] = (
    "link_mismatch", "credential_form", "login_lure", "ip_host", "punycode_host", "shortener",
    "display_name_mismatch", "reply_to_mismatch", "html_attachment", "hidden_text", "urgency",
    "credential_text",
)
MEMO = "content.cues"
MAX_PARTS = 100
MAX_HTML_CHARS = 100_000
MAX_CUE_TEXT = 20_000  # wording cues: lures put them near the top
MAX_LINKS = 200
# A small, shipped list of public URL shorteners (no look-up, no network).
SHORTENERS = frozenset((
    "bit.ly", "bitly.com", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "buff.ly",
    "rebrand.ly", "cutt.ly", "shorturl.at", "rb.gy", "tiny.cc", "bit.do", "t.ly", "s.id",
    "v.gd", "shorte.st", "adf.ly", "bl.ink", "lnkd.in", "tiny.one", "short.io", "qrco.de",
    "t.me", "l.ead.me", "urlz.fr", "u.to", "clck.ru", "gg.gg", "x.co", "soo.gd", "surl.li",
))
# Brands commonly impersonated in phishing (display-name check only).
BRANDS = (
    "microsoft", "office 365", "office365", "outlook", "onedrive", "sharepoint", "paypal",
    "apple", "icloud", "amazon", "netflix", "dhl", "fedex", "usps", "chase", "wells fargo",
    "docusign", "dropbox", "linkedin", "facebook", "instagram", "whatsapp", "google", "gmail",
    "yahoo", "adobe", "coinbase", "binance", "metamask", "wetransfer", "american express",
    "bank of america", "citibank", "hsbc", "santander", "itau", "itaú", "bradesco", "caixa",
    "nubank", "correios", "sparkasse", "postbank", "ing", "irs", "hmrc", "webmail",
)
_BRAND = re.compile(r"\b(" + "|".join(re.escape(b) for b in BRANDS) + r")\b", re.IGNORECASE)
_FILE_EXT = frozenset(("pdf", "doc", "docx", "xls", "xlsx", "zip", "jpg", "jpeg", "png", "gif",
                       "htm", "html", "txt", "exe", "csv", "rar", "ppt", "pptx", "svg"))
# Top-level domains a display name must end in to count as naming a domain ("R.Hughes" does not).
_TLDS = frozenset(("com", "net", "org", "info", "biz", "io", "co", "me", "app", "online", "site",
                   "xyz", "top", "shop", "store", "live", "cloud", "email", "us", "uk", "de", "fr",
                   "es", "it", "nl", "br", "pt", "ru", "cn", "jp", "in", "au", "ca", "mx", "ar"))
_DOMAIN = re.compile(r"(?<![\w@.-])(?:https?://)?((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
                     r"([a-z]{2,12}))(?![\w-])", re.IGNORECASE)
_LABEL_URL = re.compile(r"(?:https?://)?((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,12}))"
                        r"(?::\d+)?(?:[/?#]\S*)?", re.IGNORECASE)
_ANCHOR = re.compile(r"<a\b([^>]{0,2000})>(.{0,2000}?)</a\s*>", re.IGNORECASE | re.DOTALL)
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
_PASSWORD = re.compile(r"""<input\b[^>]{0,2000}?\btype\s*=\s*["']?password""", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
# Text a reader does not see: zero-size or invisible styles holding text, zero-width characters.
_HIDDEN = re.compile(r"""style\s*=\s*["'][^"']{0,300}?(?:font-size\s*:\s*0(?:px|pt|em)?\s*[;"']|"""
                     r"""display\s*:\s*none|visibility\s*:\s*hidden|opacity\s*:\s*0(?:\.0+)?\s*[;"'])"""
                     r"""[^>]{0,300}>[^<]{8,}""", re.IGNORECASE)
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]\\w|\\w[\u200b\u200c\u200d\u2060]")
_URL_HOST = re.compile(r"https?://([^/?#\s<>\"')\]]{1,255})")
_IPV4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_LURE_ANCHOR = re.compile(
    r"\b(?:verify|confirm|sign[ -]?in|log[ -]?in|login|unlock|reactivate|validate|restore|"
    r"update (?:your )?(?:account|details|payment|information|billing)|secure (?:your )?account|"
    r"review (?:your )?(?:account|activity)|access (?:your )?(?:account|document|mailbox)|"
    r"view (?:the )?(?:document|invoice|message)|claim (?:now|your)|keep (?:the )?same password|"
    r"acess(?:ar|e)|verifi(?:car|que)|confirm(?:ar|e)|atualiz(?:ar|e)|entrar|anmelden|"
    r"best[äa]tigen|verifizieren|aktualisieren|connexion|v[ée]rifier|iniciar sesi[óo]n)\b",
    re.IGNORECASE)
_URGENCY = re.compile(
    r"\b(?:urgent|immediately|within \d+ ?(?:hours?|hrs|days?)|\d+ ?hours|final (?:notice|warning|"
    r"reminder)|expir(?:e|es|ed|ing|ation)|suspend|suspension|deactivat|locked|last chance|"
    r"act now|avoid (?:suspension|closure|interruption|deactivation)|permanently (?:deleted|"
    r"closed|disabled|blocked)|unusual (?:sign|activity|login)|urgente|imediatamente|bloquead|"
    r"suspens[ãa]o|suspen(?:so|dida)|expira|dringend|sofort|gesperrt|imm[ée]diatement|suspendu)",
    0)
_CREDENTIAL = re.compile(
    r"\b(?:password|passcode|username|login credentials|verify your (?:account|identity|email)|"
    r"confirm your (?:account|identity|password|details|information)|account (?:verification|"
    r"information)|security (?:code|question)|one[- ]time (?:code|password)|senha|kennwort|"
    r"passwort|contrase[ñn]a|mot de passe|identifiant|credenciais|dados cadastrais|"
    r"zugangsdaten)", 0)


def message_cues(message: Message, text: str) -> frozenset[str]:
    """The cues (names from :data:`CUES`) of ``message`` whose detector text is ``text``."""
    return message.memo(MEMO, lambda: structure_cues(message) | text_cues(text))


def text_cues(text: str) -> frozenset[str]:
    """Wording, zero-width characters and bare URL hosts in the first :data:`MAX_CUE_TEXT`
    characters of the detector's text (subject, body, attachment text)."""
    head = text[:MAX_CUE_TEXT].lower()
    out = set()
    if "://" in head:
        hosts = (m.group(1).rpartition("@")[2].partition(":")[0].strip(".")
                 for m in _URL_HOST.finditer(head))
        out = host_set_cues(hosts)
    if _ZERO_WIDTH.search(head):
        out.add("hidden_text")
    if _URGENCY.search(head):
        out.add("urgency")
    if _CREDENTIAL.search(head):
        out.add("credential_text")
    return frozenset(out)


def structure_cues(message: Message) -> frozenset[str]:
    """Cues of the MIME structure, the links and the From header; never raises."""
    out: set[str] = set()
    try:
        out |= sender_cues(message.header("From") or "")
        out |= reply_cues(message.header("From") or "", message.header("Reply-To") or "")
    except Exception:  # noqa: BLE001, S110 - hostile headers must never fail a scan
        pass
    try:
        parts = [p for _, p in zip(range(MAX_PARTS), message.parsed.walk(), strict=False)]
    except Exception:  # noqa: BLE001 - hostile MIME must never fail a scan
        return frozenset(out)
    for part in parts:
        try:
            if not part.is_multipart():
                out |= part_cues(part)
        except Exception:  # noqa: BLE001, S112 - one hostile part must not hide its siblings
            continue
    return frozenset(out)


def part_cues(part: email.message.Message) -> set[str]:
    ctype = part.get_content_type()
    name = _filename(part)
    attached = bool(name) or part.get_content_disposition() == "attachment"
    is_html = ctype in ("text/html", "application/xhtml+xml") or name.endswith(
        (".htm", ".html", ".shtml", ".xhtml", ".hta"))
    is_svg = ctype == "image/svg+xml" or name.endswith(".svg")
    if not (is_html or is_svg):
        return set()
    data = part.get_payload(decode=True)
    markup = decode_text(data if isinstance(data, bytes) else b"",
                         part.get_content_charset())[:MAX_HTML_CHARS]
    out: set[str] = set()
    if attached and (is_html or (is_svg and re.search(r"<script|\bon\w+\s*=", markup, re.I))):
        out.add("html_attachment")
    return out | html_cues(markup)


def html_cues(markup: str) -> set[str]:
    """Link, form and host cues of one HTML document."""
    out: set[str] = set()
    if _HIDDEN.search(markup) or _ZERO_WIDTH.search(markup):
        out.add("hidden_text")
    if _PASSWORD.search(markup):
        out.add("credential_form")
    hrefs: list[str] = []
    for count, match in enumerate(_ANCHOR.finditer(markup)):
        if count >= MAX_LINKS:
            break
        href = _href(match.group(1))
        host = host_of(href)
        if not host:
            continue
        hrefs.append(href)
        label = html.unescape(_TAG.sub(" ", match.group(2))).strip()
        if _names_other_domain(label, host):
            out.add("link_mismatch")
        if len(label) <= 40 and "://" not in label and _LURE_ANCHOR.search(label):
            out.add("login_lure")
    return out | host_cues(hrefs)


def host_cues(urls: Iterable[str]) -> set[str]:
    return host_set_cues(host_of(url) for url in urls)


def host_set_cues(hosts: Iterable[str]) -> set[str]:
    """IP-address, punycode and shortener cues of lower-cased host names."""
    out: set[str] = set()
    for count, host in enumerate(hosts):
        if count >= MAX_LINKS:
            break
        if _IPV4.match(host) or host.startswith("[") or ":" in host:  # IPv6 literals
            out.add("ip_host")
        if any(label.startswith("xn--") for label in host.split(".")):
            out.add("punycode_host")
        if host.removeprefix("www.") in SHORTENERS:
            out.add("shortener")
    return out


def sender_cues(from_header: str) -> set[str]:
    """``display_name_mismatch``: the display name names a brand or a domain of another owner."""
    display, address = email.utils.parseaddr(decode_header_text(from_header))
    domain = address.rpartition("@")[2].lower().strip(".")
    if not display or not domain:
        return set()
    own = registrable(domain)
    for match in _DOMAIN.finditer(display):
        if match.group(2).lower() in _TLDS and registrable(match.group(1)) != own:
            return {"display_name_mismatch"}
    squashed = re.sub(r"[^a-z0-9]", "", domain)
    for match in _BRAND.finditer(display):
        brand = re.sub(r"[^a-z0-9]", "", match.group(1).lower().replace("ú", "u"))
        if brand not in squashed:
            return {"display_name_mismatch"}
    return set()


def reply_cues(from_header: str, reply_to: str) -> set[str]:
    """``reply_to_mismatch``: replies go to another registrable domain than the sender's."""
    if not reply_to:
        return set()
    sender = email.utils.parseaddr(decode_header_text(from_header))[1].rpartition("@")[2]
    target = email.utils.parseaddr(decode_header_text(reply_to))[1].rpartition("@")[2]
    if sender and target and registrable(sender) != registrable(target):
        return {"reply_to_mismatch"}
    return set()


def host_of(url: str) -> str:
    """The lower-cased host of an http(s) URL, '' for anything else."""
    url = html.unescape(url).strip()
    if not url.lower().startswith(("http://", "https://")):
        return ""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.lower().strip(".")


def registrable(host: str) -> str:
    """An approximation of the registrable domain (last two labels, three under ccSLDs)."""
    labels = host.lower().strip(".").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in (
            "co", "com", "net", "org", "gov", "edu", "ac", "gob", "ne", "or"):
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _names_other_domain(label: str, host: str) -> bool:
    """The whole visible text is one URL or domain, and it is not the link's own domain."""
    label = label.strip().rstrip("/.")
    if len(label) > 300 or not label:
        return False
    match = _LABEL_URL.fullmatch(label)
    if not match or match.group(2).lower() in _FILE_EXT:
        return False
    return registrable(match.group(1)) != registrable(host)


def _href(attrs: str) -> str:
    match = _HREF.search(attrs)
    if not match:
        return ""
    return next(g for g in match.groups() if g is not None)


def _filename(part: email.message.Message) -> str:
    try:
        raw = part.get_filename()
    except Exception:  # noqa: BLE001 - malformed RFC 2231 parameters
        return ""
    return decode_header_text(raw).lower() if raw else ""
