"""`publisher dns`: the SPF and DMARC records for the editions' From domains, by transport."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from publisher.config import load_config
from publisher.dns_records import records
from tests.conftest import write_config


def test_dns_prints_spf_and_dmarc_for_each_from_domain(tmp_path: Path) -> None:
    path = write_config(tmp_path, transport="kind: postmark\n    server_token: token-123")
    text = path.read_text(encoding="utf-8").replace("from: ليفانت اليوم <digest@news.example.org>",
                                                    "from: ليفانت اليوم <nashra@ar.news.example.org>")  # fmt: skip
    path.write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    result = subprocess.run([sys.executable, "-m", "publisher", "dns"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith(";")]
    assert lines == [
        'news.example.org. 3600 IN TXT "v=spf1 include:spf.mtasv.net ~all"',
        '_dmarc.news.example.org. 3600 IN TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@news.example.org; adkim=r; aspf=r"',
        'ar.news.example.org. 3600 IN TXT "v=spf1 include:spf.mtasv.net ~all"',
        '_dmarc.ar.news.example.org. 3600 IN TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@ar.news.example.org; adkim=r; aspf=r"',
    ]
    assert "DKIM" in result.stdout


def test_spf_follows_the_transport(tmp_path: Path) -> None:
    smtp = load_config(write_config(tmp_path, transport="kind: smtp\n    host: mail.news.example.org"))
    assert records(smtp)[0].value == "v=spf1 a:mail.news.example.org ~all"
    ses = load_config(write_config(tmp_path, transport="kind: ses\n    region: eu-west-1\n    access_key_id: a\n    secret_access_key: b"))
    assert records(ses)[0].value == "v=spf1 include:amazonses.com ~all"
