"""Validation rules behind the data-leak detector (:mod:`.leak`): pure functions, no state.

The leak scanner finds candidates with cheap regular expressions; every candidate then has to pass
the checks here before it becomes a finding: Luhn plus issuer ranges and lengths for payment
cards, area/group/serial rules for US social security numbers, the IBAN country length table plus
ISO 7064 mod 97-10, the decoded structure of private-key blocks, the JSON header of JWTs, and
entropy and character-class tests for tokens and passwords. The masking helpers that make evidence
safe to log (``****1234``) live here too.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter

# ---------------------------------------------------------------- payment cards

_L16_19 = (16, 17, 18, 19)
_L14_19 = (14, 15, *_L16_19)
_L13_19 = (13, *_L14_19)
# (brand, first digits as an inclusive numeric range of a fixed prefix length, valid lengths)
_CARD_RANGES: tuple[tuple[str, int, int, tuple[int, ...]], ...] = (
    ("amex", 34, 34, (15,)), ("amex", 37, 37, (15,)),
    ("visa", 4, 4, (13, 16, 19)),
    ("mastercard", 51, 55, (16,)), ("mastercard", 2221, 2720, (16,)),
    ("discover", 6011, 6011, _L16_19), ("discover", 644, 649, _L16_19),
    ("discover", 65, 65, _L16_19),
    ("jcb", 3528, 3589, _L16_19),
    ("diners", 300, 305, _L14_19), ("diners", 3095, 3095, _L14_19),
    ("diners", 36, 36, _L14_19), ("diners", 38, 39, _L14_19),
    ("unionpay", 62, 62, _L16_19),
    ("maestro", 5018, 5018, _L13_19), ("maestro", 5020, 5020, _L13_19),
    ("maestro", 5038, 5038, _L13_19), ("maestro", 5893, 5893, _L13_19),
    ("maestro", 6304, 6304, _L13_19), ("maestro", 6759, 6759, _L13_19),
    ("maestro", 6761, 6763, _L13_19),
    ("mir", 2200, 2204, _L16_19),
)

# Published test numbers (card networks, Stripe, PayPal, Adyen docs): valid Luhn, never real.
TEST_CARDS = frozenset({
    "4111111111111111", "4242424242424242", "4012888888881881", "4000056655665556",
    "4222222222222", "4012000033330026", "4005519200000004", "4444333322221111",
    "5555555555554444", "5105105105105100", "5200828282828210", "2223003122003222",
    "5454545454545454", "5431111111111111", "378282246310005", "371449635398431",
    "378734493671000", "6011111111111117", "6011000990139424", "6011601160116611",
    "3530111333300000", "3566002020360505", "30569309025904", "38520000023237",
    "36148900647913", "6200000000000005",
})


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def card_brand(digits: str) -> str | None:
    """The card network whose issuer range and length fit ``digits``, else None."""
    for brand, low, high, lengths in _CARD_RANGES:
        prefix = int(digits[: len(str(low))])
        if low <= prefix <= high and len(digits) in lengths:
            return brand
    return None


def valid_card(digits: str) -> str | None:
    """The brand of a Luhn-valid card number with a known issuer range and length, else None."""
    if not luhn_valid(digits) or len(set(digits[1:])) < 3:
        return None
    return card_brand(digits)


def card_grouping_ok(groups: list[int]) -> bool:
    """Separators must split a number the way cards are printed (4-4-4-4, 4-6-5, 4-6-4...)."""
    if len(groups) == 1:
        return True
    if groups[:-1] == [4] * (len(groups) - 1):
        return 1 <= groups[-1] <= 4
    return groups in ([4, 6, 5], [4, 6, 4])


# ---------------------------------------------------------------- US social security numbers

KNOWN_INVALID_SSNS = frozenset({"078051120", "219099999", "123456789", "987654320"})


def valid_ssn(digits: str) -> bool:
    """Area not 000/666/900-999, group not 00, serial not 0000, not a known published example."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return digits not in KNOWN_INVALID_SSNS and len(set(digits)) > 1


# ---------------------------------------------------------------- IBAN

IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}


def iban_mod97(iban: str) -> int:
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97


def valid_iban(iban: str) -> bool:
    """Known country, its exact length, alphanumeric BBAN, check digits 02-98, mod 97 == 1."""
    length = IBAN_LENGTHS.get(iban[:2])
    if length is None or len(iban) != length or not iban[2:4].isdigit():
        return False
    if not iban[4:].isalnum() or not iban.isascii() or not 2 <= int(iban[2:4]) <= 98:
        return False
    return iban_mod97(iban.upper()) == 1


# ---------------------------------------------------------------- keys and tokens

_B64_JUNK = re.compile(r"[^A-Za-z0-9+/=]")


def b64decode_loose(text: str) -> bytes | None:
    """Decode base64 (or base64url) ignoring whitespace, tolerating missing padding."""
    cleaned = _B64_JUNK.sub("", text.replace("-", "+").replace("_", "/")).rstrip("=")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        return None


def private_key_body_ok(label: str, body: str) -> bool:
    """The armoured body decodes to the structure its label announces (DER, OpenSSH, OpenPGP)."""
    raw = b64decode_loose(body)
    if not raw or len(raw) < 32:
        return False
    if "OPENSSH" in label:
        return raw.startswith(b"openssh-key-v1\x00")
    if "PGP" in label:
        tag = raw[0] & 0x3F if raw[0] & 0x40 else (raw[0] >> 2) & 0x0F
        return bool(raw[0] & 0x80) and tag in (5, 7)
    return raw[0] == 0x30  # DER SEQUENCE: PKCS#1, PKCS#8 (also encrypted), SEC1


def jwt_algorithm(token: str) -> str | None:
    """The ``alg`` of a JWT whose header and payload decode to JSON objects, else None."""
    pieces = token.split(".")
    if len(pieces) != 3 or not pieces[2]:
        return None
    decoded = [b64decode_loose(p) for p in pieces[:2]]
    try:
        header, payload = (json.loads(d.decode("utf-8")) if d else None for d in decoded)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return None
    alg = header.get("alg")
    return alg[:16] if isinstance(alg, str) and alg.lower() != "none" else None


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text`` (0 for empty or constant text)."""
    if not text:
        return 0.0
    size = len(text)
    return -sum(n / size * math.log2(n / size) for n in Counter(text).values())


def char_classes(text: str) -> int:
    """How many of lower case, upper case, digits and other characters occur."""
    return (
        any(c.islower() for c in text) + any(c.isupper() for c in text)
        + any(c.isdigit() for c in text) + any(not c.isalnum() for c in text)
    )


def random_looking(text: str, min_entropy: float) -> bool:
    """A machine-made secret: enough entropy, digits or mixed case, no run of 8 equal chars."""
    if shannon_entropy(text) < min_entropy or re.search(r"(.)\1{7,}", text):
        return False
    return any(c.isdigit() for c in text) or char_classes(text) >= 2
