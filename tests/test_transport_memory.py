"""InMemoryTransport: the scripted stand-in pipeline tests use; it must keep the real contract."""

from __future__ import annotations

import pytest

from publisher.delivery.mail import InMemoryTransport, MailTransport, SimulatedCrash
from publisher.errors import TransportUnavailable
from publisher.models import OutgoingMessage


def message(number: int, recipient: str) -> OutgoingMessage:
    data = f"To: {recipient}\r\nMessage-ID: <{number}@x.test>\r\n\r\nbody\r\n".encode()
    return OutgoingMessage(number, "digest@news.example.test", recipient, f"<{number}@x.test>", data)


def test_accepts_and_records_in_order_with_one_result_per_message() -> None:
    transport = InMemoryTransport()
    batch = [message(3, "c@example.test"), message(1, "a@example.test"), message(2, "b@example.test")]
    report = transport.send(batch)
    assert [r.delivery_id for r in report.results] == [3, 1, 2]
    assert all(r.ok and r.provider_message_id for r in report.results)
    assert len({r.provider_message_id for r in report.results}) == 3
    assert transport.accepted == batch
    assert transport.recipients == ["c@example.test", "a@example.test", "b@example.test"]
    assert transport.batches == [batch]


def test_scripted_failures_are_temporary_or_permanent_and_spare_the_others() -> None:
    transport = InMemoryTransport()
    transport.fail("Busy@Example.test", temporary=True)
    transport.fail("gone@example.test", temporary=False, error="550 5.1.1 gone")
    report = transport.send(
        [message(1, "busy@example.test"), message(2, "gone@example.test"), message(3, "ok@example.test")]
    )
    busy, gone, ok = report.results
    assert (busy.ok, busy.temporary) == (False, True) and busy.error and busy.error.startswith("450")
    assert (gone.ok, gone.temporary, gone.error) == (False, False, "550 5.1.1 gone")
    assert ok.ok
    assert transport.recipients == ["ok@example.test"]
    assert (report.sent, report.failed) == (1, 2)


def test_a_failure_scripted_for_some_times_then_passes() -> None:
    transport = InMemoryTransport()
    transport.fail("flaky@example.test", times=2)
    outcomes = [transport.send([message(n, "flaky@example.test")]).results[0].ok for n in range(1, 5)]
    assert outcomes == [False, False, True, True]


def test_unavailable_raises_with_the_given_remedy_and_accepts_nothing() -> None:
    transport = InMemoryTransport()
    transport.unavailable = "cannot connect to 127.0.0.1:2525; check mail.transport.host in config.yaml"
    with pytest.raises(TransportUnavailable, match="mail.transport.host"):
        transport.send([message(1, "a@example.test")])
    assert transport.accepted == []
    assert transport.send([]).results == []  # an empty batch never raises


def test_a_simulated_crash_keeps_what_was_accepted_but_returns_no_report() -> None:
    transport = InMemoryTransport()
    transport.crash_after(2)
    with pytest.raises(SimulatedCrash):
        transport.send([message(n, f"r{n}@example.test") for n in range(1, 6)])
    assert transport.recipients == ["r1@example.test", "r2@example.test"]
    # after the "restart" it works again
    assert transport.send([message(6, "r6@example.test")]).sent == 1


def test_malformed_envelopes_fail_permanently_like_the_real_transports() -> None:
    report = InMemoryTransport().send([message(1, "")])
    assert (report.results[0].ok, report.results[0].temporary) == (False, False)


def test_it_is_a_mail_transport_with_context_manager_and_batch_size() -> None:
    transport: MailTransport = InMemoryTransport(max_batch=50)
    with transport as entered:
        assert entered is transport
    assert isinstance(transport, InMemoryTransport) and transport.closed
    assert transport.max_batch == 50 and transport.name == "memory"
