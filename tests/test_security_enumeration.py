"""Issue 15.2: /subscribe does not tell, by its work or its timing, whether an address is on the list.

1. The request itself runs the same SQL statements, in the same order, for a new, pending, active,
   unsubscribed, bounced or forgotten address, and never talks to a mail server (the confirmation is
   queued; the worker thread sends it). Deterministic.
2. Statistically: a few hundred interleaved requests for active and for unknown addresses, compared
   with a Mann-Whitney U test, show no significant difference in response time. The order is a random
   permutation, so a load spike on the machine (or the worker's work after a request) hits both groups
   alike;
   the threshold is conservative (two-sided p < 0.001), and a significant first run is measured again:
   only a difference seen twice in the same direction fails (a false alarm: about 1 in 10^6 runs).
   A power check on the same samples shows that a leak like the one reported (5 ms on 8 ms, here at
   least 5 ms or 30 % of the median, whichever is more on a loaded machine) would have been seen.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from publisher.models import SubscriberStatus
from publisher.web.confirmations import THREAD_NAME
from tests.test_web import Harness, csrf_of, make_harness, settle

LIMITS = "web:\n  max_requests_per_client_per_hour: 100000\n  max_confirmations_per_address: 100000\n"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    import publisher.web.subscribe as subscribe_module

    monkeypatch.setattr(subscribe_module.secrets, "randbelow", lambda _n: 1)  # no random pruning pass
    harness = make_harness(tmp_path, extra=LIMITS)
    yield harness
    harness.client.close()
    harness.store.close()


def post_form(harness: Harness, csrf: str, email: str) -> Any:
    return harness.client.post("/subscribe", data={"csrf": csrf, "email": email, "name": "", "language": "en",
                                                   "lang": "en"})


def test_every_address_costs_the_request_the_same_statements_and_no_mail(site: Harness) -> None:
    store = site.store
    store.subscribers.upsert("active@example.org", language="en")
    store.subscribers.upsert("gone@example.org", language="en", status=SubscriberStatus.UNSUBSCRIBED)
    store.subscribers.upsert("bounced@example.org", language="en", status=SubscriberStatus.BOUNCED)
    store.subscribers.upsert("forgotten@example.org", language="en")
    forgotten = store.subscribers.by_email("forgotten@example.org")
    assert forgotten is not None
    store.subscribers.forget(forgotten.id)
    csrf = csrf_of(site.client.get("/subscribe").text)
    post_form(site, csrf, "pending@example.org")
    settle(site.client)

    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.current_thread().name != THREAD_NAME:
            statements.append(statement)

    sends: list[str] = []
    real_send = site.transport.send

    def send(messages: Any) -> Any:
        sends.append(threading.current_thread().name)
        return real_send(messages)

    site.transport.send = send  # type: ignore[method-assign]
    seen: dict[str, list[str]] = {}
    event.listen(store.engine, "before_cursor_execute", record)
    try:
        for email in ("new@example.org", "active@example.org", "pending@example.org", "gone@example.org",
                      "bounced@example.org", "forgotten@example.org"):
            statements.clear()
            answer = post_form(site, csrf, email)
            assert answer.status_code == 303
            seen[email] = list(statements)
            settle(site.client)
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    assert seen["new@example.org"], "the request wrote nothing: not even the queue?"
    assert all(found == seen["new@example.org"] for found in seen.values()), seen
    assert any("confirmation_outbox" in statement for statement in seen["new@example.org"])
    assert not any("subscribers" in statement for statement in seen["new@example.org"])  # no lookup of the address
    assert sends and set(sends) == {THREAD_NAME}  # mail goes out from the worker, never inside a request
    assert len(sends) == 5  # everyone but the active subscriber got a confirmation


# --- the statistics ------------------------------------------------------------------------------


def mann_whitney(first: list[float], second: list[float]) -> tuple[float, float]:
    """(z, two-sided p) of the Mann-Whitney U test, normal approximation with tie correction."""
    values = sorted((value, group) for group, sample in enumerate((first, second)) for value in sample)
    ranks = [0.0] * len(values)
    ties = 0.0
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1][0] == values[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        count = j - i + 1
        ties += count**3 - count
        i = j + 1
    n1, n2 = len(first), len(second)
    rank_sum = sum(rank for rank, (_, group) in zip(ranks, values, strict=True) if group == 0)
    u = rank_sum - n1 * (n1 + 1) / 2
    n = n1 + n2
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    z = (u - n1 * n2 / 2) / sigma if sigma else 0.0
    return z, math.erfc(abs(z) / math.sqrt(2))


def test_the_statistics_tell_apart_what_differs_and_not_what_does_not() -> None:
    rng = random.Random(7)
    same = [rng.gauss(10, 3) for _ in range(300)], [rng.gauss(10, 3) for _ in range(300)]
    assert mann_whitney(*same)[1] > 0.01
    shifted = [rng.gauss(8, 3) for _ in range(300)], [rng.gauss(13, 3) for _ in range(300)]
    z, p = mann_whitney(*shifted)
    assert z < -10 and p < 1e-20


PAIRS = 300
WARM_UP = 20
LEAK_MS = 5.0  # what the issue measured: 8.1 ms against 13.2 ms
LEAK_SHARE = 0.3  # ... or this share of the median, when the machine is slow
ALPHA = 1e-3
POWER_ALPHA = 0.01


def measure(site: Harness, csrf: str, active: list[str], round_: int) -> tuple[list[float], list[float]]:
    """Response times (ms) of requests for active and unknown addresses, in one random order.

    A random permutation, not alternating pairs: with pairs, a known request would follow an unknown
    one three times in four, and feel the worker's work for it more often than an unknown one does."""
    rng = random.Random(round_)
    known: list[float] = []
    unknown: list[float] = []
    for i in range(WARM_UP):
        post_form(site, csrf, f"warm{round_}.{i}@example.org")
    order = [("known", email) for email in active] + [("unknown", f"probe{round_}.{i}@example.org") for i in range(PAIRS)]
    rng.shuffle(order)
    for group, email in order:
        start = time.perf_counter()
        answer = post_form(site, csrf, email)
        elapsed = (time.perf_counter() - start) * 1000
        assert answer.status_code == 303
        (known if group == "known" else unknown).append(elapsed)
    return known, unknown


def test_an_active_address_answers_no_faster_than_an_unknown_one(site: Harness) -> None:
    rounds = 2
    for round_ in range(rounds):
        for i in range(PAIRS):
            site.store.subscribers.upsert(f"active{round_}.{i}@example.org", language="en")
    csrf = csrf_of(site.client.get("/subscribe").text)
    directions = []
    for round_ in range(rounds):
        known, unknown = measure(site, csrf, [f"active{round_}.{i}@example.org" for i in range(PAIRS)], round_)
        z, p = mann_whitney(known, unknown)
        # power: the same samples with the reported leak added to one group must be told apart
        medians = (sorted(known)[PAIRS // 2], sorted(unknown)[PAIRS // 2])
        leak = max(LEAK_MS, LEAK_SHARE * sorted(known + unknown)[PAIRS])
        _, p_leak = mann_whitney(known, [value + leak for value in unknown])
        print(f"round {round_}: median known {medians[0]:.2f} ms, unknown {medians[1]:.2f} ms, z={z:.2f}, p={p:.3g}, "
              f"p with a {leak:.1f} ms leak={p_leak:.3g}")
        assert p_leak < POWER_ALPHA, f"too noisy to see a {leak:.1f} ms leak with {PAIRS} pairs (p={p_leak:.3g})"
        if p >= ALPHA:
            break
        directions.append(z > 0)
    else:
        assert len(set(directions)) > 1, f"response time tells known from unknown addresses (z={z:.2f}, p={p:.3g})"
    settle(site.client)
