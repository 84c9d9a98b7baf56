"""Seeded look-alikes of credentials for the leak evaluation set: none of them may fire.

Password prose and policies in six languages, placeholders as documentation writes them (in
key/value, pair, URL, ``.netrc``, ``.pgpass`` and environment forms), the word *pass* where it is
no password (boarding passes, test results), colon-separated lines that are not ``.pgpass``
entries, URLs without a password, and meeting invitations (whose passcodes are meant to be
shared). Each is a :class:`~bench.leak_eval.values.Snippet` with ``kind=None``.
"""

from __future__ import annotations

import random

from bench.leak_eval.values import ALNUM, Snippet, chars, digits

HOSTS = ["db.example.com", "localhost", "cluster0.example.mongodb.net", "smtp.example.com"]


def _look(family: str, text: str) -> Snippet:
    return Snippet(text, None, family)


def password_policy(rng: random.Random) -> Snippet:
    return _look("password_policy", rng.choice([
        "Password policy: minimum 12 characters, one digit, one symbol.",
        "Please reset your password before Friday.", "Forgot your password? Reset it here.",
        "The password is case-sensitive.", "Your password expires in 14 days.",
        "Password requirements: 12+ chars, no reuse of the last 5.",
        f"Reset your password: https://id.example.com/reset?ticket={digits(rng, 6)}",
        "Passwords must be rotated every 90 days (see the password policy).",
        "The attached PDF is password-protected; the password follows by SMS.",
        "Password: sent separately", "password: see the vault", "Kennwort vergessen? Hier klicken.",
        "Mot de passe oublié ? Réinitialisez-le.", "¿Olvidaste tu contraseña?",
        "Esqueceu sua senha? Clique aqui.", "Wachtwoord vergeten?", "Your password was reset.",
        "Ihr Passwort ist abgelaufen.", "Votre mot de passe est expiré.",
        "Tu contraseña es obligatoria.", "Sua senha é pessoal.", "new password: at least 12 chars",
        "Choose a strong passphrase: four random words.", "Password change: done",
        "| Password | Last changed |\n| ******** | 2024-05-01 |", "Password\t2024-05-01\tok",
        "user\tpassword\tlast login", "| pass | fail | skipped |",
        "Passwort\tgeändert am 03.04.2024",
    ]))


def documented_placeholder(rng: random.Random) -> Snippet:
    host = rng.choice(HOSTS)
    return _look("credential_placeholder", rng.choice([
        "password: <password>", "pwd=********", "Password: changeme", "password: your_password",
        "DB_PASSWORD=${DB_PASSWORD}", "pass: xxx", "user: <username> pass: <password>",
        "login: admin / password: admin", "user: root pass: toor",
        "USER=${DB_USER} PASS=${DB_PASS}",
        "export DB_PASSWORD=changeme", "export X_SECRET=your_secret_here",
        "MYSQL_ROOT_PASSWORD: ${MYSQL_ROOT_PASSWORD}", "POSTGRES_PASSWORD=$POSTGRES_PASSWORD",
        "X_SECRET=<generate with openssl rand -hex 32>", f"postgres://user:password@{host}/db",
        f"mysql://USER:PASSWORD@{host}:3306/db", f"mongodb+srv://<username>:<password>@{host}",
        f"redis://:<password>@{host}:6379", f"amqp://guest:guest@{host}:5672/",
        f"smtp://user:****@{host}:587", f"jdbc:mysql://{host}:3306/db?user=root&password=",
        f"jdbc:oracle:thin:scott/tiger@{host}:1521:orcl",
        f"machine {host} login myuser password mypassword",
        ".pgpass format: hostname:port:database:username:password",
        f"{host}:5432:*:postgres:postgres", "*:*:*:*:your_password",
        "Server=db;Database=x;User Id=sa;Password=<YourStrong@Passw0rd>;",
        "passwd: {{ vault_db_password }}", "password = %s", "export DB_PASS=$(cat /run/secrets/db)",
        "SMTP_PASSWORD=\"\"", "pass: ${SMTP_PASS}", "Kennwort: ********", "senha: <sua senha>",
        "mot de passe : XXXXXXXX", "contraseña: tu_contraseña", "password: REPLACE_ME",
        "password: [redacted]", "password: •••••••••",
    ]))


def pass_word(rng: random.Random) -> Snippet:
    code = chars(rng, ALNUM, 6).upper()
    return _look("pass_not_password", rng.choice([
        f"Boarding pass: {code}", f"Gate pass: GP-{digits(rng, 4)}", "pass rate: 98.2%",
        "--- PASS: TestLoginHandler (0.02s)", "Result: PASS", "Pass/Fail: Pass",
        "first pass: 0.83s, second pass: 0.41s", "bypass: enabled",
        f"Passport No: X{digits(rng, 7)}",
        f"Season pass: SP-2024-{digits(rng, 3)}", "PASS: test_login_redirect_ok",
        f"Day pass = DP{digits(rng, 6)}", "Hall pass: granted", "pass: yes",
        f"pass@{digits(rng, 1)}: 0.{digits(rng, 3)}", f"Pass-through: {code}",
    ]))


def colon_line(rng: random.Random) -> Snippet:
    mac = ":".join(chars(rng, "0123456789abcdef", 2) for _ in range(6))
    return _look("colon_line", rng.choice([
        f"MAC {mac}", f"at {rng.randint(10, 23)}:{rng.randint(10, 59)}:{rng.randint(10, 59)}",
        "fe80::1ff:fe23:4567:890a", "root:x:0:0:root:/root:/bin/bash",
        "ERROR:root:worker:main:failed", "Ratio 16:9, verse 3:16", "db1:5432, db2:5432",
        f"2001:db8:{digits(rng, 2)}:{digits(rng, 2)}::1", "main.c:10:5: warning: unused variable",
        f"{digits(rng, 2)}:{digits(rng, 2)}:{digits(rng, 2)}:{digits(rng, 2)}:{digits(rng, 2)}",
        "alice:$6$saltsalt$abcdefghijklmnop:19000:0:99999:7:::",
        "sha256:4:abc:def:0123456789", "localhost:5432:postgres",
    ]))


def url_without_password(rng: random.Random) -> Snippet:
    host = rng.choice(HOSTS)
    return _look("url_no_password", rng.choice([
        f"https://{host}:8443/app/login", "git@github.com:org/repo.git",
        f"ssh://git@{host}:22/srv/repo.git", f"deploy@{host}:/var/www", "http://[::1]:8080/",
        f"ftp://anonymous@{host}/pub", f"https://user@{host}/profile",
        f"https://{host}:8080?next=a@b.example", f"postgres://{host}:5432/prod",
        f"mongodb://{host}:27017,{host}:27018/?replicaSet=rs0", "mailto:someone@example.com",
        f"redis://{host}:6379/0", f"https://{host}/login?user=jsmith&password_reset=1",
    ]))


def meeting_invite(rng: random.Random) -> Snippet:
    meeting = f"{digits(rng, 3)} {digits(rng, 4)} {digits(rng, 4)}"
    link = f"https://us02web.zoom.us/j/{meeting.replace(' ', '')}?pwd={chars(rng, ALNUM, 32)}"
    return _look("meeting_passcode", rng.choice([
        f"Join Zoom Meeting\n{link}\nMeeting ID: {meeting}\nPasscode: {digits(rng, 6)}",
        f"Join: {link}",
        f"Meeting ID: {meeting} Passcode: {chars(rng, ALNUM, 6)}",
        f"Microsoft Teams meeting\nMeeting ID: {meeting}\nPasscode: {chars(rng, ALNUM, 6)}",
        f"Webex meeting number: {meeting}\nMeeting password: {chars(rng, ALNUM, 10)}",
        f"Reunião do Microsoft Teams\nID da Reunião:\n{meeting}\n\nSenha: {chars(rng, ALNUM, 6)}",
        f"ID de la réunion : {meeting}\nMot de passe : {chars(rng, ALNUM, 6)}",
        f"Besprechungs-ID: {meeting}\nKennung: x\nPasscode: {chars(rng, ALNUM, 6)}",
    ]))


CREDENTIAL_LOOKALIKES = [
    password_policy, documented_placeholder, pass_word, colon_line, url_without_password,
    meeting_invite,
]
