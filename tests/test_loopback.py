"""The suite's own guard: nothing in a test reaches past this machine's loopback."""

from __future__ import annotations

import socket

import pytest
import requests


def test_lookups_and_connections_elsewhere_are_refused() -> None:
    with pytest.raises(OSError, match="loopback only"):
        socket.getaddrinfo("news.example.org", 443)
    with pytest.raises(requests.ConnectionError):
        requests.get("https://news.example.org/feed.xml", timeout=1)
    with socket.socket() as sock, pytest.raises(OSError, match="loopback only"):
        sock.connect(("192.0.2.1", 80))
    assert socket.getaddrinfo("127.0.0.1", 80)  # loopback still works
