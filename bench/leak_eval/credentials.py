"""Seeded credentials for the leak evaluation set, in the many forms people write them.

:func:`credential` replaces the single-template password generator: it picks one written form
(the original twelve templates, a user/password pair on one line or two, a ``login/pass`` pair,
a labelled value in one of six languages, a URL or connection string, ``.netrc`` and ``.pgpass``
lines, environment and compose files, JSON/YAML/XML) and fills it from independent lists of
labels, separators, joiners, cases and surrounding words, so the set is not the detector's own
patterns read backwards. Every snippet is of type ``password`` (the detector's one credential
type); its family names the form, for the per-form table of :mod:`bench.leak_eval.__main__`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from bench.leak_eval.secret_values import password
from bench.leak_eval.values import ALNUM, Snippet, chars, digits

WORDS = ["Sommer", "Winter", "Falcon", "Orange", "Tiger", "Rocket", "Maple", "Harbor", "Nordlicht",
         "Soleil", "Primavera", "Cachorro"]
HEX = "0123456789abcdef"
USERS = ["jsmith", "a.weber", "svc_backup", "mmartin", "deploy", "j.garcia", "admin2", "k.nowak",
         "ops-bot", "lucie.durand", "pedro.silva", "backup01", "t.jansen", "alice@corp.example"]
# (user labels, password labels, verbs "the password is") per language
LANGUAGES = {
    "en": (["user", "username", "user name", "login", "usr", "user id", "account", "email"],
           ["password", "pass", "pwd", "passwd", "pw", "passcode", "passphrase"], ["is", "was"]),
    "de": (["Benutzer", "Benutzername", "Login", "Nutzer"], ["Kennwort", "Passwort", "PW"],
           ["ist", "lautet"]),
    "fr": (["identifiant", "utilisateur", "login"], ["mot de passe", "mdp", "pass"], ["est"]),
    "es": (["usuario", "user"], ["contraseña", "contrasena", "password"], ["es"]),
    "pt": (["usuário", "login"], ["senha", "pass"], ["é"]),
    "nl": (["gebruikersnaam", "gebruiker"], ["wachtwoord", "pass"], ["is"]),
}
SEPARATORS = [": ", ":", " : ", "=", " = ", ":  ", " -> ", " => ", ":\t"]
JOINERS = [" ", "  ", ", ", " | ", " / ", "; ", " - ", "\t", " and "]
INTROS = ["", "", "", "Creds for the VPN: ", "here you go - ", "New account created. ", "FYI ",
          "(temporary) ", "Zugang: ", "Accès : ", "Acceso: ", "Acesso: ", "> "]
OUTROS = ["", "", "", " (change it after first login)", " - thanks", ".", " cheers", ","]


def value(rng: random.Random, forbid: str = "") -> str:
    """A password: random, word + year, word + digits, passphrase, hex secret or digits."""
    style = rng.random()
    if style < 0.4:
        out = chars(rng, ALNUM + "!#%&*+?@^$-_", rng.randint(8, 20))
    elif style < 0.6:
        out = rng.choice(WORDS) + str(rng.randint(1970, 2030)) + rng.choice(["!", "#", "", "?"])
    elif style < 0.7:
        out = rng.choice(WORDS).lower() + digits(rng, rng.randint(2, 4))
    elif style < 0.8:
        out = "-".join(rng.choice(WORDS) for _ in range(3)) + "-" + digits(rng, 1)
    elif style < 0.9:
        out = chars(rng, HEX, rng.choice([16, 24, 32]))
    else:
        out = digits(rng, rng.randint(6, 8))
    for char in forbid:
        out = out.replace(char, rng.choice("kQz7"))
    return out.lstrip("$-_") or "Kq7" + digits(rng, 5)


def case(rng: random.Random, label: str) -> str:
    pick = rng.random()
    return label.upper() if pick < 0.2 else label.capitalize() if pick < 0.55 else label


def label_pair(rng: random.Random) -> tuple[str, str, list[str]]:
    users, passes, verbs = LANGUAGES[rng.choice(sorted(LANGUAGES))]
    return case(rng, rng.choice(users)), case(rng, rng.choice(passes)), verbs


def pair_line(rng: random.Random) -> str:
    user_label, pass_label, _ = label_pair(rng)
    sep = rng.choice(SEPARATORS)
    joiner = rng.choice(JOINERS)
    return (rng.choice(INTROS) + f"{user_label}{sep}{rng.choice(USERS)}{joiner}{pass_label}"
            f"{rng.choice([sep, rng.choice(SEPARATORS)])}{value(rng)}" + rng.choice(OUTROS))


def pair_lines(rng: random.Random) -> str:
    user_label, pass_label, _ = label_pair(rng)
    sep = rng.choice(SEPARATORS)
    indent = rng.choice(["", "  ", "- ", "* ", "\t"])
    gap = rng.choice(["\n", "\n", "\n\n", "\r\n"])
    return (rng.choice(["", "Your account:\n", "Access details\n"]) + f"{indent}{user_label}{sep}"
            f"{rng.choice(USERS)}{gap}{indent}{pass_label}{sep}{value(rng)}")


def labelled(rng: random.Random) -> str:
    """A password with no user: 'the wifi password: X', 'Votre mot de passe est : X'."""
    _, pass_label, verbs = label_pair(rng)
    if pass_label.lower() == "pass":  # a bare 'pass' needs a user or key context
        pass_label = rng.choice(["Password", "pwd", "Passwort", "senha"])
    owner = rng.choice(["", "", "the wifi ", "DB ", "new ", "temp ", "root ", "Your ", "admin "])
    if rng.random() < 0.4:
        verb = rng.choice(verbs)
        now = " now" if verb == "is" and rng.random() < 0.3 else ""
        middle = f" {verb}{now}{rng.choice([' ', ': ', ' : '])}"
    else:
        middle = rng.choice(SEPARATORS)
    return f"{rng.choice(INTROS)}{owner}{pass_label}{middle}{value(rng)}{rng.choice(OUTROS)}"


def slash_pair(rng: random.Random) -> str:
    """'login/pass: jsmith / X', 'user:pass = jsmith:X', 'Benutzer/Kennwort: x/y'."""
    user_label, pass_label, _ = label_pair(rng)
    glue = rng.choice(["/", " / ", ":", "+"])
    between = rng.choice(["/", " / ", ":", " "])
    forbid = "/:" if between.strip() in "/:" else ""
    return (f"{rng.choice(INTROS)}{user_label}{glue}{pass_label}{rng.choice(SEPARATORS)}"
            f"{rng.choice(USERS).replace('@', '.')}{between}{value(rng, forbid)}")


def cells(rng: random.Random) -> str:
    """Label and value in adjacent table cells: pasted from a sheet, or a Markdown table."""
    user_label, pass_label, _ = label_pair(rng)
    user, secret = rng.choice(USERS), value(rng, forbid="|")
    if rng.random() < 0.5:
        row = rng.choice(["{a}\t{u}\t{b}\t{p}", "{a}\t{u}\n{b}\t{p}", "{b}\t{p}"])
    else:
        row = rng.choice(["| {a} | {u} |\n| {b} | {p} |", "| {a} | {u} | {b} | {p} |"])
    if row.startswith("{b}") and pass_label.lower() == "pass":
        pass_label = "Password"
    return row.format(a=user_label, u=user, b=pass_label, p=secret)


HOSTS = ["db.corp.example", "10.20.1.15", "pg-prod-01.internal", "cluster0.ab1cd.mongodb.net",
         "cache.corp.example", "mq.corp.example", "smtp.corp.example", "localhost"]
URL_FORMS = [
    "postgres://{u}:{p}@{h}:5432/prod", "postgresql://{u}:{p}@{h}/app?sslmode=require",
    "mysql://{u}:{p}@{h}:3306/shop", "mongodb://{u}:{p}@{h}:27017/admin",
    "mongodb+srv://{u}:{p}@{h}/test?retryWrites=true", "redis://:{p}@{h}:6379/0",
    "rediss://default:{p}@{h}:6380", "amqp://{u}:{p}@{h}:5672/vhost", "amqps://{u}:{p}@{h}",
    "smtp://{u}:{p}@{h}:587", "smtps://{u}%40corp.example:{p}@{h}:465", "ftp://{u}:{p}@{h}/in",
    "jdbc:mysql://{u}:{p}@{h}:3306/db", "ldap://{u}:{p}@{h}:389",
    "jdbc:postgresql://{h}:5432/prod?user={u}&password={p}&ssl=true",
    "jdbc:sqlserver://{h}:1433;databaseName=prod;user={u};password={p};encrypt=true",
    "jdbc:oracle:thin:{u}/{p}@{h}:1521:ORCL", "Server={h};Database=prod;User Id={u};Password={p};",
    "host={h} port=5432 dbname=prod user={u} password={p}",
]
URL_WRAPS = ["{c}", "DATABASE_URL={c}", "spring.datasource.url={c}", "connect with {c}",
             '"{c}"', "dsn: '{c}'", "CELERY_BROKER_URL = \"{c}\"", "conn string {c} (prod)"]


def connection(rng: random.Random) -> str:
    form = rng.choice(URL_FORMS)
    user = rng.choice(USERS).replace("@", "%40")
    secret = value(rng, forbid="@:/?#&;=\"'%")
    text = form.format(u=user, p=secret, h=rng.choice(HOSTS))
    return rng.choice(URL_WRAPS).format(c=text)


def distinct(rng: random.Random, n: int, forbid: str) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        candidate = value(rng, forbid)
        if candidate not in out:
            out.append(candidate)
    return out


def netrc(rng: random.Random) -> tuple[str, int]:
    entries = []
    for secret in distinct(rng, rng.randint(1, 2), ""):
        host, user = rng.choice(HOSTS), rng.choice(USERS)
        if rng.random() < 0.5:
            entries.append(f"machine {host} login {user} password {secret}")
        else:
            entries.append(f"machine {host}\n  login {user}\n  password {secret}")
    head = rng.choice(["", "# ~/.netrc\n", "my .netrc:\n"])
    return head + "\n".join(entries), len(entries)


def pgpass(rng: random.Random) -> tuple[str, int]:
    lines = []
    for secret in distinct(rng, rng.randint(1, 3), ":"):
        host = rng.choice([*HOSTS, "*"])
        port = rng.choice(["5432", "5433", "*", "6432"])
        db = rng.choice(["prod", "*", "app_db", "reporting"])
        lines.append(f"{host}:{port}:{db}:{rng.choice(USERS)}:{secret}")
    head = rng.choice(["", "~/.pgpass\n", "# hostname:port:database:username:password\n"])
    return head + "\n".join(lines), len(lines)


ENV_NAMES = ["DB_PASSWORD", "SMTP_PASS", "MYSQL_ROOT_PASSWORD", "POSTGRES_PASSWORD",
             "REDIS_PASSWORD", "LDAP_BIND_PW", "MAIL_PASSWD", "APP_SECRET", "JWT_SECRET",
             "SESSION_SECRET", "X_PASSWORD", "X_SECRET", "RABBITMQ_DEFAULT_PASS", "DB_PWD",
             "DJANGO_SECRET_KEY", "BACKUP_PASSPHRASE", "admin_password", "smtp_pass"]
ENV_FORMS = ["export {n}={v}", "{n}={v}", "export {n}=\"{v}\"", "{n}: {v}", "  {n}: \"{v}\"",
             "set {n}={v}", "$env:{n} = '{v}'", "- {n}={v}", "ENV {n}={v}", "{n}='{v}'"]


def env(rng: random.Random) -> str:
    name, form = rng.choice(ENV_NAMES), rng.choice(ENV_FORMS)
    line = form.format(n=name, v=value(rng, forbid="\"'"))
    others = rng.sample(["DB_HOST=db.internal", "DB_USER=app", "PORT=8080", "DEBUG=false",
                         "LOG_LEVEL=info", "TZ=Europe/Berlin"], rng.randint(0, 2))
    lines = [*others, line]
    rng.shuffle(lines)
    return "\n".join(lines)


def structured(rng: random.Random) -> str:
    secret = value(rng, forbid="\"'<>&")
    key = rng.choice(["password", "pass", "passwd", "pwd", "db_password", "Password"])
    return rng.choice([
        '{{"user": "svc", "{k}": "{p}"}}', "db:\n  user: app\n  {k}: '{p}'",
        "<{k}>{p}</{k}>", "[database]\nuser = app\n{k} = {p}", "{k}: \"{p}\"  # prod",
        "<add key=\"{k}\" value=\"{p}\" />", "'{k}' => '{p}',",
    ]).format(k=key, p=secret)


FORMS: dict[str, Callable[[random.Random], str | tuple[str, int]]] = {
    "pair_line": pair_line, "pair_lines": pair_lines, "labelled": labelled,
    "slash_pair": slash_pair, "cells": cells, "connection": connection, "netrc": netrc,
    "pgpass": pgpass, "env": env, "structured": structured,
    "classic": lambda rng: password(rng).text,
}


def form_snippet(form: str, rng: random.Random) -> Snippet:
    made = FORMS[form](rng)
    text, count = made if isinstance(made, tuple) else (made, 1)
    return Snippet(text, "password", f"password:{form}", count)


def credential(rng: random.Random) -> Snippet:
    return form_snippet(rng.choice(sorted(FORMS)), rng)
