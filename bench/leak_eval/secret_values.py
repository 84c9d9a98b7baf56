"""Seeded generators of secrets for the leak evaluation set: keys, AWS keys, tokens, passwords.

Key bodies are random bytes behind the header a real key of that label starts with (a DER
SEQUENCE, the OpenSSH magic, an OpenPGP secret-key packet), armoured the way the tools write them.
Tokens follow the vendors' published formats with random bodies; nothing here is a real secret.
"""

from __future__ import annotations

import base64
import json
import random

from bench.leak_eval.values import ALNUM, B32, Snippet, chars, digits

KEY_HEADS = {
    "RSA PRIVATE KEY": bytes([0x30, 0x82, 0x04, 0xA4, 0x02, 0x01, 0x00, 0x02, 0x82, 0x01, 0x01]),
    "PRIVATE KEY": bytes([0x30, 0x82, 0x04, 0xBE, 0x02, 0x01, 0x00, 0x30, 0x0D, 0x06, 0x09]),
    "EC PRIVATE KEY": bytes([0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20]),
    "ENCRYPTED PRIVATE KEY": bytes([0x30, 0x82, 0x05, 0x0E, 0x30, 0x40, 0x06, 0x09]),
    "OPENSSH PRIVATE KEY": b"openssh-key-v1\x00\x00\x00\x00\x04none",
    "PGP PRIVATE KEY BLOCK": bytes([0x95, 0x03, 0xC6, 0x04]),
}


def armour(label: str, rng: random.Random, truncated: bool = False) -> str:
    size = 100 if label == "EC PRIVATE KEY" else rng.randint(300, 1100)
    raw = KEY_HEADS[label] + bytes(rng.randrange(256) for _ in range(size))
    b64 = base64.b64encode(raw).decode()
    width = 70 if label == "OPENSSH PRIVATE KEY" else 64
    lines = [b64[i : i + width] for i in range(0, len(b64), width)]
    head = ["Version: GnuPG v2", ""] if label.startswith("PGP") else []
    if truncated:
        return "\n".join([f"-----BEGIN {label}-----", *head, *lines[: max(3, len(lines) // 2)]])
    tail = ["=" + chars(rng, ALNUM, 4)] if label.startswith("PGP") else []
    return "\n".join([f"-----BEGIN {label}-----", *head, *lines, *tail, f"-----END {label}-----"])


def private_key(rng: random.Random) -> Snippet:
    label = rng.choice(sorted(KEY_HEADS))
    block = armour(label, rng, truncated=rng.random() < 0.1)
    style = rng.random()
    if style < 0.15:  # a service-account JSON file: one line, newlines escaped
        block = json.dumps({"type": "service_account", "private_key": block + "\n"})
    elif style < 0.3:  # quoted in a reply
        block = "\n".join("> " + line for line in block.splitlines())
    intro = rng.choice(["here is the key:", "deploy key for the build box", "id_rsa attached"])
    return Snippet(f"{intro}\n{block}", "private_key", "private_key")


def aws_secret(rng: random.Random) -> str:
    while True:
        value = chars(rng, ALNUM + "/+", 40)
        if any(c.isupper() for c in value) and any(c.islower() for c in value) and any(
            c.isdigit() for c in value
        ):
            return value


def aws_key(rng: random.Random) -> Snippet:
    key_id = rng.choice(["AKIA", "ASIA"]) + chars(rng, B32, 16)
    if rng.random() < 0.7:
        text = rng.choice([
            "[default]\naws_access_key_id = {i}\naws_secret_access_key = {s}",
            "AWS_ACCESS_KEY_ID={i}\nAWS_SECRET_ACCESS_KEY={s}",
            "access key {i} / secret {s}",
            '{{"Credentials": {{"AccessKeyId": "{i}", "SecretAccessKey": "{s}"}}}}',
        ]).format(i=key_id, s=aws_secret(rng))
    else:
        text = rng.choice(["the key id is {i}", "rotate {i} please", "{i}"]).format(i=key_id)
    return Snippet(text, "aws_access_key", "aws_access_key")


def b64url_json(obj: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def jwt(rng: random.Random) -> str:
    header = {"alg": rng.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"}
    payload = {"sub": digits(rng, 8), "iat": 1700000000 + rng.randint(0, 10**7),
               "name": rng.choice(["alice", "bob", "carol"])}
    return f"{b64url_json(header)}.{b64url_json(payload)}.{chars(rng, ALNUM + '-_', 43)}"


TOKEN_FORMATS = {
    "github": lambda r: rng_prefix(r, ["ghp_", "gho_", "ghs_"]) + chars(r, ALNUM, 36),
    "github_pat": lambda r: "github_pat_" + chars(r, ALNUM, 22) + "_" + chars(r, ALNUM, 59),
    "gitlab": lambda r: "glpat-" + chars(r, ALNUM + "-_", 20),
    "slack": lambda r: f"xoxb-{digits(r, 11)}-{digits(r, 12)}-" + chars(r, ALNUM, 24),
    "stripe": lambda r: rng_prefix(r, ["sk_live_", "rk_live_"]) + chars(r, ALNUM, 24),
    "google": lambda r: "AIza" + chars(r, ALNUM + "-_", 35),
    "npm": lambda r: "npm_" + chars(r, ALNUM, 36),
    "sendgrid": lambda r: "SG." + chars(r, ALNUM + "-_", 22) + "." + chars(r, ALNUM + "-_", 43),
    "openai": lambda r: "sk-proj-" + chars(r, ALNUM, 20) + "T3BlbkFJ" + chars(r, ALNUM, 20),
}


def rng_prefix(rng: random.Random, prefixes: list[str]) -> str:
    return rng.choice(prefixes)


def api_token(rng: random.Random) -> Snippet:
    kind = rng.choice([*sorted(TOKEN_FORMATS), "jwt"])
    if kind == "jwt":
        text = rng.choice(["Authorization: Bearer {t}", "session token {t}", "jwt={t}"])
        return Snippet(text.format(t=jwt(rng)), "api_token", "api_token")
    token = TOKEN_FORMATS[kind](rng)
    text = rng.choice(["token: {t}", "use {t} for CI", "{t}", "export TOKEN={t}",
                       '{{"auth": "{t}"}}', "https://api.example.com/v1/items?key={t}"])
    return Snippet(text.format(t=token), "api_token", "api_token")


WORDS = ["Sommer", "Winter", "Falcon", "Orange", "Tiger", "Rocket", "Maple", "Harbor"]


def password_value(rng: random.Random) -> str:
    style = rng.random()
    if style < 0.5:
        return chars(rng, ALNUM + "!#%&*+?@^", rng.randint(10, 16))
    if style < 0.8:
        return rng.choice(WORDS) + str(rng.randint(1970, 2030)) + rng.choice(["!", "#", "", "?"])
    if style < 0.9:
        return rng.choice(WORDS).lower() + digits(rng, 2)
    return digits(rng, rng.randint(6, 8))


def password(rng: random.Random) -> Snippet:
    value = password_value(rng)
    template = rng.choice([
        "password: {p}", "Password = {p}", "pwd={p}", "my password is {p}", "Kennwort: {p}",
        "DB_PASSWORD={p}", "login: jsmith\nPassword: {p}", "mot de passe : {p}",
        "dsn postgres://app:{p}@db.corp.example/prod", '{{"user": "svc", "password": "{p}"}}',
        "db:\n  user: app\n  password: '{p}'", "<password>{p}</password>",
    ])
    if "://" in template or "<" in template:
        value = value.replace("@", "a").replace("/", "b").replace(":", "c").replace("?", "d")
    if '"' in template or "'" in template:
        value = value.replace('"', "q").replace("'", "q")
    return Snippet(template.format(p=value), "password", "password")


SECRET_GENERATORS = [private_key, aws_key, api_token, password]
