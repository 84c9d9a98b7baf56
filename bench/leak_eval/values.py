"""Seeded generators of sensitive values and of look-alikes for the leak evaluation set.

Every generator takes a ``random.Random`` and returns a :class:`Snippet`: the text to inject and,
for sensitive values, the finding type the detector must report (``None`` for look-alikes, which
must not fire). Values are computed here independently of the detector's validators (Luhn check
digit, IBAN check digits, key structures), so the evaluation does not grade the detector against
its own code.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@dataclass(frozen=True)
class Snippet:
    text: str
    kind: str | None  # finding type expected, None for a look-alike
    family: str  # generator name, for the report
    count: int = 1  # values of ``kind`` in ``text``


def luhn_complete(payload: str) -> str:
    total = 0
    for i, char in enumerate(reversed(payload)):
        d = int(char) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return payload + str((10 - total % 10) % 10)


def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def chars(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


# ---------------------------------------------------------------- payment cards

# (brand, prefixes, length, grouping when printed)
BRANDS = [
    ("visa", ["4"], 16, (4, 4, 4, 4)), ("visa", ["4"], 13, (4, 4, 4, 1)),
    ("mastercard", ["51", "52", "53", "54", "55"], 16, (4, 4, 4, 4)),
    ("mastercard", ["2221", "2300", "2500", "2720"], 16, (4, 4, 4, 4)),
    ("amex", ["34", "37"], 15, (4, 6, 5)), ("discover", ["6011", "65", "644"], 16, (4, 4, 4, 4)),
    ("jcb", ["3528", "3589", "3550"], 16, (4, 4, 4, 4)),
    ("diners", ["300", "305", "36"], 14, (4, 6, 4)),
    ("unionpay", ["62"], 16, (4, 4, 4, 4)), ("unionpay", ["62"], 19, (4, 4, 4, 4, 3)),
    ("maestro", ["6759", "5018"], 16, (4, 4, 4, 4)),
]
CARD_CONTEXT = [
    "Card number: {v} exp {mm}/{yy} CVV {cvv}", "Please charge my Visa {v}, expiry {mm}/{yy}",
    "credit card {v}", "Kreditkarte: {v}", "PAN {v} (debit)", "cc# {v} cvc {cvv}",
]
NO_CONTEXT = ["ref {v}", "{v}", "as discussed: {v}", "see {v} below"]


def card_number(rng: random.Random) -> tuple[str, tuple[int, ...]]:
    _, prefixes, length, groups = rng.choice(BRANDS)
    prefix = rng.choice(prefixes)
    while True:
        number = luhn_complete(prefix + digits(rng, length - len(prefix) - 1))
        if len(set(number[1:])) >= 3:
            return number, groups


def printed(number: str, groups: tuple[int, ...], sep: str) -> str:
    out, at = [], 0
    for size in groups:
        out.append(number[at : at + size])
        at += size
    return sep.join(out)


def card_table(rng: random.Random) -> Snippet:
    """A small dump: a header naming the column, then bare numbers (no keyword per row)."""
    rows = ["Name;Card number;Expiry"]
    for n in range(rng.randint(3, 6)):
        number, groups = card_number(rng)
        shown = number if len(number) in (15, 16) else printed(number, groups, " ")
        rows.append(f"Customer {n + 1};{shown};{rng.randint(1, 12):02d}/{rng.randint(25, 31)}")
    return Snippet("\n".join(rows), "credit_card", "credit_card", len(rows) - 1)


def credit_card(rng: random.Random) -> Snippet:
    if rng.random() < 0.15:
        return card_table(rng)
    number, groups = card_number(rng)
    style = rng.choice(["plain", "space", "dash"])
    sep = " " if style == "space" else "-"
    value = number if style == "plain" else printed(number, groups, sep)
    bare_ok = style != "plain" or len(number) in (15, 16)  # bare odd lengths need context (scope)
    template = rng.choice(CARD_CONTEXT if not bare_ok or rng.random() < 0.6 else NO_CONTEXT)
    text = template.format(v=value, mm=f"{rng.randint(1, 12):02d}", yy=rng.randint(25, 31),
                           cvv=digits(rng, 3))
    return Snippet(text, "credit_card", "credit_card")


# ---------------------------------------------------------------- SSN


def ssn_digits(rng: random.Random) -> str:
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            value = f"{area:03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
            if value not in ("078051120", "123456789", "219099999"):
                return value


def us_ssn(rng: random.Random) -> Snippet:
    d = ssn_digits(rng)
    dashed = f"{d[:3]}-{d[3:5]}-{d[5:]}"
    choice = rng.random()
    if choice < 0.5:
        text = rng.choice(["SSN: {v}", "Social Security Number {v}", "ssn {v}, DOB 1984-02-11"])
        text = text.format(v=dashed)
    elif choice < 0.7:
        text = rng.choice(["employee id {v}", "{v}", "ref: {v}"]).format(v=dashed)
    else:
        spaced = rng.choice([d, f"{d[:3]} {d[3:5]} {d[5:]}"])
        text = rng.choice(["SSN {v}", "social security no. {v}", "SSN#: {v}"]).format(v=spaced)
    return Snippet(text, "us_ssn", "us_ssn")


# ---------------------------------------------------------------- IBAN

BBAN = {  # country: BBAN layout (n digits, a upper letters, c alphanumerics)
    "DE": "18n", "GB": "4a14n", "FR": "10n11c2n", "ES": "20n", "IT": "1a10n12c", "NL": "4a10n",
    "BE": "12n", "CH": "5n12c", "AT": "16n", "PL": "24n", "SE": "20n", "NO": "11n",
    "DK": "14n", "FI": "14n", "IE": "4a14n", "PT": "21n", "LU": "3n13c", "CZ": "20n",
    "MT": "4a5n18c", "SA": "2n18c", "TR": "5n1n16c", "GR": "7n16c", "HU": "24n", "RO": "4a16c",
}


def bban(rng: random.Random, layout: str) -> str:
    out, number = [], ""
    for ch in layout:
        if ch.isdigit():
            number += ch
            continue
        alphabet = {"n": string.digits, "a": string.ascii_uppercase, "c": UPPER_ALNUM}[ch]
        out.append(chars(rng, alphabet, int(number)))
        number = ""
    return "".join(out)


UPPER_ALNUM = string.ascii_uppercase + string.digits


def iban_value(rng: random.Random) -> str:
    country = rng.choice(sorted(BBAN))
    body = bban(rng, BBAN[country])
    numeric = "".join(str(int(c, 36)) for c in body + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{body}"


def group4(value: str) -> str:
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4))


def iban(rng: random.Random) -> Snippet:
    value = iban_value(rng)
    shown = group4(value) if rng.random() < 0.6 else value
    template = rng.choice(["IBAN: {v}", "Please wire the amount to {v} (BIC COBADEFFXXX)",
                           "Bankverbindung {v}", "{v}", "account {v}"])
    return Snippet(template.format(v=shown), "iban", "iban")
