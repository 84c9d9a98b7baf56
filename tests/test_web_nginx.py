"""The shipped nginx snippet (deploy/nginx/): ``nginx -t`` accepts it, and it serves the review
interface over TLS with the interface's headers, HSTS and a Secure session cookie.

The snippet is used as shipped except for what an operator must set: ports (free loopback ones),
the certificate (self-signed, made with openssl) and the upstream port of ``mailwarden web``.
"""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO, write_config
from postfix_instance import free_port, public_tmpdir

SNIPPET = REPO / "deploy" / "nginx" / "mailwarden-review.conf"
pytestmark = pytest.mark.skipif(not shutil.which("nginx") or not shutil.which("openssl"),
                                reason="nginx and openssl from Debian are needed")

MAIN = """user nobody nogroup;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
  uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
  include {root}/site.conf;
}}
"""


def site(root: Path, http: int, https: int, upstream: int) -> str:
    text = SNIPPET.read_text()
    text = re.sub(r"listen \[::\]:\d+[^;]*;\n", "", text)
    text = text.replace("listen 80;", f"listen 127.0.0.1:{http};")
    text = text.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https} ssl http2;")
    text = text.replace("/etc/ssl/certs/review.example.org.pem", str(root / "cert.pem"))
    text = text.replace("/etc/ssl/private/review.example.org.key", str(root / "key.pem"))
    return text.replace("127.0.0.1:8025", f"127.0.0.1:{upstream}")


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited {proc.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture(scope="module")
def proxy() -> Iterator[int]:
    root = public_tmpdir("mw-nginx-")
    (root / "tmp").mkdir()
    http, https, upstream = free_port(), free_port(), free_port()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(root / "key.pem"), "-out",
                    str(root / "cert.pem")], check=True, capture_output=True, timeout=60)
    (root / "site.conf").write_text(site(root, http, https, upstream))
    (root / "nginx.conf").write_text(MAIN.format(root=root))
    test = subprocess.run(["nginx", "-t", "-c", str(root / "nginx.conf")], capture_output=True,
                          text=True, timeout=60, check=False)
    assert test.returncode == 0 and "test is successful" in test.stderr, test.stderr
    extra = (f'[web]\nlisten = "127.0.0.1:{upstream}"\nsecure_cookies = true\n'
             'proxy_hops = 1\n')
    config = write_config(root, extra=extra)
    web = subprocess.Popen([sys.executable, "-m", "mailwarden", "web", "--config", str(config)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = subprocess.Popen(["nginx", "-c", str(root / "nginx.conf"), "-g", "daemon off;"])
    try:
        wait_port(upstream, web)
        wait_port(https, server)
        yield https
    finally:
        for proc in (server, web):
            proc.terminate()
            proc.wait(timeout=20)
        shutil.rmtree(root, ignore_errors=True)


def test_login_page_over_tls_has_hsts_csp_and_a_secure_cookie(proxy: int) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"https://127.0.0.1:{proxy}/login", context=context,
                                timeout=30) as response:
        headers = response.headers
        page = response.read().decode()
    assert 'type="password"' in page
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    cookie = headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
