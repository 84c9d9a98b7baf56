"""Private keys, AWS access keys, API tokens and passwords for the data-leak detector.

Each scanner first checks for its fixed markers with plain substring tests (``PRIVATE KEY``,
``AKIA``, ``ghp_``...), so most texts cost nothing, then makes one regular-expression pass (see
:mod:`.leak_scan`) and validates every candidate: a private-key block must have an armoured body
that decodes to the structure its label announces, an AWS key ID is rated high only with a
plausible 40-character secret nearby, vendor tokens need a random-looking body, a JWT needs a JSON
header, and a password needs a value that looks like a secret rather than prose or a placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from mailwarden.detectors.leak.credentials import password_confidence
from mailwarden.detectors.leak.scan import HIGH, LOW, MEDIUM, Match, Text, keywords
from mailwarden.detectors.leak.validators import (
    char_classes,
    jwt_algorithm,
    private_key_body_ok,
    random_looking,
    shannon_entropy,
)

__all__ = ["api_tokens", "aws_keys", "password_confidence", "passwords", "private_keys"]

_PKEY = re.compile(r"-{4,5} ?BEGIN ((?:[A-Z0-9]+ )*?PRIVATE KEY(?: BLOCK)?) ?-{4,5}")
_PUTTY = re.compile(r"PuTTY-User-Key-File-\d: ?([\w-]+)[\s\S]{0,2000}?Private-Lines: ?\d+")
_B64_LINE = re.compile(r"[A-Za-z0-9+/=]{8,}")
_HEADER_LINE = re.compile(r"[A-Za-z-]+: ")


def private_keys(doc: Text) -> Iterator[Match]:
    text = doc.text
    if "PRIVATE KEY" in text:
        for m in _PKEY.finditer(text):
            label = m.group(1)
            end_line = re.compile(r"-{4,5} ?END " + re.escape(label))
            end = end_line.search(text, m.end(), m.end() + 40000)
            body, encrypted = armoured_body(text[m.end() : end.start() if end else m.end() + 8000])
            if len(body) < 64:
                continue
            structured = encrypted or private_key_body_ok(label, body)
            confidence = HIGH if end and structured else MEDIUM
            yield Match("private_key", body[:512], label, confidence, label)
    if "PuTTY-User-Key-File" in text:
        for m in _PUTTY.finditer(text):
            yield Match("private_key", m.group(), "PuTTY private key", HIGH, "PuTTY")


def armoured_body(block: str) -> tuple[str, bool]:
    """The base64 body of an armoured block (headers, quoting, PGP checksum dropped)."""
    lines = [line.strip().lstrip(">").strip() for line in re.split(r"\r?\n|\\n", block)]
    encrypted = any(line.startswith("Proc-Type: 4,ENCRYPTED") for line in lines)
    body: list[str] = []
    for line in lines:
        if _HEADER_LINE.match(line) or (line.startswith("=") and len(line) == 5):
            continue
        if _B64_LINE.fullmatch(line):
            body.append(line)
        elif body and line:
            break
    return "".join(body), encrypted


_AWS_ID = re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])")
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")


def aws_keys(doc: Text) -> Iterator[Match]:
    text = doc.text
    if "AKIA" not in text and "ASIA" not in text:
        return
    window = doc.settings.proximity
    for m in _AWS_ID.finditer(text):
        key_id = m.group()
        if "EXAMPLE" in key_id or shannon_entropy(key_id[4:]) < 2.5:
            continue
        nearby = _AWS_SECRET.finditer(text, max(0, m.start() - window), m.end() + window)
        secret = any(_aws_secret_plausible(s.group()) for s in nearby)
        confidence = HIGH if secret else MEDIUM
        detail = "with secret" if secret else "key ID only"
        yield Match("aws_access_key", key_id, f"{key_id[:4]}****{key_id[-4:]}", confidence, detail)


def _aws_secret_plausible(value: str) -> bool:
    return (
        "EXAMPLE" not in value and char_classes(value) >= 3 and shannon_entropy(value) >= 4.0
    )


_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_-])(?:"
    r"(?P<github>gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})"
    r"|(?P<gitlab>glpat-[A-Za-z0-9_-]{20,50})"
    r"|(?P<slack>xox[abposr]-\d+-[A-Za-z0-9-]{10,120})"
    r"|(?P<slack_webhook>hooks\.slack\.com/services/T[A-Z0-9]{8,12}/B[A-Z0-9]{8,12}/[A-Za-z0-9]{24})"
    r"|(?P<stripe>(?:sk|rk)_live_[A-Za-z0-9]{24,99})"
    r"|(?P<google>AIza[A-Za-z0-9_-]{35})"
    r"|(?P<npm>npm_[A-Za-z0-9]{36})"
    r"|(?P<pypi>pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,})"
    r"|(?P<sendgrid>SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})"
    r"|(?P<openai>sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{16,}T3BlbkFJ[A-Za-z0-9_-]{16,})"
    r"|(?P<jwt>eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,})"
    r")(?![A-Za-z0-9_-])"
)
_TOKEN_MARKERS = (
    "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xox", "hooks.slack.com",
    "_live_", "AIza", "npm_", "pypi-", "SG.", "T3BlbkFJ", "eyJ",
)
_PREFIX = re.compile(
    r"^(?:github_pat_|gh[pousr]_|glpat-|xox[abposr]-|[rs]k_live_|AIza|npm_|pypi-|SG\.|"
    r"sk-(?:proj-|svcacct-|admin-)?|hooks\.slack\.com/services/)"
)
TOKEN_WORDS = keywords("bearer", "authorization", "token", "jwt", "session", "cookie", "api ?key")


def api_tokens(doc: Text) -> Iterator[Match]:
    text = doc.text
    if not any(marker in text for marker in _TOKEN_MARKERS):
        return
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "token"
        token = m.group()
        if kind == "jwt":
            alg = jwt_algorithm(token)
            if alg is None:
                continue
            if m.start() > 0 and text[m.start() - 1] in "=/":  # a link token, made to be mailed
                confidence = LOW
            elif doc.near(TOKEN_WORDS, m.start(), m.end()):
                confidence = HIGH
            else:
                confidence = MEDIUM
            yield Match("api_token", token, f"JWT alg={alg}", confidence, "jwt")
            continue
        prefix_match = _PREFIX.match(token)
        prefix = prefix_match.group() if prefix_match else token[:4]
        if not random_looking(token[len(prefix) :], 3.0):
            continue
        shown = "hooks.slack.com/…/" if kind == "slack_webhook" else prefix
        yield Match("api_token", token, f"{shown}****{token[-4:]}", HIGH, kind)


# Found in the lower-cased text first (cheap), then the separator and value are matched after it.
_PASSWORD_WORD = re.compile(
    r"p(?:ass(?:word|wd|wort|phrase|code)?|wd|w)|kennwort|wachtwoord|senha|contrase(?:ñ|n|Ñ)a"
    r"|mot de passe|mdp|has(?:ł|Ł)o|пароль|Пароль|ПАРОЛЬ"
    r"|secret(?:[_-]?key)?"
)
# A short word that is a password only with a user, a key or a structure around it: "pass" is
# also a boarding pass, a test result or a first pass.
_WEAK_WORDS = frozenset({"pass"})
# After the keyword: "password: v", "password = v", "pass -> v", "password is v" (and its French,
# Spanish, Portuguese, German forms), JSON/YAML keys ("password": "v"), an XML element
# (<password>v</password>), the next table cell ("password<TAB>v", "| password | v |"); after a
# colon the value may be on the next line.
_PASSWORD_VALUE = re.compile(
    r"(?:[\"']{0,2}[ \t]*(?P<sep>:=|=>|->|→|[:=：|])|\t"
    r"|[ \t]+(?:(?:is|was)(?: now)?|ist|lautet|est|es|é|era)(?=[\s:])[ \t]*:?|(?P<tag>>))"
    r"[ \t]*(?P<next>\r?\n[ \t]*)?(?P<value>[^\s<]{1,100})"
)
_SECRET_OWNER = re.compile(r"(?:client|app|api|shared|access)[_ -]?$|[a-z0-9]_$")
# Every keyword of _PASSWORD_WORD contains one of these: a text without any of them (most mail)
# skips the expression, which would otherwise be tried at every p, k, w, s, c and m.
# (The non-ASCII ones cost nothing on an ASCII text: str.__contains__ answers from the kinds.)
_PASSWORD_HINTS = (
    "pass", "pw", "kennwort", "wachtwoord", "senha", "contrase", "secret", "mdp", "hasło", "hasŁo",
    "пароль", "Пароль", "ПАРОЛЬ",
)
_KEY_PREFIX = re.compile(r"[a-z0-9]+[_-]$")
_TAG_OPEN = re.compile(r"<[a-z0-9_.:-]{0,20}$")
_USER_LABEL = (
    r"(?<![a-z])(?:user(?:[ _-]?(?:name|id))?|login|logon|usr|uid|account|acct|e-?mail"
    r"|benutzer(?:name)?|nutzer(?:name)?|utilisateur|identifiant|usu(?:a|á|Á)rio"
    r"|gebruiker(?:snaam)?|wi-?fi|wlan|ssid)"
)
_USER_FIELD = re.compile(_USER_LABEL + r"(?:[ \t]*(?:->|=>|:=|[:=|])|\t)")
# Between a user field and its 'pass': the user, a joiner, maybe a line break and a bullet.
_PAIR_GAP = re.compile(
    r"[ \t]*[^\s]{1,64}[ \t]*(?:[,;|/-]|and|und|et|y|e)?[ \t]*(?:\n[ \t>*•|-]*)?"
)
# "login/pass: u / v", "user:pass = u:v": the value is the second of the two that follow.
_PAIR_LABEL = re.compile(_USER_LABEL + r"[ \t]*[/:+&|][ \t]*$")
_PAIR_VALUE = re.compile(r"[^\s/:|,]{1,64}(?:[ \t]*[/:|,][ \t]*|[ \t]+)([^\s<]{1,100})")
# Meeting invitations share their passcode with every invitee by design.
_MEETING = re.compile(
    r"meeting[ -]?(?:id|number)|conference id|webinar id|zoom\.us/|zoomgov\.com/|webex\.com/"
    r"|teams\.microsoft\.com/|meet\.google\.com/|gotomeeting|besprechungs-id|konferenz-id"
    r"|id (?:de la |da |de )?r(?:é|e)union|id (?:de la |da |de )?reuni(?:ã|a|ó)o?n?"
)
# A connection string or query string goes on after the value: "password=v;encrypt=true".
_NEXT_PARAMETER = re.compile(r"[;&,](?=[A-Za-z_][\w ]{0,29}=)")
# The user may hold an unencoded "@" (smtp://alice@corp.example:pw@host): the last "@" before
# the host ends the password, as URL parsers read it. A user may be empty (redis://:pw@host).
_URL_CREDENTIALS = re.compile(
    r"(?<![A-Za-z0-9])(?P<scheme>[A-Za-z][A-Za-z0-9+.-]{1,15})://[^\s:/?#]{0,64}:"
    r"(?P<value>[^\s/?]{1,128})@(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])"
)
# The part of _URL_CREDENTIALS after the scheme. It starts with a literal, which the regular
# expression engine finds with a fast substring search; _URL_CREDENTIALS itself would be tried at
# every letter of a text. No hit here, no URL credentials there.
_URL_AUTH_HINT = re.compile(r"://[^\s:/?#]{0,64}:[^\s/?]{1,128}@[A-Za-z0-9.\[-]")
_STRIP = ".,;:)]}>\"'`"


def passwords(doc: Text) -> Iterator[Match]:
    text, lower = doc.text, doc.lower
    hinted = any(hint in lower for hint in _PASSWORD_HINTS)
    for hit in _PASSWORD_WORD.finditer(lower) if hinted else ():
        start, word = hit.start(), hit.group()
        if start and lower[start - 1].isalnum():
            continue
        value = _PASSWORD_VALUE.match(text, hit.end())
        if value is None or (value.group("tag") and not _element(lower, start, value.end())):
            continue
        if value.group("next") and value.group("sep") not in (":", "："):
            continue  # "password=" ends its line: an empty value, not the next line's text
        if not _keyword_applies(doc, word, start, value):
            continue
        secret = _secret(lower, start, value)
        confidence = password_confidence(secret, doc.settings.placeholders)
        if confidence is not None:
            prefix = _KEY_PREFIX.search(lower, max(0, start - 12), start)
            keyword = (prefix.group() if prefix else "") + word
            yield Match("password", secret, f"{keyword}: ****", confidence, keyword)
    if "://" in text and _URL_AUTH_HINT.search(text):
        for m in _URL_CREDENTIALS.finditer(text):
            secret = m.group("value")
            confidence = password_confidence(secret, doc.settings.placeholders)
            if confidence is not None:
                scheme = m.group("scheme").lower()[:15]
                yield Match("password", secret, f"{scheme}://****:****@…", confidence, "url")


def _keyword_applies(doc: Text, word: str, start: int, value: re.Match[str]) -> bool:
    """The keyword names a credential here: not a meeting passcode, a 'secret' with an owner,
    a weak word ('pass') with a user, a key or a structure around it."""
    lower = doc.lower
    before = _lines_before(lower, start)
    if _after_last(_MEETING, before) or lower.endswith("meeting ", 0, start):
        return False
    if start and lower[start - 1] in "?&" and _MEETING.search(_token_before(lower, start)):
        return False
    if word.startswith("secret"):
        return _SECRET_OWNER.search(lower, max(0, start - 8), start) is not None
    if word not in _WEAK_WORDS:
        return True
    return (
        (start > 0 and lower[start - 1] in "\"'<")
        or _KEY_PREFIX.search(lower, max(0, start - 12), start) is not None
        or value.group("value")[:1] in "\"'"
        or _PAIR_LABEL.search(lower, max(0, start - 24), start) is not None
        or _follows_user(before)
    )


def _element(lower: str, start: int, end: int) -> bool:
    """``>`` opened an element named by the keyword and the value closes it: <db_password>v</"""
    return _TAG_OPEN.search(lower, max(0, start - 24), start) is not None and lower.startswith(
        "</", end)


def _lines_before(lower: str, start: int) -> str:
    """The keyword's line up to it, after the last two non-blank lines above (200 chars at most)."""
    head = lower.rfind("\n", 0, start) + 1
    above = [line for line in lower[max(0, head - 200) : head].splitlines() if line.strip()]
    return "\n".join([*above[-2:], lower[head:start]])


def _after_last(pattern: re.Pattern[str], before: str) -> bool:
    """``pattern`` occurs in ``before`` with no password keyword after its last occurrence."""
    ends = [m.end() for m in pattern.finditer(before)]
    return bool(ends) and _PASSWORD_WORD.search(before, ends[-1]) is None


def _follows_user(before: str) -> bool:
    """The keyword comes right after a user field: 'user: u pass', 'login: u\n- pass'."""
    ends = [m.end() for m in _USER_FIELD.finditer(before)]
    return bool(ends) and _PAIR_GAP.fullmatch(before, ends[-1]) is not None


def _token_before(lower: str, start: int) -> str:
    return (lower[max(0, start - 300) : start].rsplit(None, 1) or [""])[-1]


def _secret(lower: str, start: int, value: re.Match[str]) -> str:
    """The value, without the parameters that follow it; the second one of a login/pass pair."""
    raw = value.group("value")
    if _PAIR_LABEL.search(lower, max(0, start - 24), start):
        pair = _PAIR_VALUE.match(value.string, value.start("value"))
        raw = pair.group(1) if pair else raw
    return _clean(_NEXT_PARAMETER.split(raw, maxsplit=1)[0])


def _clean(value: str) -> str:
    return value.strip(_STRIP).lstrip("\"'`(")
