"""See it before anyone else does: `publisher send-test` through a real SMTP server on loopback,
`publisher check --transport` against STARTTLS + AUTH, and `publisher check` compiling the templates."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from sqlalchemy import func, select

from publisher.store import Store
from tests.conftest import write_config
from tests.support.smtp import RecordingSmtpServer

pytestmark = pytest.mark.slow


def publisher(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    return subprocess.run([sys.executable, "-m", "publisher", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**clean, "COLUMNS": "250", **(env or {})})  # fmt: skip


def smtp_transport(server: RecordingSmtpServer, **extra: str) -> str:
    lines = [f"kind: smtp\n    host: 127.0.0.1\n    port: {server.port}\n    security: {server.settings().security}",
             "    local_hostname: sender.test"]  # fmt: skip
    lines += [f"    {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines)


def table_rows(url: str, table: str) -> int:
    store = Store.open(url)
    try:
        from publisher.store import schema

        with store.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(schema.metadata.tables[table])).scalar_one())
    finally:
        store.close()


def test_send_test_delivers_the_real_digest_marked_and_outside_the_ledger(tmp_path: Path) -> None:
    with RecordingSmtpServer() as server:
        config = write_config(tmp_path, transport=smtp_transport(server))
        result = publisher("send-test", "--edition", "ar", "--to", "editor@news.example.org", "--date", "2024-12-02", cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert server.wait_for(1)
        received = server.messages
    assert len(received) == 1 and received[0].rcpt_tos == ("editor@news.example.org",)
    message = email.message_from_bytes(received[0].data, policy=email.policy.default)
    assert message["X-Publisher-Test"] == "yes"
    subject = str(make_header(decode_header(message["Subject"])))
    assert subject.startswith("[TEST] ") and "أخبار اليوم" in subject
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert 'lang="ar"' in html and 'dir="rtl"' in html
    assert "sent a test of ar for 2024-12-02" in result.stdout
    url = f"sqlite:///{config.parent / 'store.db'}"
    assert table_rows(url, "deliveries") == 0 and table_rows(url, "digests") == 0


def test_send_test_names_an_unknown_edition_and_an_empty_day(tmp_path: Path) -> None:
    write_config(tmp_path)
    unknown = publisher("send-test", "--edition", "fr", "--to", "a@example.org", cwd=tmp_path)
    assert unknown.returncode == 2 and "no edition 'fr'" in unknown.stderr and "en, ar" in unknown.stderr
    empty = publisher("send-test", "--edition", "en", "--to", "a@example.org", "--date", "2001-01-01", cwd=tmp_path)
    assert empty.returncode == 1 and "no articles for 2001-01-01" in empty.stderr
    assert not (tmp_path / "outbox" / "new").exists() or not list((tmp_path / "outbox" / "new").iterdir())
    for result in (unknown, empty):
        assert "Traceback" not in result.stderr


def test_check_transport_reports_starttls_and_auth_without_sending(tmp_path: Path) -> None:
    with RecordingSmtpServer(tls="starttls", certificate_dir=tmp_path / "cert", auth=("digest", "s3cret-pass")) as server:
        assert server.certificate is not None
        write_config(tmp_path, transport=smtp_transport(server, username="digest", password="${SMTP_PASSWORD}",
                                                        ca_file=str(server.certificate.cert_file)))  # fmt: skip
        good = publisher("check", "--transport", cwd=tmp_path, env={"SMTP_PASSWORD": "s3cret-pass"})
        bad = publisher("check", "--transport", cwd=tmp_path, env={"SMTP_PASSWORD": "wrong"})
        assert server.received == 0
    assert good.returncode == 0, good.stdout + good.stderr
    assert "STARTTLS: ok (TLS" in good.stdout and "AUTH: logged in as 'digest'" in good.stdout
    assert "extensions:" in good.stdout and "STARTTLS" in good.stdout.split("extensions:")[1]
    assert bad.returncode == 1 and "refused user 'digest'" in bad.stdout
    assert "s3cret-pass" not in good.stdout + bad.stdout


def test_check_transport_names_a_server_that_is_not_there(tmp_path: Path) -> None:
    with RecordingSmtpServer() as server:
        port = server.port
    write_config(tmp_path, transport=f"kind: smtp\n    host: 127.0.0.1\n    port: {port}\n    security: none")
    result = publisher("check", "--transport", cwd=tmp_path)
    assert result.returncode == 1 and f"cannot connect to 127.0.0.1:{port}" in result.stdout


def test_check_compiles_the_templates(tmp_path: Path) -> None:
    write_config(tmp_path)
    assert publisher("check", cwd=tmp_path).returncode == 0
    broken = tmp_path / "templates" / "email"
    broken.mkdir(parents=True)
    (broken / "digest.txt.j2").write_text("{% for a in articles %}{{ a.title }\n", encoding="utf-8")
    result = publisher("check", cwd=tmp_path)
    assert result.returncode == 2 and "digest.txt.j2:1:" in result.stderr and "Traceback" not in result.stderr
    (broken / "digest.txt.j2").write_text("{{ no_such_variable }}\n", encoding="utf-8")
    result = publisher("check", cwd=tmp_path)
    assert result.returncode == 2 and "digest does not render with sample data" in result.stderr
    assert "no_such_variable" in result.stderr


def test_check_refuses_a_templates_folder_that_is_not_there(tmp_path: Path) -> None:
    write_config(tmp_path, extra="")
    text = (tmp_path / "config.yaml").read_text(encoding="utf-8")
    (tmp_path / "config.yaml").write_text(text.replace(f"templates: {tmp_path / 'templates'}", "templates: my-templates"))
    result = publisher("check", cwd=tmp_path)
    assert result.returncode == 2 and "my-templates is not a folder" in result.stderr
    assert "publisher templates copy my-templates" in result.stderr
    copied = publisher("templates", "copy", "my-templates", cwd=tmp_path)
    assert copied.returncode == 0 and (tmp_path / "my-templates" / "email" / "digest.mjml.j2").is_file()
    assert publisher("check", cwd=tmp_path).returncode == 0
    again = publisher("templates", "copy", "my-templates", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr
