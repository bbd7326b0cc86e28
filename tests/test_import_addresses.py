"""The import's fast address check gives email_validator's verdict, address for address."""

from __future__ import annotations

import random

from email_validator import EmailNotValidError, validate_email

from publisher.importing.addresses import check_address

LOCAL = "abcXYZ019._+-!#$%&'*/=?^`{|}~\"(),:;<>@[\\] é\x00\t"
DOMAIN = "abcXYZ019.-_é ü[]"
TLDS = ["org", "com", "co.uk", "localhost", "invalid", "test", "xn--mgbh0fb", "123", "a", "museum", ""]


def reference(text: str) -> str | None:
    try:
        return validate_email(text.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def generated(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        local = "".join(rng.choice(LOCAL) for _ in range(rng.choice([0, 1, 3, 8, 20, 64, 65, 70])))
        if rng.random() < 0.6:  # mostly plain local parts, the path the fast check takes
            local = "".join(rng.choice("abcXYZ019._+-") for _ in range(rng.choice([1, 5, 12, 64, 65])))
        labels = []
        for _ in range(rng.choice([1, 2, 3])):
            alphabet = DOMAIN if rng.random() < 0.2 else "abcxyz019-" if rng.random() < 0.3 else "abcxyz019"
            labels.append("".join(rng.choice(alphabet) for _ in range(rng.choice([1, 4, 12, 63, 64]))))
        tld = rng.choice(TLDS) if rng.random() < 0.4 else "org"
        domain = ".".join([*labels, tld]).strip(".") if rng.random() < 0.95 else "x" * 250 + ".org"
        out.append(f"{' ' if rng.random() < 0.1 else ''}{local}@{domain}")
    return out


def test_fast_check_agrees_with_email_validator_on_generated_addresses() -> None:
    addresses = generated(7, 4000) + [
        "Reader@Example.ORG", "first.last+tag@sub.example.co.uk", ".lead@example.org", "trail.@example.org",
        "two..dots@example.org", "a@-bad.org", "a@bad-.org", "a@example", "a@localhost", "a@example.invalid",
        "x" * 64 + "@example.org", "x" * 65 + "@example.org", "a@" + "b" * 63 + ".org", "a@" + "b" * 64 + ".org",
        "ü@example.org", "a@exämple.org", "\"quoted\"@example.org", " padded@example.org ",
    ]
    accepted = 0
    for text in addresses:
        expected = reference(text)
        got, reason = check_address(text)
        assert got == expected, text
        assert (reason is None) == (expected is not None), text
        accepted += expected is not None
    assert 500 < accepted < len(addresses) - 500  # both verdicts are well exercised
