"""Validation rules of the leak detector, checked against published examples and properties."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.detectors.leak import validators as v


def luhn_check_digit(payload: str) -> str:
    """Independent Luhn: double every second digit from the right of payload + check digit."""
    digits = [int(c) for c in payload]
    total = 0
    for i, d in enumerate(reversed(digits)):
        doubled = d * 2 if i % 2 == 0 else d
        total += doubled - 9 if doubled > 9 else doubled
    return str((10 - total % 10) % 10)


@pytest.mark.parametrize("number", ["79927398713", "4539578763621486", "378282246310005"])
def test_luhn_accepts_published_valid_numbers(number: str) -> None:
    assert v.luhn_valid(number)


@pytest.mark.parametrize("number", ["79927398710", "4539578763621487", "1234567812345678"])
def test_luhn_rejects_invalid_numbers(number: str) -> None:
    assert not v.luhn_valid(number)


@given(st.text(alphabet="0123456789", min_size=12, max_size=18), st.data())
def test_luhn_detects_every_single_digit_error(payload: str, data: st.DataObject) -> None:
    number = payload + luhn_check_digit(payload)
    assert v.luhn_valid(number)
    position = data.draw(st.integers(0, len(number) - 1))
    wrong = data.draw(st.sampled_from([d for d in "0123456789" if d != number[position]]))
    assert not v.luhn_valid(number[:position] + wrong + number[position + 1 :])


@pytest.mark.parametrize(("number", "brand"), [
    ("4539578763621486", "visa"), ("5555555555554444", "mastercard"),
    ("2223003122003222", "mastercard"), ("378282246310005", "amex"),
    ("6011111111111117", "discover"), ("3530111333300000", "jcb"),
    ("30569309025904", "diners"), ("6200000000000005", "unionpay"),
])
def test_card_brand_from_issuer_range_and_length(number: str, brand: str) -> None:
    assert v.card_brand(number) == brand


@pytest.mark.parametrize("number", [
    "453957876362148",  # Visa prefix, 15 digits
    "3782822463100050",  # Amex prefix, 16 digits
    "2220990000000000", "2721000000000000",  # just outside Mastercard's 2-series
    "9111111111111111", "1111111111111117",  # no network starts with 9 or 1
])
def test_card_brand_rejects_wrong_length_or_range(number: str) -> None:
    assert v.card_brand(number) is None


def test_valid_card_needs_luhn_and_range() -> None:
    assert v.valid_card("4539578763621486") == "visa"
    assert v.valid_card("4539578763621487") is None  # Luhn fails
    assert v.valid_card("9539578763621485") is None  # Luhn-valid but no issuer range
    assert v.luhn_valid("9539578763621485")


def test_published_test_cards_are_real_looking_numbers() -> None:
    # The ignore list only makes sense if each entry passes Luhn and an issuer range.
    assert all(v.luhn_valid(n) and v.card_brand(n) for n in v.TEST_CARDS)
    assert v.valid_card("4111111111111111") is None  # repeated digits are never a real card


@pytest.mark.parametrize(("groups", "ok"), [
    ([16], True), ([4, 4, 4, 4], True), ([4, 6, 5], True), ([4, 6, 4], True),
    ([4, 4, 4, 4, 3], True), ([4, 4, 4, 1], True), ([3, 7, 7], False), ([8, 8], False),
    ([4, 4, 8], False),
])
def test_card_grouping(groups: list[int], ok: bool) -> None:
    assert v.card_grouping_ok(groups) is ok


@pytest.mark.parametrize(("ssn", "ok"), [
    ("536221234", True), ("772451234", True),
    ("000221234", False), ("666221234", False), ("912221234", False),  # area
    ("536001234", False), ("536220000", False),  # group, serial
    ("078051120", False), ("219099999", False), ("123456789", False),  # published examples
    ("111111111", False), ("53622123", False), ("53622123x", False),
])
def test_ssn_rules(ssn: str, ok: bool) -> None:
    assert v.valid_ssn(ssn) is ok


@pytest.mark.parametrize("iban", [
    "DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606",
    "NL91ABNA0417164300", "BE68539007547034", "CH9300762011623852957", "NO9386011117947",
    "MT84MALT011000012345MTLCAST001S",
])
def test_iban_accepts_registry_examples(iban: str) -> None:
    assert v.valid_iban(iban)


@given(st.sampled_from(["DE89370400440532013000", "GB82WEST12345698765432"]), st.data())
def test_iban_rejects_any_single_digit_change(iban: str, data: st.DataObject) -> None:
    digit_positions = [i for i, c in enumerate(iban) if c.isdigit() and i >= 2]
    position = data.draw(st.sampled_from(digit_positions))
    wrong = data.draw(st.sampled_from([d for d in "0123456789" if d != iban[position]]))
    assert not v.valid_iban(iban[:position] + wrong + iban[position + 1 :])


@pytest.mark.parametrize("iban", [
    "DE8937040044053201300",  # one short for Germany
    "XX89370400440532013000",  # no such country
    "DE00370400440532013000",  # check digits out of range
])
def test_iban_rejects_length_country_and_check_digits(iban: str) -> None:
    assert not v.valid_iban(iban)


def _armour(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_private_key_body_structure() -> None:
    der = bytes([0x30, 0x82, 0x02, 0x5C, 0x02, 0x01, 0x00]) + bytes(range(200))
    assert v.private_key_body_ok("RSA PRIVATE KEY", _armour(der))
    assert not v.private_key_body_ok("RSA PRIVATE KEY", _armour(b"\x04" + der[1:]))
    ssh = b"openssh-key-v1\x00" + bytes(range(100))
    assert v.private_key_body_ok("OPENSSH PRIVATE KEY", _armour(ssh))
    assert not v.private_key_body_ok("OPENSSH PRIVATE KEY", _armour(der))
    pgp_secret = bytes([0xC5, 0x58]) + bytes(range(100))  # new-format packet, tag 5
    pgp_public = bytes([0xC6, 0x58]) + bytes(range(100))  # tag 6: public key
    assert v.private_key_body_ok("PGP PRIVATE KEY BLOCK", _armour(pgp_secret))
    assert not v.private_key_body_ok("PGP PRIVATE KEY BLOCK", _armour(pgp_public))
    assert not v.private_key_body_ok("PRIVATE KEY", "not base64 at all!")


def _b64url(obj: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def test_jwt_algorithm() -> None:
    token = f"{_b64url({'alg': 'RS256', 'typ': 'JWT'})}.{_b64url({'sub': 'x'})}.c2lnbmF0dXJlc2ln"
    assert v.jwt_algorithm(token) == "RS256"
    assert v.jwt_algorithm(f"{_b64url({'alg': 'none'})}.{_b64url({'sub': 'x'})}.abc") is None
    assert v.jwt_algorithm(f"{_b64url({'typ': 'JWT'})}.{_b64url({'sub': 'x'})}.abc") is None
    assert v.jwt_algorithm("eyJub3QganNvbg.eyJzdWIiOiJ4In0.abc") is None
    assert v.jwt_algorithm(f"{_b64url({'alg': 'HS256'})}.{_b64url({'sub': 'x'})}.") is None


def test_entropy_and_classes() -> None:
    assert v.shannon_entropy("aaaaaaaa") == 0.0
    assert v.shannon_entropy("abcd") == pytest.approx(2.0)
    assert v.char_classes("abc") == 1
    assert v.char_classes("aB3!") == 4
    assert v.random_looking("q8Zr2LxP0vNw4KtY7mHs", 3.0)
    assert not v.random_looking("xxxxxxxxxxxxxxxxxxxx", 3.0)
    assert not v.random_looking("abcdefghijklmnopqrst", 3.0)  # no digits, one case
