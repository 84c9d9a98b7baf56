"""Seeded look-alikes for the leak evaluation set: text that resembles a sensitive value but is not.

Each generator returns a :class:`~bench.leak_eval.values.Snippet` with ``kind=None``: any finding
it causes is a false positive. Several carry the supporting keyword on purpose (an invalid card
number next to "card", an invalid SSN next to "SSN") so the keyword alone cannot make a finding.
"""

from __future__ import annotations

import base64
import hashlib
import random
import string
import uuid

from bench.leak_eval.values import (
    ALNUM,
    Snippet,
    card_number,
    chars,
    digits,
    group4,
    iban_value,
    luhn_complete,
    printed,
    ssn_digits,
)

TEST_CARDS = ["4242 4242 4242 4242", "5555 5555 5555 4444", "4012 8888 8888 1881",
              "3782 822463 10005", "6011 1111 1111 1117", "5105 1051 0510 5100"]


def _look(family: str, text: str) -> Snippet:
    return Snippet(text, None, family)


def luhn_invalid(rng: random.Random) -> Snippet:
    number, groups = card_number(rng)
    wrong = number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10)
    return _look("card_luhn_invalid", f"Card number: {printed(wrong, groups, ' ')} exp 09/27")


def bad_issuer(rng: random.Random) -> Snippet:
    number = luhn_complete(rng.choice("1789") + digits(rng, 14))
    return _look("card_bad_issuer", f"card {group4(number)}")


def test_card(rng: random.Random) -> Snippet:
    return _look("card_test_number", f"test card {rng.choice(TEST_CARDS)} exp 12/30")


def iban_bad_checksum(rng: random.Random) -> Snippet:
    value = iban_value(rng)
    check = (int(value[2:4]) + rng.randint(1, 90)) % 97
    bad = value[:2] + f"{max(check, 2):02d}" + value[4:]
    bad = bad if bad != value else value[:2] + f"{(int(value[2:4]) % 90) + 3:02d}" + value[4:]
    return _look("iban_bad_checksum", f"IBAN: {group4(bad)}")


def iban_bad_length(rng: random.Random) -> Snippet:
    value = iban_value(rng)
    return _look("iban_bad_length", f"IBAN {value[:-2]}")


def ssn_invalid(rng: random.Random) -> Snippet:
    d = ssn_digits(rng)
    bad = rng.choice([
        "000" + d[3:], "666" + d[3:], str(rng.randint(900, 999)) + d[3:], d[:3] + "00" + d[5:],
        d[:5] + "0000", "078051120", "123456789", "219099999",
    ])
    return _look("ssn_invalid", f"SSN: {bad[:3]}-{bad[3:5]}-{bad[5:]}")


def hashes(rng: random.Random) -> Snippet:
    data = chars(rng, ALNUM, 20).encode()
    algo = rng.choice(["md5", "sha1", "sha256"])
    return _look("hex_hash", f"{algo} {hashlib.new(algo, data).hexdigest()} commit "
                 f"{hashlib.sha1(data[::-1]).hexdigest()[:12]}")


def uuids(rng: random.Random) -> Snippet:
    value = uuid.UUID(int=rng.getrandbits(128), version=4)
    return _look("uuid", f"request id {value}, object {str(value).upper()}")


def public_material(rng: random.Random) -> Snippet:
    label = rng.choice(["PUBLIC KEY", "CERTIFICATE", "PGP PUBLIC KEY BLOCK", "PGP SIGNATURE",
                        "CERTIFICATE REQUEST", "RSA PUBLIC KEY"])
    body = base64.b64encode(bytes([0x30, 0x82, 0x03, 0x10])
                            + bytes(rng.randrange(256) for _ in range(400))).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    if rng.random() < 0.3:
        return _look("public_key", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ"
                     + chars(rng, ALNUM + "+/", 300) + " deploy@build")
    return _look("public_key", f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----")


def key_placeholder(rng: random.Random) -> Snippet:
    return _look("key_placeholder", "-----BEGIN RSA PRIVATE KEY-----\n...paste your key here...\n"
                 "-----END RSA PRIVATE KEY-----")


def tracking(rng: random.Random) -> Snippet:
    ups = "1Z" + chars(rng, string.ascii_uppercase + string.digits, 16)
    usps = " ".join(["9400", *(digits(rng, 4) for _ in range(4)), digits(rng, 2)])
    return _look("tracking_number", f"UPS {ups}, USPS {usps}, FedEx {digits(rng, 12)}")


def phones(rng: random.Random) -> Snippet:
    us = f"+1 ({digits(rng, 3)}) {digits(rng, 3)}-{digits(rng, 4)}"
    uk = f"+44 20 {digits(rng, 4)} {digits(rng, 4)}"
    local = f"{digits(rng, 3)}-{digits(rng, 3)}-{digits(rng, 4)}"
    return _look("phone_number", f"call {us} or {uk} or {local}, fax +49 30 {digits(rng, 8)}")


def orders(rng: random.Random) -> Snippet:
    return _look("order_number", f"Order {rng.randint(100, 999)}-{digits(rng, 7)}-{digits(rng, 7)}"
                 f", invoice INV-2024-{digits(rng, 6)}, order #{digits(rng, rng.randint(8, 10))},"
                 f" ISBN 978-{digits(rng, 1)}-{digits(rng, 3)}-{digits(rng, 5)}-{digits(rng, 1)}")


def token_placeholders(rng: random.Random) -> Snippet:
    return _look("token_placeholder", rng.choice([
        "AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "STRIPE_KEY=sk_test_" + chars(rng, ALNUM, 24),
        "AWS_ACCESS_KEY_ID=AKIAXXXXXXXXXXXXXXXX",
    ]))


def password_prose(rng: random.Random) -> Snippet:
    return _look("password_placeholder", rng.choice([
        "Forgot your password? Click the link to reset your password.",
        "password: ******** (hidden)", "pwd=${DB_PASSWORD}", "password: <your password>",
        "Password: changeme", "Password: Required", "password = %s", "pwd=/home/jm/src",
        "Your password has been changed.", "passwd: {{ vault_db_password }}",
        "password: same as before", "Password: [redacted]",
    ]))


LOOKALIKE_GENERATORS = [
    luhn_invalid, bad_issuer, test_card, iban_bad_checksum, iban_bad_length, ssn_invalid,
    hashes, uuids, public_material, key_placeholder, tracking, phones, orders,
    token_placeholders, password_prose,
]
