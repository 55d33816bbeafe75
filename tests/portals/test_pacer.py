from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from b24app.bitrix.replies import CallTime
from b24app.portals import pacer, services
from b24app.portals.models import PacerState, Portal
from tests.conftest import port_open

METHOD = "imopenlines.network.message.add"


@pytest.fixture(params=["db", "redis"])
def store_kind(request: Any, settings: Any) -> str:
    if request.param == "redis":
        url = os.environ.get("B24_PACER_REDIS_URL") or "redis://127.0.0.1:6379/15"
        request.applymarker(pytest.mark.redis)
        if not port_open("127.0.0.1", 6379):
            pytest.skip("Redis is not running on 127.0.0.1:6379")
        import redis

        redis.Redis.from_url(url).flushdb()
        settings.B24_PACER_REDIS_URL = url
    else:
        settings.B24_PACER_REDIS_URL = ""
    return str(request.param)


@pytest.mark.django_db
def test_bulk_traffic_leaves_the_top_of_the_bucket_for_people(
    store_kind: str, make_portal: Callable[..., Portal]
):
    portal = make_portal(rate=0.001, burst=50)

    bulk = sum(pacer.pacer_acquire(portal=portal, interactive=False) == 0 for _ in range(60))
    people = sum(pacer.pacer_acquire(portal=portal, interactive=True) == 0 for _ in range(20))

    assert bulk == 47  # 94 % of the burst
    assert people == 3  # the reserved 6 %


@pytest.mark.django_db
def test_a_refused_request_is_told_how_long_to_wait(
    store_kind: str, make_portal: Callable[..., Portal]
):
    portal = make_portal(rate=0.5, burst=5)
    for _ in range(5):
        pacer.pacer_acquire(portal=portal, interactive=True)

    wait = pacer.pacer_acquire(portal=portal, interactive=True)

    assert 1.0 < wait <= 2.0  # one request drains in 2 s; less whatever time passed


@pytest.mark.django_db
def test_a_spent_execution_budget_pauses_bulk_sending_until_it_resets(
    store_kind: str, make_portal: Callable[..., Portal], settings: Any
):
    settings.B24_OP_BUDGET_S = 10.0
    portal = make_portal(rate=100.0, burst=50)
    reset_at = int(time.time()) + 120
    pacer.pacer_record(
        portal=portal,
        method=METHOD,
        call_time=CallTime(
            start=0, finish=0, duration=0, processing=0, operating=9.8, operating_reset_at=reset_at
        ),
    )

    wait = pacer.pacer_acquire(portal=portal, interactive=False, method=METHOD)

    assert 110 < wait <= 120
    assert pacer.pacer_acquire(portal=portal, interactive=True, method=METHOD) == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_never_take_more_than_the_burst(
    store_kind: str, make_portal: Callable[..., Portal]
):
    portal = make_portal(rate=0.001, burst=30)
    granted: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            for _ in range(10):
                ok = pacer.pacer_acquire(portal=portal, interactive=True) == 0
                with lock:
                    granted.append(ok)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(granted) == 60
    assert sum(granted) == 30


def _batch_times(first: float, reset_at: int, calls: int = 50) -> list[CallTime]:
    """A batch reply's `result_time`: each sub-call reports the running total after it."""
    return [
        CallTime(
            start=0,
            finish=0,
            duration=0,
            processing=0,
            operating=first + 0.02 * i,
            operating_reset_at=reset_at,
        )
        for i in range(calls)
    ]


@pytest.mark.django_db
def test_batches_in_flight_count_against_the_budget_until_their_replies_arrive(
    store_kind: str, make_portal: Callable[..., Portal], settings: Any
):
    settings.B24_OP_BUDGET_S, settings.B24_OP_WINDOW_S = 48.0, 60.0  # bulk cap 45.12 s
    portal = make_portal(rate=100.0, burst=500)
    reset_at = int(time.time()) + 30
    # 20 ms per call: the batch ran from 39.02 s to 40.0 s, so it cost 1 s.
    pacer.pacer_record_batch(portal=portal, method=METHOD, times=_batch_times(39.02, reset_at))

    waits = [pacer.pacer_acquire(portal=portal, interactive=False, method=METHOD) for _ in range(6)]
    assert waits.count(0) == 5  # 40 + 5 batches in flight = 45

    # Two replies without `operating` (Bitrix may leave it out) still end their requests.
    for _ in range(2):
        pacer.pacer_record_batch(portal=portal, method=METHOD, times=[])
    waits = [pacer.pacer_acquire(portal=portal, interactive=False, method=METHOD) for _ in range(6)]
    assert waits.count(0) == 2


@pytest.mark.django_db
def test_a_single_call_time_leaves_the_measured_cost_alone(
    store_kind: str, make_portal: Callable[..., Portal], settings: Any
):
    settings.B24_OP_BUDGET_S, settings.B24_OP_WINDOW_S = 48.0, 60.0
    portal = make_portal(rate=100.0, burst=500)
    reset_at = int(time.time()) + 30
    pacer.pacer_record_batch(portal=portal, method=METHOD, times=_batch_times(39.02, reset_at))
    pacer.pacer_record_batch(portal=portal, method=METHOD, times=_batch_times(40.02, reset_at, 1))

    waits = [pacer.pacer_acquire(portal=portal, interactive=False, method=METHOD) for _ in range(6)]

    assert waits.count(0) == 5  # still 1 s a batch: 40.02 + 5 ≤ 45.12


@pytest.mark.django_db
def test_db_store_reads_an_old_two_element_row_and_keeps_in_flight_across_calls(
    make_portal: Callable[..., Portal], settings: Any
):
    settings.B24_PACER_REDIS_URL = ""
    portal = make_portal(rate=100.0, burst=500)
    now = time.time()
    PacerState.objects.create(portal=portal, budgets={METHOD: [12.0, now + 120]})

    assert pacer.pacer_acquire(portal=portal, interactive=False, method=METHOD) == 0
    assert pacer.pacer_acquire(portal=portal, interactive=False, method=METHOD) == 0

    row = PacerState.objects.get(portal=portal).budgets[METHOD]
    assert row[:3] == [12.0, now + 120, 0.0]
    assert len(row[3]) == 2
    health = services.portal_health(portal=portal)
    assert health.budgets[0]["used_s"] == 12.0
