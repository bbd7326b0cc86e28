"""Bounces (DSN) and complaints (ARF) read from a mailbox: the parser on realistic reports, then the
`publisher bounces import` command against a real store, as an operator runs it."""

from __future__ import annotations

import mailbox
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from publisher.bounces import Verdict, address_failure, parse_report, read_mailbox
from tests.conftest import write_config

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"


def findings_of(name: str):  # type: ignore[no-untyped-def]
    return parse_report((FIXTURES / name).read_bytes())


@pytest.mark.parametrize(
    ("fixture", "address"),
    [
        ("postfix-user-unknown.eml", "nobody@example.net"),
        ("gmail-no-such-user.eml", "lost.reader@gmail.com"),
        ("microsoft-recipient-not-found.eml", "former.staff@contoso.com"),
        ("exim-permanent.eml", "moved.away@example.com"),
        ("qmail-permanent.eml", "left.long.ago@example.net"),
    ],
)
def test_a_missing_mailbox_is_a_hard_bounce_of_that_address(fixture: str, address: str) -> None:
    [finding] = findings_of(fixture)
    assert finding.verdict is Verdict.BOUNCE and finding.report == "dsn"
    assert finding.addresses[0] == address  # lower-cased, without "rfc822;" or angle brackets


def test_the_returned_message_id_is_found_in_headers_bodies_and_gmail_fields() -> None:
    for fixture, delivery_id in [("postfix-user-unknown.eml", 1), ("gmail-no-such-user.eml", 3),
                                 ("microsoft-recipient-not-found.eml", 4), ("exim-permanent.eml", 6)]:
        [finding] = findings_of(fixture)
        assert [(m.digest_id, m.delivery_id) for m in finding.message_ids] == [(1, delivery_id)], fixture


def test_delays_and_policy_refusals_change_nothing() -> None:
    [delayed] = findings_of("postfix-delayed.eml")
    assert delayed.verdict is Verdict.IGNORED and "4.4.1" in delayed.detail
    # Outlook blocking our IP (5.7.1, S3150) is about us: every Outlook reader would be lost otherwise
    [blocked] = findings_of("microsoft-blocklisted.eml")
    assert blocked.verdict is Verdict.REFUSED and blocked.addresses == ("reader@outlook.com",)


@pytest.mark.parametrize(
    ("status", "diagnostic", "verdict"),
    [
        ("5.1.1", "smtp; 550 5.1.1 user unknown", Verdict.BOUNCE),
        ("5.2.1", "smtp; 550 5.2.1 mailbox disabled", Verdict.BOUNCE),
        ("5.4.4", "X-Postfix; Host or domain name not found", Verdict.BOUNCE),
        ("5.0.0", "smtp; 550 No such user here", Verdict.BOUNCE),
        ("5.0.0", "smtp; 550 Message refused", Verdict.REFUSED),
        ("5.2.2", "smtp; 552 5.2.2 mailbox full", Verdict.REFUSED),
        ("5.7.26", "smtp; 550 5.7.26 This mail is unauthenticated", Verdict.REFUSED),
        ("5.0.0", "smtp; 554 5.7.1 Service unavailable; Client host blocked; user unknown", Verdict.REFUSED),
    ],
)
def test_which_permanent_failures_are_about_the_address(status: str, diagnostic: str, verdict: Verdict) -> None:
    assert address_failure(status, diagnostic) is verdict


def test_abuse_reports_are_complaints_with_recipient_or_message_id() -> None:
    [named] = findings_of("arf-abuse-recipient.eml")
    assert named.verdict is Verdict.COMPLAINT and named.report == "arf"
    assert named.addresses == ("annoyed.reader@example.com",)
    [redacted] = findings_of("arf-abuse-redacted.eml")
    assert redacted.verdict is Verdict.COMPLAINT and redacted.addresses == ()
    assert [(m.digest_id, m.delivery_id) for m in redacted.message_ids] == [(1, 9)]


def test_feedback_that_is_not_abuse_is_ignored() -> None:
    data = (FIXTURES / "arf-abuse-recipient.eml").read_bytes().replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam")
    [finding] = parse_report(data)
    assert finding.verdict is Verdict.IGNORED and "not-spam" in finding.detail


def test_a_dsn_with_several_recipients_gives_one_finding_each() -> None:
    data = (FIXTURES / "postfix-user-unknown.eml").read_bytes().replace(
        b"    rejected: User unknown in virtual mailbox table\n\n--",
        b"    rejected: User unknown in virtual mailbox table\n\n"
        b"Final-Recipient: rfc822; second@example.net\nAction: delayed\nStatus: 4.2.2\n\n"
        b"Final-Recipient: rfc822; third@example.net\nAction: failed\nStatus: 4.4.7\n\n--",
    )
    verdicts = [(f.addresses[0], f.verdict) for f in parse_report(data)]
    # "failed" with a 4.x.x status is Postfix giving up after its queue lifetime: not a hard bounce
    assert verdicts == [("nobody@example.net", Verdict.BOUNCE), ("second@example.net", Verdict.IGNORED),
                        ("third@example.net", Verdict.IGNORED)]


@pytest.mark.parametrize("fixture", ["out-of-office.eml", "exim-unrouteable.eml", "truncated-report.eml"])
def test_what_is_not_clearly_a_report_is_not_understood(fixture: str) -> None:
    findings = findings_of(fixture)
    assert findings and all(f.verdict is Verdict.NOT_UNDERSTOOD for f in findings)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\xff\xfe\x89PNG\r\n", b"Content-Type: multipart/report; report-type=delivery-status\n\n--x\n",
     b"Content-Type: message/delivery-status\n\nFinal-Recipient: rfc822; \nAction: failed\nStatus: 5.1.1\n",
     b"Content-Type: multipart/report; boundary=b\n\n--b\nContent-Type: message/feedback-report\n\n--b--\n"],
)
def test_malformed_input_never_raises_and_never_acts(data: bytes) -> None:
    findings = parse_report(data)
    assert findings and all(f.verdict is Verdict.NOT_UNDERSTOOD for f in findings)


def test_mailbox_formats_maildir_eml_folder_and_mbox(tmp_path: Path) -> None:
    names = ["postfix-user-unknown.eml", "arf-abuse-recipient.eml"]
    maildir = mailbox.Maildir(tmp_path / "Maildir")
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    for name in names:
        maildir.add((FIXTURES / name).read_bytes())
        box.add((FIXTURES / name).read_bytes())
    box.flush()
    box.close()
    (tmp_path / "eml").mkdir()
    for name in names:
        shutil.copy(FIXTURES / name, tmp_path / "eml" / name)
    (tmp_path / "eml" / "notes.txt").write_text("not a message")
    for source in (tmp_path / "Maildir", tmp_path / "eml", tmp_path / "bounces.mbox"):
        messages = list(read_mailbox(source))
        verdicts = sorted(parse_report(m.read())[0].verdict.value for m in messages)
        assert verdicts == ["bounce", "complaint"], source
    assert [m.name for m in read_mailbox(tmp_path / "bounces.mbox")] == ["bounces.mbox#1", "bounces.mbox#2"]
    assert all(m.name.startswith("new/") for m in read_mailbox(tmp_path / "Maildir"))


# --- the command, end to end ----------------------------------------------------------------------

SUBSCRIBERS = {
    "nobody@example.net": "bounced",  # Postfix 5.1.1
    "slow@example.org": "active",  # delayed only
    "lost.reader@gmail.com": "bounced",  # Gmail 5.1.1
    "former.staff@contoso.com": "bounced",  # Exchange Online 5.1.10
    "reader@outlook.com": "active",  # Outlook blocked our IP: not the reader's fault
    "moved.away@example.com": "bounced",  # Exim text bounce
    "hidden.reader@yahoo.com": "complained",  # Yahoo ARF, recipient redacted: found by our Message-ID
    "annoyed.reader@example.com": "complained",  # ARF with Original-Rcpt-To
    "typo@exmaple.com": "active",  # Exim "Unrouteable address", no 5xx: not understood
    "forged@example.org": "active",  # named only by a Message-ID whose tag is not ours
}
# left.long.ago@example.net (qmail) is not on the list: an unknown address


def publisher(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "publisher", *args, "--config", "config.yaml"],
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def summary_count(output: str, label: str) -> int:
    line = next(line for line in output.splitlines() if line.startswith(f"{label}: "))
    return int(line.split(": ", 1)[1])


def test_import_marks_bounces_and_complaints_and_is_idempotent(tmp_path: Path) -> None:
    from publisher.config import load_config
    from publisher.pipeline.send import LinkMaker
    from publisher.store import Store

    config = load_config(write_config(tmp_path))
    csv = tmp_path / "subscribers.csv"
    csv.write_text("email,name,language\n" + "".join(f"{e},,en\n" for e in SUBSCRIBERS), encoding="utf-8")
    assert publisher("subscribers", "import", str(csv), cwd=tmp_path).returncode == 0

    # a digest went to everyone: the ledger knows which delivery each Message-ID names
    store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        digest = store.digests.create("en", date(2026, 11, 10), "en", [])
        store.deliveries.enqueue(digest.id, "en")
        delivery_of = {row.email: row.id for row in store.deliveries.due(digest.id, after_id=0, limit=100)}
    finally:
        store.close()
    links = LinkMaker(config.site, "news.example.org")

    def signed(email: str) -> bytes:
        return links.message_id(digest.id, delivery_of[email])[1:].split("@")[0].encode()

    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for number, fixture in enumerate(sorted(FIXTURES.glob("*.eml"))):
        data = fixture.read_bytes().replace(b"digest.1.9.000000000000", signed("hidden.reader@yahoo.com"))
        (maildir / ("cur" if number % 2 else "new") / f"17942{number:05d}.M1P2.mail:2,S").write_bytes(data)
    # an abuse report naming a real delivery, but with a tag we never made: must name nobody
    forged = (FIXTURES / "arf-abuse-redacted.eml").read_bytes().replace(
        b"digest.1.9.000000000000", f"digest.{digest.id}.{delivery_of['forged@example.org']}.0123456789ab".encode()
    )
    (maildir / "new" / "1794300000.M9P9.mail").write_bytes(forged)

    first = publisher("bounces", "import", str(maildir), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    counts = {label: summary_count(first.stdout, label) for label in (
        "messages read", "bounces applied", "complaints applied", "already recorded (no change)",
        "ignored (delayed, temporary, not a complaint)", "refused for policy or content (address kept)",
        "unknown addresses", "not understood")}
    assert counts == {
        "messages read": 13, "bounces applied": 4, "complaints applied": 2, "already recorded (no change)": 0,
        "ignored (delayed, temporary, not a complaint)": 1, "refused for policy or content (address kept)": 1,
        "unknown addresses": 2, "not understood": 3,
    }
    assert "left.long.ago@example.net" in first.stdout and "1794300000.M9P9.mail" in first.stdout
    for name in ("out-of-office", "exim-unrouteable", "truncated-report"):
        index = sorted(FIXTURES.glob("*.eml")).index(FIXTURES / f"{name}.eml")
        assert f"17942{index:05d}.M1P2.mail:2,S" in first.stdout, name

    listed = publisher("subscribers", "list", cwd=tmp_path).stdout.splitlines()
    statuses = {line.split("\t")[0]: line.split("\t")[3] for line in listed[1:] if "\t" in line}
    assert statuses == SUBSCRIBERS

    second = publisher("bounces", "import", str(maildir), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert (summary_count(second.stdout, "bounces applied"), summary_count(second.stdout, "complaints applied"),
            summary_count(second.stdout, "already recorded (no change)")) == (0, 0, 6)
    listed_again = publisher("subscribers", "list", cwd=tmp_path).stdout.splitlines()
    assert listed_again == listed


def test_import_of_a_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    write_config(tmp_path)
    result = publisher("bounces", "import", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_delivery_lookup_names_the_subscriber_only_for_the_right_digest(store) -> None:  # type: ignore[no-untyped-def]
    from publisher.models import SubscriberStatus
    from publisher.store.bounces import DeliveryLookup

    store.subscribers.upsert("first@example.org", language="en", status=SubscriberStatus.ACTIVE)
    store.subscribers.upsert("second@example.org", language="en", status=SubscriberStatus.ACTIVE)
    digest = store.digests.create("en", date(2026, 11, 10), "en", [])
    store.deliveries.enqueue(digest.id, "en")
    rows = store.deliveries.due(digest.id, after_id=0, limit=10)
    lookup = DeliveryLookup(store.engine)
    for row in rows:
        found = lookup.recipient_of(digest.id, row.id)
        assert found is not None and (found.email, found.subscriber_id) == (row.email, row.subscriber_id)
    assert lookup.recipient_of(digest.id + 1, rows[0].id) is None
    assert lookup.recipient_of(digest.id, max(r.id for r in rows) + 1) is None


def test_text_bounces_are_read_only_as_far_as_their_wording_is_certain() -> None:
    exim = (FIXTURES / "exim-permanent.eml").read_bytes()
    blocked = exim.replace(b"550 5.1.1 <moved.away@example.com>: Recipient address rejected: User unknown",
                           b"550 5.7.1 Message rejected as spam by Content Filtering")
    assert [f.verdict for f in parse_report(blocked)] == [Verdict.REFUSED]
    delay = exim.replace(b"could not be delivered to one or more of its\nrecipients. This is a permanent error.",
                         b"has not yet been delivered to one or more of its\nrecipients after more than 24 hours.")
    assert [f.verdict for f in parse_report(delay)] == [Verdict.IGNORED]
    # the same address without the "permanent error" sentence: not acted upon
    vague = exim.replace(b"This is a permanent error. ", b"")
    assert [f.verdict for f in parse_report(vague)] == [Verdict.NOT_UNDERSTOOD]
