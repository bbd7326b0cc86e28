"""nginx from Debian, started on loopback in front of `publisher serve` (a subprocess) with the
repo's deploy/nginx/publisher-locations.conf: one-click unsubscribe, the archive and the feeds work
through it, and X-Forwarded-For is believed from the proxy only."""

from __future__ import annotations

import email
import email.policy
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from publisher.config import load_config
from publisher.store import Store
from tests.conftest import REPO, require, write_config
from tests.support.tls import self_signed_certificate

pytestmark = pytest.mark.slow
LOCATIONS = REPO / "deploy" / "nginx" / "publisher-locations.conf"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def publisher(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    return subprocess.run([sys.executable, "-m", "publisher", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**env, "COLUMNS": "250"})  # fmt: skip


def wait_until_listening(port: int, process: subprocess.Popen[bytes], what: str, log: Path, bound: float = 30.0) -> None:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on {port} within {bound:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: str


def request(port: int, method: str, path: str, *, source: str = "127.0.0.1", headers: dict[str, str] | None = None,
            body: str | None = None) -> Answer:  # fmt: skip
    """One HTTP request from a chosen loopback source address (127.0.0.2 is another client than 127.0.0.1)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15, source_address=(source, 0))
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read().decode("utf-8", "replace"))
    finally:
        connection.close()


def nginx_conf(tmp: Path, proxy_port: int, web_port: int) -> Path:
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / name).mkdir(exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    text = f"""{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log notice;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream publisher_upstream {{ server 127.0.0.1:{web_port}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{proxy_port};
        server_name localhost;
        include {LOCATIONS};
    }}
}}
"""
    path = tmp / "nginx.conf"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Deployment:
    directory: Path
    web_port: int
    proxy_port: int


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    require(nginx is not None, "nginx is not installed (Debian: apt install nginx-light)")
    assert nginx is not None
    web_port, proxy_port = free_port(), free_port()
    write_config(tmp_path, extra=f"schedule:\n  collect: null\n  feeds: null\nweb:\n  host: 127.0.0.1\n"
                                 f"  port: {web_port}\n  max_requests_per_client_per_hour: 1\n")  # fmt: skip
    for args in (("subscribers", "import", str(REPO / "samples" / "subscribers.csv")), ("run", "--date", "2024-12-02")):
        result = publisher(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
    serve_log, nginx_log = tmp_path / "serve.log", tmp_path / "nginx" / "error.log"
    (tmp_path / "nginx").mkdir()
    conf = nginx_conf(tmp_path / "nginx", proxy_port, web_port)
    with serve_log.open("ab") as out:
        serve = subprocess.Popen([sys.executable, "-m", "publisher", "serve"], cwd=tmp_path, stdout=out,
                                 stderr=subprocess.STDOUT)  # fmt: skip
    proxy: subprocess.Popen[bytes] | None = None
    try:
        wait_until_listening(web_port, serve, "publisher serve", serve_log)
        proxy = subprocess.Popen([nginx, "-p", str(tmp_path / "nginx"), "-c", str(conf), "-g", "daemon off;"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        wait_until_listening(proxy_port, proxy, "nginx", nginx_log)
        yield Deployment(tmp_path, web_port, proxy_port)
    finally:
        for process in (proxy, serve):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)


def sent_messages(directory: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in sorted((directory / "outbox" / "new").iterdir())]  # fmt: skip


def test_one_click_unsubscribe_archive_and_feeds_through_nginx(deployment: Deployment) -> None:
    port = deployment.proxy_port
    message = sent_messages(deployment.directory)[0]
    recipient = str(message["To"])
    link = re.search(r"<(https?://[^>]+/unsubscribe/[^>]+)>", str(message["List-Unsubscribe"]))
    assert link is not None
    answer = request(port, "POST", urlsplit(link.group(1)).path, body="List-Unsubscribe=One-Click",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert answer.status == 200, answer.body
    store = Store.open(load_config(deployment.directory / "config.yaml").store_url)
    try:
        subscriber = store.subscribers.by_email(recipient.split("<")[-1].rstrip(">"))
        assert subscriber is not None and subscriber.status.value == "unsubscribed"
    finally:
        store.close()

    index = request(port, "GET", "/archive/")
    assert index.status == 200 and "2024-12-02" in index.body
    issue = request(port, "GET", "/archive/en/2024-12-02")
    assert issue.status == 200 and 'lang="en"' in issue.body

    feeds = sorted(p.name for p in (deployment.directory / "feeds").iterdir())
    assert feeds
    first = request(port, "GET", f"/feeds/{feeds[0]}")
    assert first.status == 200 and "<feed" in first.body or "<rss" in first.body
    etag = first.headers["ETag"]
    assert etag
    again = request(port, "GET", f"/feeds/{feeds[0]}", headers={"If-None-Match": etag})
    assert again.status == 304


def subscribe_once(port: int, source: str, headers: dict[str, str] | None = None) -> int:
    form = request(port, "GET", "/subscribe?lang=en", source=source)
    assert form.status == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.body)
    cookie = re.search(r"publisher_csrf=([^;]+)", form.headers.get("Set-Cookie", ""))
    assert csrf and cookie
    body = urlencode({"csrf": csrf.group(1), "lang": "en", "email": f"reader-{time.monotonic_ns()}@example.org"})
    posted = request(port, "POST", "/subscribe", source=source, body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"publisher_csrf={cookie.group(1)}", **(headers or {}),
    })  # fmt: skip
    return posted.status


def test_x_forwarded_for_is_believed_from_the_proxy_only(deployment: Deployment) -> None:
    # through nginx, each client is told apart by the address nginx saw (limit: 1 request per client)
    proxy = deployment.proxy_port
    assert subscribe_once(proxy, "127.0.0.2") != 429
    assert subscribe_once(proxy, "127.0.0.2", {"X-Forwarded-For": "198.51.100.1"}) == 429  # a forged header changes nothing
    assert subscribe_once(proxy, "127.0.0.3") != 429
    # straight to publisher from an address that is not the proxy: X-Forwarded-For is ignored
    direct = deployment.web_port
    assert subscribe_once(direct, "127.0.0.4", {"X-Forwarded-For": "198.51.100.2"}) != 429
    assert subscribe_once(direct, "127.0.0.4", {"X-Forwarded-For": "198.51.100.3"}) == 429


def test_the_example_server_block_passes_nginx_t(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    require(nginx is not None, "nginx is not installed (Debian: apt install nginx-light)")
    assert nginx is not None
    certificate = self_signed_certificate(tmp_path)
    site = (REPO / "deploy" / "nginx" / "publisher.conf").read_text(encoding="utf-8")
    site = (site.replace("/etc/letsencrypt/live/digest.example.org/fullchain.pem", str(certificate.cert_file))
                .replace("/etc/letsencrypt/live/digest.example.org/privkey.pem", str(certificate.key_file))
                .replace("/etc/nginx/snippets/publisher-locations.conf", str(LOCATIONS))
                .replace("listen 80;", f"listen 127.0.0.1:{free_port()};").replace("listen [::]:80;", "")
                .replace("listen 443 ssl http2;", f"listen 127.0.0.1:{free_port()} ssl http2;")
                .replace("listen [::]:443 ssl http2;", ""))  # fmt: skip
    (tmp_path / "site.conf").write_text(site, encoding="utf-8")
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                    f"http {{ access_log off; include {tmp_path}/site.conf; }}\n", encoding="utf-8")  # fmt: skip
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
